//! The backup link: what a paired pool's Backup Service calls on this pool's Front Ends,
//! on the Backup Service port, with the deployment's token. Imports of shipments, the
//! status the partner's watch asks for, and the checksums a failover's Verify compares.

use api::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::protocol::{
    CHECKSUMS_PATH, Checksums, IMPORT_PATH, ImportRequest, ImportResponse, PoolStatus, STATUS_PATH,
};
use crate::service::{BackupError, BackupService};

/// What the link serves, and the token it checks.
#[derive(Debug, Clone)]
struct Link {
    service: BackupService,
    token: String,
}

/// The link's routes for `service`, checking `token` on every call.
pub fn router(service: BackupService, token: String) -> Router {
    let link = Link { service, token };
    Router::new()
        .route(
            IMPORT_PATH,
            post(import).layer(DefaultBodyLimit::max(crate::protocol::LINK_MAX_BODY_BYTES)),
        )
        .route(STATUS_PATH, get(status))
        .route(crate::commit::WAKE_PATH, post(wake))
        .route(CHECKSUMS_PATH, get(checksums))
        .layer(middleware::from_fn_with_state(link.clone(), authenticate))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such backup route") })
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(link)
}

async fn authenticate(
    State(link): State<Link>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    api::check_token(request.headers(), &link.token)?;
    Ok(next.run(request).await)
}

/// The one mapping of the Backup Service's errors to answers.
impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> ApiError {
        let status = match &e {
            BackupError::Refused(_) | BackupError::NotPaired(_) => StatusCode::CONFLICT,
            // The sender halves the shipment until it finds the change refused, then
            // records that change as unshippable and goes on with the rest.
            BackupError::ItemRefused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            BackupError::PartnerUnreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            BackupError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn import(
    State(link): State<Link>,
    body: Result<Json<ImportRequest>, JsonRejection>,
) -> Result<Json<ImportResponse>, ApiError> {
    let Json(request) = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    if !link.service.is_running() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the Backup Service (LYNCBACKUP) of {} is stopped; Start-CsWindowsService -Name LYNCBACKUP -ComputerName {} starts it",
                link.service.fqdn(),
                link.service.fqdn()
            ),
        ));
    }
    Ok(Json(link.service.import(request).await?))
}

/// Ships at once and answers once the changes a synchronous write on another Front End
/// waits for are acknowledged (or its timeout passed).
async fn wake(
    State(link): State<Link>,
    body: Result<Json<crate::commit::WakeRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let shipped = link.service.wake_and_wait(&request).await?;
    Ok(Json(serde_json::json!({ "shipped": shipped })))
}

async fn status(State(link): State<Link>) -> Result<Json<PoolStatus>, ApiError> {
    Ok(Json(link.service.local_status().await?))
}

#[derive(Debug, serde::Deserialize)]
struct ChecksumQuery {
    source: String,
    module: String,
}

async fn checksums(
    State(link): State<Link>,
    query: Result<Query<ChecksumQuery>, QueryRejection>,
) -> Result<Json<Checksums>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let module = crate::Module::from_short(&q.module).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown module {}; the modules are PresenceFocus, DataConf and CMSMaster",
                api::shown(&q.module)
            ),
        )
    })?;
    Ok(Json(
        crate::service::backup_checksums(link.service.backend(), &q.source, module).await?,
    ))
}
