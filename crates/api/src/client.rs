//! The one client of the management API: the shell, the lab, the benchmarks and every
//! server-to-server call (forwarded cmdlets, CMS pushes, backup shipments, operation
//! steps, `/health` probes) go through [`Client`].

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{ErrorBody, Health, InvokeRequest, InvokeResponse};
use crate::{FORWARDED_HEADER, OPERATOR_HEADER, TOKEN_HEADER, bearer, paths};

/// How long a connection may take to open: every server is on a local network.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `https://address:port`, the base of a server's API (every listener speaks TLS).
pub fn base(address: impl std::fmt::Display, port: u16) -> String {
    format!("https://{address}:{port}")
}

/// An HTTPS client with the deployment's TLS settings (`pki::client_config`: its CA as
/// the only root, and a server's own certificate when it calls another server) and no
/// proxy. Every HTTP client of tandem is made here.
pub fn https(tls: &std::sync::Arc<rustls::ClientConfig>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls::ClientConfig::clone(tls))
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
}

/// Why a call did not return a result.
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

impl CallError {
    /// The reason in one line, whichever way the call failed.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// Whether nothing listened at the server's address (the connection was refused at
    /// once): its process is down, as opposed to paused, overloaded or cut off, where a
    /// call times out.
    pub fn nothing_listens(&self) -> bool {
        matches!(self, CallError::Unreachable { source, .. } if source.is_connect() && !source.is_timeout())
    }

    /// The status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Refused { status, .. } => Some(*status),
            CallError::Unreachable { .. } => None,
        }
    }
}

/// A client holding the deployment's admin token; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    token: String,
    /// The server on whose behalf calls are forwarded (see [`FORWARDED_HEADER`]).
    forwarded_by: Option<String>,
}

impl Client {
    /// A client for `token` with the deployment's TLS settings (see [`https`]).
    pub fn new(token: impl Into<String>, tls: &std::sync::Arc<rustls::ClientConfig>) -> Client {
        let http = https(tls)
            .build()
            .expect("a client with preconfigured TLS builds");
        Client {
            http,
            token: token.into(),
            forwarded_by: None,
        }
    }

    /// The same client, marking [`Client::forward`]ed calls as sent by `fqdn`.
    pub fn on_behalf_of(mut self, fqdn: impl Into<String>) -> Client {
        self.forwarded_by = Some(fqdn.into());
        self
    }

    /// The HTTP client underneath, for the few calls that are not JSON (file bodies).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Runs one cmdlet at `base`.
    pub async fn invoke(
        &self,
        base: &str,
        request: &InvokeRequest,
        timeout: Duration,
    ) -> Result<InvokeResponse, CallError> {
        self.send(base, paths::INVOKE, Some(request), timeout, false, None)
            .await
    }

    /// Passes a cmdlet call on to another server, marked as forwarded so that it is not
    /// forwarded again, on behalf of the operator `operator` names ([`OPERATOR_HEADER`]'s
    /// value: the server that runs it checks that operator's roles and records it).
    pub async fn forward(
        &self,
        base: &str,
        request: &InvokeRequest,
        operator: &str,
        timeout: Duration,
    ) -> Result<InvokeResponse, CallError> {
        self.send(
            base,
            paths::INVOKE,
            Some(request),
            timeout,
            true,
            Some(operator),
        )
        .await
    }

    /// `POST {base}{path}` with a JSON body: the JSON answer, or the [`ErrorBody`] of a
    /// refusal. `forwarded` marks the call as one server passing another's on.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.send(base, path, Some(request), timeout, true, None)
            .await
    }

    /// `GET {base}{path_and_query}` with the token.
    pub async fn get<Resp: DeserializeOwned>(
        &self,
        base: &str,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.send::<(), Resp>(base, path_and_query, None, timeout, false, None)
            .await
    }

    /// A server's `/health`: the one liveness probe of the deployment.
    pub async fn health(&self, base: &str, timeout: Duration) -> Result<Health, CallError> {
        self.get(base, paths::HEALTH, timeout).await
    }

    /// One call; `forwarded` marks it as a server's, `operator` names whose call a
    /// forwarded cmdlet is.
    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        body: Option<&Req>,
        timeout: Duration,
        forwarded: bool,
        operator: Option<&str>,
    ) -> Result<Resp, CallError> {
        let unreachable = |source| CallError::Unreachable {
            base: base.to_string(),
            source,
        };
        let url = format!("{base}{path}");
        let mut call = match body {
            Some(body) => self.http.post(url).json(body),
            None => self.http.get(url),
        }
        .header(TOKEN_HEADER, bearer(&self.token))
        .timeout(timeout);
        if forwarded && let Some(fqdn) = &self.forwarded_by {
            call = call.header(FORWARDED_HEADER, fqdn);
        }
        if let Some(operator) = operator {
            call = call.header(OPERATOR_HEADER, operator);
        }
        if let Some(operation) = crate::operation::header_value() {
            call = call.header(crate::operation::OPERATION_HEADER, operation);
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
}
