//! `tandem lab`: a whole deployment on one machine.
//!
//! `up` installs the Central Management store in the CMS pool's Back End (the first
//! version of the configuration is the topology), seeds every server's local replica
//! with it (as `Import-CsConfiguration -LocalStore` would), starts each server as a child
//! process on its own loopback address, and waits until every replica reports up to date.
//! `D/lab.json` records the servers, their process ids and the admin token, so that
//! `status`, `kill`, `start`, `down` and `tandem shell --lab D` work from any terminal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) use crate::lab_process::{LabServer, random_token};
use anyhow::{Context, anyhow, bail};
use api::{InvokeRequest, InvokeResponse};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use store::ReplicaStore;
use topology::{Role, Topology, validate};

/// `D/lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LabFile {
    pub(crate) dir: PathBuf,
    pub(crate) admin_token: String,
    pub(crate) cms_pool: String,
    pub(crate) servers: Vec<LabServer>,
    /// The Back Ends' PostgreSQL clusters (`--backend postgres`; none on SQLite): kept
    /// apart from the servers, which everything else of the lab talks to by their API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) clusters: Vec<LabServer>,
    /// Seconds an operation whose runner died waits before the active master's
    /// reconciler carries it on (every server is started with it).
    #[serde(default = "default_reconcile_after_secs")]
    pub(crate) reconcile_after_secs: u64,
    /// The hosts' network (`lab up --hosts`): namespaces and the link between sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) network: Option<crate::lab_net::Network>,
}

fn default_reconcile_after_secs() -> u64 {
    DEFAULT_RECONCILE_AFTER_SECS
}

/// The servers' own default (see `tandem server --reconcile-after-secs`).
pub(crate) const DEFAULT_RECONCILE_AFTER_SECS: u64 = 20;

/// The lab's certificate authority, in `pki/` of the lab folder: its key stays there.
pub(crate) const PKI_DIR: &str = "pki";

/// The public CA of the lab, in `pki/public/`: it stands for the public CAs the Internet
/// trusts, which issue Access Edges' external certificates and federated partners' own.
pub(crate) const PUBLIC_CA_DIR: &str = "public";
/// The federated partners' certificates the lab's public CA issued, one folder per allowed
/// domain under `pki/` (`pki/partners/fabrikam.com/tls/`): what `tandem partner` presents.
pub(crate) const PARTNERS_DIR: &str = "partners";
/// The last octet of the address `tandem client` speaks from in a loopback lab's block
/// (`127.B.0.200`, or the next one no server of the lab holds).
const CLIENT_HOST: u8 = 200;

/// The CA kept in `dir`, created (named `name`) the first time.
pub(crate) fn open_authority(dir: &Path, name: &str) -> anyhow::Result<pki::Authority> {
    Ok(match pki::Authority::load(dir) {
        Ok(authority) => authority,
        Err(_) => {
            let authority = pki::Authority::create(name, store::now_ms() / 1000)?;
            authority.save(dir)?;
            authority
        }
    })
}

/// Creates the deployment's CA (once per lab folder) and issues every server of the lab a
/// certificate for its FQDN, its pool's FQDN and its address, installed in its data folder;
/// every Edge server an external certificate from the lab's public CA for the names
/// federated partners reach it by (`sip.`, `xmpp.`, `<edge>-ext.` of the zone) and its
/// external address, with the public CA as the roots it trusts for partners
/// (`access-edge/partner-roots.pem`); and each allowed partner domain a certificate from
/// the public CA for the domain and `sip.<domain>` (`pki/partners/<domain>/`), which
/// `tandem partner` presents; and every Edge pool one media relay secret, in each of its
/// servers' folders (0600), kept when the lab is started again.
fn issue_certificates(lab: &LabFile, topology: &Topology) -> anyhow::Result<()> {
    let zone = &topology.deployment.dns_zone;
    let dir = lab.dir.join(PKI_DIR);
    let now = store::now_ms() / 1000;
    let authority = open_authority(&dir, &format!("tandem deployment CA ({zone})"))?;
    let public = open_authority(&dir.join(PUBLIC_CA_DIR), "tandem lab public CA")?;
    for pool in &topology.edge_pools {
        for server in &pool.servers {
            let short = server.fqdn.split('.').next().unwrap_or(&server.fqdn);
            let mut names = vec![
                format!("sip.{zone}"),
                format!("xmpp.{zone}"),
                format!("{short}-ext.{zone}"),
                server.fqdn.clone(),
                // The domain itself: an XMPP peer checks the certificate against the
                // domain it opened a stream to (RFC 6120 §13.7.2).
                topology.deployment.sip_domain.clone(),
            ];
            if !zone.eq_ignore_ascii_case(&topology.deployment.sip_domain) {
                names.push(zone.clone());
            }
            let issued = public.issue(&pki::Request {
                names,
                addresses: vec![server.external_address().into()],
                validity_days: pki::SERVER_VALIDITY_DAYS,
                now,
            })?;
            let access_edge = lab
                .dir
                .join("servers")
                .join(&server.fqdn)
                .join(pki::ACCESS_EDGE_DIR);
            pki::Installed::install(&access_edge, public.cert_pem(), &issued)?;
            let roots = access_edge.join(pki::PARTNER_ROOTS);
            std::fs::write(&roots, public.cert_pem())
                .with_context(|| format!("writing {}", roots.display()))?;
        }
    }
    for pool in &topology.edge_pools {
        let dirs: Vec<PathBuf> = pool
            .servers
            .iter()
            .map(|s| lab.dir.join("servers").join(&s.fqdn))
            .collect();
        let secret = match dirs.iter().find_map(|d| relay::Secret::load(d).ok()) {
            Some(kept) => kept,
            None => relay::Secret::generate()?,
        };
        for dir in &dirs {
            secret.save(dir).with_context(|| {
                format!("writing the media relay secret under {}", dir.display())
            })?;
        }
    }
    let xmpp = topology.deployment.xmpp_partners.iter().map(|p| &p.domain);
    for domain in topology.deployment.allowed_domains.iter().chain(xmpp) {
        let domain = topology::domain::normalize(domain)
            .ok_or_else(|| anyhow!("allowed domain {domain} is not a domain name"))?;
        let names = sip::federation::certificate_names(&domain).to_vec();
        let issued = public.issue(&pki::Request {
            names,
            addresses: vec![],
            validity_days: pki::SERVER_VALIDITY_DAYS,
            now,
        })?;
        pki::Installed::install(
            &dir.join(PARTNERS_DIR).join(&domain),
            public.cert_pem(),
            &issued,
        )?;
    }
    for s in &lab.servers {
        let mut names = vec![s.fqdn.clone()];
        if !s.pool.eq_ignore_ascii_case(&s.fqdn) {
            names.push(s.pool.clone());
        }
        let issued = authority.issue(&pki::Request {
            names,
            addresses: vec![s.address.parse()?],
            validity_days: pki::SERVER_VALIDITY_DAYS,
            now,
        })?;
        pki::Installed::install(&s.data_dir, authority.cert_pem(), &issued)?;
    }
    Ok(())
}

