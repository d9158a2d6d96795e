//! The management API's routes.
//!
//! Bad input never reaches a cmdlet: a missing or wrong token is answered 401, a body
//! that is not the expected JSON (malformed, wrong types, unknown fields) 400 or 422 with
//! the parser's reason, all as an [`ErrorBody`].

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
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
        .route(
            "/internal/v1/replica/sync",
            post(replica_sync).layer(DefaultBodyLimit::max(cms::protocol::SYNC_MAX_BODY_BYTES)),
        )
        .route(cms::protocol::ROLE_PATH, get(cms_role))
        .route(
            crate::users::BULK_PATH,
            post(users_bulk).layer(DefaultBodyLimit::max(crate::users::BULK_MAX_BODY_BYTES)),
        )
        .route(crate::failover::POOL_ACTION_PATH, post(dr_pool_action))
        .route(crate::failover::CMS_PATH, post(dr_cms))
        .route(crate::cmsfailover::STORE_PATH, post(cms_store));
    let protected = if crate::failover::faults_enabled() {
        protected.route(crate::failover::CRASH_PATH, post(dr_crash))
    } else {
        protected
    };
    let protected = protected.layer(middleware::from_fn_with_state(server.clone(), authenticate));
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
    check_token(request.headers(), &server.token)?;
    Ok(next.run(request).await)
}

/// Checks the deployment's admin token (`Authorization: Bearer <token>`, compared in
/// constant time): the management API's and the lab DNS server's.
pub(crate) fn check_token(headers: &axum::http::HeaderMap, token: &str) -> Result<(), ApiError> {
    let given = headers
        .get(cms::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs the deployment's admin token as `Authorization: Bearer <token>`; \
             `tandem shell --lab <dir>` sends the one in <dir>/lab.json",
        )),
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin token is wrong; use the one in the lab's lab.json",
        )),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guessed token was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Liveness and identity; no token needed.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub(crate) async fn health(State(server): State<Arc<Server>>) -> Json<Health> {
    let cms_writable = match server.master() {
        Some(m) if matches!(m.role(), Role::Active { .. }) => m
            .backend()
            .cms_role()
            .await
            .is_ok_and(|r| r.mode == store::CmsMode::Active),
        _ => false,
    };
    Json(Health {
        cms_writable,
        fqdn: server.fqdn.clone(),
        role: format!("{:?}", server.role),
        pool: server.pool.clone(),
        replica_version: server.replica.version(),
        cms_master: server
            .master()
            .is_some_and(|m| matches!(m.role(), Role::Active { .. })),
        running_operations: server.running_operations(),
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

/// Runs one step's work on this Front End's pool (the failover engine's calls).
async fn dr_pool_action(
    State(server): State<Arc<Server>>,
    body: Result<Json<crate::failover::PoolAction>, JsonRejection>,
) -> Result<Json<crate::failover::PoolActionReply>, ApiError> {
    let Json(action) = body.map_err(json_error)?;
    crate::failover::pool_action(&server, action)
        .await
        .map(Json)
}

/// The failover engine's reads and compare-and-set writes of the CMS, on the master.
async fn dr_cms(
    State(server): State<Arc<Server>>,
    body: Result<Json<crate::failover::CmsRequest>, JsonRejection>,
) -> Result<Json<crate::failover::CmsReply>, ApiError> {
    let Json(request) = body.map_err(json_error)?;
    match server.master() {
        Some(m) if matches!(m.role(), Role::Active { .. }) => {
            crate::failover::on_master(m, request).await.map(Json)
        }
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} is not the active Central Management master",
                server.fqdn
            ),
        )),
    }
}

/// What a CMS failover asks of the old store's Front End.
async fn cms_store(
    State(server): State<Arc<Server>>,
    body: Result<Json<crate::cmsfailover::StoreAction>, JsonRejection>,
) -> Result<Json<crate::cmsfailover::StoreReply>, ApiError> {
    let Json(action) = body.map_err(json_error)?;
    crate::cmsfailover::store_action(&server, action)
        .await
        .map(Json)
}

/// Test hook (`TANDEM_DR_FAULTS=1` only): crash when the engine reaches a step.
async fn dr_crash(
    State(server): State<Arc<Server>>,
    body: Result<Json<Option<crate::failover::CrashPoint>>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(point) = body.map_err(json_error)?;
    *server.crash_at.lock().expect("crash point lock") = point;
    Ok(Json(serde_json::json!({ "armed": true })))
}

