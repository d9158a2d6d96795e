//! The Backup Service: keeps a copy of each pool's data in its backup pool.
//!
//! Every change to a user's stored data is committed together with a change-log row in the
//! home pool's Back End (see `store`). On each paired pool one Front End — whichever holds
//! the Backup Service lease in the Back End — ships those rows to a Front End of the
//! partner pool as they commit, in batches, over the authenticated backup link; the
//! partner stores them in its own Back End as a backup copy, apart from its own users.
//! On the pool that hosts the Central Management store the CMS versions are shipped the
//! same way, to the standby CMS in the partner's Back End.
//!
//! - [`module`]: the modules and their names (long, short, categories).
//! - [`status`]: the documented export/import states, computed from numbers.
//! - [`protocol`]: what crosses the link.
//! - [`service`]: the exporter loop and the importer.
//! - [`link`]: the backup link's listener, which the partner's exporter calls.
//! - [`heard`]: what the partner last said it had not shipped here (a disaster's loss).
//! - [`commit`]: synchronous commit, where a pair is set to it.

pub mod commit;
pub mod heard;
pub mod link;
pub mod module;
pub mod protocol;
pub mod service;
pub mod status;

pub use module::Module;
