//! The backup link: what a paired pool's Backup Service calls on this pool's Front Ends,
//! on the Backup Service port, with the deployment's token. Imports of shipments, the
//! status the partner's watch asks for, and the checksums a failover's Verify compares.
//!
//! The listener is mutual TLS (a certificate of the deployment's CA or no handshake), and
//! the link checks whose certificate it is: a Front End of the topology for every route,
//! and for an import a Front End of the pool the shipment says it comes from — a server
//! proves it is the server the topology names, the token alone is not enough.

use api::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::protocol::{
    CHECKSUMS_PATH, Checksums, IMPORT_PATH, ImportRequest, ImportResponse, PoolStatus, STATUS_PATH,
};
use crate::service::{BackupError, BackupService};
use listener::PeerCertificate;

/// What the link serves, and the token it checks.
#[derive(Debug, Clone)]
struct Link {
    service: BackupService,
    token: String,
}

/// The link's routes, each mounted from its `#[utoipa::path]`, so that every route served
/// is described in [`openapi`].
fn routes() -> OpenApiRouter<Link> {
    let (schemas, paths, import) = routes!(import);
    let import = import.layer(DefaultBodyLimit::max(crate::protocol::LINK_MAX_BODY_BYTES));
    OpenApiRouter::new()
        .routes((schemas, paths, import))
        .routes(routes!(status))
        .routes(routes!(wake))
        .routes(routes!(checksums))
}

/// The OpenAPI description of the backup link.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    doc.info = utoipa::openapi::InfoBuilder::new()
        .title("tandem backup link")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "What a paired pool's Backup Service calls on every Front End's Backup Service port: \
             mutual TLS with a Front End's certificate of the deployment's CA, and the \
             deployment's token as `Authorization: Bearer <token>`.",
        ))
        .build();
    doc
}

/// The link's routes for `service`, checking `token` on every call.
pub fn router(service: BackupService, token: String) -> Router {
    let link = Link { service, token };
    routes()
        .layer(middleware::from_fn_with_state(link.clone(), authenticate))
        .split_for_parts()
        .0
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
    let caller = request.extensions().get::<PeerCertificate>();
    let topology = link.service.topology();
    let is_front_end = caller.is_some_and(|cert| {
        cert.covers_any(
            topology
                .front_end_pools
                .iter()
                .flat_map(|p| &p.servers)
                .map(|s| s.fqdn.as_str()),
        )
    });
    if !is_front_end {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the backup link answers Front End servers of the deployment only, by their certificate",
        ));
    }
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

/// Imports a shipment from the paired pool.
#[utoipa::path(
    post,
    path = IMPORT_PATH,
    request_body(content = Object, description = "a batch of changes, or a part of a full resync"),
    responses(
        (status = 200, description = "the import committed", body = Object),
        (status = 409, body = api::ErrorBody, description = "the source is not this pool's partner"),
        (status = 422, body = api::ErrorBody, description = "an item of the shipment is refused"),
    ),
    security(("bearer" = [])),
    tag = "internal"
)]
async fn import(
    State(link): State<Link>,
    caller: Option<axum::Extension<PeerCertificate>>,
    body: Result<Json<ImportRequest>, JsonRejection>,
) -> Result<Json<ImportResponse>, ApiError> {
    let Json(request) = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let topology = link.service.topology();
    let source = topology.front_end_servers(&request.source_pool);
    let from_source = caller.is_some_and(|axum::Extension(cert)| {
        cert.covers_any(source.iter().map(|s| s.fqdn.as_str()))
    });
    if !from_source {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a shipment from {} must come from one of its Front Ends, by their certificate",
                request.source_pool
            ),
        ));
    }
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

#[utoipa::path(
    post,
    path = crate::commit::WAKE_PATH,
    request_body(content = Object, description = "the changes a synchronous write waits for"),
    responses(
        (status = 200, description = "whether they were shipped", body = Object),
        (status = 409, body = api::ErrorBody, description = "the pool is not paired"),
    ),
    security(("bearer" = [])),
    tag = "internal"
)]
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

/// What this pool's Backup Service holds and has shipped.
#[utoipa::path(
    get,
    path = STATUS_PATH,
    responses(
        (status = 200, description = "the pool's backup status", body = Object),
        (status = 409, body = api::ErrorBody, description = "the pool is not paired"),
    ),
    security(("bearer" = [])),
    tag = "internal"
)]
async fn status(State(link): State<Link>) -> Result<Json<PoolStatus>, ApiError> {
    Ok(Json(link.service.local_status().await?))
}

#[derive(Debug, serde::Deserialize)]
struct ChecksumQuery {
    source: String,
    module: String,
}

/// The checksums of what this pool holds of `source`'s `module`, which a failover's
/// Verify compares.
#[utoipa::path(
    get,
    path = CHECKSUMS_PATH,
    params(
        ("source" = String, Query, description = "the pool whose backup copy to sum"),
        ("module" = String, Query, description = "PresenceFocus, DataConf or CMSMaster"),
    ),
    responses(
        (status = 200, description = "the checksums", body = Object),
        (status = 400, body = api::ErrorBody, description = "a query parameter is missing or names no module"),
        (status = 409, body = api::ErrorBody, description = "the source is not paired with this pool"),
    ),
    security(("bearer" = [])),
    tag = "internal"
)]
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
