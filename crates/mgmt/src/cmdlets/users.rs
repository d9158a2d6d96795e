//! The user directory cmdlets (`Enable-CsUser`, `Get-CsUser`, `Disable-CsUser`,
//! `Get-CsUserPoolInfo`), the Backup Service settings, and the bulk enable call the lab uses.
//!
//! Users are CMS items (see `cms::directory`): changes run on the active master, reads come
//! from this server's replica, which every registrar reads anyway. `Enable-CsUser` makes up
//! a password, stores only its digest hash, and shows the password once.

use ::cms::directory::{
    BACKUP_SETTINGS, BackupSettings, SYNC_INTERVAL_RANGE, USER_PREFIX, UserRecord,
    check_sip_address, lookup, new_password, normalize_sip, realm_of, user_key,
};
use ::cms::master::Master;
use api::InvokeResponse;
use api::users::{BULK_MAX_USERS, BulkEnableRequest, BulkEnableResponse};
use cmdlet::{Field, Output, Record};
use serde::Serialize;
use topology::Topology;
use topology::serving::Mode;

use super::config::write_config;
use crate::call::master;
use crate::call::{Call, Reply};
use crate::{Error, Refused};

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("directory records serialise")
}

fn check_pool(topology: &Topology, pool: &str) -> Result<String, Refused> {
    topology
        .front_end_pool(pool)
        .map(|p| p.fqdn.clone())
        .ok_or_else(|| {
            Refused::Conflict(format!(
                "{pool} is not a Front End pool of the topology; Get-CsService -Registrar lists the registrar pools"
            ))
        })
}

/// `Enable-CsUser`.
pub async fn enable(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let inv = call.inv;
    let _guard = master.lock().await;
    let topology = master.topology().await?;
    let identity = inv.text("Identity").unwrap_or_default();
    let sip = check_sip_address(&inv.text("SipAddress").unwrap_or_default())
        .map_err(Refused::BadRequest)?;
    let pool = check_pool(&topology, &inv.text("RegistrarPool").unwrap_or_default())?;
    let existing = master
        .backend()
        .get(&user_key(&sip))
        .await?
        .and_then(|v| serde_json::from_str::<UserRecord>(&v).ok());
    if let Some(u) = &existing
        && u.enabled
    {
        return Err(Refused::Conflict(format!(
            "{sip} is already enabled (account {}, homed on {}); run Disable-CsUser -Identity {sip} first",
            u.identity, u.registrar_pool
        ))
        .into());
    }
    let password = new_password();
    let realm = realm_of(&sip);
    let user = UserRecord {
        identity: identity.clone(),
        sip_address: sip.clone(),
        registrar_pool: pool.clone(),
        enabled: true,
        ha1: String::new(),
        ha1_sha256: None,
        realm: realm.clone(),
    };
    let user = UserRecord {
        ha1: sip::digest::ha1(user.username(), &realm, &password),
        ha1_sha256: Some(sip::digest::Algorithm::Sha256.ha1(user.username(), &realm, &password)),
        ..user
    };
    let info = master
        .write(
            &[(user_key(&sip), Some(json(&user)))],
            &format!("Enable-CsUser {sip} on {pool}"),
        )
        .await?;
    Ok(InvokeResponse {
        output: Output::Records(vec![user_record(&user).with("Password", password)]),
        warnings: vec![format!(
            "the password of {sip} is shown only now; tandem keeps only its digest hash"
        )],
        cms_version: Some(info.version),
    })
}

/// `Disable-CsUser`: the record stays (a disabled user is refused at sign-in).
pub async fn disable(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let _guard = master.lock().await;
    let identity = call.inv.text("Identity").unwrap_or_default();
    let items = master.backend().items_with_prefix(USER_PREFIX).await?;
    let user = items
        .iter()
        .filter_map(|i| serde_json::from_str::<UserRecord>(i.value.as_deref()?).ok())
        .find(|u| matches_identity(u, &identity))
        .ok_or_else(|| not_found(&identity))?;
    let disabled = UserRecord {
        enabled: false,
        ..user
    };
    write_config(
        master,
        &[(user_key(&disabled.sip_address), Some(json(&disabled)))],
        &format!("Disable-CsUser {}", disabled.sip_address),
    )
    .await
}

