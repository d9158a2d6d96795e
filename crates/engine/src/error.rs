//! Why an operation or an engine call failed, by what an operator does about it. The
//! management API turns it into an HTTP answer in one place (`mgmt::error`).

use cms::master::MasterError;
use store::{StoreError, WriteRefused};

/// What kind of failure an [`Error`] is, by what the operator does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request itself is wrong.
    Invalid,
    NotFound,
    /// The state of the deployment does not allow it now (another runner, a step that
    /// found a problem).
    Conflict,
    /// A part of the deployment it needs does not answer now.
    Unavailable,
    /// A bug or a broken store.
    Internal,
}

/// Why an operation or an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rules refuse it (see `dr::rules`).
    #[error(transparent)]
    Refused(#[from] dr::Refusal),
    /// Another server's answer, passed on.
    #[error(transparent)]
    Remote(#[from] api::CallError),
    /// The CMS master refused or failed.
    #[error(transparent)]
    Master(#[from] MasterError),
    #[error("{message}")]
    Failed {
        kind: Failure,
        message: String,
        /// Lines produced before the failure (`-Verbose` step lines).
        output: Option<String>,
    },
}

impl Error {
    fn failed(kind: Failure, message: impl Into<String>) -> Error {
        Error::Failed {
            kind,
            message: message.into(),
            output: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::failed(Failure::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::failed(Failure::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::failed(Failure::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::failed(Failure::Unavailable, message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Error {
        Error::failed(Failure::Internal, e.to_string())
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> Failure {
        match self {
            Error::Refused(
                dr::Refusal::CmsUnavailable { .. } | dr::Refusal::TargetUnreachable { .. },
            ) => Failure::Unavailable,
            Error::Refused(dr::Refusal::NotAPool { .. }) => Failure::Conflict,
            Error::Refused(_) => Failure::Conflict,
            Error::Remote(api::CallError::Unreachable { .. }) => Failure::Unavailable,
            Error::Remote(api::CallError::Refused { status, .. }) => match status {
                400 | 422 => Failure::Invalid,
                404 => Failure::NotFound,
                409 => Failure::Conflict,
                502..=504 => Failure::Unavailable,
                _ => Failure::Internal,
            },
            Error::Master(MasterError::Refused(WriteRefused::NotMaster { .. })) => {
                Failure::Unavailable
            }
            Error::Master(MasterError::Refused(WriteRefused::Moving { .. })) => Failure::Conflict,
            Error::Master(MasterError::NoQuorum(_)) => Failure::Unavailable,
            Error::Master(_) => Failure::Internal,
            Error::Failed { kind, .. } => *kind,
        }
    }

    /// Whether trying again later may succeed (a master moving, a server restarting).
    pub fn is_unavailable(&self) -> bool {
        self.kind() == Failure::Unavailable
    }

    /// The same kind of failure with another message.
    pub fn with_message(self, message: String) -> Error {
        let output = self.output().map(str::to_string);
        Error::Failed {
            kind: self.kind(),
            message,
            output,
        }
    }

    /// The same failure with lines produced before it.
    pub fn with_output(self, text: String) -> Error {
        let message = self.to_string();
        Error::Failed {
            kind: self.kind(),
            message,
            output: Some(text),
        }
    }

    pub fn output(&self) -> Option<&str> {
        match self {
            Error::Failed { output, .. } => output.as_deref(),
            _ => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::internal(e)
    }
}
