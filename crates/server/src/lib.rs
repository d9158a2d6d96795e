//! One tandem server process: `tandem server --fqdn F --data-dir D`. Wiring only.
//!
//! A server starts from its local replica of the Central Management store: the topology
//! there says what it is (Front End or Edge), which pool it belongs to, and its address
//! and ports. It opens the parts its role needs into a [`node::Node`] and starts the
//! services of that role, each from its own crate:
//!
//! - every server: the Replica Replicator Agent (`cms`), the management API (`mgmt`) and
//!   the operations engine (`engine`);
//! - Front Ends: the pool's Back End (`store`), the Backup Service and its link
//!   (`backup`), the registrar, user services and partner watch (`registrar`), and on the
//!   CMS pool and its partner the Central Management services (`cms`);
//! - Edges: the federation and XMPP listeners (`edge`).
//!
//! Every TCP listener is served through `listener` (connection caps, TLS 1.3 with the
//! server's certificate from `tls/` under its data folder, header and body timeouts): the
//! management API asks servers for their certificate (operators bring the admin token
//! instead), the backup link requires one, user services ask users for none.
//!
//! It stops in order on SIGTERM or SIGINT: the listeners stop accepting, the services'
//! tasks are cancelled and awaited, the master gives its lease up, the Backup Service its
//! lease, and the databases close.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use backup::service::BackupService;
use clock::Clock;
use cms::replica::ReplicaAgent;
use engine::Engine;
use mgmt::Mgmt;
use node::{Node, Parts};
use registrar::Registrar;
use store::{BackEnd, Binding, ReplicaStore};
use tokio_util::task::TaskTracker;
use topology::Role;

// A MESSAGE's timeouts nest, so that a sender never hears "time-out" for a message that was
// delivered: a contact (registrar) < a relay to the recipient's pool < an Edge's next hop.
const _: () = assert!(
    registrar::CONTACT_TIMEOUT.as_millis() < registrar::RELAY_TIMEOUT.as_millis()
        && registrar::RELAY_TIMEOUT.as_millis() < edge::NEXT_HOP_TIMEOUT.as_millis()
);

/// How long an operation whose runner died waits, by default, before the reconciler on
/// the active master carries it on.
pub const DEFAULT_RECONCILE_AFTER: Duration = Duration::from_secs(20);
/// How long shutdown waits for the services' tasks to end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

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
    /// The deployment's CA, which `Request-CsCertificate` asks to sign a renewal.
    pub certificate_authority: Option<String>,
    /// How long an operation whose runner died waits before the reconciler carries it on.
    pub reconcile_after: Duration,
}

pub use cms::replica::replica_path;

/// The registrar, as the engine's way to tell signed-out users where to go.
#[derive(Debug)]
struct RegistrarSignOut(Arc<Registrar>);

impl engine::SignOut for RegistrarSignOut {
    fn tell_signed_out(&self, bindings: Vec<Binding>, serving_pool: &str) -> usize {
        self.0.tell_signed_out(bindings, serving_pool)
    }
}

/// Runs a server until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // The process's metrics recorder, before any service counts anything.
    mgmt::metrics::install();
    let path = replica_path(&config.data_dir);
    let store = ReplicaStore::open(&path)
        .await
        .with_context(|| format!("opening the local replica {}", path.display()))?;
    let clock = Clock::system();
    let replica = ReplicaAgent::open(store, &path.display().to_string(), clock).await?;
    let topology = replica.topology();
    // The hints' examples in the API's answers name this deployment's pools.
    cmdlet::set_examples(api::records::examples(&topology));
    let Some(me) = topology.server(&config.fqdn) else {
        bail!(
            "{} is not a server of the topology in its local replica ({}); check --fqdn, or seed the replica with Import-CsConfiguration -LocalStore",
            config.fqdn,
            path.display()
        );
    };
    let certs = pki::CertStore::open(&config.data_dir).with_context(|| {
        format!(
            "reading the certificate of {} under {}; `tandem lab up` issues one to every server, or Request-CsCertificate -New -Type Default -ComputerName {}",
            config.fqdn,
            config.data_dir.display(),
            config.fqdn
        )
    })?;
    let roots = pki::Roots::new(certs.ca())?;
    let tls = pki::client_config(&roots, Some(certs.clone()));
    let fqdn = me.server.fqdn.clone();
    let role = me.role;
    let pool = me.pool_fqdn.to_string();
    let address = SocketAddr::from((me.server.address, topology.ports.management));
    let tasks = TaskTracker::new();
    let backend = match role {
        Role::FrontEnd => {
            let fe = topology
                .front_end_pool(&pool)
                .expect("the server's own pool is in the topology");
            // A SQLite Back End keeps its mirror itself; a PostgreSQL one's is its
            // streaming standby, which PostgreSQL keeps and this follows.
            let mirror = fe.back_end.mirror.as_ref().map(|m| m.database_url.as_str());
            let be =
                BackEnd::open_mirrored(&fe.back_end.database_url, mirror, &config.backend_root)
                    .await
                    .with_context(|| format!("opening the Back End of {pool}"))?;
            Some(be)
        }
        Role::Edge => None,
    };
    let backup = backend.as_ref().map(|be| {
        BackupService::spawn(
            fqdn.clone(),
            pool.clone(),
            be.clone(),
            replica.store().clone(),
            replica.subscribe_topology(),
            replica.subscribe_version(),
            api::Client::new(config.token.clone(), &tls).on_behalf_of(fqdn.clone()),
            clock,
            &tasks,
        )
    });
    let node = Arc::new(Node::new(Parts {
        fqdn,
        role,
        pool,
        address,
        token: config.token,
        replica,
        backend,
        backup,
        dns: config.dns,
        clock,
        certs,
        tls,
        certificate_authority: config.certificate_authority,
        data_dir: config.data_dir.clone(),
        tasks,
    }));
    // A view in doubt (after a pause or a cut) is proven again by asking the master.
    node.spawn(node.clone().prove_view());
    let engine = Engine::new(node.clone(), config.reconcile_after);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the management API on {address}"))?;
    let edge = match role {
        Role::FrontEnd => {
            start_front_end_services(&node, &engine, &topology, &roots).await?;
            None
        }
        Role::Edge => Some(edge::EdgeService::start(node.clone())),
    };
    if role == Role::FrontEnd {
        // It acts only while this server is the active master.
        engine.start_reconciler();
    }
    let mgmt = Mgmt {
        node: node.clone(),
        engine,
        edge,
        console: Default::default(),
    };
    tracing::info!(%address, fqdn = %node.fqdn, role = ?node.role, "server started");
    let api = listener::serve_http(
        listener,
        Some(tls_settings(&node, pki::ClientAuth::Optional(roots))?),
        mgmt::router(mgmt),
        listener::Limits::DEFAULT,
        node.shutdown.clone(),
    );
    let signal = node.shutdown.clone();
    node.spawn(async move {
        tokio::select! {
            () = shutdown_signal() => signal.cancel(),
            () = signal.cancelled() => {}
        }
    });
    api.await;
    shut_down(&node).await;
    Ok(())
}

