//! `tandem partner`: a federated partner's server (fabrikam.com) reaching the deployment
//! from outside, as the documents' federation procedures assume: it finds the Access Edge
//! through the `_sipfederationtls._tcp` SRV record of the lab's DNS and sends a SIP
//! MESSAGE over TCP, or finds the XMPP gateway through `_xmpp-server._tcp` and opens a
//! server-to-server stream.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use dns::RecordType;
use sip::{Method, Request};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PartnerCommand {
    /// Send an instant message from a federated user to one of ours.
    Message {
        #[arg(long, default_value = "sip:bob@fabrikam.com")]
        from: String,
        #[arg(long)]
        to: String,
        text: String,
        /// Send to this address instead of the one DNS gives.
        #[arg(long)]
        via: Option<SocketAddr>,
    },
    /// Open an XMPP server-to-server stream and print the answer.
    Xmpp {
        /// The domain to reach.
        #[arg(long, default_value = "contoso.com")]
        to: String,
        /// Send these bytes as the stream header instead of a well-formed one.
        #[arg(long)]
        raw: Option<String>,
        #[arg(long)]
        via: Option<SocketAddr>,
    },
}

/// The first target of an SRV record, resolved to an address, by the lab's DNS.
fn resolve_srv(lab: &Path, name: &str) -> anyhow::Result<SocketAddr> {
    let server = crate::dns_cmd::lab_dns(lab)?;
    let answer = crate::dns_cmd::query(server, name, RecordType::Srv)?;
    let (port, target) = answer
        .srv_targets()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the lab's DNS has no SRV record {name}"))?;
    let a = crate::dns_cmd::query(server, &target, RecordType::A)?;
    let address = a
        .addresses()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{name} points at {target}, which has no A record"))?;
    Ok(SocketAddr::from((address, port)))
}

pub(crate) fn run(lab: &Path, command: PartnerCommand) -> anyhow::Result<()> {
    match command {
        PartnerCommand::Message {
            from,
            to,
            text,
            via,
        } => {
            let domain = to
                .split('@')
                .nth(1)
                .ok_or_else(|| anyhow!("--to {to} is not a SIP address like sip:user@contoso.com"))?
                .to_string();
            let dest = match via {
                Some(v) => v,
                None => resolve_srv(lab, &format!("_sipfederationtls._tcp.{domain}"))?,
            };
            let mut headers = sip::Headers::new();
            headers.push("From", format!("<{from}>;tag={:x}", store::now_ms()));
            headers.push("To", format!("<{to}>"));
            headers.push(
                "Call-ID",
                format!("partner-{:x}@fabrikam.com", store::now_ms()),
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
                .block_on(sipnet::tcp_request(dest, &request, Duration::from_secs(10)))
                .with_context(|| format!("sending to the Access Edge at {dest}"))?;
            println!("{} {} (via {dest})", response.status, response.reason);
            if !(200..300).contains(&response.status) {
                bail!("{} {}", response.status, response.reason);
            }
            Ok(())
        }
        PartnerCommand::Xmpp { to, raw, via } => {
            let dest = match via {
                Some(v) => v,
                None => resolve_srv(lab, &format!("_xmpp-server._tcp.{to}"))?,
            };
            let mut stream = std::net::TcpStream::connect_timeout(&dest, Duration::from_secs(3))
                .with_context(|| format!("connecting to the XMPP gateway at {dest}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let header = raw.unwrap_or_else(|| {
                format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='fabrikam.com' to='{to}' version='1.0'>"
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