/// Whether this server is the active CMS master.
#[utoipa::path(
    get,
    path = "/internal/v1/cms/role",
    responses((status = 200, description = "this server's master role")),
    security(("admin_token" = []))
)]
pub(crate) async fn cms_role(State(server): State<Arc<Server>>) -> Json<RoleReport> {
    let (active, epoch, holder) = match server.master().map(|m| m.role()) {
        Some(Role::Active { epoch, .. }) => (true, epoch, Some(server.fqdn.clone())),
        Some(Role::Standby { holder }) => (false, 0, holder),
        None => (false, 0, None),
    };
    let store = match server.master() {
        Some(m) => m.backend().cms_role().await.ok(),
        None => None,
    };
    Json(RoleReport {
        fqdn: server.fqdn.clone(),
        active,
        epoch,
        holder,
        store_mode: store.as_ref().map(|r| r.mode.as_str().to_string()),
        term_start: store.as_ref().map_or(0, |r| r.term_start),
        shared_through: store.map_or(0, |r| r.shared_through),
    })
}

/// The backup link: what a paired pool's Backup Service calls on this pool's Front Ends,
/// on the Backup Service port, with the deployment's token.
pub fn backup_router(server: Arc<Server>) -> Router {
    Router::new()
        .route(backup::protocol::IMPORT_PATH, post(backup_import))
        .route(backup::protocol::STATUS_PATH, get(backup_status))
        .route(backup::protocol::CHECKSUMS_PATH, get(backup_checksums))
        .layer(middleware::from_fn_with_state(server.clone(), authenticate))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such backup route") })
        .with_state(server)
}

fn backup_error(e: backup::service::BackupError) -> ApiError {
    use backup::service::BackupError;
    let status = match &e {
        BackupError::Refused(_) | BackupError::NotPaired(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

fn no_backup_service(server: &Server) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "{} runs no Backup Service (it is not a Front End of a paired pool)",
            server.fqdn
        ),
    )
}

async fn backup_import(
    State(server): State<Arc<Server>>,
    body: Result<Json<backup::protocol::ImportRequest>, JsonRejection>,
) -> Result<Json<backup::protocol::ImportResponse>, ApiError> {
    let Json(request) = body.map_err(json_error)?;
    let Some(service) = &server.backup else {
        return Err(no_backup_service(&server));
    };
    if !service.is_running() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the LYNCBACKUP service of {} is stopped", server.fqdn),
        ));
    }
    let topology = server.replica.topology();
    backup::service::import(service.backend(), &topology, &server.pool, request)
        .await
        .map(Json)
        .map_err(backup_error)
}

async fn backup_status(
    State(server): State<Arc<Server>>,
) -> Result<Json<backup::protocol::PoolStatus>, ApiError> {
    let Some(service) = &server.backup else {
        return Err(no_backup_service(&server));
    };
    service.local_status().await.map(Json).map_err(backup_error)
}

#[derive(Debug, serde::Deserialize)]
struct ChecksumQuery {
    source: String,
    module: String,
}

async fn backup_checksums(
    State(server): State<Arc<Server>>,
    query: Result<axum::extract::Query<ChecksumQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<backup::protocol::Checksums>, ApiError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let Some(service) = &server.backup else {
        return Err(no_backup_service(&server));
    };
    let module = backup::Module::from_short(&q.module).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown module {:?}", q.module),
        )
    })?;
    backup::service::backup_checksums(service.backend(), &q.source, module)
        .await
        .map(Json)
        .map_err(backup_error)
}

/// Enables many users in one CMS version (the lab's `--users N`), on the active master.
pub(crate) async fn users_bulk(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: Result<Json<crate::users::BulkEnableRequest>, JsonRejection>,
) -> Result<Json<crate::users::BulkEnableResponse>, ApiError> {
    let Json(request) = body.map_err(json_error)?;
    match crate::exec::locate_master(&server).await {
        Ok(crate::exec::MasterAt::Here(master)) => {
            let response = crate::users::bulk_enable(master, &request).await?;
            server
                .replica
                .wait_for_version(response.cms_version, std::time::Duration::from_secs(10))
                .await;
            Ok(Json(response))
        }
        Ok(crate::exec::MasterAt::There(_)) if headers.contains_key(FORWARDED_HEADER) => {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the master moved; try again",
            ))
        }
        Ok(crate::exec::MasterAt::There(base)) => {
            let body: crate::users::BulkEnableResponse = crate::api::call(
                &server.client,
                &base,
                crate::users::BULK_PATH,
                &server.token,
                Some(&server.fqdn),
                &request,
                std::time::Duration::from_secs(120),
            )
            .await
            .map_err(crate::exec::call_error)?;
            server
                .replica
                .wait_for_version(body.cms_version, std::time::Duration::from_secs(10))
                .await;
            Ok(Json(body))
        }
        Err(unavailable) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, unavailable)),
    }
}
