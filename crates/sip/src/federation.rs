//! Federation's rules at the SIP level: which senders a federated partner may speak for.
//!
//! A partner is who its certificate says. The Access Edge takes a federated request only
//! when the domain of its From is (a) not the deployment's own domain, in any spelling, (b)
//! one of the topology's allowed partner domains (`deployment.allowed_domains`, the
//! original's allowed domains), and (c) covered by the certificate the partner presented
//! in the mutual TLS handshake: a DNS name equal to the domain or to `sip.<domain>`, the
//! conventional name of a federation server. Domains are compared in their one spelling
//! ([`topology::domain::normalize`]: IDNA, case, trailing dots), since an attack sent
//! `From: <sip:user@contoso.com.>` past a comparison of strings.
//!
//! The decision is pure: the caller says which names the certificate covers (a closure
//! over `pki::peer_covers_any`), so every rule is tested here without a handshake. The
//! registrar behind the Edge applies (a) and (b) again to what an Edge forwards.

use topology::Topology;

use crate::{NameAddr, Request};

/// The conventional name of a partner's federation server (`sip.fabrikam.com`), which a
/// partner's certificate may carry instead of (or beside) the bare domain.
pub const FEDERATION_SERVER_LABEL: &str = "sip";

/// Why a federated request is refused. Every refusal is a 403: the partner may not send
/// this, and sending it again will not change that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The From header carries no domain name (not a SIP address, or an address or a
    /// name no domain normalizes to).
    NoDomain,
    /// The From domain is the deployment's own (or below it), in some spelling.
    OwnDomain { ours: String },
    /// The From domain is not an allowed partner.
    NotAllowed { domain: String },
    /// The partner's certificate does not cover the From domain.
    NotCovered { domain: String },
}

impl Refusal {
    /// The SIP status of the refusal.
    pub fn status(&self) -> u16 {
        403
    }

    /// The reason phrase: the cause and, where an administrator can change it, how.
    /// Nothing of the deployment's inside (servers, addresses, certificates) is named.
    pub fn reason(&self) -> String {
        match self {
            Refusal::NoDomain => {
                "Forbidden (the From header does not name a sender in a domain)".to_string()
            }
            Refusal::OwnDomain { ours } => {
                format!("Forbidden (a federated peer cannot send as a user of {ours})")
            }
            Refusal::NotAllowed { domain } => format!(
                "Forbidden ({domain} is not an allowed federated partner; an administrator allows it in the topology's deployment.allowed_domains, then runs Publish-CsTopology and Enable-CsTopology)"
            ),
            Refusal::NotCovered { domain } => {
                format!("Forbidden (the partner's certificate does not cover {domain})")
            }
        }
    }
}

/// The domain of a From/To header value (`"Bob" <sip:bob@Fabrikam.com.>;tag=1`) in its
/// one spelling (`fabrikam.com`); `None` when the value is not a SIP address or its host
/// is not a domain name.
pub fn header_domain(value: &str) -> Option<String> {
    let host = NameAddr::parse(value).ok()?.uri.host;
    // An address is no domain: nobody's certificate names a partner by it.
    if host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    topology::domain::normalize(&host)
}

/// The names a partner's certificate may cover to speak for `domain` (normalized): the
/// domain itself and its federation server's name.
pub fn certificate_names(domain: &str) -> [String; 2] {
    [
        domain.to_string(),
        format!("{FEDERATION_SERVER_LABEL}.{domain}"),
    ]
}

/// Rules (a) and (b): the From domain of `request` is foreign and an allowed partner — a
/// SIP federation domain, or an XMPP partner whose messages the Edge's XMPP gateway
/// translated. Returns the partner domain (normalized). What the registrar checks again
/// behind an Edge, which has authenticated the partner.
pub fn partner_domain(topology: &Topology, request: &Request) -> Result<String, Refusal> {
    let domain = foreign_sender(topology, request)?;
    topology
        .allowed_partner(&domain)
        .or_else(|| topology.xmpp_partner(&domain).map(|_| domain.clone()))
        .ok_or(Refusal::NotAllowed { domain })
}

