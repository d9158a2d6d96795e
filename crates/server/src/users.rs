//! The user directory cmdlets (`Enable-CsUser`, `Get-CsUser`, `Disable-CsUser`,
//! `Get-CsUserPoolInfo`), the Backup Service settings, and the bulk enable call the lab uses.
//!
//! Users are CMS items (see `cms::directory`): changes run on the active master, reads come
//! from this server's replica, which every registrar reads anyway. `Enable-CsUser` makes up
//! a password, stores only its digest hash, and shows the password once.

use axum::http::StatusCode;
use cmdlet::{Field, Invocation, Output, Record};
use cms::directory::{
    BACKUP_SETTINGS, BackupSettings, SYNC_INTERVAL_RANGE, USER_PREFIX, UserRecord, normalize_sip,
    realm_of, user_key,
};
use cms::master::Master;
use serde::{Deserialize, Serialize};
use store::ReplicaStore;
use topology::Topology;
use topology::serving::Mode;
use utoipa::ToSchema;

use crate::Server;
use crate::api::InvokeResponse;
use crate::http::ApiError;

type Reply = Result<InvokeResponse, ApiError>;

/// The route of the bulk enable call.
pub const BULK_PATH: &str = "/api/v1/users/bulk";

/// The most users one bulk enable takes; larger populations are enabled in chunks, one CMS
/// version each, so that no version outgrows a replication push.
pub const BULK_MAX_USERS: usize = 2_000;

/// The largest bulk-enable body accepted: [`BULK_MAX_USERS`] users with generous room for
/// long names.
pub const BULK_MAX_BODY_BYTES: usize = BULK_MAX_USERS * 1_024;

/// `POST /api/v1/users/bulk`: enable many users in one CMS version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEnableRequest {
    pub users: Vec<BulkUser>,
}

/// One user of a bulk enable; the caller made up the password and sends only its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUser {
    pub identity: String,
    pub sip_address: String,
    pub registrar_pool: String,
    /// `MD5(user@domain:domain:password)` in hex.
    pub ha1: String,
}

/// The answer to a bulk enable.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEnableResponse {
    pub enabled: usize,
    pub cms_version: i64,
}

/// The users in a replica.
pub async fn all_users(replica: &ReplicaStore) -> Result<Vec<UserRecord>, ApiError> {
    let items = replica.items().await.map_err(internal)?;
    Ok(items
        .into_iter()
        .filter(|i| i.key.starts_with(USER_PREFIX))
        .filter_map(|i| serde_json::from_str(i.value.as_deref()?).ok())
        .collect())
}

/// One user, by SIP address.
pub async fn lookup(replica: &ReplicaStore, sip: &str) -> Option<UserRecord> {
    let value = replica.get(&user_key(sip)).await.ok()??;
    serde_json::from_str(&value).ok()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

/// Checks a SIP address: `sip:user@domain`, no spaces or parameters.
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
            "{sip:?} is not a SIP address; write it as sip:alice@contoso.com"
        ))
    }
}

fn check_pool(topology: &Topology, pool: &str) -> Result<String, ApiError> {
    topology
        .front_end_pool(pool)
        .map(|p| p.fqdn.clone())
        .ok_or_else(|| {
            conflict(format!(
                "{pool} is not a Front End pool of the topology; Get-CsService -Registrar lists the registrar pools"
            ))
        })
}

