//! The web console against real labs: over HTTP as an attacker and a view-only operator
//! would use it (contoso), and in a real browser as an administrator in a disaster would
//! (fabrikam: other names, three sites, three Front Ends a pool) — a killed pool shows
//! down on the map within its failure detection interval, and a disaster failover started
//! from the page completes with its steps on the page. Screenshots are kept among the
//! test artifacts (`target/test-artifacts/console/`).

use std::time::Duration;

use serde_json::json;

use crate::browser::Browser;
use crate::lab::{Lab, fabrikam};

/// A Front End's management API base, by FQDN.
fn base_of(lab: &Lab, fqdn: &str) -> String {
    let s = lab
        .servers()
        .into_iter()
        .find(|s| s["fqdn"] == fqdn)
        .unwrap();
    format!(
        "https://{}:{}",
        s["address"].as_str().unwrap(),
        s["management_port"]
    )
}

/// An HTTP client that trusts the lab's CA and does not follow redirects.
fn client(lab: &Lab) -> reqwest::Client {
    lab.http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k.as_ref()), encode(v.as_ref())))
        .collect::<Vec<_>>()
        .join("&")
}

/// The session cookie a sign-in with `token` gives, or the status it was refused with.
async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> Result<String, u16> {
    let r = http
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token)]))
        .send()
        .await
        .unwrap();
    if r.status() != 303 {
        return Err(r.status().as_u16());
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    Ok(cookie.split(';').next().unwrap().to_string())
}

/// The `csrf` value of the console page.
fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    page[at..at + 64].to_string()
}

