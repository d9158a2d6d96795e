//! One tandem server process: `tandem server --fqdn F --data-dir D`.
//!
//! A server starts from its local replica of the Central Management store: the topology
//! there says what it is (Front End or Edge), which pool it belongs to, and its address
//! and ports. It then wires the services of its role:
//!
//! - every server: the Replica Replicator Agent and the management API;
//! - Front Ends: its pool's Back End store (opened only by the pool's own servers);
//! - Front Ends of the CMS pool: a [`cms::master::Master`] contending for the master lease.
//!
//! The management API ([`http`]) runs every cmdlet ([`exec`]); configuration cmdlets are
//! forwarded to the active master, so the shell may be opened on any server.

pub mod api;
mod archive;
pub mod cmsfailover;
pub mod dnsserver;
pub mod edge;
mod exec;
pub mod failover;
pub mod heard;
mod homes;
pub mod http;
mod pooldata;
pub mod records;
pub mod registrar;
mod resiliency;
pub mod services;
pub mod sipnet;
pub mod users;
pub mod userservices;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use backup::service::BackupService;
use cms::master::Master;
use cms::replica::ReplicaAgent;
use store::{BackEnd, ReplicaStore};
use topology::serving::Decision;
use topology::{Role, Topology};

use crate::services::Services;

/// How a server is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// This server's FQDN, as the topology names it.
    pub fqdn: String,
    /// Where the server keeps its local replica (`replica.db`).
    pub data_dir: PathBuf,
    /// What relative `sqlite://` Back End URLs are relative to: the deployment's folder.
    pub backend_root: PathBuf,
    /// The deployment's admin token.
    pub token: String,
    /// The deployment's DNS server, when there is one: the Edge finds its next hop's
    /// registrars there (the topology's addresses otherwise).
    pub dns: Option<SocketAddr>,
}

/// The path of a server's local replica inside its data folder.
pub fn replica_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("replica.db")
}

/// A running server's shared state.
#[derive(Debug)]
pub struct Server {
    pub fqdn: String,
    pub role: Role,
    pub pool: String,
    pub token: String,
    pub replica: ReplicaAgent,
    pub backend: Option<BackEnd>,
    /// The Central Management services (Master Replicator, File Transfer Agent), on Front
    /// Ends of the CMS pool and of its partner, which holds the standby store; installed
    /// later on others by `Move-CsManagementServer` and `Bootstrapper /Setup`.
    master: std::sync::OnceLock<Master>,
    pub services: Arc<Services>,
    pub client: reqwest::Client,
    pub address: SocketAddr,
    /// The Backup Service (Front Ends).
    pub backup: Option<BackupService>,
    /// This pool's verdict on its partner (see [`resiliency`]): true while the partner's
    /// users are served here in resiliency mode.
    pub partner_down: AtomicBool,
    /// Signs and checks digest nonces; derived from the deployment's token so that any
    /// Front End can check a nonce another issued.
    pub nonce_key: sip::digest::NonceKey,
    /// The registrar, once its sockets are bound (Front Ends).
    pub registrar: std::sync::OnceLock<Arc<registrar::Registrar>>,
    /// Pools' failover states as of a replica version (see [`Server::failover_states`]).
    failover_cache: tokio::sync::Mutex<(i64, Arc<FailoverStates>)>,
    /// Users by home pool (see [`Server::users_homed_on`]).
    homes: tokio::sync::Mutex<homes::HomeIndex>,
    /// The partner's unshipped user changes, as last heard (see [`heard`]).
    pub(crate) partner_backlog: std::sync::Mutex<Option<heard::HeardBacklog>>,
    /// The operations this server's engine is running (see [`failover`]).
    pub(crate) running: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// Test hook: crash when the operations engine reaches this step (`TANDEM_DR_FAULTS=1`).
    pub(crate) crash_at: std::sync::Mutex<Option<failover::CrashPoint>>,
    /// The deployment's DNS server (see [`Config::dns`]).
    pub dns: Option<SocketAddr>,
    /// Edge servers: wakes the listener supervisor, and counts its passes (see [`edge`]).
    pub(crate) edge_wake: tokio::sync::Notify,
    pub(crate) edge_passes: tokio::sync::watch::Sender<u64>,
}

