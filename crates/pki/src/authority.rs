//! The deployment's certificate authority: created once, kept in a folder of its own
//! (`ca.pem`, the key `ca.key` readable by its owner only, and `ca.json`), and asked to
//! issue certificates.
//!
//! rcgen cannot read a CA certificate back without an X.509 parser, so the folder keeps
//! what an issuer needs beside the key (`ca.json`: the CA's name); the same name and key
//! give the same issuer, and certificates it signs chain to `ca.pem`.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{PkiError, thumbprint};

/// How long a server's certificate is valid, unless the request says otherwise.
pub const SERVER_VALIDITY_DAYS: u32 = 365;
/// How long the CA itself is valid.
const CA_VALIDITY_DAYS: i64 = 10 * 365;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CA_META: &str = "ca.json";

#[derive(Debug, Serialize, Deserialize)]
struct CaMeta {
    name: String,
}

/// A certificate authority that can sign.
pub struct Authority {
    name: String,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a certificate is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// DNS names, the first being the subject's common name.
    pub names: Vec<String>,
    /// IP addresses the certificate also covers (servers are reached by address too).
    pub addresses: Vec<IpAddr>,
    /// Valid from `now` for this many days.
    pub validity_days: u32,
    /// Seconds since the Unix epoch: the issue time (time is an input).
    pub now: i64,
}

/// A certificate and its new key, both PEM, with what it says.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub info: CertInfo,
}

/// What a certificate says, kept beside it (`cert.json`) so that reading it needs no
/// X.509 parser: names, validity, issuer, serial and thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub names: Vec<String>,
    pub addresses: Vec<String>,
    pub issuer: String,
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub thumbprint: String,
}

impl Authority {
    /// A new CA called `name`, valid for ten years from `now` (Unix seconds).
    pub fn create(name: &str, now: i64) -> Result<Authority, PkiError> {
        let key = KeyPair::generate().map_err(|e| PkiError::Signing(e.to_string()))?;
        let mut params = ca_params(name);
        params.not_before = at(now - 60)?;
        params.not_after = at(now + CA_VALIDITY_DAYS * 86_400)?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        Ok(Authority {
            name: name.to_string(),
            key,
            cert_pem: cert.pem(),
        })
    }

    /// Writes the CA into `dir` (created if missing); the key is its owner's alone.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;
        let meta = serde_json::to_string_pretty(&CaMeta {
            name: self.name.clone(),
        })
        .expect("the CA's name serialises");
        write_private(&dir.join(CA_KEY), &self.key.serialize_pem())?;
        write_file(&dir.join(CA_CERT), &self.cert_pem)?;
        write_file(&dir.join(CA_META), &meta)
    }

    /// The CA kept in `dir` by [`Authority::save`].
    pub fn load(dir: &Path) -> Result<Authority, PkiError> {
        let meta_path = dir.join(CA_META);
        let meta: CaMeta = serde_json::from_str(&read(&meta_path)?)
            .map_err(|e| PkiError::malformed(&meta_path, e))?;
        let key_path = dir.join(CA_KEY);
        let key =
            KeyPair::from_pem(&read(&key_path)?).map_err(|e| PkiError::malformed(&key_path, e))?;
        Ok(Authority {
            name: meta.name,
            key,
            cert_pem: read(&dir.join(CA_CERT))?,
        })
    }

    /// The CA's certificate (PEM): what every server and client trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs a certificate for servers (and the clients they are when they call each
    /// other: both uses), with a new key.
    pub fn issue(&self, request: &Request) -> Result<Issued, PkiError> {
        let key = NewKey::generate()?;
        let (cert_pem, info) = self.sign(request, &key.public_key)?;
        Ok(Issued {
            cert_pem,
            key_pem: key.key_pem,
            info,
        })
    }

    /// Signs a certificate for `public_key` (hex, as [`NewKey::public_key`]: the requester
    /// keeps its private key, as `Request-CsCertificate` on a server does): the
    /// certificate (PEM) and what it says.
    pub fn sign(
        &self,
        request: &Request,
        public_key: &str,
    ) -> Result<(String, CertInfo), PkiError> {
        let Some(subject) = request.names.first() else {
            return Err(PkiError::Signing(
                "a certificate needs at least one name".into(),
            ));
        };
        let key = P256PublicKey::from_hex(public_key)?;
        let mut params = CertificateParams::new(request.names.clone())
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        params
            .subject_alt_names
            .extend(request.addresses.iter().map(|a| SanType::IpAddress(*a)));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject.as_str());
        params.distinguished_name = dn;
        let not_before = request.now - 60;
        let not_after = request.now + i64::from(request.validity_days) * 86_400;
        params.not_before = at(not_before)?;
        params.not_after = at(not_after)?;
        let serial: [u8; 16] = random_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::new(ca_params(&self.name), &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        let info = CertInfo {
            subject: subject.clone(),
            names: request.names.clone(),
            addresses: request.addresses.iter().map(ToString::to_string).collect(),
            issuer: self.name.clone(),
            serial: serial.iter().map(|b| format!("{b:02X}")).collect(),
            not_before,
            not_after,
            thumbprint: thumbprint(cert.der()),
        };
        Ok((cert.pem(), info))
    }
}

/// A new key pair (ECDSA P-256), made where the certificate will be used.
pub struct NewKey {
    /// PKCS#8 PEM: stays with the requester.
    pub key_pem: String,
    /// The public key, hex of its uncompressed point: what the CA signs.
    pub public_key: String,
}

impl NewKey {
    pub fn generate() -> Result<NewKey, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        Ok(NewKey {
            key_pem: key.serialize_pem(),
            public_key: key
                .public_key_raw()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        })
    }
}

/// A P-256 public key as a requester sends it (rcgen reads a SubjectPublicKeyInfo only
/// with an X.509 parser; the raw point is all a signature needs).
struct P256PublicKey(Vec<u8>);

impl P256PublicKey {
    /// Length of an uncompressed P-256 point: 0x04, then x and y.
    const LEN: usize = 65;

    fn from_hex(hex: &str) -> Result<P256PublicKey, PkiError> {
        let unusable = || {
            PkiError::Signing(
                "the public key is not an uncompressed ECDSA P-256 point in hex".into(),
            )
        };
        if hex.len() != 2 * Self::LEN || !hex.is_ascii() {
            return Err(unusable());
        }
        let bytes = (0..Self::LEN)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| unusable())?;
        if bytes[0] != 0x04 {
            return Err(unusable());
        }
        Ok(P256PublicKey(bytes))
    }
}

impl rcgen::PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// The CA's parameters: the same for creating it and, later, signing with it.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn at(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| PkiError::Signing(e.to_string()))
}

fn random_serial() -> Result<[u8; 16], PkiError> {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|_| PkiError::Signing("no random serial".into()))?;
    // Positive and never zero-led, as RFC 5280 asks.
    serial[0] = (serial[0] & 0x7f) | 0x10;
    Ok(serial)
}

pub(crate) fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| PkiError::io(path, e))
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|e| PkiError::io(path, e))
}

/// Writes a file only its owner can read, whatever the process's file mask.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PkiError::io(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| PkiError::io(path, e))
}
