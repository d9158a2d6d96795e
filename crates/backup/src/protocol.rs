//! What crosses the backup link between two paired pools (JSON over HTTP, authenticated
//! with the deployment's token).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use store::{Change, Item, UserItem, VersionInfo};

/// The route on the partner's backup port that takes a batch.
pub const IMPORT_PATH: &str = "/internal/v1/backup/import";
/// The route that reports what the partner has imported.
pub const STATE_PATH: &str = "/internal/v1/backup/state";
/// The route that returns per-user checksums of the backup copy.
pub const CHECKSUMS_PATH: &str = "/internal/v1/backup/checksums";

/// The largest shipment the backup link takes. One user item of the largest size user
/// services accept travels in a shipment of its own, base64-encoded (4/3) as a file or
/// JSON-escaped as a value; this leaves room for both.
pub const LINK_MAX_BODY_BYTES: usize = 4 * api::users::USER_ITEM_MAX_BYTES;

/// Shipments are cut at about this many bytes as well as at `MAX_BATCH` changes, so that a
/// burst of large items travels in several shipments, none near the link's limit.
pub const BATCH_MAX_BYTES: usize = 8 * 1024 * 1024;

const _: () = assert!(LINK_MAX_BODY_BYTES >= 2 * api::users::USER_ITEM_MAX_BYTES + BATCH_MAX_BYTES);

/// One shipment from `source_pool`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub source_pool: String,
    /// Short module name (`PresenceFocus`, `DataConf`, `CMSMaster`).
    pub module: String,
    pub batch: ImportBatch,
    /// File-store contents referred to by the batch (DataConf), base64 by SHA-256.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// The payload of a shipment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImportBatch {
    /// Change-log rows, in order.
    Changes { changes: Vec<Change> },
    /// Part `part` of the full resync `resync`: the module's whole content, current through
    /// `through_seq`, cut into parts of about [`BATCH_MAX_BYTES`] so that no body nears
    /// the link's limit whatever the module's size. The backup copy stages the parts and
    /// replaces the module's copy with them in one transaction when the `last` arrives; a
    /// resync cut short leaves the copy as it was and starts again at part 0.
    FullPart {
        resync: String,
        part: i64,
        items: Vec<UserItem>,
        through_seq: i64,
        last: bool,
    },
    /// CMS versions for the standby: the sender's consecutive versions after `after`,
    /// of the line `history` (a standby off it is rebuilt, see `store::history`).
    Cms {
        versions: Vec<CmsVersion>,
        #[serde(default)]
        after: i64,
        #[serde(default)]
        history: store::History,
    },
}

/// One CMS version and the items it wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CmsVersion {
    pub version: i64,
    pub epoch: i64,
    pub created_at: i64,
    pub description: String,
    pub items: Vec<Item>,
}

impl CmsVersion {
    pub fn into_parts(self) -> (VersionInfo, Vec<Item>) {
        (
            VersionInfo {
                version: self.version,
                epoch: self.epoch,
                created_at: self.created_at,
                description: self.description,
            },
            self.items,
        )
    }
}

/// The importer's answer: everything through `applied_seq` is in the backup copy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ImportResponse {
    pub applied_seq: i64,
}

/// What the partner holds of one module from one source pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportStateReport {
    pub module: String,
    pub applied_seq: i64,
    pub last_import_at: i64,
}

/// Per-user checksums of one module: user → (items, checksum).
pub type Checksums = BTreeMap<String, (usize, String)>;

/// The route that reports one pool's Backup Service status (its exports and imports).
pub const STATUS_PATH: &str = "/internal/v1/backup/status";

/// One pool's Backup Service, as its own Back End sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    pub pool: String,
    pub partner: Option<String>,
    pub sync_interval_secs: u64,
    pub exports: Vec<ExportReport>,
    pub imports: Vec<ImportStateReport>,
    /// When this report was made (unix ms), the clock lags are measured against.
    pub at_ms: i64,
    /// The Front End running the exporter, if any holds the lease.
    pub active_exporter: Option<String>,
    /// How the answering Front End acknowledges its users' writes (synchronous commit).
    #[serde(default)]
    pub commit: crate::status::CommitState,
}

/// The export side of one module.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    pub module: String,
    pub applicable: bool,
    pub pending: i64,
    pub oldest_pending_ms: Option<i64>,
    /// The users the pending changes belong to (the first 1,000, sorted).
    #[serde(default)]
    pub pending_users: Vec<String>,
    pub acked_seq: i64,
    pub head_seq: i64,
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    /// A full resync was asked for and has not run yet.
    #[serde(default)]
    pub resync: bool,
    /// Changes that could not be shipped (the first 100), with why.
    #[serde(default)]
    pub unshippable: Vec<store::Unshippable>,
}

impl ExportReport {
    /// What the export state is derived from (`status::export_status`); `no_exporter`:
    /// no Front End of the pool runs the exporter.
    pub fn facts(&self, no_exporter: bool) -> crate::status::ExportFacts {
        crate::status::ExportFacts {
            applicable: self.applicable,
            pending: self.pending,
            oldest_pending_ms: self.oldest_pending_ms,
            failing: self.last_error.is_some(),
            no_exporter,
            unshippable: self.unshippable.len(),
        }
    }
}
