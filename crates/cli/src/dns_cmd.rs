//! `tandem dns`: the lab's DNS server (`serve`, started by `tandem lab up`) and a
//! dig-style query (`query`), for the records each procedure changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use dns::RecordType;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DnsCommand {
    /// Serve a zone (the lab starts this for you).
    Serve {
        /// The server's name, as lab.json lists it.
        #[arg(long)]
        fqdn: String,
        /// Its folder: the zone is `zone.json` there.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where DNS is served (UDP and TCP).
        #[arg(long)]
        listen: SocketAddr,
        /// Where the DnsServer cmdlets are served.
        #[arg(long)]
        api: SocketAddr,
        /// The lab folder (identifies the lab's processes).
        #[arg(long)]
        backend_root: Option<PathBuf>,
        /// The deployment's admin token.
        #[arg(long, env = "TANDEM_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        /// The deployment's CA (its folder): this server then signs servers' renewals.
        #[arg(long)]
        ca_dir: Option<PathBuf>,
    },
    /// Ask a DNS server, as dig does: `tandem dns query _xmpp-server._tcp.contoso.com SRV`.
    Query {
        name: String,
        /// A, AAAA, CNAME, NS, SOA, SRV, TXT or ANY.
        #[arg(default_value = "A")]
        rtype: String,
        /// The lab whose DNS server to ask.
        #[arg(long, default_value = "tandem-lab")]
        lab: PathBuf,
        /// Ask this server (address:port) instead.
        #[arg(long)]
        server: Option<SocketAddr>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: DnsCommand) -> anyhow::Result<()> {
    match command {
        DnsCommand::Serve {
            data_dir,
            listen,
            api,
            admin_token,
            ca_dir,
            ..
        } => {
            let certs = pki::CertStore::open(&data_dir).with_context(|| {
                format!(
                    "the DNS server's management API needs a certificate under {}; `tandem lab up` issues one",
                    data_dir.display()
                )
            })?;
            // Servers asking the CA for a renewal present their certificate.
            let roots = pki::Roots::new(certs.ca())?;
            let tls = pki::server_config(certs, pki::ClientAuth::Optional(roots), &[b"http/1.1"])?;
            let authority = match &ca_dir {
                Some(dir) => Some(pki::Authority::load(dir).with_context(|| {
                    format!("reading the deployment's CA in {}", dir.display())
                })?),
                None => None,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(dnsserver::serve(
                data_dir.join(crate::lab::DNS_ZONE_FILE),
                dnsserver::Listen { dns: listen, api },
                tls,
                authority,
                admin_token,
                clock::Clock::system(),
                async {
                    use tokio::signal::unix::{SignalKind, signal};
                    let Ok(mut term) = signal(SignalKind::terminate()) else {
                        return std::future::pending().await;
                    };
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                },
            ))
        }
        DnsCommand::Query {
            name,
            rtype,
            lab,
            server,
            json,
        } => {
            let server = match server {
                Some(s) => s,
                None => lab_dns(&lab)?,
            };
            let qtype = RecordType::parse(&rtype).ok_or_else(|| {
                anyhow!(
                    "{rtype} is not a record type tandem serves: {}",
                    RecordType::names()
                )
            })?;
            let answer = LabDns::at(server)?.query(&name, qtype)?;
            let status = answer.status();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": status,
                        "answer": answer.answers,
                        "authority": answer.authority,
                        "additional": answer.additional,
                    })
                );
            } else {
                println!(";; ->>HEADER<<- status: {status}");
                println!(
                    ";; QUESTION SECTION:\n;{}.\t\tIN\t{}",
                    name.trim_end_matches('.'),
                    qtype.name()
                );
                for (title, records) in [
                    ("ANSWER", &answer.answers),
                    ("AUTHORITY", &answer.authority),
                    ("ADDITIONAL", &answer.additional),
                ] {
                    if records.is_empty() {
                        continue;
                    }
                    println!("\n;; {title} SECTION:");
                    for r in records {
                        println!(
                            "{}.\t{}\tIN\t{}\t{}",
                            r.name,
                            r.ttl,
                            r.data.record_type().name(),
                            r.data.text()
                        );
                    }
                }
                println!("\n;; SERVER: {server}");
            }
            if answer.rcode != 0 {
                bail!("{name}: {status}");
            }
            Ok(())
        }
    }
}

/// The address of a lab's DNS server.
pub(crate) fn lab_dns(dir: &Path) -> anyhow::Result<SocketAddr> {
    let lab = crate::lab::LabFile::load(dir)?;
    let dns = lab.dns().ok_or_else(|| {
        anyhow!(
            "the lab in {} runs no DNS server; start it again with `tandem lab up`",
            dir.display()
        )
    })?;
    format!("{}:{}", dns.address, dns.dns_port)
        .parse()
        .context("the DNS server's address in lab.json")
}

/// The lab's DNS server through the one resolver configuration (`dns::Resolver`), for
/// the command line's synchronous code: the resolver lives on a runtime of its own, and
/// each lookup is waited for on a thread of its own, so a caller already inside a runtime
/// (`tandem client`) can ask too. Lookups go from the address towards the lab (a lab on
/// hosts of its own is reached through its router).
pub(crate) struct LabDns {
    runtime: tokio::runtime::Runtime,
    resolver: dns::Resolver,
}

impl LabDns {
    /// The DNS server of the lab in `dir`.
    pub(crate) fn of_lab(dir: &Path) -> anyhow::Result<LabDns> {
        LabDns::at(lab_dns(dir)?)
    }

    /// The DNS server at `server`.
    pub(crate) fn at(server: SocketAddr) -> anyhow::Result<LabDns> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let source = crate::lab_net::source_address_towards(server.ip());
        let resolver = {
            let _entered = runtime.enter();
            dns::Resolver::new(server, Some(source), dns::Patience::TOOL)
        };
        Ok(LabDns { runtime, resolver })
    }

    fn wait<T: Send>(&self, lookup: impl std::future::Future<Output = T> + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(lookup))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The server's answer (NXDOMAIN and REFUSED included); an error when it gives none.
    pub(crate) fn query(&self, name: &str, rtype: RecordType) -> anyhow::Result<dns::Answer> {
        Ok(self.wait(self.resolver.query(name, rtype))?)
    }

    /// The A records of `name` (none when it has none).
    pub(crate) fn addresses(&self, name: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
        Ok(self.wait(self.resolver.addresses(name))?)
    }

    /// The targets of the SRV records `name`, in the order to try them (RFC 2782).
    pub(crate) fn services(&self, name: &str) -> anyhow::Result<Vec<dns::srv::Target>> {
        Ok(self.wait(self.resolver.services(name))?)
    }
}
