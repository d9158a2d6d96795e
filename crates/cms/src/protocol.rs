//! Messages between the master and the replica agents (`/internal/v1/...` routes).

use serde::{Deserialize, Serialize};
use store::Item;

/// The largest push a replica accepts. A push carries every version after the replica's up
/// to the newest, as one snapshot (never more than the whole configuration).
pub const SYNC_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A push from the master: the items written after `from_version`, up to `to_version`.
/// With no items and `from_version == to_version` it is a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    pub master_fqdn: String,
    pub epoch: i64,
    pub from_version: i64,
    pub to_version: i64,
    /// When `to_version` was created (unix ms): the replica's `LastUpdateCreation`.
    pub to_version_created_at: i64,
    pub items: Vec<Item>,
    /// The history of the master's line: a replica off it holds versions of a fenced
    /// store and answers [`SyncResponse::Diverged`].
    #[serde(default)]
    pub history: store::History,
    /// The items are the whole configuration at `to_version`: the replica replaces
    /// everything it holds.
    #[serde(default)]
    pub replace: bool,
}

/// The replica's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "outcome", rename_all = "snake_case")]
pub enum SyncResponse {
    /// Stored and live at `version`.
    Applied { version: i64 },
    /// The batch started after the replica's version: resend from `version`.
    Gap { version: i64 },
    /// The replica follows a newer master (`epoch`): the sender is fenced.
    Fenced { epoch: i64, master_fqdn: String },
    /// The replica holds versions (up to `version`) that the master's store never had:
    /// send the whole configuration.
    Diverged { version: i64 },
}

/// What a Front End of the CMS pool says about its master role
/// (`GET /internal/v1/cms/role`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleReport {
    pub fqdn: String,
    pub active: bool,
    pub epoch: i64,
    /// The lease holder this server last saw, when it knows one.
    pub holder: Option<String>,
    /// The role of the CMS copy in this server's Back End (`Active`, `Moving`, `Backup`),
    /// when it runs the Central Management services.
    #[serde(default)]
    pub store_mode: Option<String>,
    /// The version the store's current term started at.
    #[serde(default)]
    pub term_start: i64,
    /// The old store's versions up to here are in this store (what a fenced store did
    /// not lose).
    #[serde(default)]
    pub shared_through: i64,
    /// The history of the line the store in this server's Back End holds: what a fenced
    /// store compares its own with.
    #[serde(default)]
    pub history: store::History,
    /// While this server is the active master: the newest version that changed who serves
    /// whom (a pool's failover state or the topology, see `node::SERVING_PREFIXES`). A
    /// replica of the same term at or past it knows its view is current, however far
    /// behind it is on the rest of the configuration.
    #[serde(default)]
    pub serving_version: i64,
}

/// The path of [`RoleReport`] on every server's management API.
pub const ROLE_PATH: &str = api::paths::CMS_ROLE;

/// Asks the server at `base` (`http://address:port`) for its [`RoleReport`]; `None` when it
/// does not answer in time or answers something else.
pub async fn fetch_role(
    client: &api::Client,
    base: &str,
    timeout: std::time::Duration,
) -> Option<RoleReport> {
    client.get(base, ROLE_PATH, timeout).await.ok()
}

/// What a failover asks of a server's replica (`POST /internal/v1/replica/changes`): where
/// it stands, and with `after`, the items it holds that were written after that version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaChangesRequest {
    #[serde(default)]
    pub after: Option<i64>,
}

/// A server's replica: its position and line, and the items asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaChanges {
    pub fqdn: String,
    /// The newest version the replica holds, and the epoch of the master it follows.
    pub version: i64,
    pub epoch: i64,
    /// When `version` was created on the master (unix ms).
    pub created_at: i64,
    pub history: store::History,
    /// Every item written after `after` (read with `version` as one snapshot), and the
    /// version they bring a copy to: `version`, so a copy never stops part-way.
    pub items: Vec<store::Item>,
    pub through: i64,
}

/// The path of [`ReplicaChanges`] on every server's management API.
pub const REPLICA_CHANGES_PATH: &str = api::paths::REPLICA_CHANGES;
