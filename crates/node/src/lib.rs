//! One server's shared parts, and nothing that serves anyone.
//!
//! A tandem server runs services (the registrar, the Edge listeners, the management API,
//! the operations engine), each in a crate of its own. What they all need — who this
//! server is, its local replica of the Central Management store, its pool's Back End, its
//! Central Management services, the state of its "Windows services", the way to reach the
//! active master, another pool's registrars or a user's serving pool — is here, in one
//! [`Node`] the `server` crate builds and hands to each service. Services never reach
//! each other through it: a service that needs another's work takes a narrow interface
//! when it is wired.
//!
//! Every task a service spawns belongs to the node's [`TaskTracker`] and stops on its
//! [`CancellationToken`], so a server that shuts down stops accepting, lets what is in
//! flight end, and exits with nothing detached.

pub mod homes;
pub mod lookup;
pub mod services;
pub mod serving;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backup::service::BackupService;
use clock::Clock;
use cms::master::{Master, Role as MasterRole};
use cms::protocol::RoleReport;
use cms::replica::{ReplicaAgent, ViewDoubt};
use store::BackEnd;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use topology::{Role, Topology};

pub use crate::services::hosts_cms_services;
use crate::services::{FTA, LYNCBACKUP, MASTER, REPLICA, Services};

/// How long a probe of a Front End's master role may take before it counts as silent.
const ROLE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a server asks the active master where it stands, to keep its view proven
/// current (see `cms::replica::VIEW_PROOF_TTL`).
const VIEW_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The configuration a serving decision reads besides the user's home: the pools'
/// failover states and the topology (pairing, registrars). A replica that holds every
/// version that changed these has a current view of who serves whom.
pub const SERVING_PREFIXES: [&str; 2] = [dr::state::POOL_PREFIX, cms::keys::TOPOLOGY_ACTIVE];

/// The newest version of `store` that changed who serves whom (see [`SERVING_PREFIXES`]).
pub async fn serving_version(store: &BackEnd) -> Result<i64, store::StoreError> {
    store.newest_version_under(&SERVING_PREFIXES).await
}

