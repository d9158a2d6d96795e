//! The user directory and deployment-wide settings kept in the Central Management store.
//!
//! Users live in the CMS, as a directory would, so that every server's replica can answer
//! "who is this user, where are they homed, is this their password" without calling
//! another server — the registrars of a pool that lost its partner still authenticate
//! the partner's users. Passwords are never stored: only the digest hashes
//! `H(username:realm:password)` with MD5 and SHA-256 (RFC 3261 §22, RFC 8760), which is all
//! digest authentication needs.
//!
//! Those hashes are password-equivalent for the realm (a REGISTER answered with one read
//! from a replica file got 200), so they stay on the servers that authenticate users: the
//! master sends an Edge server every user record [`without_secrets`], hashes emptied. The
//! record keeps its version, so the Edge's replica follows the versions like any other;
//! only its copy of a user record differs in those two fields, and a disaster CMS
//! failover never catches the standby up from a replica that lacks them
//! (`engine::survivors`).

use serde::{Deserialize, Serialize};

/// Keys of user records start with this.
pub const USER_PREFIX: &str = "users/";
/// The Backup Service's global settings.
pub const BACKUP_SETTINGS: &str = "settings/backup-service";

/// One enabled (or disabled) user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The account name (`Alice`).
    pub identity: String,
    /// `sip:alice@contoso.com`, lower case.
    pub sip_address: String,
    /// The home pool.
    pub registrar_pool: String,
    pub enabled: bool,
    /// The digest realm the hash was made for.
    pub realm: String,
    /// `MD5(username:realm:password)` in hex, where username is the address without `sip:`.
    pub ha1: String,
    /// `SHA-256(username:realm:password)` in hex; absent in records written before tandem
    /// spoke SHA-256 (such a user is challenged with MD5 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_sha256: Option<String>,
}

impl UserRecord {
    /// The digest username: the SIP address without its scheme.
    pub fn username(&self) -> &str {
        self.sip_address
            .strip_prefix("sip:")
            .unwrap_or(&self.sip_address)
    }

    /// The stored hash for a digest algorithm, when the record has one.
    pub fn digest_hash(&self, algorithm: sip::digest::Algorithm) -> Option<&str> {
        let hash = match algorithm {
            sip::digest::Algorithm::Md5 => Some(self.ha1.as_str()),
            sip::digest::Algorithm::Sha256 => self.ha1_sha256.as_deref(),
        };
        hash.filter(|h| h.len() == algorithm.hex_len())
    }
}

/// The CMS key of a user, from a SIP address with or without `sip:`.
pub fn user_key(sip_address: &str) -> String {
    format!("{USER_PREFIX}{}", normalize_sip(sip_address))
}

/// `sip:alice@contoso.com`: scheme added if missing, lower-cased.
pub fn normalize_sip(sip_address: &str) -> String {
    let lower = sip_address.trim().to_ascii_lowercase();
    if lower.starts_with("sip:") {
        lower
    } else {
        format!("sip:{lower}")
    }
}

/// Whether `sip_address` is already as [`normalize_sip`] writes it (the registrar's
/// lookups mostly are: they come from a parsed URI), so that it can be looked up as it is.
pub fn is_normalized(sip_address: &str) -> bool {
    sip_address.starts_with("sip:")
        && !sip_address.bytes().any(|b| b.is_ascii_uppercase())
        && sip_address.trim().len() == sip_address.len()
}

/// The digest realm of a SIP address: its domain.
pub fn realm_of(sip_address: &str) -> String {
    normalize_sip(sip_address)
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_default()
}

/// The Backup Service settings (`Get-/Set-CsBackupServiceConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSettings {
    /// The longest a committed change may wait before it is shipped.
    pub sync_interval_secs: u64,
    /// The pairs that commit synchronously, each named by its pools joined with `+` in
    /// sorted, lower-case order: a user's write there is acknowledged only once the
    /// partner pool has committed it.
    #[serde(default)]
    pub synchronous_pairs: Vec<String>,
    /// How long a synchronous write waits for the partner before the pool falls back to
    /// asynchronous shipping (and says so) rather than block its users.
    #[serde(default = "default_synchronous_timeout_ms")]
    pub synchronous_timeout_ms: u64,
}

fn default_synchronous_timeout_ms() -> u64 {
    DEFAULT_SYNCHRONOUS_TIMEOUT_MS
}

/// How long a synchronous write waits for the partner by default.
pub const DEFAULT_SYNCHRONOUS_TIMEOUT_MS: u64 = 2_000;

/// The name of the pair of `pool` and `partner` in [`BackupSettings::synchronous_pairs`].
pub fn pair_name(pool: &str, partner: &str) -> String {
    let mut pools = [pool.to_ascii_lowercase(), partner.to_ascii_lowercase()];
    pools.sort();
    pools.join("+")
}

impl BackupSettings {
    /// Whether the pair of `pool` and `partner` commits synchronously.
    pub fn is_synchronous(&self, pool: &str, partner: &str) -> bool {
        let name = pair_name(pool, partner);
        self.synchronous_pairs.contains(&name)
    }
}

/// The documented default: two minutes.
pub const DEFAULT_SYNC_INTERVAL_SECS: u64 = 120;
/// The documented range: 5 seconds to 3 hours.
pub const SYNC_INTERVAL_RANGE: std::ops::RangeInclusive<u64> = 5..=3 * 3600;

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            sync_interval_secs: DEFAULT_SYNC_INTERVAL_SECS,
            synchronous_pairs: Vec::new(),
            synchronous_timeout_ms: DEFAULT_SYNCHRONOUS_TIMEOUT_MS,
        }
    }
}