/// `Set-CsBackupServiceConfiguration -SyncInterval`.
pub async fn set_backup_configuration(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let inv = call.inv;
    if let Some(identity) = inv.text("Identity")
        && !identity.eq_ignore_ascii_case("global")
    {
        return Err(Refused::Conflict(format!(
            "there is only one Backup Service configuration, global; {} does not exist",
            api::shown(&identity)
        ))
        .into());
    }
    let _guard = master.lock().await;
    let mut settings: BackupSettings = master
        .backend()
        .get(BACKUP_SETTINGS)
        .await
        .map_err(Error::from)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    let mut said = Vec::new();
    if let Some(cmdlet::BoundValue::TimeSpan(d)) = inv.get("SyncInterval") {
        let secs = d.as_secs();
        if !SYNC_INTERVAL_RANGE.contains(&secs) {
            return Err(Refused::BadRequest(format!(
                "-SyncInterval must be between 00:00:05 and 03:00:00; {secs} seconds is outside that range"
            ))
            .into());
        }
        settings.sync_interval_secs = secs;
        said.push(format!("-SyncInterval {secs}s"));
    }
    if let Some(cmdlet::BoundValue::TimeSpan(d)) = inv.get("SynchronousCommitTimeout") {
        let ms = d.as_millis() as u64;
        if !(100..=60_000).contains(&ms) {
            return Err(Refused::BadRequest(format!(
                "-SynchronousCommitTimeout must be between 0.1 and 60 seconds; {ms} ms is outside that range"
            ))
            .into());
        }
        settings.synchronous_timeout_ms = ms;
        said.push(format!("-SynchronousCommitTimeout {ms}ms"));
    }
    if let Some(cmdlet::BoundValue::Bool(on)) = inv.get("SynchronousCommit") {
        let topology = call.node().topology();
        let pairs: Vec<String> = match inv.text("PoolFqdn") {
            Some(pool) => {
                let pool = check_pool(&topology, &pool)?;
                let partner = topology.backup_pool_of(&pool).ok_or_else(|| {
                    Refused::Conflict(format!(
                        "{pool} has no backup pool, so there is no pair to commit synchronously; \
                         pair it first with Set-CsPoolBackupRelationship"
                    ))
                })?;
                vec![::cms::directory::pair_name(&pool, partner)]
            }
            None => topology
                .front_end_pools
                .iter()
                .filter_map(|p| {
                    p.backup_pool
                        .as_deref()
                        .map(|b| ::cms::directory::pair_name(&p.fqdn, b))
                })
                .collect(),
        };
        for pair in pairs {
            settings.synchronous_pairs.retain(|p| *p != pair);
            if *on {
                settings.synchronous_pairs.push(pair);
            }
        }
        settings.synchronous_pairs.sort();
        settings.synchronous_pairs.dedup();
        said.push(format!(
            "-SynchronousCommit {on}{}",
            inv.text("PoolFqdn")
                .map_or(String::new(), |p| format!(" -PoolFqdn {p}"))
        ));
    }
    if said.is_empty() {
        return Err(Refused::BadRequest(
            "nothing to change: give -SyncInterval, -SynchronousCommit or -SynchronousCommitTimeout".into(),
        )
        .into());
    }
    write_config(
        master,
        &[(BACKUP_SETTINGS.to_string(), Some(json(&settings)))],
        &format!("Set-CsBackupServiceConfiguration {}", said.join(" ")),
    )
    .await
}