/// What a server is and the parts its services share.
#[derive(Debug)]
pub struct Node {
    pub fqdn: String,
    pub role: Role,
    /// The pool this server belongs to (a Front End pool or an Edge pool).
    pub pool: String,
    /// The management API's address (the server's own address, internal side).
    pub address: SocketAddr,
    /// The deployment's admin token.
    pub token: String,
    /// The one client of the management API, marking forwarded calls as this server's.
    pub api: api::Client,
    /// This server's certificate, as its listeners present it (`Get-CsCertificate`,
    /// `Set-CsCertificate` reload it).
    pub certs: Arc<pki::CertStore>,
    /// The TLS settings of this server's calls to others.
    pub tls: Arc<rustls::ClientConfig>,
    /// The deployment's CA (`Request-CsCertificate`), when one signs renewals online.
    pub certificate_authority: Option<String>,
    /// This server's data folder (its replica, its `tls/`).
    pub data_dir: std::path::PathBuf,
    pub replica: ReplicaAgent,
    /// The pool's Back End (Front Ends only): no server opens another pool's.
    pub backend: Option<BackEnd>,
    /// The Backup Service (Front Ends only).
    pub backup: Option<BackupService>,
    pub services: Arc<Services>,
    /// The deployment's DNS server, when there is one (the lab runs one), through the
    /// resolver every lookup of this server shares (and its cache).
    pub dns: Option<dns::Resolver>,
    pub clock: Clock,
    /// The vote this server gives when the topology names it the deployment's witness
    /// (`cms::witness`); unused otherwise. In memory: it gives none for a vote's life
    /// after the server starts.
    pub witness: cms::witness::Witness,
    /// The Central Management services (Master Replicator, File Transfer Agent), on Front
    /// Ends of the CMS pool and of its partner, which holds the standby store; installed
    /// later on others by `Move-CsManagementServer` and `Bootstrapper /Setup`.
    master: OnceLock<Master>,
    /// The management API base of the server last found to be the active master, asked
    /// first next time: the other candidates are asked only when it no longer is, so a
    /// frozen candidate does not slow every lookup down to its timeout.
    last_master: std::sync::Mutex<Option<String>>,
    /// Whose users this pool serves and how (see [`serving`]).
    pub serving: serving::Serving,
    /// Users by home pool (see [`homes`]).
    pub homes: homes::Homes,
    /// Every task of every service; awaited at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

/// The parts a [`Node`] is made of; the `server` crate opens them.
#[derive(Debug)]
pub struct Parts {
    pub fqdn: String,
    pub role: Role,
    pub pool: String,
    pub address: SocketAddr,
    pub token: String,
    pub replica: ReplicaAgent,
    pub backend: Option<BackEnd>,
    pub backup: Option<BackupService>,
    pub dns: Option<SocketAddr>,
    pub clock: Clock,
    /// This server's certificate, as its listeners present it.
    pub certs: Arc<pki::CertStore>,
    /// The TLS settings of this server's calls to others (it presents `certs`).
    pub tls: Arc<rustls::ClientConfig>,
    /// The deployment's CA, when one signs renewals online.
    pub certificate_authority: Option<String>,
    /// This server's data folder (its replica, its `tls/`).
    pub data_dir: std::path::PathBuf,
    /// The tracker the Backup Service's tasks were already spawned on.
    pub tasks: TaskTracker,
}

/// Where the active Central Management master is.
#[derive(Debug, Clone)]
pub enum MasterAt {
    /// This server.
    Here(Master),
    /// Another server, at this management API base.
    There(String),
}

/// No Front End answers as the active master; the text says what that means and what to
/// run.
#[derive(Debug, Clone)]
pub struct MasterUnavailable(pub String);

impl std::fmt::Display for MasterUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MasterUnavailable {}

impl Node {
    pub fn new(parts: Parts) -> Node {
        let topology = parts.replica.topology();
        let services = Arc::new(Services::new(&topology, &parts.fqdn));
        let master = OnceLock::new();
        if let Some(be) = &parts.backend
            && hosts_cms_services(&topology, &parts.pool)
        {
            let _ = master.set(Master::spawn(
                parts.fqdn.clone(),
                be.clone(),
                api::Client::new(parts.token.clone(), &parts.tls),
                parts.clock,
            ));
        }
        Node {
            api: api::Client::new(parts.token.clone(), &parts.tls).on_behalf_of(parts.fqdn.clone()),
            certs: parts.certs,
            tls: parts.tls,
            certificate_authority: parts.certificate_authority,
            data_dir: parts.data_dir,
            fqdn: parts.fqdn,
            role: parts.role,
            pool: parts.pool,
            address: parts.address,
            token: parts.token,
            replica: parts.replica,
            backend: parts.backend,
            backup: parts.backup,
            services,
            dns: parts
                .dns
                .map(|at| dns::Resolver::new(at, None, dns::Patience::SERVER)),
            witness: cms::witness::Witness::new(parts.clock.now_ms()),
            clock: parts.clock,
            master,
            last_master: std::sync::Mutex::new(None),
            serving: serving::Serving::default(),
            homes: homes::Homes::default(),
            tasks: parts.tasks,
            shutdown: CancellationToken::new(),
        }
    }

    /// The live topology, as this server's replica holds it.
    pub fn topology(&self) -> Arc<Topology> {
        self.replica.topology()
    }

    /// This server's management API base (`https://address:port`).
    pub fn base(&self) -> String {
        api::base(self.address.ip(), self.address.port())
    }

    /// The management API base of another server of the topology.
    pub fn base_of(topology: &Topology, server: &topology::Server) -> String {
        api::base(server.address, topology.ports.management)
    }

    /// This server's Central Management services, when installed.
    pub fn master(&self) -> Option<&Master> {
        self.master.get()
    }

    /// Whether this server is the active master now.
    pub fn is_active_master(&self) -> bool {
        self.master()
            .is_some_and(|m| matches!(m.role(), MasterRole::Active { .. }))
    }

    /// Installs the Central Management services here (`Bootstrapper /Setup`,
    /// `Move-CsManagementServer`): a Front End only. Returns them, and whether they were
    /// installed just now.
    pub fn install_master(&self) -> Option<(&Master, bool)> {
        if let Some(m) = self.master.get() {
            return Some((m, false));
        }
        let be = self.backend.clone()?;
        let mut fresh = false;
        let m = self.master.get_or_init(|| {
            fresh = true;
            self.services.add(&services::CMS_SERVICES);
            Master::spawn(
                self.fqdn.clone(),
                be,
                api::Client::new(self.token.clone(), &self.tls),
                self.clock,
            )
        });
        Some((m, fresh))
    }

