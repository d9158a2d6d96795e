//! The management API's routes.
//!
//! Bad input never reaches a cmdlet: a missing or wrong token is answered 401, a body
//! that is not the expected JSON (malformed, wrong types, unknown fields) 400 or 422 with
//! the parser's reason, all as an [`ErrorBody`].
//!
//! The servers' own routes (CMS pushes, role reports, replica changes, operation steps,
//! store actions) answer only a server of the topology, by the certificate it presented
//! in the TLS handshake: the admin token alone, which operators hold too, is not enough,
//! and a call marked as forwarded must come from the server it names.

use std::time::Duration;

use tracing::Instrument as _;

use api::faults::FaultCall;
use api::users::{BULK_MAX_BODY_BYTES, BulkEnableRequest, BulkEnableResponse};
use api::{ApiError, ErrorBody, FORWARDED_HEADER, Health, InvokeRequest, InvokeResponse, paths};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use cms::master::Role;
use cms::protocol::{ReplicaChanges, ReplicaChangesRequest, RoleReport, SyncRequest, SyncResponse};
use cms::replica::ReplicaError;
use cms::witness::{VoteAnswer, VoteRequest, Voter};
use engine::agent::{PoolAction, PoolActionReply};
use engine::cms_failover::{StoreAction, StoreReply};
use engine::pool::{CmsReply, CmsRequest};
use node::MasterAt;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::operators::Operator;
use crate::{Error, Mgmt, Refused};
use listener::PeerCertificate;

/// How long a bulk enable waits for this server's own replica to have it.
const BULK_REPLICA_WAIT: Duration = Duration::from_secs(10);
/// How long a forwarded bulk enable may take.
const BULK_FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// The description's frame; the routes are added where they are mounted ([`routes`]).
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "tandem management API",
        description = "One server's management API. Every call except /health and the OpenAPI \
            documents needs `Authorization: Bearer <token>`: an operator's token, whose roles \
            decide which cmdlets it may run, or the deployment's token (the lab administrator's, \
            which the servers also use between themselves). The /internal routes are the \
            servers' calls to each other and take the deployment's token only."
    ),
    components(schemas(InvokeRequest, InvokeResponse, ErrorBody, Health))
)]
struct ApiDoc;

/// The routes that take a token: every route of the management API is mounted from its
/// `#[utoipa::path]` (here or in [`open_routes`]), so none is served without being described.
fn protected_routes(faults: bool) -> OpenApiRouter<Mgmt> {
    let protected = OpenApiRouter::new()
        .routes(routes!(invoke))
        .routes(routes!(metrics_page))
        .routes(with_limit(
            routes!(replica_sync),
            cms::protocol::SYNC_MAX_BODY_BYTES,
        ))
        .routes(routes!(cms_role))
        .routes(routes!(replica_changes))
        .routes(with_limit(routes!(users_bulk), BULK_MAX_BODY_BYTES))
        .routes(routes!(dr_pool_action))
        .routes(routes!(dr_cms))
        .routes(routes!(cms_store))
        .routes(routes!(cms_vote))
        .routes(routes!(mras_credentials));
    if faults {
        protected.routes(routes!(dr_fault))
    } else {
        protected
    }
}

/// The routes that need no token.
fn open_routes() -> OpenApiRouter<Mgmt> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi))
        .routes(routes!(backup_link_openapi))
}

/// A route whose body may be larger than axum's default.
fn with_limit(
    (schemas, paths, method_router): UtoipaMethodRouter<Mgmt>,
    bytes: usize,
) -> UtoipaMethodRouter<Mgmt> {
    (
        schemas,
        paths,
        method_router.layer(DefaultBodyLimit::max(bytes)),
    )
}

/// The OpenAPI document of a server's management API (with the fault hook's route when
/// `faults`).
pub fn openapi_document(faults: bool) -> utoipa::openapi::OpenApi {
    let mut doc = open_routes().merge(protected_routes(faults)).into_openapi();
    api::openapi::describe_errors(&mut doc);
    doc
}