/// The registrars of a Front End pool: the pool's A records in the deployment's DNS, as
/// the product finds them, or the topology's addresses when there is no DNS to ask (or it
/// does not know the pool).
pub(crate) async fn registrars_of(
    server: &Server,
    topology: &Topology,
    pool: &str,
) -> Vec<SocketAddr> {
    let from_dns = match server.dns {
        Some(dns) => dnsserver::resolve_a(dns, pool).await,
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

/// Whether the Front Ends of `pool` run the Central Management services: the pool that
/// hosts the CMS, and its partner, which holds the standby store.
pub fn hosts_cms_services(topology: &Topology, pool: &str) -> bool {
    let cms = &topology.deployment.cms_pool;
    cms.eq_ignore_ascii_case(pool)
        || topology
            .backup_pool_of(cms)
            .is_some_and(|b| b.eq_ignore_ascii_case(pool))
}

/// Every pool's failover state, by lower-case pool FQDN.
pub type FailoverStates = std::collections::BTreeMap<String, dr::PoolState>;

impl Server {
    /// The partner pool's backlog as last heard (see [`heard`]); with `pool`, only when
    /// it is that pool's.
    pub(crate) fn partner_heard(&self, pool: Option<&str>) -> Option<heard::HeardBacklog> {
        self.partner_backlog
            .lock()
            .expect("partner backlog lock")
            .clone()
            .filter(|h| pool.is_none_or(|p| h.pool.eq_ignore_ascii_case(p)))
    }

    /// This server's Central Management services, when installed.
    pub fn master(&self) -> Option<&Master> {
        self.master.get()
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
            Master::spawn(
                self.fqdn.clone(),
                be,
                self.token.clone(),
                self.client.clone(),
            )
        });
        Some((m, fresh))
    }

    /// How this server's pool treats a user homed on `home_pool`. An Edge serves no
    /// user: it sends them to their home pool.
    pub async fn serving_decision(&self, topology: &Topology, home_pool: &str) -> Decision {
        if self.role != Role::FrontEnd {
            return Decision::Redirect {
                pool: home_pool.to_string(),
            };
        }
        let states = self.failover_states().await;
        let failover = states
            .get(&home_pool.to_ascii_lowercase())
            .map(dr::PoolState::view)
            .unwrap_or_default();
        topology::serving::decide(
            topology,
            &self.pool,
            home_pool,
            self.partner_down.load(Ordering::SeqCst),
            &failover,
        )
    }

    /// The pools' failover states in this server's replica, read again only when the
    /// replica has moved to a new version.
    pub async fn failover_states(&self) -> Arc<FailoverStates> {
        let version = self.replica.version();
        let mut cache = self.failover_cache.lock().await;
        if cache.0 != version {
            match self
                .replica
                .store()
                .items_with_prefix(dr::state::POOL_PREFIX)
                .await
            {
                Ok(items) => {
                    let states = items
                        .iter()
                        .filter_map(|i| dr::PoolState::from_json(i.value.as_deref()?))
                        .map(|s| (s.pool.clone(), s))
                        .collect();
                    *cache = (version, Arc::new(states));
                }
                Err(e) => tracing::warn!(error = %e, "reading failover states from the replica"),
            }
        }
        cache.1.clone()
    }
}

/// The nonce key every server of a deployment shares.
pub fn nonce_key(token: &str) -> sip::digest::NonceKey {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("tandem digest nonce key:{token}").as_bytes());
    sip::digest::NonceKey::new(digest.into())
}

