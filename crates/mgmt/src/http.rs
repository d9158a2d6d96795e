//! The management API's routes.
//!
//! Bad input never reaches a cmdlet: a missing or wrong token is answered 401, a body
//! that is not the expected JSON (malformed, wrong types, unknown fields) 400 or 422 with
//! the parser's reason, all as an [`ErrorBody`].

use std::time::Duration;

use api::faults::FaultCall;
use api::users::{BULK_MAX_BODY_BYTES, BulkEnableRequest, BulkEnableResponse};
use api::{ApiError, ErrorBody, FORWARDED_HEADER, Health, InvokeRequest, InvokeResponse, paths};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use cms::master::Role;
use cms::protocol::{ReplicaChanges, ReplicaChangesRequest, RoleReport, SyncRequest, SyncResponse};
use cms::replica::ReplicaError;
use engine::agent::{PoolAction, PoolActionReply};
use engine::cms_failover::{StoreAction, StoreReply};
use engine::pool::{CmsReply, CmsRequest};
use node::MasterAt;
use utoipa::OpenApi;

use crate::{Error, Mgmt, Refused};

/// How long a bulk enable waits for this server's own replica to have it.
const BULK_REPLICA_WAIT: Duration = Duration::from_secs(10);
/// How long a forwarded bulk enable may take.
const BULK_FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "tandem management API",
        description = "One server's management API. Every call except /health and /openapi.json \
            needs the deployment's admin token as `Authorization: Bearer <token>`."
    ),
    paths(health, invoke, replica_sync, cms_role),
    components(schemas(InvokeRequest, InvokeResponse, ErrorBody, Health))
)]
pub struct ApiDoc;

fn json_error(rejection: JsonRejection) -> Error {
    Error(ApiError::new(
        rejection.status(),
        format!(
            "the request body is not what this call takes: {}",
            rejection.body_text()
        ),
    ))
}

/// The routes of a server's management API.
pub fn router(mgmt: Mgmt) -> Router {
    let protected = Router::new()
        .route(paths::INVOKE, post(invoke))
        .route(
            paths::REPLICA_SYNC,
            post(replica_sync).layer(DefaultBodyLimit::max(cms::protocol::SYNC_MAX_BODY_BYTES)),
        )
        .route(paths::CMS_ROLE, get(cms_role))
        .route(paths::REPLICA_CHANGES, post(replica_changes))
        .route(
            paths::USERS_BULK,
            post(users_bulk).layer(DefaultBodyLimit::max(BULK_MAX_BODY_BYTES)),
        )
        .route(paths::DR_POOL, post(dr_pool_action))
        .route(paths::DR_CMS, post(dr_cms))
        .route(paths::CMS_STORE, post(cms_store));
    let protected = if mgmt.engine.faults().is_enabled() {
        protected.route(paths::DR_FAULT, post(dr_fault))
    } else {
        protected
    };
    let protected = protected.layer(middleware::from_fn_with_state(mgmt.clone(), authenticate));
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::OPENAPI, get(openapi))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route; GET /openapi.json describes this API",
            )
        })
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(mgmt)
}

async fn authenticate(
    State(mgmt): State<Mgmt>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    api::check_token(request.headers(), &mgmt.node.token)?;
    Ok(next.run(request).await)
}

