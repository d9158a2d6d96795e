//! `/metrics` on every server of a lab, scraped as Prometheus does (with the deployment's
//! token or an operator's) and parsed as the text exposition format, strictly enough to
//! refuse what a scraper would: after a sign-in and a planned pool failover, the figures
//! say so — sign-ins by outcome on the pool's Front Ends, the failover's steps and its
//! end, the master and the replicas' lag on the active master, each module's Backup
//! Service backlog on every Front End — and `tandem lab logs --operation N` gives the
//! failover's lines from the servers' merged logs.

use std::collections::BTreeMap;

use crate::failover::{sign_in, user_of};
use crate::lab::Lab;

/// One sample: its metric name, labels and value.
#[derive(Debug)]
pub(crate) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels without `:`).
fn is_name(s: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// Parses the text exposition format (0.0.4): `# HELP` and `# TYPE` before a family's
/// samples, names and labels well formed, label values quoted with their escapes, values
/// numbers. Panics naming the line otherwise.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("a comment without a name: {line}"));
            assert!(is_name(name, true), "a bad metric name: {line}");
            match kind {
                Some("HELP") => {}
                Some("TYPE") => {
                    let t = rest.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "a bad type: {line}"
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "a family typed twice: {line}"
                    );
                }
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("a sample without a value: {line}"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "a bad metric name: {line}");
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut s = inner;
            loop {
                if let Some(after) = s.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = s
                    .find('=')
                    .unwrap_or_else(|| panic!("a label without =: {line}"));
                let label = &s[..eq];
                assert!(is_name(label, false), "a bad label name {label:?}: {line}");
                let mut chars = s[eq + 1..].char_indices();
                assert_eq!(
                    chars.next().map(|c| c.1),
                    Some('"'),
                    "an unquoted label: {line}"
                );
                let mut value = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|c| c.1) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("a bad escape {other:?}: {line}"),
                        },
                        '"' => {
                            end = Some(eq + 1 + i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end.unwrap_or_else(|| panic!("an unterminated label value: {line}"));
                labels.insert(label.to_string(), value);
                s = &s[end..];
                s = s.strip_prefix(',').unwrap_or(s);
            }
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("a bad value: {line}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("a bad timestamp: {line}"));
        }
        assert!(fields.next().is_none(), "more after the timestamp: {line}");
        // Every sample belongs to a family typed before it.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|f| {
                    matches!(
                        types.get(*f).map(String::as_str),
                        Some("histogram" | "summary")
                    )
                })
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "{name} has no # TYPE before it: {line}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The sum of `name`'s samples whose labels include `with`.
pub(crate) fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

/// GET /metrics of `server` with `token`: the status, the content type and the body.
pub(crate) fn scrape(
    lab: &Lab,
    server: &serde_json::Value,
    token: Option<&str>,
) -> (u16, String, String) {
    let url = format!(
        "https://{}:{}/metrics",
        server["address"].as_str().unwrap(),
        server["management_port"]
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = lab.http().build().unwrap().get(url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, kind, resp.text().await.unwrap())
    })
}

