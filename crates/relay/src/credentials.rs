//! Media relay credentials, as the Media Relay Authentication Service (MRAS) issues them:
//! the shared-secret scheme TURN servers use for this (coturn's `use-auth-secret`, the
//! "TURN REST API"). The username is `<expiry in Unix seconds>:<user>`, the password the
//! base64 of HMAC-SHA1(secret, username): the relay checks a credential with the secret
//! alone, keeps nothing per user, and refuses it once the expiry in its name has passed.
//!
//! The relay's nonces are stateless too: `<expiry in ms, hex><HMAC of it and the client's
//! address, hex>`; a request with one the relay did not make, or made for another address,
//! is refused, and one past its expiry gets 438 Stale Nonce (the client retries with the
//! new one). No table grows with unauthenticated requests.

use aws_lc_rs::hmac;
use base64::Engine as _;

/// How long issued credentials are valid: the product's MRAS gives 8 hours.
pub const CREDENTIAL_LIFETIME_SECS: i64 = 8 * 3600;
/// How long a nonce is good for.
pub const NONCE_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// The secret an Edge pool's relays and MRAS share (at least 32 bytes).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where an Edge server keeps its pool's relay secret (hex, mode 0600): every Edge of a
/// pool has the same one, so credentials one's MRAS issued work on the others' relays.
pub const SECRET_FILE: &str = "av-edge/relay-secret";

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// 32 random bytes.
    pub fn generate() -> std::io::Result<Secret> {
        let mut bytes = vec![0u8; 32];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        Ok(Secret(bytes))
    }

    /// Writes it under `data_dir` ([`SECRET_FILE`]), readable by the owner only.
    pub fn save(&self, data_dir: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = data_dir.join(SECRET_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(hex(&self.0).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// Reads it from under `data_dir`; the error names the file and what makes it.
    pub fn load(data_dir: &std::path::Path) -> Result<Secret, String> {
        let path = data_dir.join(SECRET_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "no media relay secret in {} ({e}): every Edge of a pool needs the same one (`tandem lab up` writes it)",
                path.display()
            )
        })?;
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (text.len() % 2 == 0)
            .then(|| {
                (0..text.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                    .collect()
            })
            .flatten();
        match bytes {
            Some(b) if b.len() >= 16 => Ok(Secret(b)),
            _ => Err(format!(
                "{} is not a media relay secret (at least 16 bytes, in hex)",
                path.display()
            )),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign()
    }

    /// The password of `username` under this secret.
    pub fn password(&self, username: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.mac(&[username.as_bytes()]))
    }

    /// Credentials for `user`, valid until `now_secs + lifetime_secs`.
    pub fn issue(&self, user: &str, now_secs: i64, lifetime_secs: i64) -> Credentials {
        let expires_at = now_secs + lifetime_secs;
        let username = format!("{expires_at}:{user}");
        Credentials {
            password: self.password(&username),
            username,
            expires_at,
        }
    }

    /// A nonce for a client at `client` (its address as text), valid from `now_ms`.
    pub fn nonce(&self, client: &str, now_ms: i64) -> String {
        let expires = (now_ms + NONCE_LIFETIME_MS).max(0) as u64;
        let tag = self.mac(&[b"nonce", &expires.to_be_bytes(), client.as_bytes()]);
        format!("{expires:016x}{}", hex(&tag.as_ref()[..12]))
    }

    /// What a nonce a client sent is worth at `now_ms`.
    pub fn check_nonce(&self, nonce: &str, client: &str, now_ms: i64) -> NonceCheck {
        let Some(expires) = nonce
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            return NonceCheck::Forged;
        };
        let tag = self.mac(&[b"nonce", &expires.to_be_bytes(), client.as_bytes()]);
        let expected = hex(&tag.as_ref()[..12]);
        let given = nonce.get(16..).unwrap_or_default();
        if given.len() != expected.len()
            || !given
                .bytes()
                .zip(expected.bytes())
                .fold(true, |same, (a, b)| same & (a == b))
        {
            return NonceCheck::Forged;
        }
        if (expires as i64) < now_ms {
            NonceCheck::Stale
        } else {
            NonceCheck::Good
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Good,
    /// Made by this secret for this client, but past its time: 438, retry with a new one.
    Stale,
    /// Not made by this relay for this client.
    Forged,
}

/// Credentials MRAS hands a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// When they stop working, in Unix seconds.
    pub expires_at: i64,
}

/// The expiry a username carries, when it is one this scheme makes.
pub fn expiry_of(username: &str) -> Option<i64> {
    username.split_once(':')?.0.parse().ok()
}

/// The long-term key (RFC 8489 §9.2.2): MD5 of `username:realm:password`.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::new()
        .chain_update(username.as_bytes())
        .chain_update(b":")
        .chain_update(realm.as_bytes())
        .chain_update(b":")
        .chain_update(password.as_bytes())
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_credentials_check_with_the_secret_alone_and_carry_their_expiry() {
        let secret = Secret::new(*b"0123456789abcdef0123456789abcdef");
        let c = secret.issue("alice@fabrikam.net", 1_000, 60);
        assert_eq!(c.username, "1060:alice@fabrikam.net");
        assert_eq!(expiry_of(&c.username), Some(1060));
        assert_eq!(secret.password(&c.username), c.password);
        assert_ne!(
            Secret::new(*b"another secret, 32 bytes long..!").password(&c.username),
            c.password
        );
    }

    #[test]
    fn the_password_is_the_one_coturn_and_openssl_compute() {
        // As coturn computes it from its static-auth-secret, and as openssl does:
        // echo -n 1600000000:alice | openssl dgst -sha1 -hmac north -binary | base64
        let secret = Secret::new(*b"north");
        assert_eq!(
            secret.password("1600000000:alice"),
            "gq98pTOhhHaAu0we9aV79kOVVv0="
        );
    }

    #[test]
    fn a_saved_secret_is_read_back_and_only_its_owner_may_read_it() {
        let dir = std::env::temp_dir().join(format!("relay-secret-{}", std::process::id()));
        let secret = Secret::generate().unwrap();
        secret.save(&dir).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(SECRET_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let back = Secret::load(&dir).unwrap();
        assert_eq!(back.password("1:a"), secret.password("1:a"));
        std::fs::write(dir.join(SECRET_FILE), "not hex").unwrap();
        assert!(
            Secret::load(&dir)
                .unwrap_err()
                .contains("is not a media relay secret")
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Secret::load(&dir).unwrap_err().contains("tandem lab up"));
    }

    #[test]
    fn a_nonce_is_good_for_its_client_until_it_is_stale_and_cannot_be_forged() {
        let secret = Secret::new(*b"0123456789abcdef0123456789abcdef");
        let n = secret.nonce("127.0.0.1:4000", 0);
        assert_eq!(
            secret.check_nonce(&n, "127.0.0.1:4000", 1_000),
            NonceCheck::Good
        );
        assert_eq!(
            secret.check_nonce(&n, "127.0.0.1:4001", 1_000),
            NonceCheck::Forged
        );
        assert_eq!(
            secret.check_nonce(&n, "127.0.0.1:4000", NONCE_LIFETIME_MS + 1),
            NonceCheck::Stale
        );
        let mut later = n.clone();
        later.replace_range(..16, &format!("{:016x}", NONCE_LIFETIME_MS * 10));
        assert_eq!(
            secret.check_nonce(&later, "127.0.0.1:4000", 1_000),
            NonceCheck::Forged
        );
        assert_eq!(
            secret.check_nonce("zz", "127.0.0.1:4000", 0),
            NonceCheck::Forged
        );
    }
}
