//! `tandem partner`: a federated partner's server (fabrikam.com) reaching the deployment
//! from outside, as the documents' federation procedures assume: it finds the Access Edge
//! through the `_sipfederationtls._tcp` SRV record of the lab's DNS and sends a SIP
//! MESSAGE over mutual TLS — checking the Edge's certificate against the lab's public CA
//! for the name the SRV record gave, and presenting the certificate the public CA issued
//! to the sender's domain (`D/pki/partners/<domain>/`, or `--cert-dir`), which is what
//! lets it speak for that domain — or finds the XMPP gateway through `_xmpp-server._tcp`
//! and opens a server-to-server stream.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sip::{Method, Request};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PartnerCommand {
    /// Send an instant message from a federated user to one of ours.
    Message {
        /// The federated sender [default: sip:bob@ the first partner domain the lab
        /// issued a certificate to]
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: String,
        text: String,
        /// Send to this address instead of the one DNS gives: `ip:port`, or `name:port`
        /// looked up in the lab's DNS (the Edge's certificate must then cover sip.<the --to
        /// domain>).
        #[arg(long)]
        via: Option<String>,
        /// Present the certificate installed in this folder (its `tls/`) instead of the
        /// one the lab issued to the --from domain (`<lab>/pki/partners/<domain>`).
        #[arg(long)]
        cert_dir: Option<PathBuf>,
    },
    /// Open an XMPP server-to-server stream and print the answer.
    Xmpp {
        /// The domain to reach [default: the lab's SIP domain]
        #[arg(long)]
        to: Option<String>,
        /// The partner domain the stream comes from [default: the deployment's first XMPP
        /// partner]
        #[arg(long)]
        from: Option<String>,
        /// Send these bytes as the stream header instead of a well-formed one.
        #[arg(long)]
        raw: Option<String>,
        /// Connect here instead of where DNS points: `ip:port`, or `name:port` looked up
        /// in the lab's DNS.
        #[arg(long)]
        via: Option<String>,
    },
}

/// The deployment's SIP domain, from the topology the lab installed.
fn deployment_domain(lab: &Path) -> anyhow::Result<String> {
    let topology = crate::lab::LabFile::load(lab)?.installed_topology()?;
    Ok(topology.deployment.sip_domain)
}

/// The first partner domain (by name) the lab issued a certificate to, under
/// `D/pki/partners/`: the allowed federation partners of its topology.
fn first_partner(lab: &Path) -> anyhow::Result<String> {
    let dir = lab.join(crate::lab::PKI_DIR).join(crate::lab::PARTNERS_DIR);
    let mut domains: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    domains.sort();
    domains.into_iter().next().ok_or_else(|| {
        anyhow!(
            "the lab in {} has no partner certificates in {}: its topology allows no federation partner; pass --from and --cert-dir",
            lab.display(),
            dir.display()
        )
    })
}

/// The first XMPP partner of the lab's topology: who `tandem partner xmpp` speaks as.
fn first_xmpp_partner(lab: &Path) -> anyhow::Result<String> {
    let topology = crate::lab::LabFile::load(lab)?.installed_topology()?;
    topology
        .deployment
        .xmpp_partners
        .first()
        .map(|p| p.domain.clone())
        .ok_or_else(|| {
            anyhow!(
                "the deployment of the lab in {} has no XMPP partner; pass --from, or add one with New-CsXmppAllowedPartner -Identity <domain>",
                lab.display()
            )
        })
}

/// `--via`: an address as it is, or a name (with its port) looked up in the lab's DNS.
fn via_address(lab: &Path, via: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(address) = via.parse::<SocketAddr>() {
        return Ok(address);
    }
    let (name, port) = via
        .rsplit_once(':')
        .and_then(|(name, port)| Some((name, port.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            anyhow!(
                "--via {via} is neither ip:port nor name:port (for example sip.contoso.com:5061)"
            )
        })?;
    let dns = crate::dns_cmd::LabDns::of_lab(lab)?;
    let address = dns.addresses(name)?.into_iter().next().ok_or_else(|| {
        anyhow!("--via {via}: the lab's DNS has no A record for {name}; `tandem dns query --lab {} {name}` shows what it has", lab.display())
    })?;
    Ok(SocketAddr::from((address, port)))
}

/// The first target of an SRV record (its name, in RFC 2782's order) resolved to an
/// address, by the lab's DNS.
fn resolve_srv(lab: &Path, name: &str) -> anyhow::Result<(String, SocketAddr)> {
    let dns = crate::dns_cmd::LabDns::of_lab(lab)?;
    let service = dns
        .services(name)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the lab's DNS has no SRV record {name}"))?;
    let address = dns
        .addresses(&service.target)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{name} points at {}, which has no A record", service.target))?;
    Ok((service.target, SocketAddr::from((address, service.port))))
}

/// The partner's TLS settings: the lab's public CA as the only root (the Access Edge
/// shows a certificate from it), and the certificate in `cert_dir` presented.
fn partner_tls(
    lab: &Path,
    cert_dir: &Path,
) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    let ca = lab
        .join(crate::lab::PKI_DIR)
        .join(crate::lab::PUBLIC_CA_DIR)
        .join("ca.pem");
    let roots = pki::Roots::from_pem_file(&ca).with_context(|| {
        format!(
            "the lab in {} has no public CA to check the Access Edge's certificate with; start it with `tandem lab up --dir {}`",
            lab.display(),
            lab.display()
        )
    })?;
    let identity = pki::CertStore::open(cert_dir).with_context(|| {
        format!(
            "no partner certificate in {}; the lab issues one per allowed domain in {}/{}/{}/<domain>, or pass another folder with --cert-dir",
            cert_dir.display(),
            lab.display(),
            crate::lab::PKI_DIR,
            crate::lab::PARTNERS_DIR
        )
    })?;
    Ok(pki::client_config(&roots, Some(identity)))
}