/// The domain of the From, when it is not the deployment's.
fn foreign_sender(topology: &Topology, request: &Request) -> Result<String, Refusal> {
    let domain = request
        .headers
        .get("From")
        .and_then(header_domain)
        .ok_or(Refusal::NoDomain)?;
    if topology.is_own_domain(&domain) {
        return Err(Refusal::OwnDomain {
            ours: topology.deployment.sip_domain.clone(),
        });
    }
    Ok(domain)
}

/// All three rules, for the Access Edge: [`partner_domain`], then the partner's
/// certificate must cover the domain. `covers` says whether the certificate covers any of
/// the names it is given ([`certificate_names`]); false when there is no certificate
/// (never on the Edge's federation port, where the handshake requires one).
pub fn admit(
    topology: &Topology,
    request: &Request,
    covers: impl FnOnce(&[String]) -> bool,
) -> Result<String, Refusal> {
    // SIP federation partners only: an XMPP partner's messages come through the gateway.
    let domain = foreign_sender(topology, request)?;
    let domain = topology
        .allowed_partner(&domain)
        .ok_or(Refusal::NotAllowed { domain })?;
    if covers(&certificate_names(&domain)) {
        Ok(domain)
    } else {
        Err(Refusal::NotCovered { domain })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Headers, Method};

    fn from(value: &str) -> Request {
        let mut headers = Headers::new();
        headers.push("From", value);
        headers.push("To", "<sip:alice@contoso.com>");
        Request {
            method: Method::Message,
            uri: "sip:alice@contoso.com".into(),
            headers,
            body: Vec::new(),
        }
    }

    /// contoso with two allowed partners, one of them an IDN.
    fn topology() -> Topology {
        let mut t = topology::contoso();
        t.deployment.allowed_domains = vec!["Fabrikam.com".into(), "bücher.example".into()];
        t
    }

    /// A certificate covering exactly `names` (as webpki would: no wildcards here).
    fn cert(names: &'static [&'static str]) -> impl Fn(&[String]) -> bool {
        move |wanted: &[String]| wanted.iter().any(|w| names.contains(&w.as_str()))
    }

    #[test]
    fn our_own_domain_is_refused_in_every_spelling() {
        let t = topology();
        for spelling in [
            "<sip:ceo@contoso.com>",
            "<sip:ceo@CONTOSO.com>;tag=1",
            "<sip:ceo@contoso.com.>",
            "<sip:ceo@contoso.com..>",
            "\"CEO\" <sip:ceo@sip.Contoso.COM.>;tag=2",
            "sip:ceo@contoso.com.;tag=3",
        ] {
            let c = cert(&["contoso.com", "fabrikam.com"]);
            assert_eq!(
                admit(&t, &from(spelling), &c),
                Err(Refusal::OwnDomain {
                    ours: "contoso.com".into()
                }),
                "{spelling}"
            );
        }
    }

    #[test]
    fn an_idn_domain_in_its_ascii_spelling_is_the_same_domain() {
        let mut t = topology();
        t.deployment.sip_domain = "bücher.example".into();
        t.deployment.allowed_domains = vec!["fabrikam.com".into()];
        let c = cert(&["xn--bcher-kva.example"]);
        assert!(matches!(
            admit(&t, &from("<sip:a@XN--BCHER-KVA.example.>"), &c),
            Err(Refusal::OwnDomain { .. })
        ));
        // And as a partner: listed in Unicode, sent in punycode.
        let t = topology();
        assert_eq!(
            admit(&t, &from("<sip:a@xn--bcher-kva.example>"), &c),
            Ok("xn--bcher-kva.example".into())
        );
    }

    #[test]
    fn a_partner_must_be_allowed_and_covered_by_its_certificate() {
        let t = topology();
        let fabrikam = cert(&["fabrikam.com", "sip.fabrikam.com"]);
        assert_eq!(
            admit(&t, &from("<sip:bob@fabrikam.com>;tag=1"), &fabrikam),
            Ok("fabrikam.com".into())
        );
        assert_eq!(
            admit(&t, &from("<sip:bob@FABRIKAM.com.>"), &fabrikam),
            Ok("fabrikam.com".into())
        );
        // The federation server's name alone covers the domain too.
        let server_only = cert(&["sip.fabrikam.com"]);
        assert_eq!(
            admit(&t, &from("<sip:bob@fabrikam.com>"), &server_only),
            Ok("fabrikam.com".into())
        );
        // fabrikam's certificate does not speak for the other allowed partner.
        assert_eq!(
            admit(&t, &from("<sip:eve@xn--bcher-kva.example>"), &fabrikam),
            Err(Refusal::NotCovered {
                domain: "xn--bcher-kva.example".into()
            })
        );
        // Nor does a name below the domain, or no certificate at all.
        let below = cert(&["mail.fabrikam.com"]);
        assert!(matches!(
            admit(&t, &from("<sip:bob@fabrikam.com>"), &below),
            Err(Refusal::NotCovered { .. })
        ));
        assert!(matches!(
            admit(&t, &from("<sip:bob@fabrikam.com>"), |_| false),
            Err(Refusal::NotCovered { .. })
        ));
        // A domain nobody allowed, whatever the certificate says.
        let litware = cert(&["litware.com"]);
        let refused = admit(&t, &from("<sip:x@litware.com>"), &litware).unwrap_err();
        assert_eq!(
            refused,
            Refusal::NotAllowed {
                domain: "litware.com".into()
            }
        );
        assert!(
            refused.reason().contains("deployment.allowed_domains"),
            "{}",
            refused.reason()
        );
        // A sub-domain of a partner is another domain.
        assert!(matches!(
            partner_domain(&t, &from("<sip:x@eu.fabrikam.com>")),
            Err(Refusal::NotAllowed { .. })
        ));
    }

    #[test]
    fn a_from_without_a_domain_is_refused() {
        let t = topology();
        for value in [
            "",
            "not an address",
            "<sip:bob@127.0.0.1>",
            "<sip:bob@[::1]>",
            "<sip:bob@a..b>",
        ] {
            assert_eq!(
                partner_domain(&t, &from(value)),
                Err(Refusal::NoDomain),
                "{value:?}"
            );
        }
        let mut no_from = from("x");
        no_from.headers.remove("From");
        assert_eq!(partner_domain(&t, &no_from), Err(Refusal::NoDomain));
    }

    #[test]
    fn header_domains_have_one_spelling() {
        assert_eq!(
            header_domain("\"Bob\" <sip:bob@Fabrikam.com.>;tag=1").as_deref(),
            Some("fabrikam.com")
        );
        assert_eq!(
            header_domain("sip:a@contoso.com;tag=2").as_deref(),
            Some("contoso.com")
        );
        assert_eq!(header_domain("<sip:a@10.0.0.1:5061>"), None);
    }

    proptest::proptest! {
        /// No From value makes the rules panic, and whatever is admitted is an allowed
        /// partner that the certificate covers.
        #[test]
        fn any_from_is_decided_without_panic(value in "\\PC{0,80}", host in "[a-zA-Z0-9.\\-]{0,30}") {
            let t = topology();
            let c = cert(&["fabrikam.com"]);
            for v in [value.clone(), format!("<sip:u@{host}>"), format!("<sip:u@{value}>")] {
                if let Ok(domain) = admit(&t, &from(&v), &c) {
                    proptest::prop_assert_eq!(domain.as_str(), "fabrikam.com");
                    proptest::prop_assert!(!t.is_own_domain(&domain));
                }
            }
        }
    }
}
