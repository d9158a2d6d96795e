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
mod exec;
pub mod http;
pub mod records;
pub mod services;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cms::master::Master;
use cms::replica::ReplicaAgent;
use store::{BackEnd, ReplicaStore};
use topology::Role;

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
    pub master: Option<Master>,
    pub services: Services,
    pub client: reqwest::Client,
    pub address: SocketAddr,
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
    let master = match &backend {
        Some(be) if topology.deployment.cms_pool.eq_ignore_ascii_case(&pool) => {
            Some(Master::spawn(
                fqdn.clone(),
                be.clone(),
                config.token.clone(),
                client.clone(),
            ))
        }
        _ => None,
    };
    let services = Services::new(&topology, &fqdn);
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
    });
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the management API on {address}"))?;
    tracing::info!(%address, fqdn = %server.fqdn, role = ?server.role, "server started");
    axum::serve(listener, http::router(server.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    if let Some(m) = &server.master {
        m.shutdown().await;
    }
    server.replica.store().close().await;
    if let Some(be) = &server.backend {
        be.close().await;
    }
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