/// The Front End's own listeners: the backup link, user services, the SIP registrar (UDP
/// and TCP), the partner watch, and the index of users' home pools.
async fn start_front_end_services(
    node: &Arc<Node>,
    engine: &Arc<Engine>,
    topology: &topology::Topology,
    roots: &pki::Roots,
) -> anyhow::Result<()> {
    let ip = node.address.ip();
    if let Some(backup) = &node.backup {
        let at = SocketAddr::new(ip, topology.ports.backup_service);
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("binding the Backup Service on {at}"))?;
        let app = backup::link::router(backup.clone(), node.token.clone());
        let tls = tls_settings(node, pki::ClientAuth::Required(roots.clone()))?;
        serve_until_shutdown(node, listener, tls, app);
    }
    let users_at = SocketAddr::new(ip, topology.ports.user_services);
    let users_listener = tokio::net::TcpListener::bind(users_at)
        .await
        .with_context(|| format!("binding user services on {users_at}"))?;
    serve_until_shutdown(
        node,
        users_listener,
        tls_settings(node, pki::ClientAuth::NotAsked)?,
        registrar::userservices::router(node.clone()),
    );
    let sip_at = topology
        .ports
        .sip_plain
        .then(|| SocketAddr::new(ip, topology.ports.sip));
    let sip_tls_at = SocketAddr::new(ip, topology.ports.sip_tls);
    let sip_tls = pki::server_config(
        node.certs.clone(),
        pki::ClientAuth::Optional(roots.clone()),
        &[],
    )?;
    let registrar = Registrar::start(node.clone(), sip_at, sip_tls_at, sip_tls)
        .await
        .with_context(|| match sip_at {
            Some(at) => {
                format!("starting the registrar on {sip_tls_at} (TLS) and {at} (UDP and TCP)")
            }
            None => format!("starting the registrar on {sip_tls_at} (TLS)"),
        })?;
    engine.set_sign_out(Arc::new(RegistrarSignOut(registrar.clone())));
    node.spawn(registrar::resiliency::watch_partner(registrar));
    let homes = node.clone();
    node.spawn(async move {
        homes
            .homes
            .follow(&homes.replica, homes.shutdown.clone())
            .await
    });
    Ok(())
}

/// Serves `app` on `listener` over TLS as a task of the node, until it shuts down.
fn serve_until_shutdown(
    node: &Arc<Node>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
) {
    node.spawn(listener::serve_http(
        listener,
        Some(tls),
        app,
        listener::Limits::DEFAULT,
        node.shutdown.clone(),
    ));
}

/// An HTTPS listener's TLS settings: this server's certificate (renewed in place), and
/// what it asks of clients.
fn tls_settings(node: &Node, auth: pki::ClientAuth) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    Ok(pki::server_config(
        node.certs.clone(),
        auth,
        &[b"http/1.1"],
    )?)
}

/// Stops what runs, in order: every service's tasks end (listeners first, as they watch
/// the same token), then the master's and the Backup Service's leases are given up, and
/// the databases close.
async fn shut_down(node: &Node) {
    tracing::info!("shutting down");
    node.shutdown.cancel();
    if let Some(b) = &node.backup {
        b.shutdown().await;
    }
    node.tasks.close();
    if tokio::time::timeout(SHUTDOWN_WAIT, node.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not end within {SHUTDOWN_WAIT:?}; exiting anyway");
    }
    if let Some(m) = node.master() {
        m.shutdown().await;
    }
    node.replica.store().close().await;
    if let Some(be) = &node.backend {
        be.close().await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