impl LabFile {
    /// The SIP TLS port of the server at `ip` (the reference's 5061 when the lab does
    /// not say).
    /// The address a client of the lab speaks from: on one machine, an address of the
    /// lab's own loopback block that no server holds (`127.B.0.200` or after), so that the
    /// contacts users bind are inside the deployment's addresses; on `--hosts`, the one
    /// this machine would use towards the lab's servers (the operator's own).
    pub(crate) fn client_address(&self) -> std::net::IpAddr {
        let towards = self
            .servers
            .first()
            .and_then(|s| s.address.parse::<std::net::IpAddr>().ok());
        match towards {
            Some(std::net::IpAddr::V4(ip)) if ip.is_loopback() => {
                let taken = |a: &std::net::Ipv4Addr| {
                    (self.servers.iter().chain(&self.clusters)).any(|s| s.address == a.to_string())
                };
                (CLIENT_HOST..=u8::MAX)
                    .map(|host| std::net::Ipv4Addr::new(127, ip.octets()[1], 0, host))
                    .find(|a| !taken(a))
                    .map_or(std::net::Ipv4Addr::LOCALHOST.into(), Into::into)
            }
            Some(ip) => crate::lab_net::source_address_towards(ip),
            None => std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }

    /// The plain SIP port (UDP and TCP) of the Front End at `ip`; an error naming the
    /// topology setting when the deployment takes no plain SIP.
    pub(crate) fn sip_port_of(&self, ip: std::net::IpAddr) -> anyhow::Result<u16> {
        self.servers
            .iter()
            .find(|s| s.address.parse::<std::net::IpAddr>().ok() == Some(ip))
            .map(|s| s.sip_port)
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{ip} takes SIP over TLS only (the topology's ports.sip_plain is off); use --transport tls, or set sip_plain = true under [ports] and publish the topology"
                )
            })
    }

    pub(crate) fn sip_tls_port_of(&self, ip: std::net::IpAddr) -> u16 {
        self.servers
            .iter()
            .find(|s| s.address.parse::<std::net::IpAddr>().ok() == Some(ip))
            .map(|s| s.sip_tls_port)
            .filter(|p| *p != 0)
            .unwrap_or(5061)
    }

    /// The TLS settings of the lab's clients (shell, `tandem client`, benchmarks): the
    /// lab's CA as the only root; no client certificate (operators bring the token).
    pub(crate) fn client_tls(&self) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
        client_tls(&self.dir)
    }

    /// A client of the lab's management APIs, with the admin token.
    pub(crate) fn api(&self) -> anyhow::Result<api::Client> {
        Ok(api::Client::new(
            self.admin_token.clone(),
            &self.client_tls()?,
        ))
    }

    pub(crate) fn load(dir: &Path) -> anyhow::Result<LabFile> {
        let path = dir.join("lab.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no lab in {} (cannot read {}); start one with `tandem lab up --dir {}`",
                dir.display(),
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a lab file", path.display()))
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = self.dir.join("lab.json");
        let tmp = self.dir.join("lab.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The topology as the lab installed it (with its clusters' URLs), for its own tools.
    pub(crate) fn installed_topology(&self) -> anyhow::Result<Topology> {
        let text = std::fs::read_to_string(self.dir.join(INSTALLED_TOPOLOGY))
            .context("reading the lab's installed topology")?;
        Topology::from_toml(&text).map_err(|e| anyhow!("{e}"))
    }

    /// A server (`i` below the number of servers) or a cluster (above), as `select`
    /// numbers them.
    pub(crate) fn at(&self, i: usize) -> &LabServer {
        self.servers
            .get(i)
            .unwrap_or_else(|| &self.clusters[i - self.servers.len()])
    }

    /// The servers and clusters a selector names: a site, a pool or a server
    /// (case-insensitive); a cluster is numbered after every server (see [`Self::at`]).
    fn select(&self, selector: &str) -> anyhow::Result<Vec<usize>> {
        let picked: Vec<usize> = (0..self.servers.len() + self.clusters.len())
            .filter(|&i| {
                let s = self.at(i);
                [&s.site, &s.pool, &s.fqdn]
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(selector))
            })
            .collect();
        if picked.is_empty() {
            let mut names: Vec<&str> = Vec::new();
            for s in self.servers.iter().chain(&self.clusters) {
                for n in [&s.site, &s.pool, &s.fqdn] {
                    if !names.contains(&n.as_str()) {
                        names.push(n);
                    }
                }
            }
            bail!(
                "'{selector}' is not a site, pool or server of this lab; choose one of: {}",
                names.join(", ")
            );
        }
        Ok(picked)
    }
}

fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

pub(crate) struct UpOptions {
    pub(crate) topology: Option<PathBuf>,
    pub(crate) dir: PathBuf,
    pub(crate) detach: bool,
    pub(crate) quiet: bool,
    /// Users to enable on each Front End pool.
    pub(crate) users: usize,
    /// Registrar failure and failback detection intervals for every pool (seconds).
    pub(crate) detection_secs: Option<(u32, u32)>,
    /// How long an orphaned operation waits for an operator before the reconciler goes on.
    pub(crate) reconcile_after_secs: u64,
    /// Where the Back Ends live: SQLite files, or a PostgreSQL cluster per Back End server.
    pub(crate) backend: Backend,
    /// Every server and Back End on a host (network namespace) of its own.
    pub(crate) hosts: bool,
    /// Every address moved into `127.B.x.y`.
    pub(crate) block: Option<u8>,
    /// The running lab whose deployment this one federates with.
    pub(crate) federate_with: Option<PathBuf>,
}

/// `tandem lab up --backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Backend {
    /// The topology's `sqlite://` files, in the lab folder.
    #[default]
    Sqlite,
    /// A PostgreSQL cluster per Back End server (and its mirror), started by the lab.
    Postgres,
}

/// One user the lab enabled, with the password it made up: `D/users.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LabUser {
    pub(crate) sip_address: String,
    pub(crate) password: String,
    pub(crate) home_pool: String,
}