/// The OpenAPI document of the backup link (the Backup Service port of every Front End).
pub fn backup_link_document() -> utoipa::openapi::OpenApi {
    let mut doc = backup::link::openapi();
    api::openapi::describe_errors(&mut doc);
    doc
}

/// The documents this server serves, made once.
#[derive(Debug, Clone)]
struct Documents {
    api: Bytes,
    backup_link: Bytes,
}

fn as_json(doc: &utoipa::openapi::OpenApi) -> Bytes {
    Bytes::from(serde_json::to_vec(doc).expect("an OpenAPI document serialises"))
}

/// A document as a JSON answer.
fn json_document(document: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

/// A route's JSON body as the route's type, refused with the parser's reason otherwise —
/// and never an array: serde would take one for a struct, which no caller means (an enum
/// of the servers' protocol may be a string, so objects are not the only shape).
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let Json(value) = Json::<serde_json::Value>::from_request(request, state)
            .await
            .map_err(json_error)?;
        if value.is_array() {
            return Err(Error(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the request body must be a JSON object, not an array",
            )));
        }
        serde_json::from_value(value).map(Body).map_err(|e| {
            Error(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the request body is not what this call takes: {e}"),
            ))
        })
    }
}

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
    let faults = mgmt.engine.faults().is_enabled();
    let protected =
        protected_routes(faults).layer(middleware::from_fn_with_state(mgmt.clone(), authenticate));
    let (routes, mut doc) = open_routes().merge(protected).split_for_parts();
    api::openapi::describe_errors(&mut doc);
    let documents = Documents {
        api: as_json(&doc),
        backup_link: as_json(&backup_link_document()),
    };
    // The web console's pages are HTML for a browser, not part of the JSON API: they sign
    // in with a session of their own (`console::session`) and are not in the description.
    routes
        .merge(crate::console::routes())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route; GET /openapi.json describes this API",
            )
        })
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(Extension(documents))
        .with_state(mgmt)
}

/// Who is calling (an operator, or a server with the deployment's token); the routes other
/// than cmdlet calls are the servers' own.
async fn authenticate(
    State(mgmt): State<Mgmt>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let operator = crate::operators::authenticate(
        request.headers(),
        &mgmt.node.token,
        mgmt.node.replica.store(),
    )
    .await?;
    // Operators call cmdlets and read the figures; the other routes are the servers' own.
    if ![paths::INVOKE, paths::METRICS].contains(&request.uri().path()) {
        crate::operators::servers_only(&operator)?;
    }
    // A call marked as forwarded comes from the server it names, by its certificate.
    if let Some(by) = request.headers().get(FORWARDED_HEADER) {
        let by = by.to_str().unwrap_or_default();
        let proven = request
            .extensions()
            .get::<PeerCertificate>()
            .is_some_and(|cert| mgmt.node.topology().server(by).is_some() && cert.covers(by));
        if !proven {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a forwarded call must come from the server it names, with that server's certificate",
            ));
        }
    }
    let path = request.uri().path();
    if is_servers_own(path) {
        let topology = mgmt.node.topology();
        let caller = request
            .extensions()
            .get::<PeerCertificate>()
            .and_then(|cert| cert.server_identity(&topology));
        // Every server may ask who holds the Central Management store; the rest — CMS
        // pushes, replica changes (which carry the Front Ends' digest hashes), operation
        // steps, store actions — come only from a Front End, so a compromised Edge in the
        // perimeter gets no more than the hash-less replica it holds.
        let allowed = match caller {
            Some((topology::Role::FrontEnd, _)) => true,
            Some((topology::Role::Edge, _)) => path == paths::CMS_ROLE,
            None => false,
        };
        if !allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this route answers the deployment's Front Ends only (and who holds the store, every server), by their certificate",
            ));
        }
    }
    // A call that is part of another server's DR operation is logged in its span here too.
    let operation = request
        .headers()
        .get(api::operation::OPERATION_HEADER)
        .filter(|_| operator.deployment)
        .and_then(|v| v.to_str().ok())
        .and_then(api::operation::parse)
        .map(
            |(id, step)| tracing::info_span!("operation", op_id = %id, step = %step, remote = true),
        );
    request.extensions_mut().insert(operator);
    let Some(span) = operation else {
        return Ok(next.run(request).await);
    };
    let path = request.uri().path().to_string();
    let started = mgmt.node.clock.now_ms();
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            %path,
            status = response.status().as_u16(),
            took_ms = mgmt.node.clock.now_ms() - started,
            "operation call answered"
        )
    });
    Ok(response)
}

