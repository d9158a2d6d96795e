//! The request and response bodies of the public routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A cmdlet call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// The cmdlet, for example `Set-CsSite`.
    pub cmdlet: String,
    /// Parameter name to value: a string, a number, `true`/`false` for switches and
    /// booleans, or an array of those. Names follow the shell's rules (case-insensitive,
    /// unambiguous prefixes, aliases).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// What a cmdlet returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeResponse {
    /// Records, text or nothing, as `cmdlet::Output` serialises them.
    #[schema(value_type = Object)]
    pub output: cmdlet::Output,
    /// Warnings to show before the output (PowerShell's `WARNING:` lines).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The CMS version a configuration change created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cms_version: Option<i64>,
}

impl InvokeResponse {
    /// An answer with `output` and nothing else.
    pub fn of(output: cmdlet::Output) -> InvokeResponse {
        InvokeResponse {
            output,
            warnings: Vec::new(),
            cms_version: None,
        }
    }

    /// An answer that is text.
    pub fn text(text: impl Into<String>) -> InvokeResponse {
        InvokeResponse::of(cmdlet::Output::Text(text.into()))
    }

    /// An answer that is records.
    pub fn records(records: Vec<cmdlet::Record>) -> InvokeResponse {
        InvokeResponse::of(cmdlet::Output::Records(records))
    }

    /// The same answer with a warning added.
    pub fn warn(mut self, warning: impl Into<String>) -> InvokeResponse {
        self.warnings.push(warning.into());
        self
    }
}

/// Why a call failed: every 4xx and 5xx answer has this body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong and the command that fixes it.
    pub error: String,
    /// Output produced before the failure (a validation report, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub output: Option<cmdlet::Output>,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub fqdn: String,
    /// `FrontEnd` or `Edge`.
    pub role: String,
    pub pool: String,
    /// The CMS version this server's replica holds.
    pub replica_version: i64,
    /// Whether this server is the active Central Management master.
    pub cms_master: bool,
    /// Whether it is the active master of a store that takes changes (not one being moved
    /// away, or fenced): there is never more than one.
    #[serde(default)]
    pub cms_writable: bool,
    /// The durable operations this server's engine runs now, by key (`pool/7`,
    /// `cms/pool2.contoso.com/3`): how every other server decides whether an operation's
    /// runner is still at work.
    #[serde(default)]
    pub running_operations: Vec<String>,
    /// Whether this server's replica has applied a push of a proven active master since
    /// the server started: a Front End serves nobody in full mode and takes no user's
    /// write until it has (its view of who serves whom may predate a failover).
    #[serde(default)]
    pub caught_up: bool,
}
