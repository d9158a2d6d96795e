//! The one TLS policy of the deployment: TLS 1.3 only, the deployment's CA as the only root
//! of trust, and a client certificate required where only servers call (the backup link,
//! server-to-server calls), optional where operators call too (the management API, which
//! then asks for the admin token), and not asked for where users call (user services, SIP).

use std::path::Path;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::PkiError;
use crate::installed::certs;

/// Installs the process's crypto provider (aws-lc-rs) once; later calls do nothing.
/// rustls will not pick a provider itself when more than one is compiled in.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The certificates a side trusts: the deployment's CA.
#[derive(Debug, Clone)]
pub struct Roots(Arc<RootCertStore>);

impl Roots {
    /// Trusts the CA certificates given.
    pub fn new(cas: &[CertificateDer<'static>]) -> Result<Roots, PkiError> {
        let mut store = RootCertStore::empty();
        for ca in cas {
            store
                .add(ca.clone())
                .map_err(|e| PkiError::Tls(format!("a CA certificate is not usable: {e}")))?;
        }
        Ok(Roots(Arc::new(store)))
    }

    /// Trusts the CA certificates of a PEM file (the lab's `pki/ca.pem`).
    pub fn from_pem_file(path: &Path) -> Result<Roots, PkiError> {
        Roots::new(&certs(path)?)
    }
}

/// What a listener asks of its clients.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Users: no client certificate.
    NotAsked,
    /// Operators and servers: a certificate is checked if given (servers give one).
    Optional(Roots),
    /// Servers only: a certificate from the deployment's CA or the handshake fails.
    Required(Roots),
}

