//! The outcome of a command, as an exit code: the same everywhere.

use std::process::ExitCode;

/// The outcome of a command, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0
    Success,
    /// 1: an operation (cmdlet, check) failed.
    Failed,
    /// 2: the input could not be understood.
    Usage,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        ExitCode::from(match s {
            Status::Success => 0,
            Status::Failed => 1,
            Status::Usage => 2,
        })
    }
}