    /// Starts or stops one of this server's services for real: the flag every service
    /// obeys, and the work the Central Management and Backup services stop at once.
    pub async fn set_service(&self, name: &'static str, running: bool) {
        self.services.set(name, running);
        match name {
            REPLICA => self.replica.set_running(running),
            MASTER => {
                if let Some(m) = self.master() {
                    m.set_master_running(running).await;
                }
            }
            FTA => {
                if let Some(m) = self.master() {
                    m.set_fta_running(running);
                }
            }
            LYNCBACKUP => {
                if let Some(b) = &self.backup {
                    b.set_running(running).await;
                }
            }
            _ => {}
        }
        tracing::info!(service = name, running, "service state changed");
    }

    /// Finds the active master: this server, or the Front End of the CMS pool (or of its
    /// partner, which holds the standby store) that says it holds the lease with the
    /// highest epoch.
    pub async fn locate_master(&self) -> Result<MasterAt, MasterUnavailable> {
        if let Some(m) = self.master()
            && matches!(m.role(), MasterRole::Active { .. })
        {
            return Ok(MasterAt::Here(m.clone()));
        }
        if let Some(base) = self.last_master()
            && cms::protocol::fetch_role(&self.api, &base, ROLE_PROBE_TIMEOUT)
                .await
                .is_some_and(|r| r.active)
        {
            return Ok(MasterAt::There(base));
        }
        let (found, candidates) = self.active_master_elsewhere().await;
        found.map(|(_, base)| MasterAt::There(base)).ok_or_else(|| {
            let cms_pool = self.topology().deployment.cms_pool.clone();
            MasterUnavailable(format!(
                "the Central Management store is unavailable: no Front End of {cms_pool} holds the master role (asked {}). \
                 Every server keeps running on its local replica, but configuration cannot be read from or changed in the store \
                 until a Front End of {cms_pool} is back, or until the store is moved with Invoke-CsManagementServerFailover.",
                if candidates.is_empty() {
                    "none".to_string()
                } else {
                    candidates.join(", ")
                }
            ))
        })
    }

    /// The role report of the active master among the other Front Ends that may host it
    /// (the highest epoch that says it is active) with its management API base, and the
    /// servers asked.
    async fn active_master_elsewhere(&self) -> (Option<(RoleReport, String)>, Vec<String>) {
        let topology = self.topology();
        // A replica that has not heard of a CMS failover yet still finds the new master.
        let candidates: Vec<_> = topology
            .front_end_pools
            .iter()
            .filter(|p| hosts_cms_services(&topology, &p.fqdn))
            .flat_map(|p| p.servers.clone())
            .filter(|s| !s.fqdn.eq_ignore_ascii_case(&self.fqdn))
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for s in &candidates {
            let api = self.api.clone();
            let base = Node::base_of(&topology, s);
            set.spawn(async move {
                let report = cms::protocol::fetch_role(&api, &base, ROLE_PROBE_TIMEOUT).await?;
                report.active.then_some((report, base))
            });
        }
        let mut best: Option<(RoleReport, String)> = None;
        while let Some(joined) = set.join_next().await {
            if let Ok(Some((report, base))) = joined
                && best.as_ref().is_none_or(|(b, _)| report.epoch > b.epoch)
            {
                best = Some((report, base));
            }
        }
        if let Ok(mut last) = self.last_master.lock() {
            *last = best.as_ref().map(|(_, base)| base.clone());
        }
        (best, candidates.into_iter().map(|s| s.fqdn).collect())
    }