/// `item` as a server that does not authenticate users gets it: a user record with its
/// digest hashes emptied (it still parses, and no hash verifies an answer); anything else
/// as it is.
pub fn without_secrets(item: &store::Item) -> store::Item {
    let mut item = item.clone();
    if item.key.starts_with(USER_PREFIX)
        && let Some(value) = &item.value
    {
        item.value = Some(match serde_json::from_str::<UserRecord>(value) {
            Ok(user) => serde_json::to_string(&UserRecord {
                ha1: String::new(),
                ha1_sha256: None,
                ..user
            })
            .expect("directory records serialise"),
            // Not a record this version reads: send nothing that could be a hash.
            Err(_) => String::new(),
        });
    }
    item
}

/// The user record a directory item holds (None when it was deleted or is not one).
pub fn record_in(item: &store::Item) -> Option<UserRecord> {
    serde_json::from_str(item.value.as_deref()?).ok()
}

/// The users in a replica.
pub async fn all_users(
    replica: &store::ReplicaStore,
) -> Result<Vec<UserRecord>, store::StoreError> {
    let items = replica.items_with_prefix(USER_PREFIX).await?;
    Ok(items.into_iter().filter_map(|i| record_in(&i)).collect())
}

/// One user, by SIP address.
pub async fn lookup(replica: &store::ReplicaStore, sip: &str) -> Option<UserRecord> {
    let value = replica.get(&user_key(sip)).await.ok()??;
    serde_json::from_str(&value).ok()
}

/// Checks a SIP address: `sip:user@domain`, no spaces or parameters; the normal form.
pub fn check_sip_address(sip: &str) -> Result<String, String> {
    let normal = normalize_sip(sip);
    let rest = &normal[4..];
    let valid = rest.split_once('@').is_some_and(|(u, d)| {
        !u.is_empty()
            && !d.is_empty()
            && !d.contains('@')
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@.-_+".contains(c))
    });
    if valid {
        Ok(normal)
    } else {
        Err(format!(
            "{} is not a SIP address; write it as sip:alice@contoso.com",
            api::shown(sip)
        ))
    }
}

/// Twelve random letters and digits: a password `Enable-CsUser` and the lab make up.
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_said_to_be_normalized_is_as_normalize_sip_writes_it() {
        for address in [
            "sip:alice@contoso.com",
            "sip:Alice@contoso.com",
            "alice@contoso.com",
            " sip:alice@contoso.com",
            "sip:alice@contoso.com\t",
            "SIP:alice@contoso.com",
            "sip:",
            "",
        ] {
            let normal = normalize_sip(address);
            assert_eq!(is_normalized(address), normal == address, "{address:?}");
            assert!(is_normalized(&normal), "{normal:?}");
        }
    }

    #[test]
    fn keys_are_case_and_scheme_insensitive() {
        assert_eq!(user_key("Alice@Contoso.com"), "users/sip:alice@contoso.com");
        assert_eq!(
            user_key("sip:alice@contoso.com"),
            "users/sip:alice@contoso.com"
        );
        assert_eq!(realm_of("sip:alice@contoso.com"), "contoso.com");
    }

    #[test]
    fn sip_addresses_are_checked_and_normalised() {
        assert_eq!(
            check_sip_address("Alice@Contoso.com").unwrap(),
            "sip:alice@contoso.com"
        );
        assert!(check_sip_address("sip:alice").is_err());
        assert!(check_sip_address("sip:a b@contoso.com").is_err());
        assert!(check_sip_address("sip:a@b@c").is_err());
        assert!(check_sip_address("sip:@contoso.com").is_err());
    }

    #[test]
    fn servers_that_do_not_authenticate_get_no_hash() {
        let user = UserRecord {
            identity: "Alice".into(),
            sip_address: "sip:alice@contoso.com".into(),
            registrar_pool: "pool1.contoso.com".into(),
            enabled: true,
            realm: "contoso.com".into(),
            ha1: sip::digest::ha1("alice@contoso.com", "contoso.com", "pw"),
            ha1_sha256: Some(sip::digest::Algorithm::Sha256.ha1(
                "alice@contoso.com",
                "contoso.com",
                "pw",
            )),
        };
        let item = |key: &str, value: &str| store::Item {
            key: key.into(),
            value: Some(value.into()),
            version: 7,
        };
        let record = serde_json::to_string(&user).unwrap();
        let stripped = without_secrets(&item(&user_key(&user.sip_address), &record));
        let text = stripped.value.clone().unwrap();
        assert!(
            !text.contains(&user.ha1) && !text.contains("ha1_sha256"),
            "{text}"
        );
        assert_eq!(stripped.version, 7, "the version stays");
        let seen: UserRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(seen.registrar_pool, user.registrar_pool);
        for a in sip::digest::Algorithm::PREFERRED {
            assert_eq!(seen.digest_hash(a), None);
        }
        let garbled = without_secrets(&item("users/sip:x@y", "{\"ha1\": \"secret\"}"));
        assert_eq!(garbled.value.as_deref(), Some(""));
        let topology = item("topology/active", "x");
        assert_eq!(without_secrets(&topology), topology);
    }

    #[test]
    fn passwords_differ() {
        let a = new_password();
        assert_eq!(a.len(), 12);
        assert_ne!(a, new_password());
    }
}
