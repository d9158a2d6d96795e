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
    /// Whether it is the active master of a store that takes changes (not one being moved
    /// away, or fenced): there is never more than one.
    #[serde(default)]
    pub cms_writable: bool,
    /// The failover and failback operations this server is running now, by id.
    #[serde(default)]
    pub running_operations: Vec<u64>,
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

/// Why a call through [`invoke`] did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server could not be reached, or answered something that is not this API.
    #[error("cannot reach {base}: {source}")]
    Unreachable {
        base: String,
        source: reqwest::Error,
    },
    /// The server answered with an error status and a reason.
    #[error("{}", body.error)]
    Refused { status: u16, body: ErrorBody },
}

/// Calls `POST {base}/api/v1/invoke` with the admin token; `forwarded_by` marks a call
/// one server passes on to another. The one client of this API: the shell, the lab and
/// the servers themselves use it.
pub async fn invoke(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    forwarded_by: Option<&str>,
    request: &InvokeRequest,
    timeout: std::time::Duration,
) -> Result<InvokeResponse, CallError> {
    call(
        client,
        base,
        "/api/v1/invoke",
        token,
        forwarded_by,
        request,
        timeout,
    )
    .await
}

/// `POST {base}{path}` of this API with the admin token: the JSON answer, or the
/// [`ErrorBody`] of a refusal.
pub async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    forwarded_by: Option<&str>,
    request: &Req,
    timeout: std::time::Duration,
) -> Result<Resp, CallError> {
    let unreachable = |source| CallError::Unreachable {
        base: base.to_string(),
        source,
    };
    let mut call = client
        .post(format!("{base}{path}"))
        .header(cms::TOKEN_HEADER, cms::bearer(token))
        .timeout(timeout)
        .json(request);
    if let Some(fqdn) = forwarded_by {
        call = call.header(FORWARDED_HEADER, fqdn);
    }
    let response = call.send().await.map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.map_err(unreachable);
    }
    let text = response.text().await.map_err(unreachable)?;
    let body = serde_json::from_str(&text).unwrap_or_else(|_| ErrorBody {
        error: format!("{base} answered {status}: {text}"),
        output: None,
    });
    Err(CallError::Refused {
        status: status.as_u16(),
        body,
    })
}