/// Changes that run on the active master.
pub(crate) async fn on_master(master: &Master, inv: &Invocation) -> Reply {
    let _guard = master.lock().await;
    let topology = master.topology().await.map_err(crate::exec::master_error)?;
    match inv.cmdlet.name {
        "Enable-CsUser" => {
            let identity = inv.text("Identity").unwrap_or_default();
            let sip = check_sip_address(&inv.text("SipAddress").unwrap_or_default())
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
            let pool = check_pool(&topology, &inv.text("RegistrarPool").unwrap_or_default())?;
            let existing = master
                .backend()
                .get(&user_key(&sip))
                .await
                .map_err(internal)?
                .and_then(|v| serde_json::from_str::<UserRecord>(&v).ok());
            if let Some(u) = &existing
                && u.enabled
            {
                return Err(conflict(format!(
                    "{sip} is already enabled (account {}, homed on {}); run Disable-CsUser -Identity {sip} first",
                    u.identity, u.registrar_pool
                )));
            }
            let password = new_password();
            let realm = realm_of(&sip);
            let user = UserRecord {
                identity: identity.clone(),
                sip_address: sip.clone(),
                registrar_pool: pool.clone(),
                enabled: true,
                ha1: String::new(),
                realm: realm.clone(),
            };
            let user = UserRecord {
                ha1: sip::digest::ha1(user.username(), &realm, &password),
                ..user
            };
            let info = master
                .write(
                    &[(user_key(&sip), Some(json(&user)))],
                    &format!("Enable-CsUser {sip} on {pool}"),
                )
                .await
                .map_err(crate::exec::master_error)?;
            Ok(InvokeResponse {
                output: Output::Records(vec![user_record(&user).with("Password", password)]),
                warnings: vec![format!(
                    "the password of {sip} is shown only now; tandem keeps only its digest hash"
                )],
                cms_version: Some(info.version),
            })
        }
        "Disable-CsUser" => {
            let identity = inv.text("Identity").unwrap_or_default();
            let items = master.backend().items().await.map_err(internal)?;
            let user = items
                .iter()
                .filter(|i| i.key.starts_with(USER_PREFIX))
                .filter_map(|i| serde_json::from_str::<UserRecord>(i.value.as_deref()?).ok())
                .find(|u| matches_identity(u, &identity))
                .ok_or_else(|| not_found(&identity))?;
            let disabled = UserRecord {
                enabled: false,
                ..user
            };
            crate::exec::write_config(
                master,
                &[(user_key(&disabled.sip_address), Some(json(&disabled)))],
                &format!("Disable-CsUser {}", disabled.sip_address),
            )
            .await
        }
        "Set-CsBackupServiceConfiguration" => {
            if let Some(identity) = inv.text("Identity")
                && !identity.eq_ignore_ascii_case("global")
            {
                return Err(conflict(format!(
                    "there is only one Backup Service configuration, global; {identity:?} does not exist"
                )));
            }
            let secs = match inv.get("SyncInterval") {
                Some(cmdlet::BoundValue::TimeSpan(d)) => d.as_secs(),
                _ => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "-SyncInterval is required",
                    ));
                }
            };
            if !SYNC_INTERVAL_RANGE.contains(&secs) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "-SyncInterval must be between 00:00:05 and 03:00:00; {secs} seconds is outside that range"
                    ),
                ));
            }
            let settings = BackupSettings {
                sync_interval_secs: secs,
            };
            crate::exec::write_config(
                master,
                &[(BACKUP_SETTINGS.to_string(), Some(json(&settings)))],
                &format!("Set-CsBackupServiceConfiguration -SyncInterval {secs}s"),
            )
            .await
        }
        other => Err(internal(format!("{other} is not a user cmdlet"))),
    }
}

/// Enables many users in one version (the lab's `--users N`).
pub(crate) async fn bulk_enable(
    master: &Master,
    request: &BulkEnableRequest,
) -> Result<BulkEnableResponse, ApiError> {
    if request.users.len() > BULK_MAX_USERS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} users in one bulk enable; send at most {BULK_MAX_USERS} per call \
                 (`tandem lab up --users N` splits them for you)",
                request.users.len()
            ),
        ));
    }
    let _guard = master.lock().await;
    let topology = master.topology().await.map_err(crate::exec::master_error)?;
    let mut changes = Vec::with_capacity(request.users.len());
    for u in &request.users {
        let sip = check_sip_address(&u.sip_address)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
        let pool = check_pool(&topology, &u.registrar_pool)?;
        if u.ha1.len() != 32 || !u.ha1.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the ha1 of {sip} is not 32 hex digits (MD5 of user:realm:password)"),
            ));
        }
        let record = UserRecord {
            identity: u.identity.clone(),
            realm: realm_of(&sip),
            sip_address: sip.clone(),
            registrar_pool: pool,
            enabled: true,
            ha1: u.ha1.to_ascii_lowercase(),
        };
        changes.push((user_key(&sip), Some(json(&record))));
    }
    let info = master
        .write(&changes, &format!("enable {} users", changes.len()))
        .await
        .map_err(crate::exec::master_error)?;
    Ok(BulkEnableResponse {
        enabled: changes.len(),
        cms_version: info.version,
    })
}

