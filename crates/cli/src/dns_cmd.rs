//! `tandem dns`: the lab's DNS server (`serve`, started by `tandem lab up`) and a
//! dig-style query (`query`), for the records each procedure changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use dns::{RecordType, build_query, parse_response};

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
        /// A, NS, SOA, SRV or ANY.
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
                anyhow!("{rtype} is not a record type tandem serves: A, NS, SOA, SRV or ANY")
            })?;
            let answer = query(server, &name, qtype)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": rcode_name(answer.rcode),
                        "answer": answer.answers,
                        "authority": answer.authority,
                        "additional": answer.additional,
                    })
                );
            } else {
                println!(
                    ";; ->>HEADER<<- status: {}, id: {}",
                    rcode_name(answer.rcode),
                    answer.id
                );
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
                bail!("{name}: {}", rcode_name(answer.rcode));
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

fn rcode_name(code: u8) -> &'static str {
    match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "ERROR",
    }
}

/// One query over UDP, with retries.
pub(crate) fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
) -> anyhow::Result<dns::Answer> {
    let socket =
        std::net::UdpSocket::bind((crate::lab_net::source_address_towards(server.ip()), 0))?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let id = (std::process::id() as u16) ^ (store::now_ms() as u16);
    let msg = build_query(id, name.trim_end_matches('.'), qtype);
    let mut buf = [0u8; 1024];
    for _ in 0..3 {
        socket.send_to(&msg, server)?;
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && let Ok(answer) = parse_response(&buf[..n])
            && answer.id == id
        {
            return Ok(answer);
        }
    }
    bail!("no answer from the DNS server at {server}")
}