/// The servers' own routes (CMS pushes, role reports, replica changes, operation steps,
/// store actions): only a caller whose certificate names a server of the topology. The
/// fault hook, a test's tool, is not one of them.
fn is_servers_own(path: &str) -> bool {
    [
        paths::REPLICA_SYNC,
        paths::CMS_ROLE,
        paths::REPLICA_CHANGES,
        paths::DR_POOL,
        paths::DR_CMS,
        paths::CMS_STORE,
        paths::CMS_VOTE,
    ]
    .contains(&path)
}

/// Liveness and identity; no token needed.
#[utoipa::path(get, path = paths::HEALTH, responses((status = 200, body = Health, description = "who this server is and where its replica stands")))]
async fn health(State(mgmt): State<Mgmt>) -> Json<Health> {
    let node = &mgmt.node;
    // The role once, and the store's mode only for an active master.
    let master = node.master().map(|m| (m, m.role()));
    let cms_master = matches!(master, Some((_, Role::Active { .. })));
    // Writable only while the store itself says so: an active store, and the lease still
    // this server's with the epoch its role holds (a role not yet told of a takeover
    // is not enough); with a witness, a vote besides its own store's too.
    let cms_writable = match master {
        Some((m, Role::Active { epoch, .. })) => {
            let be = m.backend();
            let now = node.clock.now_ms();
            m.quorum().until_ms > now
                && be
                    .cms_role()
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

/// This document.
#[utoipa::path(
    get,
    path = paths::OPENAPI,
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", body = Object))
)]
async fn openapi(Extension(documents): Extension<Documents>) -> Response {
    json_document(documents.api)
}

/// The OpenAPI document of the backup link, which every Front End serves on its Backup
/// Service port (mutual TLS: a Front End's certificate, and the deployment's token).
#[utoipa::path(
    get,
    path = paths::BACKUP_LINK_OPENAPI,
    responses((status = 200, description = "the OpenAPI 3.1 document of the backup link", body = Object))
)]
async fn backup_link_openapi(Extension(documents): Extension<Documents>) -> Response {
    json_document(documents.backup_link)
}

/// The figures operators alert on — backup backlog and lag, CMS replica versions, sign-ins,
/// bindings, DR operation steps, lease changes, federation messages, DNS lookups — in
/// Prometheus's text exposition format (`mgmt::metrics` lists them). Any operator's
/// token, or the deployment's.
#[utoipa::path(
    get,
    path = paths::METRICS,
    tag = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain; version=0.0.4", body = String)),
    security(("bearer" = []))
)]
async fn metrics_page(State(mgmt): State<Mgmt>) -> Response {
    let page = crate::metrics::render(&mgmt).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        page,
    )
        .into_response()
}

