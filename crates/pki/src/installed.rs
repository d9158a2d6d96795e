//! A server's certificate as it lies on disk, and the store that hands it to rustls.
//!
//! `tls/` under a server's data folder holds the deployment's CA (`ca.pem`, what the server
//! trusts), the server's certificate (`cert.pem`), its key (`key.pem`, owner only) and what
//! the certificate says (`cert.json`). Files are replaced by renaming, so a reader never
//! sees half of one; [`CertStore::reload`] swaps the certificate every new handshake uses
//! without closing a listener (renewal without downtime).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::authority::{read, write_file, write_private};
use crate::{CertInfo, Issued, PkiError};

/// The folder under a server's data folder that holds its TLS files.
pub const TLS_DIR: &str = "tls";

const CA: &str = "ca.pem";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";
const INFO: &str = "cert.json";
/// Certificates requested and not assigned yet, one folder per thumbprint.
const REQUESTED: &str = "requested";

/// A server's certificate, key and trust, read from its data folder.
pub struct Installed {
    pub ca: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub info: CertInfo,
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Installed {
    /// The TLS folder of the server whose data folder is `data_dir`.
    pub fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join(TLS_DIR)
    }

    /// Puts `issued` in place as the server's certificate, trusting `ca_pem`.
    pub fn install(data_dir: &Path, ca_pem: &str, issued: &Issued) -> Result<(), PkiError> {
        let dir = Self::dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(|e| PkiError::io(&dir, e))?;
        let info = serde_json::to_string_pretty(&issued.info).expect("CertInfo serialises");
        // Key first, info last: a reader that finds the info finds its certificate.
        replace(&dir, KEY, &issued.key_pem, true)?;
        replace(&dir, CERT, &issued.cert_pem, false)?;
        replace(&dir, CA, ca_pem, false)?;
        replace(&dir, INFO, &info, false)
    }

    /// The certificate installed under `data_dir`.
    pub fn read(data_dir: &Path) -> Result<Installed, PkiError> {
        let dir = Self::dir(data_dir);
        let ca = certs(&dir.join(CA))?;
        let chain = certs(&dir.join(CERT))?;
        let key_path = dir.join(KEY);
        let key = PrivateKeyDer::from_pem_slice(read(&key_path)?.as_bytes())
            .map_err(|e| PkiError::malformed(&key_path, e))?;
        let info_path = dir.join(INFO);
        let info: CertInfo = serde_json::from_str(&read(&info_path)?)
            .map_err(|e| PkiError::malformed(&info_path, e))?;
        Ok(Installed {
            ca,
            chain,
            key,
            info,
        })
    }

    /// Keeps a requested certificate beside the one in use, until `Set-CsCertificate`
    /// assigns it ([`Installed::assign`]).
    pub fn stage(data_dir: &Path, issued: &Issued) -> Result<(), PkiError> {
        let dir = Self::dir(data_dir)
            .join(REQUESTED)
            .join(&issued.info.thumbprint);
        std::fs::create_dir_all(&dir).map_err(|e| PkiError::io(&dir, e))?;
        let info = serde_json::to_string_pretty(&issued.info).expect("CertInfo serialises");
        replace(&dir, KEY, &issued.key_pem, true)?;
        replace(&dir, CERT, &issued.cert_pem, false)?;
        replace(&dir, INFO, &info, false)
    }

    /// The certificates requested and not assigned yet.
    pub fn requested(data_dir: &Path) -> Vec<CertInfo> {
        let dir = Self::dir(data_dir).join(REQUESTED);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut all: Vec<CertInfo> = entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join(INFO)).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        all.sort_by_key(|i: &CertInfo| i.not_before);
        all
    }

    /// Puts the requested certificate with `thumbprint` in place of the one in use (the
    /// caller reloads its [`CertStore`]); `None` when no such certificate was requested.
    pub fn assign(data_dir: &Path, thumbprint: &str) -> Result<Option<CertInfo>, PkiError> {
        let wanted = thumbprint.trim().to_ascii_uppercase();
        if wanted.is_empty() || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let staged = Self::dir(data_dir).join(REQUESTED).join(&wanted);
        if !staged.join(INFO).is_file() {
            return Ok(None);
        }
        let info_text = read(&staged.join(INFO))?;
        let info: CertInfo = serde_json::from_str(&info_text)
            .map_err(|e| PkiError::malformed(&staged.join(INFO), e))?;
        let dir = Self::dir(data_dir);
        replace(&dir, KEY, &read(&staged.join(KEY))?, true)?;
        replace(&dir, CERT, &read(&staged.join(CERT))?, false)?;
        replace(&dir, INFO, &info_text, false)?;
        let _ = std::fs::remove_dir_all(&staged);
        Ok(Some(info))
    }

    /// Whether a certificate is installed under `data_dir`.
    pub fn exists(data_dir: &Path) -> bool {
        Self::dir(data_dir).join(INFO).is_file()
    }

    fn certified_key(&self) -> Result<CertifiedKey, PkiError> {
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&self.key)
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        Ok(CertifiedKey::new(self.chain.clone(), signer))
    }
}

/// The CA certificates in a PEM file.
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::malformed(path, e))?;
    if certs.is_empty() {
        return Err(PkiError::malformed(path, "no certificate in it"));
    }
    Ok(certs)
}

fn replace(dir: &Path, name: &str, contents: &str, private: bool) -> Result<(), PkiError> {
    let tmp = dir.join(format!(".{name}.new"));
    if private {
        write_private(&tmp, contents)?;
    } else {
        write_file(&tmp, contents)?;
    }
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| PkiError::io(&path, e))
}

/// The certificate a server presents, as listener and as client, swapped in place by
/// [`CertStore::reload`].
#[derive(Debug)]
pub struct CertStore {
    data_dir: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, CertInfo)>,
    ca: Vec<CertificateDer<'static>>,
}

impl CertStore {
    /// Reads the certificate installed under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Arc<CertStore>, PkiError> {
        let installed = Installed::read(data_dir)?;
        let key = Arc::new(installed.certified_key()?);
        Ok(Arc::new(CertStore {
            data_dir: data_dir.to_path_buf(),
            current: RwLock::new((key, installed.info)),
            ca: installed.ca,
        }))
    }

    /// Reads the installed certificate again; new handshakes use it from now on.
    pub fn reload(&self) -> Result<CertInfo, PkiError> {
        let installed = Installed::read(&self.data_dir)?;
        let key = Arc::new(installed.certified_key()?);
        let info = installed.info.clone();
        *self.current.write().expect("the certificate lock") = (key, installed.info);
        Ok(info)
    }

    /// What the certificate in use says.
    pub fn info(&self) -> CertInfo {
        self.current.read().expect("the certificate lock").1.clone()
    }

    /// The deployment's CA, as this server trusts it.
    pub fn ca(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }

    fn key(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("the certificate lock").0.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

impl ResolvesClientCert for CertStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