pub(crate) fn run(lab: &Path, command: PartnerCommand) -> anyhow::Result<()> {
    match command {
        PartnerCommand::Message {
            from,
            to,
            text,
            via,
            cert_dir,
        } => {
            let from = match from {
                Some(from) => from,
                None => format!("sip:bob@{}", first_partner(lab)?),
            };
            let domain = to
                .split('@')
                .nth(1)
                .ok_or_else(|| anyhow!("--to {to} is not a SIP address like sip:user@contoso.com"))?
                .to_string();
            let (server_name, dest) = match via {
                Some(v) => (format!("sip.{domain}"), via_address(lab, &v)?),
                None => resolve_srv(lab, &format!("_sipfederationtls._tcp.{domain}"))?,
            };
            let cert_dir = match cert_dir {
                Some(dir) => dir,
                None => {
                    let from_domain = sip::federation::header_domain(&from).ok_or_else(|| {
                        anyhow!("--from {from} names no domain to find a certificate for; pass --cert-dir")
                    })?;
                    lab.join(crate::lab::PKI_DIR)
                        .join(crate::lab::PARTNERS_DIR)
                        .join(from_domain)
                }
            };
            let tls = partner_tls(lab, &cert_dir)?;
            let mut headers = sip::Headers::new();
            headers.push("From", format!("<{from}>;tag={:x}", store::now_ms()));
            headers.push("To", format!("<{to}>"));
            headers.push(
                "Call-ID",
                format!(
                    "partner-{:x}@{}",
                    store::now_ms(),
                    sip::federation::header_domain(&from)
                        .unwrap_or_else(|| "partner.invalid".into())
                ),
            );
            headers.push("CSeq", "1 MESSAGE");
            headers.push("Max-Forwards", "70");
            headers.push("Content-Type", "text/plain");
            let request = Request {
                method: Method::Message,
                uri: to.clone(),
                headers,
                body: text.into_bytes(),
            };
            let rt = crate::lab::runtime();
            let response = rt
                .block_on(sipnet::tls_request(
                    dest,
                    &server_name,
                    &tls,
                    &request,
                    Duration::from_secs(10),
                ))
                .with_context(|| {
                    format!(
                        "sending to the Access Edge at {dest} ({server_name}) with the certificate in {}",
                        cert_dir.display()
                    )
                })?;
            println!("{} {} (via {dest})", response.status, response.reason);
            if !(200..300).contains(&response.status) {
                bail!("{} {}", response.status, response.reason);
            }
            Ok(())
        }
        PartnerCommand::Xmpp { to, from, raw, via } => {
            let to = match to {
                Some(to) => to,
                None => deployment_domain(lab)?,
            };
            let from = match from {
                Some(from) => from,
                None => first_xmpp_partner(lab)?,
            };
            let dest = match via {
                Some(v) => via_address(lab, &v)?,
                None => resolve_srv(lab, &format!("_xmpp-server._tcp.{to}"))?.1,
            };
            let mut stream = std::net::TcpStream::connect_timeout(&dest, Duration::from_secs(3))
                .with_context(|| format!("connecting to the XMPP gateway at {dest}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let header = raw.unwrap_or_else(|| {
                format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='{from}' to='{to}' version='1.0'>"
                )
            });
            stream.write_all(header.as_bytes())?;
            let mut answer = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&answer);
                if text.contains("</stream:features>") || text.contains("</stream:stream>") {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&answer).into_owned();
            println!("{text}");
            if !text.contains("<stream:features>") {
                bail!("the XMPP gateway at {dest} did not open the stream");
            }
            let _ = stream.write_all(b"</stream:stream>");
            Ok(())
        }
    }
}