/// Runs one cmdlet.
#[utoipa::path(
    post,
    path = paths::INVOKE,
    tag = "cmdlets",
    request_body = InvokeRequest,
    responses(
        (status = 200, body = InvokeResponse, description = "what the cmdlet returned"),
        (status = 400, body = ErrorBody, description = "malformed request or command, or a cmdlet the shell runs itself"),
        (status = 404, body = ErrorBody, description = "the cmdlet names something that does not exist"),
        (status = 409, body = ErrorBody, description = "the change does not fit the current state"),
        (status = 413, body = ErrorBody, description = "too much in one call"),
        (status = 422, body = ErrorBody, description = "the parameters do not bind, or the cmdlet is not run by a server"),
        (status = 502, body = ErrorBody, description = "the server the call was forwarded to did not answer"),
    ),
    security(("bearer" = []))
)]
async fn invoke(
    State(mgmt): State<Mgmt>,
    Extension(operator): Extension<Operator>,
    headers: HeaderMap,
    Body(request): Body<InvokeRequest>,
) -> Result<Json<InvokeResponse>, Error> {
    // Only a server (the deployment's token) says it forwarded a call.
    let forwarded_by = headers
        .get(FORWARDED_HEADER)
        .filter(|_| operator.deployment)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let caller = crate::dispatch::Caller {
        operator,
        forwarded_by,
    };
    crate::dispatch::invoke(&mgmt, request, &caller)
        .await
        .map(Json)
}

/// Takes a push from the CMS master (Replica Replicator Agent).
#[utoipa::path(
    post,
    path = paths::REPLICA_SYNC,
    tag = "internal",
    request_body(content = Object, description = "a push: the items after the version the replica acknowledged"),
    responses((status = 200, description = "applied, gap, fenced or diverged", body = Object)),
    security(("bearer" = []))
)]
async fn replica_sync(
    State(mgmt): State<Mgmt>,
    Body(request): Body<SyncRequest>,
) -> Result<Json<SyncResponse>, Error> {
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
#[utoipa::path(
    post,
    path = paths::REPLICA_CHANGES,
    tag = "internal",
    request_body(content = Object, description = "the version after which to list the items"),
    responses((status = 200, description = "where the replica stands and its items after the version", body = Object)),
    security(("bearer" = []))
)]
async fn replica_changes(
    State(mgmt): State<Mgmt>,
    Body(request): Body<ReplicaChangesRequest>,
) -> Result<Json<ReplicaChanges>, Error> {
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
#[utoipa::path(
    post,
    path = paths::DR_POOL,
    tag = "internal",
    request_body(content = Object, description = "the step's part to run on this pool"),
    responses(
        (status = 200, description = "what the step did", body = Object),
        (status = 404, body = ErrorBody, description = "the operation or pool is unknown"),
        (status = 409, body = ErrorBody, description = "the step does not fit the pool's state"),
        (status = 502, body = ErrorBody, description = "another server did not answer"),
    ),
    security(("bearer" = []))
)]
async fn dr_pool_action(
    State(mgmt): State<Mgmt>,
    Body(action): Body<PoolAction>,
) -> Result<Json<PoolActionReply>, Error> {
    Ok(Json(mgmt.engine.pool_action(action).await?))
}

/// The operations engine's reads and compare-and-set writes of the CMS, on the master.
#[utoipa::path(
    post,
    path = paths::DR_CMS,
    tag = "internal",
    request_body(content = Object, description = "a read, or a compare-and-set write"),
    responses(
        (status = 200, description = "what was read or written", body = Object),
        (status = 404, body = ErrorBody, description = "the operation is unknown"),
        (status = 409, body = ErrorBody, description = "the compare-and-set lost"),
    ),
    security(("bearer" = []))
)]
async fn dr_cms(
    State(mgmt): State<Mgmt>,
    Body(request): Body<CmsRequest>,
) -> Result<Json<CmsReply>, Error> {
    Ok(Json(mgmt.engine.dr_cms(request).await?))
}

/// What a CMS failover asks of the old store's Front End.
#[utoipa::path(
    post,
    path = paths::CMS_STORE,
    tag = "internal",
    request_body(content = Object, description = "what to do with the old store"),
    responses(
        (status = 200, description = "what the old store's Front End did", body = Object),
        (status = 404, body = ErrorBody, description = "no such store here"),
        (status = 409, body = ErrorBody, description = "the store is not in the state the action needs"),
    ),
    security(("bearer" = []))
)]
async fn cms_store(
    State(mgmt): State<Mgmt>,
    Body(action): Body<StoreAction>,
) -> Result<Json<StoreReply>, Error> {
    Ok(Json(mgmt.engine.store_action(action).await?))
}

