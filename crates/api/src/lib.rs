//! The management API as the rest of tandem sees it: the request and response types of
//! every route, the paths, one typed client, and the checks every listener shares.
//!
//! Every cmdlet is one call, `POST /api/v1/invoke`, with the cmdlet's name and its
//! parameters as JSON; the server binds them with the same catalogue and binder as the
//! shell, so the API accepts exactly what the shell accepts. The other routes are the
//! servers' own: CMS pushes, backup shipments, the steps of durable operations.
//!
//! This crate does no work of its own and knows no server: the shell, the lab, the
//! benchmarks and the servers all talk through [`Client`], so there is one place where a
//! call gets its token, its timeout and its error shape.

pub mod bind;
mod client;
mod error;
pub mod faults;
pub mod openapi;
pub mod operation;
pub mod records;
mod types;
pub mod users;

pub use client::{CallError, Client, base, https};
pub use error::{
    ApiError, bearer_token, check_token, constant_time_eq, method_not_allowed, shown, token_digest,
    tokens_match, unauthorized,
};
pub use types::{ErrorBody, Health, InvokeRequest, InvokeResponse};

/// The HTTP header carrying the deployment's admin token.
pub const TOKEN_HEADER: &str = "authorization";

/// `Bearer <token>`, the value of [`TOKEN_HEADER`].
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The header a server sets when it forwards a call to another server (to the active
/// CMS master, to a Front End of a pool, or to the server `-ComputerName` names). A
/// forwarded call is never forwarded again.
pub const FORWARDED_HEADER: &str = "x-tandem-forwarded-by";

/// The header with which a server that forwards an operator's cmdlet names the operator
/// and its roles (`name;Role,Role`); a server believes it only from a caller holding the
/// deployment's token.
pub const OPERATOR_HEADER: &str = "x-tandem-operator";

/// The header with which an Edge's Web Conferencing Edge names the outside client whose
/// download it passes on; user services believe it only from an Edge server's internal
/// address, so that failed sign-ins through an Edge lock out that client, not the Edge.
pub const CLIENT_ADDRESS_HEADER: &str = "x-tandem-client-address";

/// The routes of a server's management API.
pub mod paths {
    /// Liveness and identity; no token.
    pub const HEALTH: &str = "/health";
    /// The OpenAPI document; no token.
    pub const OPENAPI: &str = "/openapi.json";
    /// The OpenAPI document of the backup link (served by every Front End on its Backup
    /// Service port); no token.
    pub const BACKUP_LINK_OPENAPI: &str = "/openapi/backup-link.json";
    /// One cmdlet call.
    pub const INVOKE: &str = "/api/v1/invoke";
    /// The server's figures in Prometheus's text format; any operator's token, or the
    /// deployment's.
    pub const METRICS: &str = "/metrics";
    /// Many users enabled in one CMS version (the lab's `--users N`).
    pub const USERS_BULK: &str = "/api/v1/users/bulk";
    /// A push from the CMS master to a replica.
    pub const REPLICA_SYNC: &str = "/internal/v1/replica/sync";
    /// A server's replica: where it stands, and the items it holds after a version (what
    /// a disaster CMS failover catches the standby up from).
    pub const REPLICA_CHANGES: &str = "/internal/v1/replica/changes";
    /// A server's CMS master role.
    pub const CMS_ROLE: &str = "/internal/v1/cms/role";
    /// A vote for a Central Management store: asked of the witness, or of the standby
    /// store through a Front End of its pool (see `cms::witness`).
    pub const CMS_VOTE: &str = "/internal/v1/cms/vote";
    /// A pool operation's step, run on a Front End of the pool whose part it is.
    pub const DR_POOL: &str = "/internal/v1/dr/pool";
    /// A pool operation's reads and compare-and-set writes of the CMS, on the master.
    pub const DR_CMS: &str = "/internal/v1/dr/cms";
    /// What a CMS failover asks of the old store's Front End.
    pub const CMS_STORE: &str = "/internal/v1/cms/store";
    /// Media relay credentials from an Edge's MRAS, for a Front End's user.
    pub const MRAS: &str = "/internal/v1/mras/credentials";
    /// The fault-injection hook, served only when `TANDEM_DR_FAULTS=1`.
    pub const DR_FAULT: &str = "/internal/v1/dr/crash";
}
