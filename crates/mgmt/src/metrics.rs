//! `GET /metrics`: the figures operators alert on, in Prometheus's text exposition format,
//! on the management API's listener and behind its token.
//!
//! Two kinds of figures, gathered two ways:
//!
//! - **Events** are counted where they happen, with the `metrics` macros, into the one
//!   recorder the server process installs when it starts ([`install`]): sign-ins and their
//!   outcomes (`registrar`), DR operations and the duration of each step (`engine`'s
//!   runner), changes of the CMS master lease (`cms::master`), federated messages and XMPP
//!   streams (`edge`), DNS lookups (`node::lookup`). Each crate names its own metrics.
//! - **Levels** — each module's Backup Service backlog, lag and estimated RPO, the replica's
//!   version and how far it is behind the master, the bindings the pool holds — are read
//!   when scraped, from what the cmdlets read (`BackupService::local_status`, the replica,
//!   the Back End), and written here by hand: a scrape says what `Get-CsBackupServiceStatus`
//!   would say at that moment, costs nothing between scrapes, and describes this server
//!   alone even when tests run several in one process.
//!
//! Names follow Prometheus's conventions: `tandem_` first, the unit last (`_seconds`),
//! counters ending in `_total`; the server is the scraper's `instance`, not a label here.

use std::fmt::Write as _;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::Mgmt;

/// Seconds a DR operation's step may take, as the histogram's buckets: a lab's steps take
/// milliseconds, the original's 15–20 minute failover is in the last ones.
const STEP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 1200.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle) and
/// describes every counted metric. A process that already has another recorder keeps it:
/// its events then go there, and `/metrics` shows only the levels.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(engine::metrics::STEP_DURATION.to_string()),
                    &STEP_BUCKETS,
                )
                .expect("the step buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// What each counted metric means, for the `# HELP` lines.
fn describe() {
    let counters = [
        (
            registrar::metrics::SIGN_INS,
            "REGISTERs answered by this Front End's registrar, by outcome",
        ),
        (
            engine::metrics::OPERATIONS,
            "DR operations (pool failover and failback, CMS failover) this server ran to an end, by outcome",
        ),
        (
            cms::master::LEASE_CHANGES,
            "Times this server became the active Central Management master, or stopped being it",
        ),
        (
            edge::metrics::FEDERATION_MESSAGES,
            "Federated SIP requests this Edge answered, by method and status",
        ),
        (
            edge::metrics::XMPP_STREAMS,
            "XMPP server-to-server streams peers opened to this Edge, by how the header was answered",
        ),
        (
            edge::metrics::XMPP_STANZAS,
            "Stanzas the XMPP gateway passed between XMPP partners and users, by direction and outcome",
        ),
        (
            edge::metrics::XMPP_AUTHENTICATIONS,
            "XMPP partner domains authenticated on streams, by direction and method (sasl_external, dialback; refused)",
        ),
        (
            edge::metrics::FEDERATION_OUTBOUND,
            "Users' requests this Edge sent to federated partners' Access Edges, by status",
        ),
        (
            node::lookup::DNS_LOOKUPS,
            "Lookups this server made in the deployment's DNS, by outcome",
        ),
    ];
    for (name, help) in counters {
        metrics::describe_counter!(name, help);
    }
    metrics::describe_histogram!(
        engine::metrics::STEP_DURATION,
        metrics::Unit::Seconds,
        "How long each step of a DR operation took on this server, by operation, step and outcome"
    );
}

/// One gauge family written by hand: `# HELP`, `# TYPE`, then its samples.
struct Gauges<'a> {
    out: &'a mut String,
}

