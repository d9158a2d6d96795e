//! What the console shows, as plain data: the server serving the console fills it in
//! (`mgmt::console::snapshot`) from the topology, `/health` probes of every server and the
//! same read cmdlets the shell runs; the pages here only draw it.

/// Whether something answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Every server answered the last probe.
    Up,
    /// Some servers answered, some did not.
    Degraded,
    /// No server answered.
    Down,
}

impl Health {
    /// The word shown beside the colour (colour is never the only sign).
    pub fn word(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    /// The CSS class, `state-up` and so on.
    pub fn class(self) -> &'static str {
        match self {
            Health::Up => "state-up",
            Health::Degraded => "state-degraded",
            Health::Down => "state-down",
        }
    }

    /// A pool's health from its servers'.
    pub fn of_servers(servers: &[ServerView]) -> Health {
        let up = servers.iter().filter(|s| s.up).count();
        match up {
            0 => Health::Down,
            n if n == servers.len() => Health::Up,
            _ => Health::Degraded,
        }
    }
}

/// One server, as its last `/health` probe found it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerView {
    pub fqdn: String,
    pub up: bool,
    /// The version its replica holds (when it answered).
    pub replica_version: Option<i64>,
    /// It holds the Central Management master's lease.
    pub cms_master: bool,
    /// Seconds since it last answered, when it does not now.
    pub down_for_secs: Option<u64>,
}

/// Where a pool stands in the disaster-recovery sense (`Get-CsPoolFailoverState`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FailoverView {
    /// Normal, FailingOver, FailedOver, FailingBack.
    pub state: String,
    /// Planned or Disaster, while failed over.
    pub mode: String,
    /// The pool that serves its users now.
    pub serving_pool: String,
}

/// A Front End pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolView {
    pub fqdn: String,
    pub site: String,
    pub servers: Vec<ServerView>,
    pub health: Health,
    pub backup_pool: Option<String>,
    /// The Edge pool its media and web conferencing use.
    pub edge_pool: Option<String>,
    pub failover: Option<FailoverView>,
    /// `Some("active")` or `Some("standby")` for the pools holding the CMS store.
    pub cms: Option<&'static str>,
}

/// An Edge pool.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgePoolView {
    pub fqdn: String,
    pub site: String,
    pub servers: Vec<ServerView>,
    pub health: Health,
    /// The Front End pool its internal side sends to.
    pub next_hop: String,
    /// The routes through it: "SIP federation route of Site1", "XMPP route of Site1".
    pub routes: Vec<String>,
}

/// A site with its pools.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteView {
    pub name: String,
    pub pools: Vec<PoolView>,
    pub edge_pools: Vec<EdgePoolView>,
}

/// One module's backup in one direction (`Get-CsBackupServiceStatus`).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupView {
    pub module: String,
    pub source: String,
    pub target: String,
    pub export_status: String,
    pub pending: i64,
    pub lag_secs: f64,
    pub rpo_secs: f64,
    pub commit_mode: String,
    pub last_error: String,
}

/// A pair of pools and how far behind each side's copy is.
#[derive(Debug, Clone, PartialEq)]
pub struct PairView {
    pub pools: (String, String),
    pub modules: Vec<BackupView>,
    /// Why the figures could not be read now (the pool asked is down, say).
    pub error: Option<String>,
    /// Lag and RPO over the last minutes, worst module per sample.
    pub history: Vec<crate::chart::Sample>,
}

/// A replica of the Central Management store (`Get-CsManagementStoreReplicationStatus`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaView {
    pub fqdn: String,
    pub version: i64,
    pub up_to_date: bool,
    pub versions_behind: i64,
    pub last_report: String,
}

/// The Central Management store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CmsView {
    /// The pool whose Back End holds the active store.
    pub active_pool: String,
    /// Its standby (the active pool's backup pool).
    pub standby_pool: Option<String>,
    /// The server holding the master's lease, as the probes found it.
    pub master: Option<String>,
    pub replicas: Vec<ReplicaView>,
    /// Why the replicas could not be read now (no master answering, say).
    pub error: Option<String>,
}