    /// Keeps this server's view of the configuration proven current (see
    /// [`cms::replica::ViewDoubt`]): every [`VIEW_CHECK_EVERY`], and at once when its
    /// replica reaches a new version, it asks the active master for its epoch and version
    /// and dates the proof when it asked. A master that cannot be found is noted (the last
    /// proven view then stands). Runs until shutdown.
    pub async fn prove_view(self: Arc<Self>) {
        let mut versions = self.replica.subscribe_version();
        loop {
            let asked_at = self.clock.now_ms();
            let master = self.ask_master_where_it_stands().await;
            if let Err(e) = self.replica.note_master_check(asked_at, master).await {
                tracing::warn!(error = %e, "could not read the local replica to check its view");
            }
            tokio::select! {
                () = self.clock.sleep(VIEW_CHECK_EVERY) => {}
                changed = versions.changed() => if changed.is_err() { return },
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// The active master's epoch and store version: this server's own, or asked of the
    /// server that answered as master last time, or found among the Front Ends that may
    /// host it. `None` when no master answers.
    async fn ask_master_where_it_stands(&self) -> Option<(i64, i64)> {
        if let Some(m) = self.master()
            && let MasterRole::Active { epoch, .. } = m.role()
        {
            let version = serving_version(m.backend()).await.ok()?;
            return Some((epoch, version));
        }
        if let Some(base) = self.last_master()
            && let Some(report) =
                cms::protocol::fetch_role(&self.api, &base, ROLE_PROBE_TIMEOUT).await
            && report.active
        {
            return Some((report.epoch, report.serving_version));
        }
        let (found, _) = self.active_master_elsewhere().await;
        let (report, _) = found?;
        Some((report.epoch, report.serving_version))
    }

    /// The management API base of the server last found to be the active master.
    fn last_master(&self) -> Option<String> {
        self.last_master.lock().ok().and_then(|m| m.clone())
    }

    /// The registrars of a Front End pool: the pool's A records in the deployment's DNS,
    /// as the product finds them, or the topology's addresses when there is no DNS to
    /// ask (or it does not know the pool).
    pub async fn registrars_of(&self, topology: &Topology, pool: &str) -> Vec<SocketAddr> {
        let from_dns = match &self.dns {
            Some(dns) => lookup::resolve_a(dns, pool).await,
            None => None,
        };
        match from_dns {
            Some(addresses) => addresses
                .into_iter()
                .map(|a| SocketAddr::from((a, topology.ports.sip)))
                .collect(),
            None => topology
                .front_end_servers(pool)
                .iter()
                .map(|s| SocketAddr::from((s.address, topology.ports.sip)))
                .collect(),
        }
    }

    /// How this server's pool treats a user homed on `home_pool` (see [`serving`]).
    pub async fn serving_decision(
        &self,
        topology: &Topology,
        home_pool: &str,
    ) -> topology::serving::Decision {
        if self.role != Role::FrontEnd {
            return topology::serving::Decision::Redirect {
                pool: home_pool.to_string(),
            };
        }
        // Whether the view is proven is read before the states: a proof that lands while
        // they are read (the server running again after a pause, its replica catching up)
        // must not vouch for states read before it.
        let in_doubt = self.replica.view_doubt().is_some();
        let states = self.serving.failover_states(&self.replica).await;
        let failover = states
            .get(topology::lowercase(home_pool).as_ref())
            .map(dr::PoolState::view)
            .unwrap_or_default();
        let decision = topology::serving::decide(
            topology,
            &self.pool,
            home_pool,
            self.serving.partner_down(),
            &failover,
        );
        // A view not yet proven current never serves in full mode: a pool failed over in
        // disaster mode while this server was down must not take its users' writes.
        match decision {
            topology::serving::Decision::Serve(topology::serving::Mode::Full) if in_doubt => {
                topology::serving::Decision::Serve(topology::serving::Mode::Resiliency)
            }
            other => other,
        }
    }

    /// Why this server does not serve in full mode now, if that is so: its view of who
    /// serves whom is not proven current (see [`ViewDoubt`]).
    pub fn not_caught_up(&self) -> Option<String> {
        Some(match self.replica.view_doubt()? {
            ViewDoubt::SinceStart => format!(
                "{} has not yet caught up with the Central Management store since it started \
                 (it waits for the active master's next push; Get-CsManagementStoreReplicationStatus \
                 shows it), so the failover states it holds may be stale",
                self.fqdn
            ),
            ViewDoubt::Stale { ms } => format!(
                "{} has not heard from the Central Management master for {:.1} s (it was paused or \
                 cut off, or the master is late) and is asking it where it stands, so the failover \
                 states it holds may be stale; Get-CsManagementStoreReplicationStatus shows it",
                self.fqdn,
                ms as f64 / 1000.0
            ),
        })
    }

    /// The SIP addresses of the users homed on `pool`, sorted.
    pub async fn users_homed_on(&self, pool: &str) -> Result<Vec<String>, store::StoreError> {
        self.homes.homed_on(&self.replica, pool).await
    }

    /// Spawns a task of this server, tracked for shutdown.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }
}