/// Enables many users in one version (the lab's `--users N`).
pub async fn bulk_enable(
    master: &Master,
    request: &BulkEnableRequest,
) -> Result<BulkEnableResponse, Error> {
    if request.users.len() > BULK_MAX_USERS {
        return Err(Refused::TooLarge(format!(
            "{} users in one bulk enable; send at most {BULK_MAX_USERS} per call \
             (`tandem lab up --users N` splits them for you)",
            request.users.len()
        ))
        .into());
    }
    let _guard = master.lock().await;
    let topology = master.topology().await?;
    let mut changes = Vec::with_capacity(request.users.len());
    for u in &request.users {
        let sip = check_sip_address(&u.sip_address).map_err(Refused::BadRequest)?;
        let pool = check_pool(&topology, &u.registrar_pool)?;
        if u.ha1.len() != 32 || !u.ha1.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refused::BadRequest(format!(
                "the ha1 of {sip} is not 32 hex digits (MD5 of user:realm:password)"
            ))
            .into());
        }
        if u.ha1_sha256
            .as_ref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Refused::BadRequest(format!(
                "the ha1_sha256 of {sip} is not 64 hex digits (SHA-256 of user:realm:password)"
            ))
            .into());
        }
        let record = UserRecord {
            identity: u.identity.clone(),
            realm: realm_of(&sip),
            sip_address: sip.clone(),
            registrar_pool: pool,
            enabled: true,
            ha1: u.ha1.to_ascii_lowercase(),
            ha1_sha256: u.ha1_sha256.as_ref().map(|h| h.to_ascii_lowercase()),
        };
        changes.push((user_key(&sip), Some(json(&record))));
    }
    let info = master
        .write(&changes, &format!("enable {} users", changes.len()))
        .await?;
    Ok(BulkEnableResponse {
        enabled: changes.len(),
        cms_version: info.version,
    })
}

/// `Get-CsUser`, `Get-CsUserPoolInfo`, `Get-CsBackupServiceConfiguration`: from this
/// server's replica.
pub async fn read(call: &Call<'_>) -> Reply {
    let inv = call.inv;
    let node = call.node();
    let replica = node.replica.store();
    let records = match inv.cmdlet.name {
        "Get-CsUser" => {
            let users = ::cms::directory::all_users(replica).await?;
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
            vec![pool_info(node, &user).await]
        }
        _ => {
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
                    .with(
                        "SynchronousCommitPairs",
                        Field::List(
                            settings
                                .synchronous_pairs
                                .iter()
                                .cloned()
                                .map(Field::from)
                                .collect(),
                        ),
                    )
                    .with(
                        "SynchronousCommitTimeout",
                        cmdlet::value::format_timespan(std::time::Duration::from_millis(
                            settings.synchronous_timeout_ms,
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
    };
    Ok(InvokeResponse::records(records))
}

fn matches_identity(user: &UserRecord, identity: &str) -> bool {
    user.identity.eq_ignore_ascii_case(identity) || user.sip_address == normalize_sip(identity)
}

fn not_found(identity: &str) -> Refused {
    Refused::NotFound(format!(
        "no user {}; Get-CsUser lists the users, Enable-CsUser enables one",
        api::shown(identity)
    ))
}

fn user_record(user: &UserRecord) -> Record {
    Record::new()
        .with("Identity", user.identity.clone())
        .with("SipAddress", user.sip_address.clone())
        .with("RegistrarPool", user.registrar_pool.clone())
        .with("Enabled", user.enabled)
}

/// The first Front End of a pool: the "primary registrar" of its users.
fn primary_registrar(topology: &Topology, pool: &str) -> Option<String> {
    topology
        .front_end_servers(pool)
        .first()
        .map(|s| s.fqdn.clone())
}

async fn pool_info(node: &node::Node, user: &UserRecord) -> Record {
    let topology = node.topology();
    let home = &user.registrar_pool;
    let backup = topology.backup_pool_of(home).map(str::to_string);
    let failover = node
        .serving
        .failover_states(&node.replica)
        .await
        .get(&home.to_ascii_lowercase())
        .filter(|s| s.phase != dr::Phase::Normal)
        .cloned();
    let (serving, mode) = match (failover, node.serving_decision(&topology, home).await) {
        (Some(state), _) => (state.serving_pool().to_string(), state.phase.as_str()),
        (None, topology::serving::Decision::Serve(Mode::Resiliency)) => {
            (node.pool.clone(), "Resiliency")
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
