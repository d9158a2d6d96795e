//! The management API's request and response types, shared by the server and the shell,
//! and the OpenAPI document that describes them (served at `/openapi.json`).
//!
//! Every cmdlet is one call: `POST /api/v1/invoke` with the cmdlet's name and its
//! parameters as JSON. The server binds them with the same catalogue and binder as the
//! shell, so the API accepts exactly what the shell accepts and refuses the rest with the
//! same messages.

use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

/// The header a server sets when it forwards a call to another server (to the active
/// CMS master, or to the server `-ComputerName` names). A forwarded call is never
/// forwarded again.
pub const FORWARDED_HEADER: &str = "x-tandem-forwarded-by";

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
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "tandem management API",
        description = "One server's management API. Every call except /health and /openapi.json \
            needs the deployment's admin token as `Authorization: Bearer <token>`."
    ),
    paths(
        crate::http::health,
        crate::http::invoke,
        crate::http::replica_sync,
        crate::http::cms_role
    ),
    components(schemas(InvokeRequest, InvokeResponse, ErrorBody, Health))
)]
pub struct ApiDoc;
