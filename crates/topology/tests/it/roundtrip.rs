//! Serialising a topology and parsing it again gives the same topology.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use topology::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]\\.contoso\\.com"
}

fn text() -> impl Strategy<Value = String> {
    // Any printable text, including quotes, backslashes and non-ASCII, which TOML must escape.
    "\\PC{0,20}"
}

fn server() -> impl Strategy<Value = Server> {
    (name(), any::<u32>(), proptest::option::of(any::<u32>())).prop_map(|(fqdn, a, e)| Server {
        fqdn,
        address: Ipv4Addr::from(a),
        external_address: e.map(Ipv4Addr::from),
    })
}

fn mirror() -> impl Strategy<Value = DatabaseMirror> {
    (name(), text(), text(), any::<bool>()).prop_map(
        |(server_fqdn, instance, database_url, synchronous)| DatabaseMirror {
            server_fqdn,
            instance,
            database_url,
            synchronous,
        },
    )
}

fn front_end_pool() -> impl Strategy<Value = FrontEndPool> {
    (
        (
            name(),
            text(),
            prop::sample::select(ProductVersion::ALL.to_vec()),
        ),
        (proptest::option::of(name()), proptest::option::of(name())),
        (name(), text(), text(), proptest::option::of(mirror())),
        (any::<u32>(), any::<u32>(), any::<bool>()),
        prop::collection::vec(server(), 0..4),
    )
        .prop_map(
            |(
                (fqdn, site, product_version),
                (backup_pool, edge_pool),
                (be, inst, url, mirror),
                (f, b, auto),
                servers,
            )| {
                FrontEndPool {
                    fqdn,
                    site,
                    product_version,
                    backup_pool,
                    edge_pool,
                    back_end: BackEnd {
                        server_fqdn: be,
                        instance: inst,
                        database_url: url,
                        mirror,
                    },
                    registrar: RegistrarResiliency {
                        failure_detection_interval_secs: f,
                        failback_detection_interval_secs: b,
                        automatic_failover: auto,
                    },
                    servers,
                }
            },
        )
}

fn edge_pool() -> impl Strategy<Value = EdgePool> {
    (
        name(),
        text(),
        name(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(server(), 0..3),
    )
        .prop_map(
            |(fqdn, site, next_hop, federation_enabled, xmpp_enabled, servers)| EdgePool {
                fqdn,
                site,
                next_hop,
                federation_enabled,
                xmpp_enabled,
                servers,
            },
        )
}

fn site() -> impl Strategy<Value = Site> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(name, federation_route, xmpp_federation_route)| Site {
            name,
            federation_route,
            xmpp_federation_route,
        })
}

fn ports() -> impl Strategy<Value = Ports> {
    (prop::array::uniform12(any::<u16>()), any::<bool>()).prop_map(|(p, plain)| Ports {
        sip: p[0],
        sip_plain: plain,
        sip_tls: p[1],
        user_services: p[2],
        backup_service: p[3],
        management: p[4],
        edge_internal_sip: p[5],
        edge_federation_sip: p[6],
        xmpp_federation: p[7],
        xmpp_internal: p[8],
        dns: p[9],
        media_relay: p[10],
        web_conferencing_edge: p[11],
    })
}

fn topology() -> impl Strategy<Value = Topology> {
    (
        (name(), name(), name()),
        ports(),
        prop::collection::vec(site(), 0..3),
        prop::collection::vec(front_end_pool(), 0..3),
        prop::collection::vec(edge_pool(), 0..3),
    )
        .prop_map(
            |((sip_domain, dns_zone, cms_pool), ports, sites, front_end_pools, edge_pools)| {
                Topology {
                    deployment: Deployment {
                        allowed_domains: vec![format!("partner.{dns_zone}.example")],
                        xmpp_partners: vec![topology::XmppPartner {
                            proxy_fqdn: Some(format!("xmpp.{dns_zone}.example")),
                            ..topology::XmppPartner::new(&format!("im.{dns_zone}.example"))
                        }],
                        sip_domain,
                        dns_zone,
                        cms_witness: front_end_pools
                            .first()
                            .and_then(|p: &FrontEndPool| p.servers.first())
                            .map(|s| s.fqdn.clone()),
                        cms_pool,
                    },
                    ports,
                    sites,
                    front_end_pools,
                    edge_pools,
                }
            },
        )
}

proptest! {
    #[test]
    fn toml_round_trip(t in topology()) {
        let text = t.to_toml();
        let back = Topology::from_toml(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, t);
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,200}") {
        let _ = Topology::from_toml(&text);
    }

    #[test]
    fn validation_never_panics(t in topology()) {
        let _ = validate(&t);
    }
}

#[test]
fn contoso_round_trips() {
    let t = contoso();
    assert_eq!(Topology::from_toml(&t.to_toml()).unwrap(), t);
}