/// Runs a server until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let path = replica_path(&config.data_dir);
    let store = ReplicaStore::open(&path)
        .await
        .with_context(|| format!("opening the local replica {}", path.display()))?;
    let replica = ReplicaAgent::open(store, &path.display().to_string()).await?;
    let topology = replica.topology();
    let Some(me) = topology.server(&config.fqdn) else {
        bail!(
            "{} is not a server of the topology in its local replica ({}); check --fqdn, or seed the replica with Import-CsConfiguration -LocalStore",
            config.fqdn,
            path.display()
        );
    };
    let fqdn = me.server.fqdn.clone();
    let role = me.role;
    let pool = me.pool_fqdn.to_string();
    let address = SocketAddr::from((me.server.address, topology.ports.management));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .no_proxy()
        .build()?;
    let backend = match role {
        Role::FrontEnd => {
            let fe = topology
                .front_end_pool(&pool)
                .expect("the server's own pool is in the topology");
            let be = BackEnd::open(&fe.back_end.database_url, &config.backend_root)
                .await
                .with_context(|| format!("opening the Back End of {pool}"))?;
            Some(be)
        }
        Role::Edge => None,
    };
    let master = std::sync::OnceLock::new();
    if let Some(be) = &backend
        && hosts_cms_services(&topology, &pool)
    {
        let _ = master.set(Master::spawn(
            fqdn.clone(),
            be.clone(),
            config.token.clone(),
            client.clone(),
        ));
    }
    let services = Arc::new(Services::new(&topology, &fqdn));
    let backup = backend.as_ref().map(|be| {
        BackupService::spawn(
            fqdn.clone(),
            pool.clone(),
            be.clone(),
            replica.store().clone(),
            replica.subscribe_topology(),
            config.token.clone(),
            client.clone(),
        )
    });
    let nonce_key = nonce_key(&config.token);
    let server = Arc::new(Server {
        fqdn,
        role,
        pool,
        token: config.token,
        replica,
        backend,
        master,
        services,
        client,
        address,
        backup,
        partner_down: AtomicBool::new(false),
        nonce_key,
        registrar: std::sync::OnceLock::new(),
        failover_cache: tokio::sync::Mutex::new((-1, Arc::default())),
        homes: tokio::sync::Mutex::default(),
        running: std::sync::Mutex::default(),
        partner_backlog: std::sync::Mutex::default(),
        crash_at: std::sync::Mutex::new(None),
        dns: config.dns,
        edge_wake: tokio::sync::Notify::new(),
        edge_passes: tokio::sync::watch::Sender::new(0),
    });
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the management API on {address}"))?;
    if server.role == Role::FrontEnd {
        start_front_end_services(&server, &topology).await?;
    } else {
        tokio::spawn(edge::supervise(server.clone()));
    }
    tracing::info!(%address, fqdn = %server.fqdn, role = ?server.role, "server started");
    axum::serve(listener, http::router(server.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    if let Some(m) = server.master() {
        m.shutdown().await;
    }
    if let Some(b) = &server.backup {
        b.shutdown().await;
    }
    server.replica.store().close().await;
    if let Some(be) = &server.backend {
        be.close().await;
    }
    Ok(())
}

/// The Front End's own listeners: the backup link, user services, the SIP registrar (UDP
/// and TCP), and the partner watch.
async fn start_front_end_services(server: &Arc<Server>, topology: &Topology) -> anyhow::Result<()> {
    let ip = server.address.ip();
    let backup_at = SocketAddr::new(ip, topology.ports.backup_service);
    let backup_listener = tokio::net::TcpListener::bind(backup_at)
        .await
        .with_context(|| format!("binding the Backup Service on {backup_at}"))?;
    tokio::spawn(axum::serve(backup_listener, http::backup_router(server.clone())).into_future());
    let users_at = SocketAddr::new(ip, topology.ports.user_services);
    let users_listener = tokio::net::TcpListener::bind(users_at)
        .await
        .with_context(|| format!("binding user services on {users_at}"))?;
    tokio::spawn(axum::serve(users_listener, userservices::router(server.clone())).into_future());
    let sip_at = SocketAddr::new(ip, topology.ports.sip);
    registrar::start(server.clone(), sip_at)
        .await
        .with_context(|| format!("starting the registrar on {sip_at} (UDP and TCP)"))?;
    tokio::spawn(resiliency::watch_partner(server.clone()));
    tokio::spawn(homes::follow(server.clone()));
    tokio::spawn(heard::follow(server.clone()));
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