#[test]
fn the_console_signs_in_streams_the_deployment_and_refuses_what_the_shell_refuses() {
    let lab = Lab::up_with(&["--users", "4"]);
    lab.ok(
        None,
        "New-CsAdminOperator -Identity kim -Role CsViewOnlyAdministrator",
    );
    let kim = std::fs::read_to_string(std::path::Path::new(lab.dir()).join("operators/kim.token"))
        .unwrap();
    let base = base_of(&lab, "pool2-fe1.contoso.com");
    let http = client(&lab);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kim_cookie = rt.block_on(async {
        // Without a session: the page sends the browser to the sign-in form, the event
        // stream and the actions are refused.
        let r = http.get(format!("{base}/console")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/console/login");
        for (method, path) in [("GET", "/console/events"), ("POST", "/console/actions")] {
            let r = http
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path}");
        }
        let login = http
            .get(format!("{base}/console/login"))
            .send()
            .await
            .unwrap();
        let csp = login.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        // A wrong token, an empty one, one too long: refused alike, naming no operator.
        for wrong in ["kim.0000", "", &"x".repeat(5000)] {
            assert_eq!(sign_in(&http, &base, wrong).await, Err(401));
        }

        // The view-only operator signs in and sees the deployment.
        let cookie = sign_in(&http, &base, kim.trim()).await.unwrap();
        let page = http
            .get(format!("{base}/console"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("signed in as <strong>kim</strong>"), "{page}");
        for pool in [
            "pool1.contoso.com",
            "pool2.contoso.com",
            "edgepool1.contoso.com",
        ] {
            assert!(
                page.contains(&format!(r#"data-pool="{pool}" data-health="up""#)),
                "{pool}"
            );
        }
        assert!(page.contains("pool1.contoso.com ⇄ pool2.contoso.com"));
        assert!(page.contains("UserServices.PresenceFocus"));
        assert!(page.contains("Central Management store: active"));
        let csrf = csrf_of(&page);

        // The event stream sends every section, then each again as it changes.
        let mut events = http
            .get(format!("{base}/console/events"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(events.headers()["content-type"], "text/event-stream");
        let mut seen = String::new();
        let names = [
            "event: map",
            "event: pools",
            "event: backup",
            "event: cms",
            "event: operations",
            "event: actions",
        ];
        while !names.iter().all(|n| seen.contains(n)) {
            let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
                .await
                .expect("the stream sends its sections")
                .unwrap()
                .expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(events);

        // An action without the session's anti-forgery token is refused and runs nothing.
        let act = |fields: Vec<(&'static str, String)>| {
            let http = http.clone();
            let cookie = cookie.clone();
            let base = base.clone();
            async move {
                let r = http
                    .post(format!("{base}/console/actions"))
                    .header("cookie", cookie)
                    .header("HX-Request", "true")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(&fields))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        let failover = |submit: &str, csrf: &str| {
            vec![
                ("operation", "pool-failover".to_string()),
                ("pool", "pool1.contoso.com".to_string()),
                ("submit", submit.to_string()),
                ("csrf", csrf.to_string()),
            ]
        };
        let (status, body) = act(failover("run", &"0".repeat(64))).await;
        assert_eq!(status, 403, "{body}");
        // A view-only operator's -WhatIf runs (it changes nothing) ...
        let (status, body) = act(failover("whatif", &csrf)).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -WhatIf"),
            "{body}"
        );
        // ... and the real run is refused with the role it needs, as in the shell.
        let (status, body) = act(failover("run", &csrf)).await;
        assert_eq!(status, 202, "{body}");
        let mut events = http
            .get(format!("{base}/console/events"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let mut seen = String::new();
        while !(seen.contains(r#"data-action-state="failed""#)
            && seen.contains("CsAdministrator or CsServerAdministrator"))
        {
            let chunk = tokio::time::timeout(Duration::from_secs(20), events.chunk())
                .await
                .expect("the refusal reaches the page")
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(events);
        // A pool that is not the deployment's is refused before anything runs.
        let (status, body) = act(vec![
            ("operation", "pool-failover".into()),
            ("pool", "<script>.example".into()),
            ("submit", "run".into()),
            ("csrf", csrf.clone()),
        ])
        .await;
        assert_eq!(status, 422, "{body}");
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains(".example is not a Front End pool"), "{body}");

        let script = http
            .get(format!("{base}/console/assets/htmx.min.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(script.status(), 200);
        assert!(
            script.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        cookie
    });
    // Removing the operator ends its session.
    lab.ok(None, "Remove-CsAdminOperator -Identity kim");
    lab.wait_all_up_to_date(None);
    rt.block_on(async {
        let r = http
            .get(format!("{base}/console"))
            .header("cookie", &kim_cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/console/login");
    });
    // Nothing was failed over by any of this.
    let state = lab.record(None, "Get-CsPoolFailoverState");
    assert_eq!(state["State"], "Normal", "{state}");
}

#[test]
fn in_a_browser_a_killed_pool_shows_down_and_a_disaster_failover_from_the_page_completes() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let topology = fabrikam();
    let interval = topology
        .front_end_pool("fe-dub.fabrikam.net")
        .unwrap()
        .registrar
        .failure_detection_interval_secs;
    let lab = Lab::up_topology(&topology, &["--users", "6"], &[]);
    // The seed's order: the Edge pool of Dublin sends to Redmond before Dublin goes.
    lab.ok(
        None,
        "Set-CsEdgeServer -Identity EdgeServer:edge-dub.fabrikam.net -Registrar Registrar:fe-red.fabrikam.net",
    );
    let base = base_of(&lab, "red-a.fabrikam.net");

    // Signing in: a wrong token is refused on the page, the deployment's is taken.
    browser.goto(&format!("{base}/console"));
    assert!(browser.title().contains("Sign in"), "{}", browser.title());
    browser.type_into("#token", "not-a-token\n");
    browser.wait_until(
        "the refusal",
        "const e = document.querySelector('[role=alert]'); return !!e && e.textContent.includes('not accepted');",
        json!([]),
        Duration::from_secs(10),
    );
    browser.screenshot("1-sign-in-refused");
    browser.type_into("#token", &format!("{}\n", lab.admin_token()));
    let pool = |health: &str| {
        format!(
            "const e = document.querySelector('svg.map [data-pool=\"fe-dub.fabrikam.net\"]'); return !!e && e.dataset.health === '{health}';"
        )
    };
    browser.wait_until("Dublin up", &pool("up"), json!([]), Duration::from_secs(20));
    assert!(
        browser.title().contains("fabrikam.net"),
        "{}",
        browser.title()
    );
    for name in [
        "fe-red.fabrikam.net",
        "legacy.fabrikam.net",
        "edge-dub.fabrikam.net",
    ] {
        assert!(
            browser.text("svg.map").contains(name),
            "{name} is not on the map"
        );
    }
    assert!(
        browser
            .text("#backup")
            .contains("fe-dub.fabrikam.net ⇄ fe-red.fabrikam.net")
    );
    assert!(browser.text("#pools").contains("XMPP route of Dublin"));
    browser.screenshot("2-console");
    // What a keyboard or a screen reader needs: every control named, the map and charts
    // with text alternatives, the state in words beside each colour.
    let unnamed = browser.eval(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, button')] \
           .filter(e => !((e.labels && e.labels.length) || e.textContent.trim() || e.getAttribute('aria-label'))) \
           .map(e => e.outerHTML);",
        json!([]),
    );
    assert_eq!(unnamed, json!([]), "controls without a name");
    assert!(
        browser
            .text("svg.map > title")
            .contains("Front End pool fe-dub.fabrikam.net in Dublin is up"),
        "{}",
        browser.text("svg.map > title")
    );
    assert_eq!(
        browser.eval(
            "return [...document.querySelectorAll('svg.chart')].every(c => c.getAttribute('role') === 'img' && c.querySelector('title'));",
            json!([])
        ),
        json!(true)
    );
    assert_eq!(
        browser.eval(
            "return document.querySelector('a.skip').getAttribute('href');",
            json!([])
        ),
        json!("#main")
    );

    // Dublin's Front Ends die; the map says so (in colour and in words) within the pool's
    // failure detection interval, without a reload.
    lab.kill("fe-dub.fabrikam.net");
    let took = browser.wait_until(
        "Dublin down",
        &pool("down"),
        json!([]),
        Duration::from_secs(u64::from(interval)),
    );
    eprintln!("the map showed fe-dub down {took:?} after the kill (interval {interval} s)");
    assert!(browser.text("#pools").contains("0 of 3 answer"));
    browser.scroll_to("#main");
    browser.screenshot("3-pool-down");

    // The failover, -WhatIf first, from the form; the page shows the shell's line.
    browser.click("input[name=operation][value=pool-failover]");
    browser.eval(
        "const s = document.querySelector('#pool'); s.value = arguments[0]; s.dispatchEvent(new Event('change', {bubbles: true}));",
        json!(["fe-dub.fabrikam.net"]),
    );
    browser.click("input[name=disaster]");
    let line = "Invoke-CsPoolFailOver -PoolFqdn fe-dub.fabrikam.net -DisasterMode -WhatIf";
    browser.wait_until(
        "the shell line",
        "return document.querySelector('#action-line').textContent.trim() === arguments[0];",
        json!([line]),
        Duration::from_secs(10),
    );
    browser.click("button[value=whatif]");
    browser.wait_until(
        "the -WhatIf answer",
        "const e = document.querySelector('#action-result'); return e.textContent.includes(arguments[0]) && e.textContent.includes('Nothing was changed');",
        json!([line]),
        Duration::from_secs(30),
    );
    browser.scroll_to("#h-actions");
    browser.screenshot("4-what-if");
    browser.click("button[value=run]");
    browser.wait_until(
        "the completed failover and its steps",
        "const op = document.querySelector('#operations [data-state=Completed]'); \
         if (!op || !op.textContent.includes('fe-dub.fabrikam.net')) return false; \
         const steps = [...op.querySelectorAll('[data-step]')]; \
         return steps.length > 3 && steps.every(s => ['Done', 'Skipped'].includes(s.dataset.stepState));",
        json!([]),
        Duration::from_secs(120),
    );
    browser.wait_until(
        "the action's success",
        "return !!document.querySelector('#actions [data-action-state=succeeded]');",
        json!([]),
        Duration::from_secs(30),
    );
    browser.wait_until(
        "fe-dub failed over on the map",
        "const e = document.querySelector('svg.map [data-pool=\"fe-dub.fabrikam.net\"]'); return !!e && e.textContent.includes('FailedOver');",
        json!([]),
        Duration::from_secs(20),
    );
    browser.scroll_to("#h-operations");
    let shot = browser.screenshot("6-failover-steps");
    browser.scroll_to("#main");
    browser.screenshot("5-failed-over");
    eprintln!("screenshots in {}", shot.parent().unwrap().display());
    let states = lab.json(None, "Get-CsPoolFailoverState");
    let dub = states
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["PoolFqdn"] == "fe-dub.fabrikam.net")
        .unwrap();
    assert_eq!(dub["State"], "FailedOver", "{dub}");
}