impl Gauges<'_> {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
    }

    /// A counter family kept by a part that has no recorder of its own (the A/V relay).
    fn counter(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} counter");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A label value as the exposition format writes it: `\`, `"` and line feeds escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers without a fraction, `NaN` and infinities as Prometheus writes them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The levels of this server now, in the exposition format.
pub async fn levels(mgmt: &Mgmt) -> String {
    let node = &mgmt.node;
    let mut out = String::new();
    let mut g = Gauges { out: &mut out };
    let now = node.clock.now_ms();

    g.family(
        "tandem_cms_replica_version",
        "The version of the Central Management store this server's replica holds",
    );
    g.sample(
        "tandem_cms_replica_version",
        &[],
        node.replica.version() as f64,
    );
    if let Some(master) = node.master() {
        let active = matches!(master.role(), cms::master::Role::Active { .. });
        g.family(
            "tandem_cms_master_active",
            "1 when this server is the active Central Management master, 0 when it is a standby",
        );
        g.sample("tandem_cms_master_active", &[], f64::from(u8::from(active)));
        if active && let Ok(Some(v)) = master.backend().current_version().await {
            g.family(
                "tandem_cms_master_version",
                "The version of the active Central Management store",
            );
            g.sample("tandem_cms_master_version", &[], v.version as f64);
            // What each replica last reported to this master, and how far behind it is.
            if let Ok(replicas) = master.backend().replica_statuses().await {
                g.family(
                    "tandem_cms_replica_lag_versions",
                    "Versions each replica is behind the active store, as it last reported to the master",
                );
                for r in &replicas {
                    g.sample(
                        "tandem_cms_replica_lag_versions",
                        &[("replica", &r.fqdn)],
                        (v.version - r.version).max(0) as f64,
                    );
                }
                g.family(
                    "tandem_cms_replica_last_report_timestamp_seconds",
                    "When each replica last reported its version to the master (unix seconds)",
                );
                for r in &replicas {
                    g.sample(
                        "tandem_cms_replica_last_report_timestamp_seconds",
                        &[("replica", &r.fqdn)],
                        r.last_status_report as f64 / 1000.0,
                    );
                }
            }
        }
    }

    if let Some(be) = &node.backend {
        match be.count_live_bindings(now).await {
            Ok(n) => {
                g.family(
                    "tandem_sip_bindings",
                    "Unexpired SIP registrations (bindings) in this pool's Back End",
                );
                g.sample("tandem_sip_bindings", &[], n as f64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counting the pool's bindings"),
        }
    }

    if let Some(relay) = mgmt.edge.as_ref().and_then(|e| e.relay_reading()) {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = relay.stats();
        g.family(
            "tandem_edge_relay_allocations",
            "Allocations alive on this Edge's A/V relay",
        );
        g.sample(
            "tandem_edge_relay_allocations",
            &[],
            relay.live_allocations() as f64,
        );
        for (name, help, value) in [
            (
                "tandem_edge_relay_allocations_total",
                "Allocations this Edge's A/V relay made since it started",
                stats.allocations.load(Relaxed),
            ),
            (
                "tandem_edge_relay_allocations_refused_total",
                "Allocations the A/V relay refused (quota, capacity, a request it does not serve)",
                stats.allocations_refused.load(Relaxed),
            ),
            (
                "tandem_edge_relay_unauthorized_total",
                "Requests the A/V relay challenged or refused for their credentials",
                stats.unauthorized.load(Relaxed),
            ),
            (
                "tandem_edge_relay_bytes_total",
                "Bytes the A/V relay relayed, both ways",
                stats.bytes_relayed.load(Relaxed),
            ),
        ] {
            g.counter(name, help);
            g.sample(name, &[], value as f64);
        }
        g.counter(
            "tandem_edge_relay_packets_total",
            "Packets the A/V relay relayed, by direction (to peers, to its clients)",
        );
        for (direction, value) in [
            ("to_peers", stats.packets_to_peers.load(Relaxed)),
            ("to_clients", stats.packets_to_clients.load(Relaxed)),
        ] {
            g.sample(
                "tandem_edge_relay_packets_total",
                &[("direction", direction)],
                value as f64,
            );
        }
    }

    if let Some(backup) = &node.backup {
        match backup.local_status().await {
            Ok(status) => backup_levels(&mut g, &status, now),
            Err(e) => tracing::warn!(error = %e, "metrics: reading the Backup Service's status"),
        }
    }
    out
}

/// The Backup Service's figures, per module of this pool's exports.
fn backup_levels(g: &mut Gauges<'_>, status: &backup::protocol::PoolStatus, now: i64) {
    let partner = status.partner.as_deref().unwrap_or("");
    let no_exporter = status.active_exporter.is_none();
    let rows: Vec<_> = status
        .exports
        .iter()
        .filter(|e| e.applicable)
        .map(|e| {
            let facts = e.facts(no_exporter);
            let (state, lag) = backup::status::export_status(facts, now, status.sync_interval_secs);
            let rpo =
                backup::status::estimated_rpo_secs(state, lag, backup::service::POLL.as_secs_f64());
            (e, state, lag, rpo)
        })
        .collect();
    type Row<'r> = (
        &'r backup::protocol::ExportReport,
        backup::status::ExportStatus,
        f64,
        f64,
    );
    type Family = (&'static str, &'static str, fn(&Row) -> Option<f64>);
    let families: [Family; 4] = [
        (
            "tandem_backup_pending_changes",
            "Changes committed on this pool and not yet shipped to its backup pool, per module",
            |r| Some(r.0.pending as f64),
        ),
        (
            "tandem_backup_lag_seconds",
            "Age of the oldest change not yet shipped to the backup pool, per module",
            |r| Some(r.2),
        ),
        (
            "tandem_backup_estimated_rpo_seconds",
            "The changes at risk if this pool were lost now, in seconds of writes, per module",
            |r| Some(r.3),
        ),
        (
            "tandem_backup_last_sync_timestamp_seconds",
            "When each module's changes last reached the backup pool (unix seconds)",
            |r| r.0.last_sync_at.map(|at| at as f64 / 1000.0),
        ),
    ];
    for (name, help, value) in families {
        g.family(name, help);
        for row in &rows {
            if let Some(v) = value(row) {
                g.sample(name, &[("module", &row.0.module), ("partner", partner)], v);
            }
        }
    }
    let name = "tandem_backup_export_state";
    g.family(
        name,
        "1 for the Backup Service's export state of each module (FinalState, SteadyState, NonSteadyState, ErrorState)",
    );
    for (e, state, ..) in &rows {
        let labels = [
            ("module", e.module.as_str()),
            ("partner", partner),
            ("state", state.as_str()),
        ];
        g.sample(name, &labels, 1.0);
    }
}

/// The whole page: the levels, then what the recorder counted.
pub async fn render(mgmt: &Mgmt) -> String {
    let mut page = levels(mgmt).await;
    page.push_str(&install().render());
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_exposition_format_asks() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("pool1.contoso.com"), "pool1.contoso.com");
    }

    #[test]
    fn numbers_are_written_as_prometheus_reads_them() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(-2.0), "-2");
    }

    #[test]
    fn a_family_has_its_help_and_type_before_its_samples() {
        let mut out = String::new();
        let mut g = Gauges { out: &mut out };
        g.family("tandem_x", "What x is");
        g.sample("tandem_x", &[("module", "Conf"), ("partner", "p\"2")], 4.0);
        g.sample("tandem_x", &[], 0.5);
        assert_eq!(
            out,
            "# HELP tandem_x What x is\n# TYPE tandem_x gauge\n\
             tandem_x{module=\"Conf\",partner=\"p\\\"2\"} 4\ntandem_x 0.5\n"
        );
    }
}
