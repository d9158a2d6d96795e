//! Where every error a cmdlet or a route meets becomes an HTTP answer: one `From` per
//! error type, and nowhere else. Handlers say what went wrong in the domain's terms —
//! their own refusals as [`Refused`], or the errors of the engine, the CMS master, the
//! store, the rules, another server — and `?` does the rest.

use api::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cms::master::MasterError;
use engine::Failure;
use node::MasterUnavailable;
use store::{StoreError, WriteRefused};

/// A refusal a handler makes by itself, by what the operator does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The request is malformed or names nothing (400).
    BadRequest(String),
    /// The parameters do not bind, or the cmdlet is not run by a server (422).
    Unprocessable(String),
    /// It names something that does not exist (404).
    NotFound(String),
    /// The deployment's state does not allow it now (409).
    Conflict(String),
    /// A part of the deployment it needs does not answer (503).
    Unavailable(String),
    /// Too much in one call (413).
    TooLarge(String),
}

/// What every handler and route of the management API fails with: the answer it becomes.
#[derive(Debug)]
pub struct Error(pub ApiError);

impl Error {
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn message(&self) -> &str {
        &self.0.body.error
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error(e)
    }
}

impl From<Refused> for Error {
    fn from(r: Refused) -> Error {
        let (status, message) = match r {
            Refused::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Refused::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            Refused::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Refused::Conflict(m) => (StatusCode::CONFLICT, m),
            Refused::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            Refused::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
        };
        Error(ApiError::new(status, message))
    }
}

fn status_of(kind: Failure) -> StatusCode {
    match kind {
        Failure::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        Failure::NotFound => StatusCode::NOT_FOUND,
        Failure::Conflict => StatusCode::CONFLICT,
        Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Error {
        match e {
            // Another server's answer keeps its status.
            engine::Error::Remote(call) => call.into(),
            engine::Error::Master(m) => m.into(),
            other => {
                let output = other.output().map(|t| cmdlet::Output::Text(t.to_string()));
                let mut error = ApiError::new(status_of(other.kind()), other.to_string());
                error.body.output = output;
                Error(error)
            }
        }
    }
}

impl From<dr::Refusal> for Error {
    fn from(r: dr::Refusal) -> Error {
        engine::Error::from(r).into()
    }
}

impl From<MasterError> for Error {
    fn from(e: MasterError) -> Error {
        Error(match e {
            MasterError::Refused(WriteRefused::NotMaster { .. }) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{e}; the change was not made. Run it again: the shell reaches whichever Front End is master now, \
                     or run Invoke-CsManagementServerFailover if none is"
                ),
            ),
            // The documented ###50020 refusal: the store is being moved; try once it is.
            MasterError::Refused(WriteRefused::Moving { .. }) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            MasterError::NoQuorum(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            MasterError::InvalidTopology(ref report) => {
                let rows = api::records::problems(report);
                ApiError::new(StatusCode::CONFLICT, e.to_string())
                    .with_output(cmdlet::Output::Records(rows))
            }
            MasterError::Store(_) | MasterError::BadTopology(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        })
    }
}

impl From<MasterUnavailable> for Error {
    fn from(e: MasterUnavailable) -> Error {
        Error(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.0))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    }
}

impl From<api::CallError> for Error {
    fn from(e: api::CallError) -> Error {
        Error(e.into())
    }
}

impl From<backup::service::BackupError> for Error {
    fn from(e: backup::service::BackupError) -> Error {
        Error(e.into())
    }
}