/// The users of a lab, from `D/users.json`.
pub(crate) fn load_users(dir: &Path) -> anyhow::Result<Vec<LabUser>> {
    let path = dir.join("users.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no users in {} (cannot read {}); start the lab with `tandem lab up --users N`",
            dir.display(),
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a users file", path.display()))
}

/// Makes up `per_pool` users on every Front End pool and enables them, a chunk (one CMS
/// version) per call.
pub(crate) async fn enable_users(
    lab: &LabFile,
    topology: &Topology,
    per_pool: usize,
) -> anyhow::Result<Vec<LabUser>> {
    let domain = &topology.deployment.sip_domain;
    let mut users = Vec::new();
    let mut bulk = Vec::new();
    for pool in &topology.front_end_pools {
        let short = pool.fqdn.split('.').next().unwrap_or(&pool.fqdn);
        for i in 1..=per_pool {
            let name = format!("user{i:04}.{short}");
            let sip = format!("sip:{name}@{domain}").to_ascii_lowercase();
            let password = cms::directory::new_password();
            let username = &sip[4..];
            bulk.push(api::users::BulkUser {
                identity: name,
                sip_address: sip.clone(),
                registrar_pool: pool.fqdn.clone(),
                ha1: sip::digest::ha1(username, domain, &password),
                ha1_sha256: Some(sip::digest::Algorithm::Sha256.ha1(username, domain, &password)),
            });
            users.push(LabUser {
                sip_address: sip,
                password,
                home_pool: pool.fqdn.clone(),
            });
        }
    }
    let via = lab
        .servers
        .iter()
        .find(|s| s.pool.eq_ignore_ascii_case(&lab.cms_pool))
        .ok_or_else(|| anyhow!("the lab has no server in the CMS pool"))?;
    let client = lab.api()?;
    let total = bulk.len();
    let mut progress = (total > api::users::BULK_MAX_USERS)
        .then(|| crate::progress::Progress::new("Enabling users", total as u64, "users"));
    for (i, chunk) in bulk.chunks(api::users::BULK_MAX_USERS).enumerate() {
        let _: api::users::BulkEnableResponse = client
            .post(
                &via.base_url(),
                api::paths::USERS_BULK,
                &api::users::BulkEnableRequest {
                    users: chunk.to_vec(),
                },
                Duration::from_secs(120),
            )
            .await
            .map_err(|e| anyhow!("enabling the lab's users failed: {e}"))?;
        let done = (i * api::users::BULK_MAX_USERS + chunk.len()).min(total);
        if let Some(p) = &mut progress {
            p.set(done as u64, "");
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    let path = lab.dir.join("users.json");
    std::fs::write(&path, serde_json::to_string_pretty(&users)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(users)
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `tandem lab up`.
pub(crate) fn up(options: UpOptions) -> anyhow::Result<()> {
    let (text, source) = match &options.topology {
        Some(f) => (
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the topology {}", f.display()))?,
            f.display().to_string(),
        ),
        None => (
            topology::CONTOSO_TOML.to_string(),
            "the built-in contoso topology".to_string(),
        ),
    };
    let mut topology = Topology::from_toml(&text)
        .map_err(|e| anyhow!("{source} is not a topology document: {e}; check it with `tandem topology check {source}`"))?;
    let mut changed = false;
    if let Some(block) = options.block {
        if options.hosts {
            bail!(
                "--block moves a loopback lab; --hosts gives the lab its own addresses (10.B.x.y) already"
            );
        }
        topology.move_to_loopback_block(block);
        changed = true;
    }
    let partner = match &options.federate_with {
        Some(other) => {
            let partner = Partner::of(other)?;
            if topology::domain::within(&partner.domain, &topology.deployment.sip_domain)
                || topology::domain::within(&topology.deployment.sip_domain, &partner.domain)
            {
                bail!(
                    "the lab in {} is a deployment of {} too: federate two deployments of different domains (--topology examples/fabrikam.toml, say)",
                    other.display(),
                    partner.domain
                );
            }
            if partner.dns.ip() == std::net::IpAddr::V4(dns_address(&topology)) {
                bail!(
                    "the lab in {} has its DNS server on {}, where this one's would be: put this deployment in another loopback block with --block N (1 to 254)",
                    other.display(),
                    partner.dns.ip()
                );
            }
            if topology.allowed_partner(&partner.domain).is_none() {
                topology
                    .deployment
                    .allowed_domains
                    .push(partner.domain.clone());
                changed = true;
            }
            Some(partner)
        }
        None => None,
    };
    let text = if changed { topology.to_toml() } else { text };
    let text = match options.detection_secs {
        Some((failure, failback)) => {
            for pool in &mut topology.front_end_pools {
                pool.registrar.failure_detection_interval_secs = failure;
                pool.registrar.failback_detection_interval_secs = failback;
            }
            topology.to_toml()
        }
        None => text,
    };
    let lab_dir = std::path::absolute(&options.dir)?;
    let hosts = if options.hosts {
        if options.backend != Backend::Postgres {
            bail!(
                "--hosts puts every server on a host of its own, where no two servers share a disk, so a pool's Front Ends need their Back End on a database server: add --backend postgres"
            );
        }
        Some(crate::lab_net::readdress(&mut topology)?)
    } else {
        None
    };
    let text = match hosts {
        Some(_) => topology.to_toml(),
        None => text,
    };
    let (text, mut clusters) = match options.backend {
        Backend::Sqlite => (text, Vec::new()),
        Backend::Postgres => {
            let clusters = crate::lab_pg::plan(&mut topology, &lab_dir)?;
            (topology.to_toml(), clusters)
        }
    };
    let report = validate(&topology);
    if !report.is_valid() {
        bail!(
            "{source} is not a valid topology ({}); `tandem topology check {source}` lists the problems",
            report.summary()
        );
    }
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("cannot create the lab folder {}", options.dir.display()))?;
    let dir = std::path::absolute(&options.dir)?;
    if let Ok(existing) = LabFile::load(&dir)
        && existing
            .servers
            .iter()
            .chain(&existing.clusters)
            .any(|s| s.alive())
    {
        bail!(
            "a lab is already running in {}; stop it with `tandem lab down --dir {}` or use another --dir",
            dir.display(),
            dir.display()
        );
    }
    // On hosts the addresses are made below, with the hosts.
    for s in topology.servers().filter(|_| hosts.is_none()) {
        let addr = (s.server.address, topology.ports.management);
        std::net::TcpListener::bind(addr).map_err(|e| {
            anyhow!(
                "{} cannot have its management API on {}:{}: {e}; another lab or program uses it (`tandem lab status`)",
                s.server.fqdn,
                addr.0,
                addr.1
            )
        })?;
    }
    let rt = runtime();
    let token = random_token()?;
    std::fs::create_dir_all(dir.join("logs"))?;
    // The hosts and their network first: every process of the lab starts on its host.
    let mut network = match hosts {
        Some(block) => {
            crate::lab_net::check_free(block)?;
            let sites: Vec<String> = topology.sites.iter().map(|s| s.name.clone()).collect();
            let site_of = |name: &str| {
                sites
                    .iter()
                    .position(|s| s.eq_ignore_ascii_case(name))
                    .ok_or_else(|| anyhow!("no site {name} in the topology"))
            };
            let mut planned = Vec::new();
            for s in topology.servers() {
                planned.push(crate::lab_net::Host {
                    namespace: crate::lab_net::host_namespace(block, &s.server.fqdn),
                    site: site_of(s.site)?,
                    addresses: [Some(s.server.address), s.server.external_address]
                        .into_iter()
                        .flatten()
                        .collect(),
                });
            }
            for c in &mut clusters {
                let namespace = crate::lab_net::host_namespace(block, &c.server.fqdn);
                planned.push(crate::lab_net::Host {
                    namespace: namespace.clone(),
                    site: site_of(&c.server.site)?,
                    addresses: vec![c.server.address.parse()?],
                });
                c.server.netns = Some(namespace);
            }
            let network =
                crate::lab_net::build(&dir, block, &sites, &planned, dns_address(&topology))?;
            Some(NetworkGuard {
                network: Some(network),
                dir: dir.clone(),
            })
        }
        None => None,
    };
    // The Back Ends' clusters first: the store is installed in one of them.
    let mut cluster_servers = Vec::new();
    for c in &clusters {
        let primary_address = c.mirror_of.as_ref().and_then(|p| {
            cluster_servers
                .iter()
                .find(|s: &&LabServer| s.fqdn.eq_ignore_ascii_case(p))
                .map(|s| s.address.clone())
        });
        crate::lab_pg::create(c, &dir, primary_address.as_deref())?;
        let mut server = c.server.clone();
        crate::lab_pg::start(&mut server)?;
        rt.block_on(crate::lab_pg::wait_ready(
            &server,
            &dir,
            Duration::from_secs(60),
        ))?;
        if c.mirror_of.is_none() {
            let pool = topology
                .front_end_pool(&server.pool)
                .ok_or_else(|| anyhow!("no pool {}", server.pool))?;
            let synchronous = pool.back_end.mirror.as_ref().is_some_and(|m| m.synchronous);
            rt.block_on(crate::lab_pg::prepare_primary(
                &server,
                &dir,
                &pool.back_end.instance,
                synchronous,
            ))?;
        }
        cluster_servers.push(server);
    }
    rt.block_on(install(&topology, &text, &dir))?;
    // The topology as installed (with the clusters' URLs), for the lab's own tools.
    std::fs::write(dir.join(INSTALLED_TOPOLOGY), &text)?;
    let mut lab = LabFile {
        dir: dir.clone(),
        admin_token: token,
        cms_pool: topology.deployment.cms_pool.clone(),
        reconcile_after_secs: options.reconcile_after_secs,
        clusters: cluster_servers,
        network: None,
        servers: topology
            .servers()
            .map(|s| LabServer {
                fqdn: s.server.fqdn.clone(),
                role: match s.role {
                    Role::FrontEnd => "FrontEnd".into(),
                    Role::Edge => "Edge".into(),
                },
                pool: s.pool_fqdn.to_string(),
                site: s.site.to_string(),
                address: s.server.address.to_string(),
                management_port: topology.ports.management,
                pid: None,
                data_dir: dir.join("servers").join(&s.server.fqdn),
                log: dir.join("logs").join(format!("{}.log", s.server.fqdn)),
                // 0 when the topology takes no plain SIP.
                sip_port: if topology.ports.sip_plain {
                    topology.ports.sip
                } else {
                    0
                },
                user_services_port: topology.ports.user_services,
                dns_port: 0,
                sip_tls_port: topology.ports.sip_tls,
                netns: hosts.map(|block| crate::lab_net::host_namespace(block, &s.server.fqdn)),
            })
            .collect(),
    };
    let mut dns = dns_server(&topology, &dir)?;
    dns.netns = hosts.map(crate::lab_net::core_namespace);
    lab.servers.push(dns);
    if let Some(partner) = &partner {
        // The Internet's public CA is one: both deployments' Access Edges get their
        // external certificates from it, and each trusts it for the other.
        partner.share_public_ca(&dir)?;
    }
    issue_certificates(&lab, &topology)?;
    let all: Vec<usize> = (0..lab.servers.len()).collect();
    spawn(&mut lab, &all)?;
    // From here `lab down` knows every process and the network.
    lab.network = network.as_mut().and_then(|g| g.network.take());
    lab.save()?;
    let started = Instant::now();
    rt.block_on(wait_converged(&lab, &all, Duration::from_secs(60)))?;
    if let Some(partner) = &partner {
        let done = rt.block_on(partner.federate(&lab, &topology))?;
        if !options.quiet {
            for line in done {
                println!("{line}");
            }
        }
    }
    if options.users > 0 {
        let users = rt.block_on(enable_users(&lab, &topology, options.users))?;
        // Every replica applies every user: allow for it on a big lab.
        let allowance = Duration::from_secs(60) + Duration::from_millis(users.len() as u64);
        rt.block_on(wait_converged(&lab, &all, allowance))?;
        if !options.quiet {
            println!(
                "Enabled {} users ({} on each Front End pool); their passwords are in {}",
                users.len(),
                options.users,
                dir.join("users.json").display()
            );
        }
    }
    if !options.quiet {
        print_summary(&lab, started.elapsed());
    }
    if options.detach {
        return Ok(());
    }
    println!("Press Ctrl-C to stop the lab.");
    rt.block_on(async { tokio::signal::ctrl_c().await })?;
    down(&dir)
}

/// Installs the CMS (first version = the topology) and seeds each server's replica.
async fn install(topology: &Topology, text: &str, dir: &Path) -> anyhow::Result<()> {
    let cms_pool = topology
        .front_end_pool(&topology.deployment.cms_pool)
        .ok_or_else(|| anyhow!("the CMS pool is not in the topology"))?;
    let backend = crate::lab_pg::open_back_end(&cms_pool.back_end, dir).await?;
    let items = vec![
        (
            cms::keys::TOPOLOGY_ACTIVE.to_string(),
            Some(text.to_string()),
        ),
        (
            cms::keys::TOPOLOGY_PUBLISHED.to_string(),
            Some(text.to_string()),
        ),
    ];
    backend
        .bootstrap(&items, "installed by tandem lab up")
        .await?;
    let current = backend
        .current_version()
        .await?
        .ok_or_else(|| anyhow!("the CMS has no version after installation"))?;
    let snapshot = backend.items().await?;
    backend.close().await;
    for s in topology.servers() {
        let data = dir.join("servers").join(&s.server.fqdn);
        let replica = ReplicaStore::open(&cms::replica::replica_path(&data)).await?;
        if replica.get(cms::keys::TOPOLOGY_ACTIVE).await?.is_none() {
            replica
                .replace_all(current.version, current.created_at, &snapshot)
                .await?;
        }
        replica.close().await;
    }
    Ok(())
}

/// The lab's DNS server: `dns.<zone>` on `127.B.0.153` (B, the block of the deployment's
/// addresses), port 53, its management API on the usual port; its zone written from the
/// topology into its data folder.
fn dns_server(topology: &Topology, dir: &Path) -> anyhow::Result<LabServer> {
    let address = dns_address(topology);
    let fqdn = format!("dns.{}", topology.deployment.dns_zone);
    let data_dir = dir.join("servers").join(&fqdn);
    std::fs::create_dir_all(&data_dir)?;
    let zone = dns::Zone::from_topology(topology, address);
    dnsserver::save_zone(&data_dir.join(DNS_ZONE_FILE), &zone)?;
    // A lab started again in the same folder starts with the deployment's zone alone.
    let added = dnsserver::added_zones_file(&data_dir.join(DNS_ZONE_FILE));
    if added.exists() {
        std::fs::remove_file(&added).with_context(|| format!("removing {}", added.display()))?;
    }
    Ok(LabServer {
        fqdn: fqdn.clone(),
        role: DNS_ROLE.into(),
        pool: fqdn,
        site: String::new(),
        address: address.to_string(),
        management_port: topology.ports.management,
        pid: None,
        data_dir,
        log: dir
            .join("logs")
            .join(format!("dns.{}.log", topology.deployment.dns_zone)),
        sip_port: 0,
        user_services_port: 0,
        dns_port: topology.ports.dns,
        sip_tls_port: 0,
        netns: None,
    })
}

/// Another running lab whose deployment this one federates with (`lab up --federate-with`).
struct Partner {
    dir: PathBuf,
    lab: LabFile,
    /// Its SIP domain and DNS zone.
    domain: String,
    zone: String,
    /// Its DNS server (DNS port).
    dns: std::net::SocketAddr,
}

impl Partner {
    fn of(dir: &Path) -> anyhow::Result<Partner> {
        let lab = LabFile::load(dir)?;
        let topology = lab.installed_topology()?;
        let server = lab.dns().ok_or_else(|| {
            anyhow!(
                "the lab in {} has no DNS server to federate through",
                dir.display()
            )
        })?;
        if !server.alive() {
            bail!(
                "the lab in {} is not running (its DNS server is down); start it with `tandem lab up --dir {}`",
                dir.display(),
                dir.display()
            );
        }
        Ok(Partner {
            dir: dir.to_path_buf(),
            dns: std::net::SocketAddr::new(server.address.parse()?, server.dns_port),
            domain: topology.deployment.sip_domain.to_ascii_lowercase(),
            zone: topology.deployment.dns_zone.to_ascii_lowercase(),
            lab,
        })
    }

    /// Puts the other lab's public CA (key and certificate) in this lab's folder, where
    /// `issue_certificates` finds it.
    fn share_public_ca(&self, dir: &Path) -> anyhow::Result<()> {
        let from = self.dir.join(PKI_DIR).join(PUBLIC_CA_DIR);
        let authority = pki::Authority::load(&from).with_context(|| {
            format!(
                "the lab in {} has no public CA in {}",
                self.dir.display(),
                from.display()
            )
        })?;
        authority.save(&dir.join(PKI_DIR).join(PUBLIC_CA_DIR))?;
        Ok(())
    }

    /// Makes each lab's DNS server forward the other's zone to the other's server, and
    /// the other deployment allow this one's domain. What was done, line by line.
    async fn federate(&self, lab: &LabFile, topology: &Topology) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        let ours_dns = lab
            .dns()
            .ok_or_else(|| anyhow!("this lab has no DNS server"))?;
        let ours = |zone: &str| zone.to_ascii_lowercase();
        let mut our_zones = vec![ours(&topology.deployment.dns_zone)];
        if !our_zones.contains(&ours(&topology.deployment.sip_domain)) {
            our_zones.push(ours(&topology.deployment.sip_domain));
        }
        let mut their_zones = vec![self.zone.clone()];
        if !their_zones.contains(&self.domain) {
            their_zones.push(self.domain.clone());
        }
        let their_dns = self.lab.dns().expect("checked when loaded");
        for zone in &their_zones {
            forward(lab, ours_dns, zone, self.dns).await?;
            done.push(format!(
                "This lab's DNS server forwards {zone} to {}",
                self.dns
            ));
        }
        let our_dns_at = std::net::SocketAddr::new(ours_dns.address.parse()?, ours_dns.dns_port);
        for zone in &our_zones {
            forward(&self.lab, their_dns, zone, our_dns_at).await?;
            done.push(format!(
                "The lab in {} forwards {zone} to {our_dns_at}",
                self.dir.display()
            ));
        }
        let theirs = self.lab.installed_topology()?;
        let our_domain = topology.deployment.sip_domain.to_ascii_lowercase();
        if theirs.allowed_partner(&our_domain).is_none() {
            let via = self
                .lab
                .servers
                .iter()
                .find(|s| s.pool.eq_ignore_ascii_case(&self.lab.cms_pool) && s.alive())
                .ok_or_else(|| {
                    anyhow!(
                        "no server of the CMS pool of the lab in {} runs",
                        self.dir.display()
                    )
                })?;
            call(
                &self.lab.api()?,
                &self.lab,
                via,
                "New-CsAllowedDomain",
                serde_json::json!({ "Identity": our_domain }),
            )
            .await
            .with_context(|| {
                format!(
                    "New-CsAllowedDomain -Identity {our_domain} on the lab in {}",
                    self.dir.display()
                )
            })?;
            done.push(format!(
                "The deployment of the lab in {} allows {our_domain} (New-CsAllowedDomain)",
                self.dir.display()
            ));
        }
        done.push(format!(
            "{our_domain} and {} federate; each allows the other",
            self.domain
        ));
        Ok(done)
    }
}

/// `Add-DnsServerConditionalForwarderZone` on a lab's DNS server, unless it forwards the
/// zone there already.
async fn forward(
    lab: &LabFile,
    dns: &LabServer,
    zone: &str,
    to: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let master = if to.port() == 53 {
        to.ip().to_string()
    } else {
        to.to_string()
    };
    let answer = call(
        &lab.api()?,
        lab,
        dns,
        "Add-DnsServerConditionalForwarderZone",
        serde_json::json!({ "Name": zone, "MasterServers": [master] }),
    )
    .await;
    match answer {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("already") => Ok(()),
        Err(e) => Err(anyhow!(
            "Add-DnsServerConditionalForwarderZone -Name {zone} on the lab in {}: {e}",
            lab.dir.display()
        )),
    }
}

/// `127.B.0.153` (`10.B.0.153` on hosts), B the block of the deployment's addresses.
fn dns_address(topology: &Topology) -> std::net::Ipv4Addr {
    let first = topology
        .servers()
        .next()
        .map(|s| s.server.address.octets())
        .unwrap_or([127, 0, 0, 1]);
    // Not .53: systemd-resolved listens on 127.0.0.53 on many machines.
    std::net::Ipv4Addr::new(first[0], first[1], 0, 153)
}

/// The hosts' network while `lab up` makes the lab: if it fails before the lab file
/// records the network, the processes started so far are killed and the network removed.
struct NetworkGuard {
    network: Option<crate::lab_net::Network>,
    dir: PathBuf,
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        if let Some(mut network) = self.network.take() {
            for pid in strays(&self.dir) {
                for p in crate::lab_process::family(pid) {
                    signal(p, Signal::SIGKILL);
                }
            }
            crate::lab_net::teardown(&mut network);
        }
    }
}

/// `tandem lab net …`: on a lab started with `--hosts`.
pub(crate) fn net(command: crate::lab_net::NetCommand) -> anyhow::Result<()> {
    let dir = command.dir();
    let lab = LabFile::load(dir)?;
    let Some(network) = &lab.network else {
        bail!(
            "the lab in {} has no network of its own; start it with `tandem lab up --hosts --backend postgres --dir {}`",
            dir.display(),
            dir.display()
        );
    };
    crate::lab_net::net(dir, network, &command)
}

/// The topology as the lab installed it (with its clusters' URLs), in the lab folder.
pub(crate) const INSTALLED_TOPOLOGY: &str = "installed-topology.toml";

/// The role of the lab's DNS server in lab.json.
pub(crate) const DNS_ROLE: &str = "Dns";
/// The zone file in the DNS server's data folder.
pub(crate) const DNS_ZONE_FILE: &str = "zone.json";

impl LabFile {
    /// The lab's DNS server.
    pub(crate) fn dns(&self) -> Option<&LabServer> {
        self.servers.iter().find(|s| s.role == DNS_ROLE)
    }
}

fn spawn(lab: &mut LabFile, which: &[usize]) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dns = lab.dns().map(|d| format!("{}:{}", d.address, d.dns_port));
    // The lab's DNS server is also the deployment's online CA.
    let ca = lab.dns().map(LabServer::base_url);
    for &i in which {
        let s = &mut lab.servers[i];
        if s.alive() {
            continue;
        }
        let mut command = std::process::Command::new(&exe);
        if s.role == DNS_ROLE {
            command
                .args(["dns", "serve", "--fqdn", &s.fqdn, "--data-dir"])
                .arg(&s.data_dir)
                .arg("--listen")
                .arg(format!("{}:{}", s.address, s.dns_port))
                .arg("--api")
                .arg(format!("{}:{}", s.address, s.management_port))
                .arg("--backend-root")
                .arg(&lab.dir)
                .arg("--ca-dir")
                .arg(lab.dir.join(PKI_DIR));
        } else {
            command
                .args(["server", "--fqdn", &s.fqdn, "--data-dir"])
                .arg(&s.data_dir)
                .arg("--backend-root")
                .arg(&lab.dir);
            if let Some(dns) = &dns {
                command.arg("--dns").arg(dns);
            }
            if let Some(ca) = &ca {
                command.arg("--certificate-authority").arg(ca);
            }
            command
                .arg("--reconcile-after-secs")
                .arg(lab.reconcile_after_secs.to_string());
        }
        // The lab's PostgreSQL password, if it has clusters: never in the topology. On a
        // host of its own a server reads its own copy, in its own folder.
        let pgpass = lab.dir.join(crate::lab_pg::PGPASS_FILE);
        let pgpass = match &s.netns {
            Some(_) if pgpass.exists() => {
                let own = s.data_dir.join(crate::lab_pg::PGPASS_FILE);
                std::fs::create_dir_all(&s.data_dir)?;
                std::fs::copy(&pgpass, &own)?;
                std::fs::set_permissions(
                    &own,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )?;
                own
            }
            _ => pgpass,
        };
        command
            .env("TANDEM_ADMIN_TOKEN", &lab.admin_token)
            .env("PGPASSFILE", pgpass);
        let what = s.fqdn.clone();
        s.spawn(command, &what)?;
    }
    Ok(())
}

/// Calls a cmdlet on one lab server.
pub(crate) async fn call(
    client: &api::Client,
    lab: &LabFile,
    server: &LabServer,
    cmdlet: &str,
    parameters: serde_json::Value,
) -> anyhow::Result<InvokeResponse> {
    let request = InvokeRequest {
        cmdlet: cmdlet.into(),
        parameters: parameters.as_object().cloned().unwrap_or_default(),
    };
    let _ = lab;
    client
        .invoke(&server.base_url(), &request, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow!("{cmdlet} on {}: {e}", server.fqdn))
}

/// Every replica `UpToDate`, per the master's status (read through any live CMS-pool server).
pub(crate) async fn all_up_to_date(
    client: &api::Client,
    lab: &LabFile,
) -> anyhow::Result<(bool, i64)> {
    let via = lab
        .servers
        .iter()
        .find(|s| s.pool.eq_ignore_ascii_case(&lab.cms_pool) && s.alive())
        .ok_or_else(|| anyhow!("no server of the CMS pool {} is running", lab.cms_pool))?;
    let reply = call(
        client,
        lab,
        via,
        "Get-CsManagementStoreReplicationStatus",
        serde_json::json!({}),
    )
    .await?;
    let cmdlet::Output::Records(rows) = reply.output else {
        bail!("unexpected status output");
    };
    let mut min_version = i64::MAX;
    let mut all = !rows.is_empty();
    for r in &rows {
        let get = |k: &str| {
            r.fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        // A server of the lab that is not running (killed, its site lost) cannot catch
        // up; the others are waited for.
        let stopped = matches!(get("ReplicaFqdn"), Some(cmdlet::Field::Text(f))
            if lab.servers.iter().any(|s| s.fqdn.eq_ignore_ascii_case(&f) && !s.alive()));
        if stopped {
            continue;
        }
        all &= matches!(get("UpToDate"), Some(cmdlet::Field::Bool(true)));
        if let Some(cmdlet::Field::Int(v)) = get("Version") {
            min_version = min_version.min(v);
        }
    }
    Ok((all, min_version))
}

async fn wait_converged(lab: &LabFile, which: &[usize], timeout: Duration) -> anyhow::Result<()> {
    let client = lab.api()?;
    let deadline = Instant::now() + timeout;
    for &i in which {
        let s = &lab.servers[i];
        let mut backoff = clock::Backoff::polling();
        loop {
            let ok = answers(&client, s, Duration::from_millis(500)).await;
            if ok {
                break;
            }
            if s.exited() {
                bail!(
                    "{} exited while starting; the end of its log {}:\n{}",
                    s.fqdn,
                    s.log.display(),
                    log_tail(&s.log, 5)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer within {timeout:?}; see its log {}",
                    s.fqdn,
                    s.log.display()
                );
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
    if !lab
        .servers
        .iter()
        .any(|s| s.pool.eq_ignore_ascii_case(&lab.cms_pool) && s.alive())
    {
        return Ok(());
    }
    let mut backoff = clock::Backoff::polling();
    loop {
        match all_up_to_date(&client, lab).await {
            Ok((true, _)) => return wait_caught_up(&client, lab, which, deadline).await,
            Ok((false, _)) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(backoff.next_wait()).await;
            }
            Ok((false, _)) => bail!(
                "not every replica is up to date after {timeout:?}; `tandem shell --lab {} -c Get-CsManagementStoreReplicationStatus` shows which",
                lab.dir.display()
            ),
            Err(e) => return Err(e),
        }
    }
}

/// Waits until every Front End just started has applied a push of the active master
/// (`caught_up` in its `/health`): until then it serves its users in resiliency mode only.
/// Nothing to wait for while no store takes changes (no master can push).
async fn wait_caught_up(
    client: &api::Client,
    lab: &LabFile,
    which: &[usize],
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut any_master = false;
    for s in lab
        .servers
        .iter()
        .filter(|s| s.role != DNS_ROLE && s.alive())
    {
        if let Ok(h) = client.health(&s.base_url(), Duration::from_secs(1)).await {
            any_master |= h.cms_writable;
        }
    }
    if !any_master {
        return Ok(());
    }
    for &i in which {
        let s = &lab.servers[i];
        if s.role != "FrontEnd" {
            continue;
        }
        let mut backoff = clock::Backoff::polling();
        loop {
            let health = client.health(&s.base_url(), Duration::from_secs(1)).await;
            if health.is_ok_and(|h| h.caught_up) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} has not caught up with the Central Management store; it serves its users in resiliency mode until it has \
                     (`tandem shell --lab {} -c Get-CsManagementStoreReplicationStatus` shows where it stands)",
                    s.fqdn,
                    lab.dir.display()
                );
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
    Ok(())
}

/// The last `n` lines of a server's log, indented, for an error message.
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_summary(lab: &LabFile, took: Duration) {
    println!(
        "tandem lab up in {}: {} servers, every replica up to date ({:.1} s)",
        lab.dir.display(),
        lab.servers.len(),
        took.as_secs_f64()
    );
    println!();
    // server (or cluster), role, pool, site (servers only), address, pid.
    let table = |first: &str, rows: &[LabServer], with_site: bool, address: &str| {
        let mut header = vec![first, "role", "pool"];
        if with_site {
            header.push("site");
        }
        header.extend([address, "pid"]);
        let rows = rows
            .iter()
            .map(|s| {
                let mut row = vec![s.fqdn.clone(), s.role.clone(), s.pool.clone()];
                if with_site {
                    row.push(s.site.clone());
                }
                row.push(format!("{}:{}", s.address, s.management_port));
                row.push(s.pid.map_or("-".into(), |p| p.to_string()));
                row
            })
            .collect();
        let pid_column = header.len() - 1;
        crate::table::render(&header, rows, &[pid_column])
    };
    println!("{}", table("server", &lab.servers, true, "management API"));
    if !lab.clusters.is_empty() {
        println!();
        println!(
            "{}",
            table("Back End (PostgreSQL)", &lab.clusters, false, "address")
        );
        println!(
            "Database password: {} (servers read it through PGPASSFILE)",
            lab.dir.join(crate::lab_pg::PGPASS_FILE).display()
        );
    }
    if let Some(network) = &lab.network {
        println!();
        println!(
            "Hosts: a network namespace each (tdm{}-<server>), the sites {} joined by one link: `tandem lab net status --dir {}`",
            network.block,
            network.sites.join(", "),
            lab.dir.display()
        );
    }
    println!();
    println!(
        "Admin token and addresses: {}",
        lab.dir.join("lab.json").display()
    );
    println!("Logs: {}", lab.dir.join("logs").display());
    println!(
        "Open the management shell: tandem shell --lab {}",
        lab.dir.display()
    );
    if let Some(fe) = lab.servers.iter().find(|s| s.role == "FrontEnd") {
        println!(
            "Web console: {}/console (sign in with admin_token from lab.json or an operator's token; \
             the certificate is signed by the lab's CA, {})",
            fe.base_url(),
            lab.dir.join("pki").join("ca.pem").display()
        );
    }
}

/// Whether a lab process answers its `/health` in time: a server with its health
/// report, the DNS server with its plain "ok".
async fn answers(client: &api::Client, s: &LabServer, timeout: Duration) -> bool {
    if crate::lab_pg::is_cluster(s) {
        return crate::lab_pg::answers(s, timeout).await;
    }
    if s.role == DNS_ROLE {
        return client
            .http()
            .get(format!("{}/health", s.base_url()))
            .timeout(timeout)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
    }
    client.health(&s.base_url(), timeout).await.is_ok()
}

/// `tandem lab status`.
pub(crate) fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let lab = LabFile::load(dir)?;
    let rt = runtime();
    let client = lab.api()?;
    let mut rows = Vec::new();
    for s in lab.servers.iter().chain(&lab.clusters) {
        if s.role == DNS_ROLE || crate::lab_pg::is_cluster(s) {
            let answers = s.alive() && rt.block_on(answers(&client, s, Duration::from_secs(1)));
            rows.push(serde_json::json!({
                "fqdn": s.fqdn, "role": s.role, "pool": s.pool, "site": s.site,
                "address": if s.role == DNS_ROLE {
                    format!("{}:{}", s.address, s.dns_port)
                } else {
                    format!("{}:{}", s.address, s.management_port)
                },
                "pid": if s.alive() { s.pid } else { None },
                "state": if answers { "running" } else if s.alive() { "not answering" } else { "stopped" },
                "replica_version": null,
                "cms_master": false,
                "cms_writable": false,
            }));
            continue;
        }
        let health: Option<api::Health> = if s.alive() {
            rt.block_on(client.health(&s.base_url(), Duration::from_secs(1)))
                .ok()
        } else {
            None
        };
        let state = match (&health, s.alive()) {
            (Some(_), _) => "running",
            (None, true) => "not answering",
            (None, false) => "stopped",
        };
        rows.push(serde_json::json!({
            "fqdn": s.fqdn, "role": s.role, "pool": s.pool, "site": s.site,
            "address": format!("{}:{}", s.address, s.management_port),
            "pid": if s.alive() { s.pid } else { None },
            "state": state,
            "replica_version": health.as_ref().map(|h| h.replica_version),
            "cms_master": health.as_ref().is_some_and(|h| h.cms_master),
            "cms_writable": health.as_ref().is_some_and(|h| h.cms_writable),
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let text = |r: &serde_json::Value, k: &str| match &r[k] {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                text(r, "fqdn"),
                text(r, "role"),
                text(r, "pool"),
                text(r, "state"),
                text(r, "pid"),
                text(r, "replica_version"),
                if r["cms_master"] == true {
                    "active".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    println!(
        "{}",
        crate::table::render(
            &[
                "server", "role", "pool", "state", "pid", "version", "master"
            ],
            rows,
            &[4, 5]
        )
    );
    Ok(())
}

/// `tandem lab kill`: SIGKILL, a disaster.
pub(crate) fn kill_servers(dir: &Path, selector: &str) -> anyhow::Result<()> {
    let lab = LabFile::load(dir)?;
    for i in lab.select(selector)? {
        let s = lab.at(i);
        if let Some(pid) = s.pid.filter(|_| s.alive()) {
            let processes = s.processes(pid);
            for &p in &processes {
                signal(p, Signal::SIGKILL);
            }
            if crate::lab_pg::is_cluster(s) {
                // A PostgreSQL server lost whole: the postmaster and every backend, all
                // gone (not even a zombie holding the pid) before a `lab start` can follow.
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut backoff = clock::Backoff::polling();
                while crate::lab_process::any_exists(&processes) && Instant::now() < deadline {
                    crate::lab_process::reap(&processes);
                    std::thread::sleep(backoff.next_wait());
                }
            }
            // The signal is delivered at once, the death a moment later: report it (and
            // let a `lab start` that follows find it gone) only once it is over.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut backoff =
                clock::Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
            while !processes.iter().all(|&p| crate::lab_process::is_dead(p))
                && Instant::now() < deadline
            {
                std::thread::sleep(backoff.next_wait());
            }
            eprintln!("killed {} (pid {pid})", s.fqdn);
        } else {
            eprintln!("{} was not running", s.fqdn);
        }
    }
    Ok(())
}

/// `tandem lab pause` (SIGSTOP) and `tandem lab resume` (SIGCONT).
pub(crate) fn pause_servers(dir: &Path, selector: &str, pause: bool) -> anyhow::Result<()> {
    let lab = LabFile::load(dir)?;
    for i in lab.select(selector)? {
        let s = lab.at(i);
        match s.pid.filter(|_| s.alive()) {
            Some(pid) if pause => {
                for p in s.processes(pid) {
                    signal(p, Signal::SIGSTOP);
                }
                eprintln!(
                    "paused {} (pid {pid}); `tandem lab resume {}` lets it run",
                    s.fqdn, s.fqdn
                );
            }
            Some(pid) => {
                for p in s.processes(pid) {
                    signal(p, Signal::SIGCONT);
                }
                eprintln!("resumed {} (pid {pid})", s.fqdn);
            }
            None => eprintln!("{} is not running", s.fqdn),
        }
    }
    Ok(())
}

/// `tandem lab start`.
pub(crate) fn start(dir: &Path, selector: &str) -> anyhow::Result<()> {
    let mut lab = LabFile::load(dir)?;
    let picked = lab.select(selector)?;
    let rt = runtime();
    // A pool's Back End before its Front Ends, which open it as they start.
    let servers = lab.servers.len();
    if picked.iter().any(|&i| i >= servers) {
        let topology = lab.installed_topology()?;
        for c in picked.iter().filter_map(|&i| i.checked_sub(servers)) {
            let pool = topology
                .front_end_pool(&lab.clusters[c].pool)
                .ok_or_else(|| anyhow!("no pool {}", lab.clusters[c].pool))?;
            let synchronous = pool.back_end.mirror.as_ref().is_some_and(|m| m.synchronous);
            let started = rt.block_on(crate::lab_pg::start_cluster(
                &mut lab.clusters,
                c,
                &lab.dir,
                &pool.back_end.instance,
                synchronous,
            ));
            lab.save()?;
            started?;
        }
    }
    let which: Vec<usize> = picked.iter().copied().filter(|&i| i < servers).collect();
    let mut tries = 0;
    loop {
        spawn(&mut lab, &which)?;
        lab.save()?;
        match rt.block_on(wait_converged(&lab, &which, Duration::from_secs(60))) {
            Ok(()) => break,
            // A server that crashed a moment ago can still have looked alive, and so not
            // been started: start what is not running once more.
            Err(_) if tries == 0 && which.iter().any(|&i| !lab.servers[i].alive()) => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
    for i in picked {
        eprintln!(
            "{} running (pid {})",
            lab.at(i).fqdn,
            lab.at(i).pid.unwrap_or(0)
        );
    }
    Ok(())
}

/// The pids of `tandem server` processes started for the lab in `dir` (by their
/// `--backend-root`), whatever lab.json says: what `down` must not leave behind.
fn strays(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let root = format!("\0--backend-root\0{}\0", dir.display());
    let clusters = format!("\0-D\0{}/backend/", dir.display());
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                ((c.contains("\0server\0") || c.contains("\0dns\0"))
                    && format!("{c}\0").contains(&root))
                    || (c.contains("cluster_name=") && format!("\0{c}").contains(&clusters))
            })
        })
        .collect()
}

/// `tandem lab down`: SIGTERM, then SIGKILL for what is still there after 10 s.
pub(crate) fn down(dir: &Path) -> anyhow::Result<()> {
    let mut lab = LabFile::load(dir)?;
    // The servers first, while their Back Ends still answer their last writes (a lease
    // given up, a status recorded); then the Back Ends' clusters.
    stop_all(&mut lab.servers);
    stop_all(&mut lab.clusters);
    for pid in strays(&lab.dir) {
        signal(pid, Signal::SIGKILL);
        eprintln!("killed pid {pid}, a server of this lab that lab.json did not list");
    }
    if let Some(mut network) = lab.network.take() {
        crate::lab_net::teardown(&mut network);
    }
    lab.save()?;
    eprintln!("lab in {} stopped; its data stays there", lab.dir.display());
    Ok(())
}

/// SIGTERM (a cluster: PostgreSQL's fast shutdown, SIGINT), then SIGKILL for what is
/// still there after 10 s.
fn stop_all(servers: &mut [LabServer]) {
    for s in servers.iter() {
        if let Some(pid) = s.pid.filter(|_| s.alive()) {
            // A cluster stops on SIGINT (PostgreSQL's fast shutdown), a server on SIGTERM;
            // either, frozen by `lab pause`, acts on it only once it runs again.
            let stop = if crate::lab_pg::is_cluster(s) {
                Signal::SIGINT
            } else {
                Signal::SIGTERM
            };
            signal(pid, stop);
            for p in s.processes(pid) {
                signal(p, Signal::SIGCONT);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut backoff = clock::Backoff::polling();
    while servers.iter().any(|s| s.alive()) && Instant::now() < deadline {
        std::thread::sleep(backoff.next_wait());
    }
    for s in servers.iter_mut() {
        if let Some(pid) = s.pid.filter(|_| s.alive()) {
            for p in s.processes(pid) {
                signal(p, Signal::SIGKILL);
            }
            eprintln!("{} did not stop within 10 s; killed", s.fqdn);
        }
        s.pid = None;
    }
}

/// The TLS settings of a client of the lab in `dir`: its CA as the only root.
pub(crate) fn client_tls(dir: &Path) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    let ca = dir.join(PKI_DIR).join("ca.pem");
    let roots = pki::Roots::from_pem_file(&ca).with_context(|| {
        format!(
            "the lab in {} has no certificate authority to trust; start it with `tandem lab up --dir {}`",
            dir.display(),
            dir.display()
        )
    })?;
    Ok(pki::client_config(&roots, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(pid: u32, data_dir: &str) -> LabServer {
        LabServer {
            fqdn: "pool1-fe1.contoso.com".into(),
            role: "FrontEnd".into(),
            pool: "pool1.contoso.com".into(),
            site: "Site1".into(),
            address: "127.0.0.1".into(),
            management_port: 4444,
            pid: Some(pid),
            data_dir: data_dir.into(),
            log: "/dev/null".into(),
            sip_port: 0,
            user_services_port: 0,
            dns_port: 0,
            sip_tls_port: 0,
            netns: None,
        }
    }

    #[test]
    fn a_server_is_known_by_its_pid_name_and_own_data_folder_only() {
        // A stand-in process whose command line reads like a server's.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "read line",
                "server",
                "--fqdn",
                "pool1-fe1.contoso.com",
                "--data-dir",
                "/labs/a/servers/pool1-fe1.contoso.com",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(server(pid, "/labs/a/servers/pool1-fe1.contoso.com").alive());
        // The same name in another lab's folder is another server.
        assert!(!server(pid, "/labs/b/servers/pool1-fe1.contoso.com").alive());
        // A thread id answers in /proc like a pid, but is no server.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let me = std::env::current_exe().unwrap();
        let mut own = server(tid, me.to_str().unwrap());
        own.fqdn = me.to_string_lossy().into_owned();
        assert!(!own.alive());
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!server(pid, "/labs/a/servers/pool1-fe1.contoso.com").alive());
        assert!(!server(u32::MAX, "/x").alive());
    }
}
