//! The bulk enable call the lab uses to enable many users in one CMS version.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most users one bulk enable takes; larger populations are enabled in chunks, one CMS
/// version each, so that no version outgrows a replication push.
pub const BULK_MAX_USERS: usize = 2_000;

/// The largest bulk-enable body accepted: [`BULK_MAX_USERS`] users with generous room for
/// long names.
pub const BULK_MAX_BODY_BYTES: usize = BULK_MAX_USERS * 1_024;

/// The largest body user services accept (a setting, a contact, a meeting's content):
/// every link a user's item crosses later (the backup link between paired pools) takes at
/// least one item of this size.
pub const USER_ITEM_MAX_BYTES: usize = 16 * 1024 * 1024;

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
    /// `SHA-256(user@domain:domain:password)` in hex: without it the user can sign in
    /// with MD5 digest only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_sha256: Option<String>,
}

/// The answer to a bulk enable.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEnableResponse {
    pub enabled: usize,
    pub cms_version: i64,
}
