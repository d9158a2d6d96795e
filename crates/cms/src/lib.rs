//! The Central Management services: Master Replicator, File Transfer Agent and the Replica
//! Replicator Agent.
//!
//! - The **master** ([`master`]) runs on every Front End of the CMS pool; the one holding
//!   the lease in the pool's Back End is active, the others wait to take over. The active
//!   master pushes each server the changes since the version it last acknowledged, plus a
//!   heartbeat when there is nothing new, and records what each replica reported.
//! - The **replica agent** ([`replica`]) runs on every server: it stores a batch, makes the
//!   new configuration live and acknowledges with its version.
//!
//! - The **witness** votes ([`witness`]) keep one writable store through a network cut,
//!   when the deployment names a witness.
//!
//! The wire format between them is in [`protocol`]. Configuration keys are in [`keys`].

pub mod directory;
pub mod master;
pub mod protocol;
pub mod replica;
pub mod witness;

/// Keys of the configuration items in the CMS.
pub mod keys {
    /// The topology servers run on (enabled).
    pub const TOPOLOGY_ACTIVE: &str = "topology/active";
    /// The topology most recently published; `Enable-CsTopology` makes it active.
    pub const TOPOLOGY_PUBLISHED: &str = "topology/published";
    /// The Location Information Service data (E9-1-1 locations, subnets, switches), under
    /// this prefix: what `Export-/Import-CsLisConfiguration` move.
    pub const LIS_PREFIX: &str = "lis/";
}

/// How long a master lease lasts without renewal: a crashed master is replaced within
/// about this long.
pub const LEASE_TTL_MS: i64 = 3_000;
