//! The management API's routes.
//!
//! Bad input never reaches a cmdlet: a missing or wrong token is answered 401, a body
//! that is not the expected JSON (malformed, wrong types, unknown fields) 400 or 422 with
//! the parser's reason, all as an [`ErrorBody`].

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cms::master::Role;
use cms::protocol::{RoleReport, SyncRequest, SyncResponse};
use cms::replica::ReplicaError;
use utoipa::OpenApi;

use crate::Server;
use crate::api::{ApiDoc, ErrorBody, FORWARDED_HEADER, Health, InvokeRequest, InvokeResponse};

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: message.into(),
                output: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        format!(
            "the request body is not what this call takes: {}",
            rejection.body_text()
        ),
    )
}

pub fn router(server: Arc<Server>) -> Router {
    let protected = Router::new()
        .route("/api/v1/invoke", post(invoke))
        .route("/internal/v1/replica/sync", post(replica_sync))
        .route("/internal/v1/cms/role", get(cms_role))
        .layer(middleware::from_fn_with_state(server.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route; GET /openapi.json describes this API",
            )
        })
        .with_state(server)
}

async fn authenticate(
    State(server): State<Arc<Server>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request
        .headers()
        .get(cms::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs the deployment's admin token as `Authorization: Bearer <token>`; \
             `tandem shell --lab <dir>` sends the one in <dir>/lab.json",
        )),
        Some(token) if constant_time_eq(token.as_bytes(), server.token.as_bytes()) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin token is wrong; use the one in the lab's lab.json",
        )),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Liveness and identity; no token needed.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub(crate) async fn health(State(server): State<Arc<Server>>) -> Json<Health> {
    Json(Health {
        fqdn: server.fqdn.clone(),
        role: format!("{:?}", server.role),
        pool: server.pool.clone(),
        replica_version: server.replica.version(),
        cms_master: server
            .master
            .as_ref()
            .is_some_and(|m| matches!(m.role(), Role::Active { .. })),
    })
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Runs one cmdlet.
#[utoipa::path(
    post,
    path = "/api/v1/invoke",
    request_body = InvokeRequest,
    responses(
        (status = 200, body = InvokeResponse),
        (status = 400, body = ErrorBody, description = "malformed request or command"),
        (status = 401, body = ErrorBody, description = "no admin token, or a wrong one"),
        (status = 409, body = ErrorBody, description = "the change does not fit the current state"),
        (status = 422, body = ErrorBody, description = "the parameters do not bind, or the cmdlet needs a capability this build lacks"),
        (status = 503, body = ErrorBody, description = "the Central Management store is unavailable"),
    ),
    security(("admin_token" = []))
)]
pub(crate) async fn invoke(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Result<Json<InvokeResponse>, ApiError> {
    let Json(request) = body.map_err(json_error)?;
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    crate::exec::invoke(&server, request, forwarded)
        .await
        .map(Json)
}

/// Takes a push from the CMS master (Replica Replicator Agent).
#[utoipa::path(
    post,
    path = "/internal/v1/replica/sync",
    responses((status = 200, description = "applied, gap or fenced"), (status = 503, body = ErrorBody)),
    security(("admin_token" = []))
)]
pub(crate) async fn replica_sync(
    State(server): State<Arc<Server>>,
    body: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<Json<SyncResponse>, ApiError> {
    let Json(request) = body.map_err(json_error)?;
    match server.replica.sync(&request).await {
        Ok(response) => Ok(Json(response)),
        Err(e @ ReplicaError::Stopped) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// Whether this server is the active CMS master.
#[utoipa::path(
    get,
    path = "/internal/v1/cms/role",
    responses((status = 200, description = "this server's master role")),
    security(("admin_token" = []))
)]
pub(crate) async fn cms_role(State(server): State<Arc<Server>>) -> Json<RoleReport> {
    let (active, epoch, holder) = match server.master.as_ref().map(|m| m.role()) {
        Some(Role::Active { epoch, .. }) => (true, epoch, Some(server.fqdn.clone())),
        Some(Role::Standby { holder }) => (false, 0, holder),
        None => (false, 0, None),
    };
    Json(RoleReport {
        fqdn: server.fqdn.clone(),
        active,
        epoch,
        holder,
    })
}