/// Media relay credentials for a user, from this Edge's MRAS (`edge::mras`): the relays
/// of its pool and a username and password they take until the expiry.
#[utoipa::path(
    post,
    path = paths::MRAS,
    tag = "internal",
    request_body = relay::MrasRequest,
    responses(
        (status = 200, body = relay::MediaRelay, description = "the relays and credentials"),
        (status = 400, body = ErrorBody, description = "the user is not a SIP address"),
        (status = 404, body = ErrorBody, description = "this server is no Edge"),
        (status = 503, body = ErrorBody, description = "RTCMRAUTH is stopped, or the pool's relay secret is missing"),
    ),
    security(("bearer" = []))
)]
async fn mras_credentials(
    State(mgmt): State<Mgmt>,
    Body(request): Body<relay::MrasRequest>,
) -> Result<Json<relay::MediaRelay>, Error> {
    use edge::mras::MrasError;
    edge::mras::issue(&mgmt.node, &request.user)
        .map(Json)
        .map_err(|e| {
            let reason = e.to_string();
            match e {
                MrasError::NotAnEdge(_) => Refused::NotFound(reason),
                MrasError::BadUser(_) => Refused::BadRequest(reason),
                MrasError::Stopped(_) | MrasError::NoSecret(_) => Refused::Unavailable(reason),
            }
            .into()
        })
}

/// A vote for a Central Management store (`cms::witness`): the witness's, when the
/// topology names this server the deployment's witness, or the standby store's in this
/// Front End's Back End.
#[utoipa::path(
    post,
    path = paths::CMS_VOTE,
    tag = "internal",
    request_body(content = Object, description = "which voter, renew, claim or release, for which pool's store and term"),
    responses(
        (status = 200, description = "granted, released or refused (with why)", body = Object),
        (status = 404, body = ErrorBody, description = "this server is not that voter"),
    ),
    security(("bearer" = []))
)]
async fn cms_vote(
    State(mgmt): State<Mgmt>,
    Body(request): Body<VoteRequest>,
) -> Result<Json<VoteAnswer>, Error> {
    let node = &mgmt.node;
    let VoteRequest {
        voter,
        ask,
        pool,
        term,
    } = request;
    match voter {
        Voter::Witness => {
            let topology = node.topology();
            let named = topology.deployment.cms_witness.as_deref();
            if !named.is_some_and(|w| w.eq_ignore_ascii_case(&node.fqdn)) {
                return Err(Refused::NotFound(format!(
                    "{} is not the deployment's witness (the topology's cms_witness is {})",
                    node.fqdn,
                    named.unwrap_or("not set")
                ))
                .into());
            }
            let now = node.clock.now_ms();
            Ok(Json(node.witness.decide(ask, &pool, term, now)))
        }
        Voter::Standby => {
            let Some(be) = &node.backend else {
                return Err(Refused::NotFound(format!(
                    "{} has no Back End, so no standby store",
                    node.fqdn
                ))
                .into());
            };
            let clock = node.clock;
            let answer = be
                .update_cms_vote(|role, vote| {
                    cms::witness::decide_as_standby(role, vote, ask, &pool, term, clock.now_ms())
                })
                .await?;
            Ok(Json(answer))
        }
    }
}

