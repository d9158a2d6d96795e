//! Each Front End watches its partner pool's registrars with SIP OPTIONS.
//!
//! When no registrar of the partner has answered for the partner's failure detection
//! interval, this pool starts serving the partner's users in resiliency mode; once the
//! partner has answered continuously for its failback detection interval, its users are
//! sent home again (see `topology::serving::PartnerWatch` for the rules). The intervals
//! are the partner's registrar settings (`Set-CsRegistrar`), read from the live topology
//! on every probe, so a change applies at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use topology::serving::PartnerWatch;

use crate::Registrar;

/// How often the partner is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long one probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Watches the partner until the server shuts down, setting the node's verdict.
pub async fn watch_partner(registrar: Arc<Registrar>) {
    let server = registrar.node.clone();
    let clock = server.clock;
    let now = || clock.now_ms().max(0) as u64;
    let mut watch = PartnerWatch::new(now());
    let mut back_seen = server.serving.partner_back_count();
    loop {
        tokio::select! {
            () = clock.sleep(PROBE_EVERY) => {}
            () = server.shutdown.cancelled() => return,
        }
        // A failback said the partner serves its users again: start over from "up".
        let back = server.serving.partner_back_count();
        if back != back_seen {
            back_seen = back;
            watch = PartnerWatch::new(now());
        }
        let topology = server.replica.topology();
        let Some(partner) = topology.backup_pool_of(&server.pool).map(str::to_string) else {
            server.serving.set_partner_down(false);
            watch = PartnerWatch::new(now());
            continue;
        };
        let Some(settings) = topology
            .front_end_pool(&partner)
            .map(|p| p.registrar.clone())
        else {
            continue;
        };
        // Over mutual TLS to the partner's SIP TLS port: only the partner's own servers,
        // by their certificates, can say it is up.
        let targets: Vec<(SocketAddr, String)> = topology
            .front_end_servers(&partner)
            .iter()
            .map(|s| {
                (
                    SocketAddr::from((s.address, topology.ports.sip_tls)),
                    s.fqdn.clone(),
                )
            })
            .collect();
        let host = server.address.ip().to_string();
        let mut probes = tokio::task::JoinSet::new();
        for (dest, name) in targets {
            let links = registrar.probe_links.clone();
            let host = host.clone();
            probes.spawn(async move {
                sipnet::probe_link(&links, dest, &name, &host, PROBE_TIMEOUT).await
            });
        }
        let mut ok = false;
        while let Some(answer) = probes.join_next().await {
            ok |= answer.unwrap_or(false);
        }
        let changed = watch.observe(
            ok,
            now(),
            u64::from(settings.failure_detection_interval_secs) * 1000,
            u64::from(settings.failback_detection_interval_secs) * 1000,
        );
        if changed {
            let down = watch.is_down();
            server.serving.set_partner_down(down);
            if down {
                tracing::warn!(%partner, "partner pool unreachable for its failure detection interval: serving its users in resiliency mode");
            } else {
                tracing::info!(%partner, "partner pool reachable for its failback detection interval: sending its users home");
            }
        }
    }
}