/// Liveness and identity; no token needed.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub(crate) async fn health(State(mgmt): State<Mgmt>) -> Json<Health> {
    let node = &mgmt.node;
    // The role once, and the store's mode only for an active master.
    let master = node.master().map(|m| (m, m.role()));
    let cms_master = matches!(master, Some((_, Role::Active { .. })));
    // Writable only while the store itself says so: an active store, and the lease still
    // this server's with the epoch its role holds (a role not yet told of a takeover
    // is not enough).
    let cms_writable = match master {
        Some((m, Role::Active { epoch, .. })) => {
            let be = m.backend();
            let now = node.clock.now_ms();
            be.cms_role()
                .await
                .is_ok_and(|r| r.mode == store::CmsMode::Active)
                && be.lease().await.ok().flatten().is_some_and(|l| {
                    l.holder == node.fqdn && l.epoch == epoch && l.expires_at > now
                })
        }
        _ => false,
    };
    Json(Health {
        cms_writable,
        fqdn: node.fqdn.clone(),
        role: match node.role {
            topology::Role::FrontEnd => "FrontEnd",
            topology::Role::Edge => "Edge",
        }
        .to_string(),
        pool: node.pool.clone(),
        replica_version: node.replica.version(),
        cms_master,
        running_operations: mgmt.engine.running_operations(),
        caught_up: node.replica.view_doubt().is_none(),
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
    State(mgmt): State<Mgmt>,
    headers: HeaderMap,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Result<Json<InvokeResponse>, Error> {
    let Json(request) = body.map_err(json_error)?;
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    crate::dispatch::invoke(&mgmt, request, forwarded)
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
    State(mgmt): State<Mgmt>,
    body: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<Json<SyncResponse>, Error> {
    let Json(request) = body.map_err(json_error)?;
    match mgmt.node.replica.sync(&request).await {
        Ok(response) => Ok(Json(response)),
        Err(e @ ReplicaError::Stopped) => Err(Refused::Unavailable(e.to_string()).into()),
        Err(e) => Err(Error(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))),
    }
}

/// Where this server's replica stands, and the items it holds after a version.
async fn replica_changes(
    State(mgmt): State<Mgmt>,
    body: Result<Json<ReplicaChangesRequest>, JsonRejection>,
) -> Result<Json<ReplicaChanges>, Error> {
    let Json(request) = body.map_err(json_error)?;
    let node = &mgmt.node;
    node.replica
        .changes(&node.fqdn, &request)
        .await
        .map(Json)
        .map_err(|e| {
            Error(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ))
        })
}

/// Runs one step's work on this Front End's pool (the operations engine's calls).
async fn dr_pool_action(
    State(mgmt): State<Mgmt>,
    body: Result<Json<PoolAction>, JsonRejection>,
) -> Result<Json<PoolActionReply>, Error> {
    let Json(action) = body.map_err(json_error)?;
    Ok(Json(mgmt.engine.pool_action(action).await?))
}

/// The operations engine's reads and compare-and-set writes of the CMS, on the master.
async fn dr_cms(
    State(mgmt): State<Mgmt>,
    body: Result<Json<CmsRequest>, JsonRejection>,
) -> Result<Json<CmsReply>, Error> {
    let Json(request) = body.map_err(json_error)?;
    Ok(Json(mgmt.engine.dr_cms(request).await?))
}

/// What a CMS failover asks of the old store's Front End.
async fn cms_store(
    State(mgmt): State<Mgmt>,
    body: Result<Json<StoreAction>, JsonRejection>,
) -> Result<Json<StoreReply>, Error> {
    let Json(action) = body.map_err(json_error)?;
    Ok(Json(mgmt.engine.store_action(action).await?))
}

/// Test hook (`TANDEM_DR_FAULTS=1` only): arm a fault point, or release a hold.
async fn dr_fault(
    State(mgmt): State<Mgmt>,
    body: Result<Json<FaultCall>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Json(call) = body.map_err(json_error)?;
    let faults = mgmt.engine.faults();
    match call {
        FaultCall::Arm(point) => faults.arm(Some(point)).map_err(Refused::BadRequest)?,
        FaultCall::Disarm => faults.arm(None).map_err(Refused::BadRequest)?,
        FaultCall::Release { .. } => faults.release(),
    }
    Ok(Json(serde_json::json!({ "armed": true })))
}

/// Whether this server is the active CMS master.
#[utoipa::path(
    get,
    path = "/internal/v1/cms/role",
    responses((status = 200, description = "this server's master role")),
    security(("admin_token" = []))
)]
pub(crate) async fn cms_role(State(mgmt): State<Mgmt>) -> Json<RoleReport> {
    let node = &mgmt.node;
    let (active, epoch, holder) = match node.master().map(|m| m.role()) {
        Some(Role::Active { epoch, .. }) => (true, epoch, Some(node.fqdn.clone())),
        Some(Role::Standby { holder }) => (false, 0, holder),
        None => (false, 0, None),
    };
    let store = match node.master() {
        Some(m) => m.backend().cms_role().await.ok(),
        None => None,
    };
    Json(RoleReport {
        fqdn: node.fqdn.clone(),
        active,
        epoch,
        holder,
        store_mode: store.as_ref().map(|r| r.mode.as_str().to_string()),
        term_start: store.as_ref().map_or(0, |r| r.term_start),
        shared_through: store.as_ref().map_or(0, |r| r.shared_through),
        history: match node.master() {
            Some(m) if store.is_some() => m.backend().history().await.unwrap_or_default(),
            _ => store::History::default(),
        },
        serving_version: match node.master() {
            Some(m) if active => node::serving_version(m.backend()).await.unwrap_or(i64::MAX),
            _ => 0,
        },
    })
}

/// Enables many users in one CMS version (the lab's `--users N`), on the active master.
async fn users_bulk(
    State(mgmt): State<Mgmt>,
    headers: HeaderMap,
    body: Result<Json<BulkEnableRequest>, JsonRejection>,
) -> Result<Json<BulkEnableResponse>, Error> {
    let Json(request) = body.map_err(json_error)?;
    let node = &mgmt.node;
    let response = match node.locate_master().await? {
        MasterAt::Here(master) => crate::cmdlets::users::bulk_enable(&master, &request).await?,
        MasterAt::There(_) if headers.contains_key(FORWARDED_HEADER) => {
            return Err(Refused::Unavailable("the master moved; try again".into()).into());
        }
        MasterAt::There(base) => {
            node.api
                .post(&base, paths::USERS_BULK, &request, BULK_FORWARD_TIMEOUT)
                .await?
        }
    };
    node.replica
        .wait_for_version(response.cms_version, BULK_REPLICA_WAIT)
        .await;
    Ok(Json(response))
}