/// Test hook (`TANDEM_DR_FAULTS=1` only): arm a fault point, or release a hold.
#[utoipa::path(
    post,
    path = paths::DR_FAULT,
    tag = "internal",
    request_body(content = Object, description = "arm, disarm or release"),
    responses((status = 200, description = "armed", body = Object)),
    security(("bearer" = []))
)]
async fn dr_fault(
    State(mgmt): State<Mgmt>,
    Body(call): Body<FaultCall>,
) -> Result<Json<serde_json::Value>, Error> {
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
    path = paths::CMS_ROLE,
    tag = "internal",
    responses((status = 200, description = "this server's master role", body = Object)),
    security(("bearer" = []))
)]
async fn cms_role(State(mgmt): State<Mgmt>) -> Json<RoleReport> {
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
#[utoipa::path(
    post,
    path = paths::USERS_BULK,
    tag = "internal",
    request_body(content = Object, description = "the users to enable"),
    responses(
        (status = 200, description = "the users enabled and the CMS version", body = Object),
        (status = 409, body = ErrorBody, description = "a user is already enabled or the topology refuses it"),
        (status = 502, body = ErrorBody, description = "the active master did not answer"),
    ),
    security(("bearer" = []))
)]
async fn users_bulk(
    State(mgmt): State<Mgmt>,
    headers: HeaderMap,
    Body(request): Body<BulkEnableRequest>,
) -> Result<Json<BulkEnableResponse>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the management API serves, as its clients name them.
    fn served(faults: bool) -> Vec<(String, String)> {
        let mut routes = vec![
            ("GET", paths::HEALTH),
            ("GET", paths::OPENAPI),
            ("GET", paths::BACKUP_LINK_OPENAPI),
            ("POST", paths::INVOKE),
            ("GET", paths::METRICS),
            ("POST", paths::USERS_BULK),
            ("POST", paths::REPLICA_SYNC),
            ("POST", paths::REPLICA_CHANGES),
            ("GET", paths::CMS_ROLE),
            ("POST", paths::DR_POOL),
            ("POST", paths::DR_CMS),
            ("POST", paths::CMS_STORE),
            ("POST", paths::CMS_VOTE),
            ("POST", paths::MRAS),
        ];
        if faults {
            routes.push(("POST", paths::DR_FAULT));
        }
        let mut routes: Vec<_> = routes
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        routes
    }

    #[test]
    fn the_document_describes_every_route_with_its_scheme_and_errors() {
        for faults in [false, true] {
            let doc = openapi_document(faults);
            assert_eq!(api::openapi::operations(&doc), served(faults));
            assert_eq!(
                api::openapi::undescribed_responses(&doc),
                Vec::<String>::new()
            );
            let json = serde_json::to_value(&doc).unwrap();
            let schemes = &json["components"]["securitySchemes"];
            assert_eq!(schemes["bearer"]["type"], "http");
            assert_eq!(schemes["bearer"]["scheme"], "bearer");
            for (path, item) in json["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    let open = [paths::HEALTH, paths::OPENAPI, paths::BACKUP_LINK_OPENAPI]
                        .contains(&path.as_str());
                    assert_eq!(op.get("security").is_none(), open, "{method} {path}");
                    if open {
                        continue;
                    }
                    for (name, _) in op["security"][0].as_object().unwrap() {
                        assert!(schemes.get(name).is_some(), "{path} names {name}");
                    }
                    for status in ["401", "403", "500", "503"] {
                        let body = &op["responses"][status]["content"]["application/json"];
                        assert_eq!(
                            body["schema"]["$ref"], "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                    if op.get("requestBody").is_some() {
                        for status in ["400", "413", "415", "422"] {
                            assert!(op["responses"].get(status).is_some(), "{path} {status}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_backup_link_document_describes_its_routes() {
        let doc = backup_link_document();
        let mut expected = vec![
            (
                "POST".to_string(),
                backup::protocol::IMPORT_PATH.to_string(),
            ),
            ("GET".to_string(), backup::protocol::STATUS_PATH.to_string()),
            ("POST".to_string(), backup::commit::WAKE_PATH.to_string()),
            (
                "GET".to_string(),
                backup::protocol::CHECKSUMS_PATH.to_string(),
            ),
        ];
        expected.sort();
        assert_eq!(api::openapi::operations(&doc), expected);
        assert_eq!(
            api::openapi::undescribed_responses(&doc),
            Vec::<String>::new()
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