/// Reads answered from this server's replica.
pub(crate) async fn read(server: &Server, inv: &Invocation) -> Reply {
    let replica = server.replica.store();
    let records = match inv.cmdlet.name {
        "Get-CsUser" => {
            let users = all_users(replica).await?;
            match inv.text("Identity") {
                Some(id) => {
                    let user = users
                        .iter()
                        .find(|u| matches_identity(u, &id))
                        .ok_or_else(|| not_found(&id))?;
                    vec![user_record(user)]
                }
                None => users.iter().map(user_record).collect(),
            }
        }
        "Get-CsUserPoolInfo" => {
            let id = inv.text("Identity").unwrap_or_default();
            let user = lookup(replica, &id).await.ok_or_else(|| not_found(&id))?;
            vec![pool_info(server, &user).await]
        }
        "Get-CsBackupServiceConfiguration" => {
            let settings = backup::service::settings(replica).await;
            vec![
                Record::new()
                    .with("Identity", "Global")
                    .with(
                        "SyncInterval",
                        cmdlet::value::format_timespan(std::time::Duration::from_secs(
                            settings.sync_interval_secs,
                        )),
                    )
                    .with("MaxConcurrentCalls", 10i64)
                    .with("MaxBatchesPerCmsSync", 500i64)
                    .with("MaxBatchesPerUserStoreSync", 500i64)
                    .with("MaxDataConfPackageSizeKB", 102_400i64)
                    .with("AuthorizedLocalAccounts", "Network Service")
                    .with("AuthorizedUniversalGroups", "RTCUniversalServerAdmins"),
            ]
        }
        other => return Err(internal(format!("{other} is not a user read"))),
    };
    Ok(InvokeResponse {
        output: Output::Records(records),
        warnings: vec![],
        cms_version: None,
    })
}

fn matches_identity(user: &UserRecord, identity: &str) -> bool {
    user.identity.eq_ignore_ascii_case(identity) || user.sip_address == normalize_sip(identity)
}

fn not_found(identity: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no user {identity:?}; Get-CsUser lists the users, Enable-CsUser enables one"),
    )
}

fn user_record(user: &UserRecord) -> Record {
    Record::new()
        .with("Identity", user.identity.clone())
        .with("SipAddress", user.sip_address.clone())
        .with("RegistrarPool", user.registrar_pool.clone())
        .with("Enabled", user.enabled)
}

/// The first Front End of a pool: the "primary registrar" of its users.
pub fn primary_registrar(topology: &Topology, pool: &str) -> Option<String> {
    topology
        .front_end_servers(pool)
        .first()
        .map(|s| s.fqdn.clone())
}

async fn pool_info(server: &Server, user: &UserRecord) -> Record {
    let topology = server.replica.topology();
    let home = &user.registrar_pool;
    let backup = topology.backup_pool_of(home).map(str::to_string);
    let failover = server
        .failover_states()
        .await
        .get(&home.to_ascii_lowercase())
        .filter(|s| s.phase != dr::Phase::Normal)
        .cloned();
    let (serving, mode) = match (failover, server.serving_decision(&topology, home).await) {
        (Some(state), _) => (state.serving_pool().to_string(), state.phase.as_str()),
        (None, topology::serving::Decision::Serve(Mode::Resiliency)) => {
            (server.pool.clone(), "Resiliency")
        }
        _ => (home.clone(), "Normal"),
    };
    let registrar = |pool: Option<&str>| {
        pool.and_then(|p| primary_registrar(&topology, p))
            .unwrap_or_default()
    };
    Record::new()
        .with("Identity", user.sip_address.clone())
        .with("PrimaryPoolFqdn", home.clone())
        .with("BackupPoolFqdn", backup.clone().unwrap_or_default())
        .with("ServingPoolFqdn", serving)
        .with("Mode", mode)
        .with("PrimaryPoolPrimaryRegistrar", registrar(Some(home)))
        .with("BackupPoolPrimaryRegistrar", registrar(backup.as_deref()))
        .with(
            "PrimaryPoolMachinesInPreferredOrder",
            Field::List(
                topology
                    .front_end_servers(home)
                    .iter()
                    .map(|s| Field::from(s.fqdn.clone()))
                    .collect(),
            ),
        )
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("directory records serialise")
}

/// Twelve random letters and digits.
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
    fn passwords_differ() {
        let a = new_password();
        assert_eq!(a.len(), 12);
        assert_ne!(a, new_password());
    }
}