#[test]
fn every_server_serves_its_figures_in_prometheus_text_format() {
    let lab = Lab::up_with(&["--users", "4"]);
    let alice = user_of(&lab, "pool1.contoso.com");
    sign_in(&lab, &alice);
    // The seed's order: Edge pool 1's next hop moves off pool1 first.
    lab.ok(
        None,
        "Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com",
    );
    lab.ok(None, "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com");
    lab.ok(
        None,
        "New-CsAdminOperator -Identity kim -Role CsViewOnlyAdministrator",
    );
    let kim = std::fs::read_to_string(std::path::Path::new(lab.dir()).join("operators/kim.token"))
        .unwrap();

    let token = lab.admin_token();
    // Every tandem server (the lab's DNS server is not one).
    let servers: Vec<serde_json::Value> = lab
        .servers()
        .into_iter()
        .filter(|s| s["role"] == "FrontEnd" || s["role"] == "Edge")
        .collect();
    let mut all = Vec::new();
    for server in &servers {
        let fqdn = server["fqdn"].as_str().unwrap();
        let (status, kind, body) = scrape(&lab, server, Some(&token));
        assert_eq!(status, 200, "{fqdn}: {body}");
        assert!(
            kind.starts_with("text/plain; version=0.0.4"),
            "{fqdn}: {kind}"
        );
        let samples = parse(&body);
        assert!(
            sum(&samples, "tandem_cms_replica_version", &[]) > 0.0,
            "{fqdn}:\n{body}"
        );
        if server["role"] == "FrontEnd" {
            assert!(
                samples.iter().any(|s| s.name == "tandem_sip_bindings"),
                "{fqdn}:\n{body}"
            );
            let modules: Vec<&str> = samples
                .iter()
                .filter(|s| s.name == "tandem_backup_pending_changes")
                .map(|s| s.labels["module"].as_str())
                .collect();
            assert!(
                modules.contains(&"PresenceFocus"),
                "{fqdn}: {modules:?}\n{body}"
            );
            assert!(
                samples
                    .iter()
                    .any(|s| s.name == "tandem_backup_lag_seconds" && s.value >= 0.0),
                "{fqdn}:\n{body}"
            );
        }
        all.push((server["pool"].as_str().unwrap().to_string(), samples));
    }

    // The sign-in: challenged, then signed in, on a Front End of alice's pool.
    let on_pool1 = |name: &str, outcome: &str| -> f64 {
        all.iter()
            .filter(|(pool, _)| pool == "pool1.contoso.com")
            .map(|(_, s)| sum(s, name, &[("outcome", outcome)]))
            .sum()
    };
    assert!(on_pool1("tandem_sign_ins_total", "challenged") >= 1.0);
    assert!(on_pool1("tandem_sign_ins_total", "signed_in") >= 1.0);

    // The failover: one completed operation, and each of its steps timed.
    let everywhere = |name: &str, with: &[(&str, &str)]| -> f64 {
        all.iter().map(|(_, s)| sum(s, name, with)).sum()
    };
    assert_eq!(
        everywhere(
            "tandem_dr_operations_total",
            &[("operation", "pool_failover"), ("outcome", "completed")]
        ),
        1.0
    );
    assert!(
        everywhere(
            "tandem_dr_step_duration_seconds_count",
            &[("operation", "pool_failover"), ("outcome", "done")]
        ) >= 3.0
    );

    // One active master, which knows every replica's lag and took its lease once at least.
    let masters: Vec<&(String, Vec<Sample>)> = all
        .iter()
        .filter(|(_, s)| sum(s, "tandem_cms_master_active", &[]) == 1.0)
        .collect();
    assert_eq!(
        masters.len(),
        1,
        "{:?}",
        masters.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    let (master, samples) = masters[0];
    let lagging: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "tandem_cms_replica_lag_versions")
        .map(|s| s.labels["replica"].as_str())
        .collect();
    assert!(lagging.len() >= servers.len() - 1, "{master}: {lagging:?}");
    assert!(
        sum(
            samples,
            "tandem_cms_lease_changes_total",
            &[("change", "acquired")]
        ) >= 1.0
    );

    // The failover in the servers' merged logs: `tandem lab logs --operation N` gives its
    // lines, each inside the operation's span, in time order.
    let ops = lab.json(None, "Get-CsDisasterRecoveryOperation");
    let rows = ops.as_array().cloned().unwrap_or_else(|| vec![ops.clone()]);
    let id = rows
        .iter()
        .filter_map(|r| r["Identity"].as_str()?.parse::<u64>().ok())
        .max()
        .unwrap()
        .to_string();
    let out = crate::run(&["lab", "logs", "--dir", lab.dir(), "--operation", &id]);
    let text = crate::stdout(&out);
    assert!(out.status.success(), "{text}{}", crate::stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().any(|l| l.contains("step started")), "{text}");
    assert!(lines.iter().any(|l| l.contains("step ended")), "{text}");
    assert!(
        lines.iter().any(|l| l.contains("operation completed")),
        "{text}"
    );
    assert!(
        lines.iter().all(|l| l.contains(&format!("op_id={id}"))),
        "{text}"
    );
    // The operation id travels with its calls: the servers that ran a step's part for the
    // runner, or kept the record as the CMS master, logged them in the same operation.
    let runner = rows
        .iter()
        .find(|r| r["Identity"].as_str() == Some(&id))
        .unwrap()["Runner"]
        .as_str()
        .unwrap()
        .to_string();
    let others: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.contains("operation call answered") && l.contains("remote=true"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|server| !server.contains(runner.as_str()))
        .collect();
    assert!(
        others.iter().any(|s| s.contains("pool2")),
        "no line of pool2's Front Ends in operation {id} (runner {runner}):\n{text}"
    );
    let times: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{text}");

    // Any operator may read them; no token, or a wrong one, may not.
    let fe = &servers[0];
    assert_eq!(scrape(&lab, fe, Some(kim.trim())).0, 200);
    let (status, _, body) = scrape(&lab, fe, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(scrape(&lab, fe, Some("not-the-token")).0, 401);
}

#[test]
fn the_parser_refuses_what_a_scraper_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 3\n\
              # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    let s = parse(ok);
    assert_eq!(s[0].labels["x"], "q\"\\\n");
    assert_eq!(s.len(), 4);
    for bad in [
        "a 1\n",                              // no # TYPE
        "# TYPE a gauge\na{x=1} 1\n",         // unquoted label value
        "# TYPE a gauge\na 1 2 3\n",          // more after the timestamp
        "# TYPE a gauge\na{1x=\"v\"} 1\n",    // a bad label name
        "# TYPE a gauge\na one\n",            // not a number
        "# TYPE a gauge\n# TYPE a counter\n", // typed twice
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "{bad:?} was taken"
        );
    }
}
