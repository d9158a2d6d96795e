//! The disaster-recovery operations engine's pure half: what state a pool is in, which
//! steps a failover or failback takes, and which requests are refused and why.
//!
//! Everything here is data and rules; the server crate does the I/O (CMS writes, calls to
//! the pools' Front Ends) and runs the steps. Keeping the rules here means the ordering
//! rule of seed 004, the Edge next-hop refusal and the step plans are tested without a
//! single socket.

pub mod cms;
pub mod operation;
pub mod progress;
pub mod rules;
pub mod state;

pub use operation::{Kind, Loss, Operation, Options, Step, StepRecord};
pub use progress::{OpState, Progress, StepName, StepState};
pub use rules::Refusal;
pub use state::{FailMode, Phase, PoolState};

pub use clock::format_timestamp;