/// A listener's TLS settings, with `certs` giving the current certificate at every
/// handshake.
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, PkiError> {
    install_provider();
    let builder = ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13]);
    let builder = match auth {
        ClientAuth::NotAsked => builder.with_no_client_auth(),
        ClientAuth::Optional(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder(roots.0)
                .allow_unauthenticated()
                .build()
                .map_err(|e| PkiError::Tls(e.to_string()))?,
        ),
        ClientAuth::Required(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder(roots.0)
                .build()
                .map_err(|e| PkiError::Tls(e.to_string()))?,
        ),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client's TLS settings: trust `roots`, and present `identity` when a listener asks
/// (servers do; operators and users have none).
pub fn client_config(
    roots: &Roots,
    identity: Option<Arc<dyn ResolvesClientCert>>,
) -> Arc<ClientConfig> {
    install_provider();
    let builder = ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots.0.clone());
    let config = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Where a peer's certificate may prove nothing yet must not end the handshake: an XMPP
/// server-to-server stream, whose peer may authenticate later with Server Dialback
/// (XEP-0220) when its certificate does not chain to a root we trust (self-signed, or
/// from another CA). The handshake still proves the peer holds the key of what it
/// presented; whether that certificate is trusted is asked afterwards, with
/// [`chain_trusted`], and only a trusted one stands for a domain (SASL EXTERNAL).
pub mod lenient {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
    use rustls::{
        ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
    };

    use super::Roots;
    use crate::PkiError;

    /// Checks signatures as the usual verifier does; takes any certificate.
    #[derive(Debug)]
    struct AnyServer(Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    /// Asks for a client certificate, takes any (or none), checks its signature.
    #[derive(Debug)]
    struct AnyClient(Arc<dyn ClientCertVerifier>);

    impl ClientCertVerifier for AnyClient {
        fn offer_client_auth(&self) -> bool {
            true
        }

        fn client_auth_mandatory(&self) -> bool {
            false
        }

        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.0.root_hint_subjects()
        }

        fn verify_client_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            Ok(ClientCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    /// A client's TLS settings that take any server certificate (asked about afterwards
    /// with [`server_trusted`]) and present `identity`. TLS 1.2 and 1.3: XMPP servers on
    /// the Internet still speak 1.2.
    pub fn client_config(
        roots: &Roots,
        identity: Arc<dyn ResolvesClientCert>,
    ) -> Result<Arc<ClientConfig>, PkiError> {
        super::install_provider();
        let inner = WebPkiServerVerifier::builder(roots.0.clone())
            .build()
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let config = ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(inner)))
            .with_client_cert_resolver(identity);
        Ok(Arc::new(config))
    }

    /// A listener's TLS settings that ask for a client certificate and take any (asked
    /// about afterwards with [`client_trusted`]).
    pub fn server_config(
        roots: &Roots,
        certs: Arc<dyn ResolvesServerCert>,
    ) -> Result<Arc<ServerConfig>, PkiError> {
        super::install_provider();
        let inner = WebPkiClientVerifier::builder(roots.0.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let config = ServerConfig::builder()
            .with_client_cert_verifier(Arc::new(AnyClient(inner)))
            .with_cert_resolver(certs);
        Ok(Arc::new(config))
    }

    /// Whether a server's chain (as the handshake gave it) is trusted by `roots` for `name`.
    pub fn server_trusted(roots: &Roots, chain: &[CertificateDer<'_>], name: &str) -> bool {
        let (Some((end, intermediates)), Ok(name)) =
            (chain.split_first(), ServerName::try_from(name.to_string()))
        else {
            return false;
        };
        WebPkiServerVerifier::builder(roots.0.clone())
            .build()
            .is_ok_and(|v| {
                v.verify_server_cert(end, intermediates, &name, &[], UnixTime::now())
                    .is_ok()
            })
    }

    /// Whether a client's chain (as the handshake gave it) chains to `roots`.
    pub fn client_trusted(roots: &Roots, chain: &[CertificateDer<'_>]) -> bool {
        let Some((end, intermediates)) = chain.split_first() else {
            return false;
        };
        WebPkiClientVerifier::builder(roots.0.clone())
            .build()
            .is_ok_and(|v| {
                v.verify_client_cert(end, intermediates, UnixTime::now())
                    .is_ok()
            })
    }
}

/// Whether a peer's (already verified) certificate covers `name`, a DNS name or an
/// address: how a listener knows which server called, and an Edge which domain a
/// federated partner may speak for.
pub fn peer_covers(cert: &CertificateDer<'_>, name: &str) -> bool {
    peer_covers_any(cert, [name]).is_some()
}

/// The first of `names` a peer's certificate covers, the certificate read once (a
/// listener asking "is this any server of the topology?" on every call).
pub fn peer_covers_any<'n>(
    cert: &CertificateDer<'_>,
    names: impl IntoIterator<Item = &'n str>,
) -> Option<&'n str> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    names.into_iter().find(|name| {
        ServerName::try_from(*name).is_ok_and(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Authority, CertStore, Installed, Request};
    use rustls::pki_types::pem::PemObject;

    const NOW: i64 = 1_800_000_000;

    fn issued(ca: &Authority, names: &[&str]) -> crate::Issued {
        ca.issue(&Request {
            names: names.iter().map(|n| n.to_string()).collect(),
            addresses: vec!["127.0.0.5".parse().unwrap()],
            validity_days: 30,
            now: NOW,
        })
        .unwrap()
    }

    /// The certificate (DER) of what a CA issued.
    fn leaf(issued: &crate::Issued) -> CertificateDer<'static> {
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_certificate_covers_its_names_and_address_and_nothing_else() {
        let ca = Authority::create("Test CA", NOW).unwrap();
        let cert = issued(&ca, &["fe1.example.org", "pool.example.org"]);
        let der = leaf(&cert);
        for name in ["fe1.example.org", "POOL.example.org", "127.0.0.5"] {
            assert!(peer_covers(&der, name), "{name}");
        }
        for name in ["fe2.example.org", "example.org", "127.0.0.6", "bad name"] {
            assert!(!peer_covers(&der, name), "{name}");
        }
        assert_eq!(cert.info.not_after - cert.info.not_before, 30 * 86_400 + 60);
        assert_eq!(cert.info.thumbprint.len(), 64);
    }

    #[test]
    fn a_saved_authority_signs_certificates_that_chain_to_the_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create("Test CA", NOW).unwrap();
        ca.save(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let again = Authority::load(dir.path()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let server = tempfile::tempdir().unwrap();
        Installed::install(
            server.path(),
            again.cert_pem(),
            &issued(&again, &["fe1.example.org"]),
        )
        .unwrap();
        let store = CertStore::open(server.path()).unwrap();
        assert_eq!(store.info().subject, "fe1.example.org");
        let roots = Roots::new(store.ca()).unwrap();
        // The chain verifies against the root: the client verifier accepts it.
        let verifier = WebPkiClientVerifier::builder(roots.0).build().unwrap();
        let installed = Installed::read(server.path()).unwrap();
        let now = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            NOW as u64,
        ));
        verifier
            .verify_client_cert(&installed.chain[0], &[], now)
            .expect("a certificate of the saved CA verifies");
        // One from another CA does not.
        let other = Authority::create("Other CA", NOW).unwrap();
        let stranger = issued(&other, &["fe1.example.org"]);
        let der = leaf(&stranger);
        assert!(verifier.verify_client_cert(&der, &[], now).is_err());
    }

    /// A CA, and a server folder with a certificate of it installed and opened.
    fn installed_server() -> (Authority, tempfile::TempDir, Arc<CertStore>) {
        let ca = Authority::create("Test CA", NOW).unwrap();
        let server = tempfile::tempdir().unwrap();
        Installed::install(
            server.path(),
            ca.cert_pem(),
            &issued(&ca, &["a.example.org"]),
        )
        .unwrap();
        let store = CertStore::open(server.path()).unwrap();
        (ca, server, store)
    }

    #[test]
    fn a_reload_swaps_the_certificate_in_use() {
        let (ca, server, store) = installed_server();
        let first = store.info().thumbprint;
        Installed::install(
            server.path(),
            ca.cert_pem(),
            &issued(&ca, &["a.example.org"]),
        )
        .unwrap();
        assert_eq!(
            store.info().thumbprint,
            first,
            "nothing changes before a reload"
        );
        let renewed = store.reload().unwrap();
        assert_ne!(renewed.thumbprint, first);
        assert_eq!(store.info().thumbprint, renewed.thumbprint);
    }

    #[test]
    fn a_requested_certificate_is_used_only_once_assigned() {
        let (ca, server, store) = installed_server();
        let before = store.info();
        // The server makes its key; the CA signs the public half.
        let key = crate::NewKey::generate().unwrap();
        let request = Request {
            names: vec!["a.example.org".into()],
            addresses: vec![],
            validity_days: 90,
            now: NOW + 10,
        };
        let (cert_pem, info) = ca.sign(&request, &key.public_key).unwrap();
        assert!(ca.sign(&request, "04abc").is_err(), "not a P-256 point");
        let renewed = crate::Issued {
            cert_pem,
            key_pem: key.key_pem,
            info: info.clone(),
        };
        Installed::stage(server.path(), &renewed).unwrap();
        assert_eq!(Installed::requested(server.path()), vec![info.clone()]);
        assert_eq!(store.reload().unwrap(), before, "staged, not in use");
        assert!(
            Installed::assign(server.path(), "../../etc")
                .unwrap()
                .is_none()
        );
        assert!(Installed::assign(server.path(), "00FF").unwrap().is_none());
        let assigned = Installed::assign(server.path(), &info.thumbprint.to_lowercase())
            .unwrap()
            .unwrap();
        assert_eq!(assigned, info);
        assert_eq!(store.reload().unwrap(), info);
        assert!(Installed::requested(server.path()).is_empty());
        // The new key signs: a TLS server config takes the store.
        server_config(store, ClientAuth::NotAsked, &[]).unwrap();
    }
}