/// One step of a DR operation.
#[derive(Debug, Clone, PartialEq)]
pub struct StepView {
    pub name: String,
    /// Pending, Running, Done, Failed, Skipped, Undone…
    pub state: String,
    /// `16 ms`, when it ran.
    pub took: String,
    pub detail: String,
}

impl StepView {
    /// A step as `dr::progress` renders it: `Name State [took]: detail`, where `took` is a
    /// number and a unit (`16 ms`, `1.2 s`).
    pub fn parse(line: &str) -> StepView {
        let (head, detail) = match line.split_once(": ") {
            Some((h, d)) => (h, d.to_string()),
            None => (line, String::new()),
        };
        let mut words = head.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let state = words.next().unwrap_or_default().to_string();
        let took = words.collect::<Vec<_>>().join(" ");
        StepView {
            name,
            state,
            took,
            detail,
        }
    }

    /// The CSS class of its state.
    pub fn class(&self) -> &'static str {
        match self.state.as_str() {
            "Done" => "step-done",
            "Running" => "step-running",
            "Failed" => "step-failed",
            "Skipped" => "step-skipped",
            _ => "step-other",
        }
    }
}

/// A DR operation (`Get-CsDisasterRecoveryOperation`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationView {
    pub id: String,
    /// FailOver, FailBack, CmsFailover.
    pub kind: String,
    pub pool: String,
    pub mode: String,
    /// Running, Completed, Stopped, Cancelled.
    pub state: String,
    pub started: String,
    pub duration_secs: String,
    pub data_lost: String,
    pub steps: Vec<StepView>,
    pub error: String,
    pub runner: String,
}

/// Everything the console shows at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// The deployment's SIP domain.
    pub domain: String,
    /// The server serving the console.
    pub served_by: String,
    /// When the figures were read (RFC 3339).
    pub at: String,
    pub sites: Vec<SiteView>,
    pub cms: CmsView,
    pub pairs: Vec<PairView>,
    pub operations: Vec<OperationView>,
    /// Why the operations could not be read now.
    pub operations_error: Option<String>,
}

impl Snapshot {
    /// Every Front End pool, site by site.
    pub fn pools(&self) -> impl Iterator<Item = &PoolView> {
        self.sites.iter().flat_map(|s| &s.pools)
    }

    /// Every Edge pool, site by site.
    pub fn edge_pools(&self) -> impl Iterator<Item = &EdgePoolView> {
        self.sites.iter().flat_map(|s| &s.edge_pools)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_read_back_as_progress_renders_it() {
        let s = StepView::parse(
            "Drain Done 30 ms: every change of pool1.contoso.com reached pool2.contoso.com (14 ms)",
        );
        assert_eq!(s.name, "Drain");
        assert_eq!(s.state, "Done");
        assert_eq!(s.took, "30 ms");
        assert_eq!(
            s.detail,
            "every change of pool1.contoso.com reached pool2.contoso.com (14 ms)"
        );
        let s = StepView::parse("StopServices Skipped");
        assert_eq!(
            (s.name.as_str(), s.state.as_str()),
            ("StopServices", "Skipped")
        );
        assert!(s.took.is_empty() && s.detail.is_empty());
        assert_eq!(s.class(), "step-skipped");
    }

    #[test]
    fn a_pool_is_down_only_when_no_server_answers() {
        let server = |up| ServerView {
            fqdn: "a".into(),
            up,
            replica_version: None,
            cms_master: false,
            down_for_secs: None,
        };
        assert_eq!(
            Health::of_servers(&[server(true), server(true)]),
            Health::Up
        );
        assert_eq!(
            Health::of_servers(&[server(true), server(false)]),
            Health::Degraded
        );
        assert_eq!(
            Health::of_servers(&[server(false), server(false)]),
            Health::Down
        );
    }
}
