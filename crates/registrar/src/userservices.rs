//! User services: the HTTP/JSON API a client uses for a user's stored data — contact list,
//! scheduled meetings, settings and meeting content — on every Front End's user-services
//! port, authenticated with the user's own credentials (HTTP Basic, checked against the
//! stored digest hash, so the password is never kept).
//!
//! Only the pool that serves the user in full mode reads or writes the data, in its own
//! Back End; any other pool answers 307 to it. In resiliency mode the data is unavailable:
//! reads get 503 and writes 403, each with the reason, as the documentation describes.
//! Every acknowledged write is committed together with its change-log row, so the Backup
//! Service cannot miss it.

// Handlers return a finished HTTP answer as their error: it goes straight back to the
// client, once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use cms::directory::UserRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::UserChange;
use topology::serving::{Decision, Mode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use backup::commit::Commit;
use node::Node;
use node::services::RTCSRV;

/// The largest body accepted (a meeting content file, a setting): shared with the backup
/// link, which must carry one such item.
pub const MAX_CONTENT_BYTES: usize = api::users::USER_ITEM_MAX_BYTES;

/// The routes a user calls, each mounted from its `#[utoipa::path]` so that every route
/// served is described in [`openapi`].
fn user_routes() -> OpenApiRouter<Arc<Node>> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(media_relay))
        .routes(routes!(list_contacts))
        .routes(routes!(get_contact, put_contact, delete_contact))
        .routes(routes!(list_meetings))
        .routes(routes!(get_meeting, put_meeting, delete_meeting))
        .routes(routes!(list_content))
        .routes(routes!(get_content, put_content, delete_content))
        .routes(routes!(list_settings))
        .routes(routes!(get_setting, put_setting))
}

/// The description's frame.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "tandem user services",
        description = "A user's stored data (contact list, meetings, meeting content, settings) \
            on every Front End's user-services port, with the user's own credentials (HTTP \
            Basic). Only the pool that serves the user in full mode answers; another pool \
            answers 307 to it, and in resiliency mode reads get 503 and writes 403."
    ),
    components(schemas(Contact, Meeting, Saved, Me, Redirect, FileBytes, relay::MediaRelay))
)]
struct UserServicesDoc;

/// The OpenAPI description of user services.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc =
        OpenApiRouter::<Arc<Node>>::with_openapi(<UserServicesDoc as utoipa::OpenApi>::openapi())
            .merge(user_routes())
            .routes(routes!(openapi_document))
            .into_openapi();
    describe_gate(&mut doc);
    api::openapi::describe_errors(&mut doc);
    doc
}

/// What [`gate`] and [`check_names`] answer for every user route, described once.
fn describe_gate(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let redirect = ResponseBuilder::new()
        .description("another pool serves the user; `Location` names it")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Redirect")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            if operation.security.is_none() {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses
                .entry("307".into())
                .or_insert_with(|| RefOr::T(redirect.clone()));
            for (status, description) in [
                (
                    "400",
                    "a name in the path is not valid, or the body is not what the route takes",
                ),
                (
                    "403",
                    "the user is disabled, or the data is read-only (a failover) or unavailable (resiliency mode)",
                ),
                (
                    "503",
                    "the data is unavailable (resiliency mode), or RTCSRV is stopped",
                ),
            ] {
                responses
                    .entry(status.into())
                    .or_insert_with(|| RefOr::T(api::openapi::error_response(description)));
            }
        }
    }
}

/// The routes, mounted on the user-services port.
pub fn router(server: Arc<Node>) -> Router {
    let document = Bytes::from(serde_json::to_vec(&openapi()).expect("the document serialises"));
    let users = user_routes()
        .route_layer(middleware::from_fn(check_names))
        .layer(DefaultBodyLimit::max(MAX_CONTENT_BYTES))
        .layer(middleware::from_fn_with_state(server.clone(), gate))
        // Failed sign-ins here count as the registrar's do: per (user, source) and source.
        .layer(Extension(Guesses::default()));
    OpenApiRouter::new()
        .routes(routes!(openapi_document))
        .layer(Extension(Document(document)))
        .merge(users)
        .split_for_parts()
        .0
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such user-services route; GET /openapi.json describes them",
            )
        })
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(server)
}

/// The served description, serialised once.
#[derive(Debug, Clone)]
struct Document(Bytes);

/// This document; no credentials needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "the OpenAPI 3.1 document of user services", body = Object))
)]
async fn openapi_document(Extension(Document(document)): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

/// The answer to a user's call from a pool that does not serve the user in full mode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Redirect {
    /// Who serves the user.
    error: String,
    /// The pool to call instead (`Location` has the URL).
    serving_pool: String,
}

/// The answer to a write: committed, and queued for the partner pool.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Saved {
    saved: bool,
    /// The change's number in the pool's change log.
    change: i64,
    /// `synchronous`, `asynchronous`, or why a synchronous pair fell back.
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
}

/// A file's bytes, as sent and as answered.
#[derive(Debug)]
struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .min_length(Some(1))
            .into()
    }
}

impl utoipa::ToSchema for FileBytes {}

/// Who the caller is and how this pool serves them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Me {
    sip_address: String,
    home_pool: String,
    serving_pool: String,
    /// `Full`, `ReadOnly` or `Resiliency`.
    mode: String,
}

/// An error answer with a reason.
fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

/// Who is calling and how this pool serves them.
#[derive(Debug, Clone)]
struct Caller {
    user: UserRecord,
    mode: Mode,
}

/// Authenticates the caller, then serves, redirects (307) or refuses (resiliency mode).
/// Failed sign-ins on user services, locked out by the registrar's rules
/// ([`crate::lockout`]): guessing over HTTPS is no cheaper than over SIP.
#[derive(Debug, Clone, Default)]
struct Guesses(Arc<std::sync::Mutex<crate::lockout::Lockouts>>);

async fn gate(State(server): State<Arc<Node>>, mut request: Request, next: Next) -> Response {
    if !server.services.is_running(RTCSRV) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the RTCSRV service of {} is stopped", server.fqdn),
        );
    }
    let peer = request
        .extensions()
        .get::<listener::PeerAddress>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    // A download an Edge passes on counts against the outside client it names.
    let source = through_edge(&server, peer, request.headers()).unwrap_or(peer);
    let guesses = request
        .extensions()
        .get::<Guesses>()
        .cloned()
        .unwrap_or_default();
    let user = match authenticate(&server, request.headers(), source, &guesses).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let topology = server.replica.topology();
    let decision = server
        .serving_decision(&topology, &user.registrar_pool)
        .await;
    let mode = match decision {
        Decision::Serve(mode) => mode,
        Decision::Redirect { pool } => {
            let Some(target) = topology.front_end_servers(&pool).first() else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{pool} has no Front End"),
                );
            };
            let location = format!(
                "{}{}",
                api::base(target.address, topology.ports.user_services),
                request.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            let mut response = (
                StatusCode::TEMPORARY_REDIRECT,
                Json(Redirect {
                    error: format!("{} is served by {pool}", user.sip_address),
                    serving_pool: pool,
                }),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            return response;
        }
    };
    // Who the caller is and the media relays are no stored data: a pool serving in
    // resiliency mode answers them too.
    let not_stored_data = matches!(
        request.uri().path(),
        "/users/v1/me" | "/users/v1/media-relay"
    );
    if mode == Mode::ReadOnly && request.method() != Method::GET {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{}'s data is read-only while the users of {} move between pools (a failover or failback is running); \
                 the change was not saved. Get-CsPoolFailoverState -PoolFqdn {} shows the progress; try again once it ends",
                user.sip_address, user.registrar_pool, user.registrar_pool
            ),
        );
    }
    if mode == Mode::Resiliency && !not_stored_data {
        let reason = match server.not_caught_up() {
            Some(why) => format!(
                "{} is served by {} in resiliency mode: {why}. No change can be saved until it has; try again in a few seconds",
                user.sip_address, server.pool
            ),
            None => format!(
                "{} is served by {} in resiliency mode because the home pool {} is unreachable: \
                 contacts, meetings, settings and meeting content are unavailable and no change can be saved \
                 until the home pool is back or is failed over (Invoke-CsPoolFailOver -PoolFqdn {} -DisasterMode)",
                user.sip_address, server.pool, user.registrar_pool, user.registrar_pool
            ),
        };
        let status = if request.method() == Method::GET {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::FORBIDDEN
        };
        return error(status, reason);
    }
    request.extensions_mut().insert(Caller { user, mode });
    next.run(request).await
}

/// The outside client an Edge's Web Conferencing Edge names, believed only when the call
/// comes from an Edge server's internal address.
fn through_edge(
    server: &Node,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    let named = headers
        .get(api::CLIENT_ADDRESS_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let topology = server.replica.topology();
    topology
        .edge_pools
        .iter()
        .flat_map(|p| &p.servers)
        .any(|s| std::net::IpAddr::from(s.address) == peer)
        .then_some(named)
}

/// A hash no password gives, checked for users who do not exist, so that they cost the
/// same as users who do.
const NO_ONE: &str = "00000000000000000000000000000000";

async fn authenticate(
    server: &Node,
    headers: &HeaderMap,
    source: std::net::IpAddr,
    guesses: &Guesses,
) -> Result<UserRecord, Response> {
    let challenge = |reason: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, reason);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tandem user services\""),
        );
        r
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(challenge(
            "sign in with the user's SIP address and password (HTTP Basic)",
        ));
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return Err(challenge("only Basic authorization is accepted here"));
    };
    let Some((name, password)) = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
    else {
        return Err(challenge(
            "the Basic credentials are not base64 of user:password",
        ));
    };
    let now = server.clock.now_ms().max(0) as u64;
    let who = cms::directory::normalize_sip(&name).to_ascii_lowercase();
    let verdict = guesses
        .0
        .lock()
        .expect("guesses")
        .verdict(&who, source, now);
    if let crate::lockout::Verdict::Locked { retry_after_ms } = verdict {
        guesses.0.lock().expect("guesses").failed(&who, source, now);
        let mut r = error(
            StatusCode::FORBIDDEN,
            "too many failed sign-ins from this address; try again later",
        );
        if let Ok(v) = HeaderValue::from_str(&retry_after_ms.div_ceil(1000).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(r);
    }
    // An unknown user costs what a known one does, and gets the same answer as a wrong
    // password; whether a user is disabled is said only to whoever knows the password.
    let user = server.replica.user(&name);
    let (username, realm, stored) = match &user {
        Some(u) => (u.username().to_string(), u.realm.clone(), u.ha1.clone()),
        None => {
            let sip = cms::directory::normalize_sip(&name);
            let username = sip.trim_start_matches("sip:").to_string();
            (username, cms::directory::realm_of(&sip), NO_ONE.to_string())
        }
    };
    let ha1 = sip::digest::ha1(&username, &realm, &password);
    let verified = api::constant_time_eq(ha1.as_bytes(), stored.as_bytes()) && user.is_some();
    let Some(user) = user.filter(|_| verified) else {
        guesses.0.lock().expect("guesses").failed(&who, source, now);
        return Err(challenge("unknown user or wrong password"));
    };
    guesses.0.lock().expect("guesses").succeeded(&who, source);
    if !user.enabled {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("{} is disabled", user.sip_address),
        ));
    }
    Ok(UserRecord::clone(&user))
}

/// Checks every name a route's path carries, before any handler sees it, by what the
/// route calls it: `contact` is a SIP address (as `PUT` stores it), `id`, `file` and
/// `setting` (and any other) are key segments. One check for every method of every route, so a name one
/// method refuses is refused by all of them (a `DELETE` once took `..` that `PUT` refused).
async fn check_names(params: RawPathParams, request: Request, next: Next) -> Response {
    for (param, value) in params.iter() {
        if let Err(reason) = check_name(param, value) {
            return error(StatusCode::BAD_REQUEST, reason);
        }
    }
    next.run(request).await
}

/// The longest name a route takes.
const NAME_MAX_CHARS: usize = 200;
/// The longest user or domain part of a contact's SIP address.
const SIP_PART_MAX_CHARS: usize = 81;

/// Whether `value` is a valid name for the path parameter `param`; why not otherwise.
/// The rules are the `pattern`s of the parameters in the OpenAPI document: a contact is
/// `[sip:]user@domain` (letters, digits and `. _ + -` in the user part, letters, digits and
/// `. -` in the domain, neither starting with a dot); a meeting id, a file or a setting is
/// 1-200 letters, digits or `. _ @ : + -`, not starting with a dot (so never `.` or `..`).
fn check_name(param: &str, value: &str) -> Result<(), String> {
    let part = |text: &str, first: &dyn Fn(char) -> bool, rest: &dyn Fn(char) -> bool, max| {
        let mut chars = text.chars();
        chars.next().is_some_and(first) && chars.all(rest) && text.chars().count() <= max
    };
    let what = match param {
        "contact" => {
            let address = value.strip_prefix("sip:").unwrap_or(value);
            let valid = address.split_once('@').is_some_and(|(user, domain)| {
                let user_char = |c: char| c.is_ascii_alphanumeric() || "_+-".contains(c);
                let domain_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
                part(
                    user,
                    &user_char,
                    &|c| user_char(c) || c == '.',
                    SIP_PART_MAX_CHARS,
                ) && part(
                    domain,
                    &domain_char,
                    &|c| domain_char(c) || c == '.',
                    SIP_PART_MAX_CHARS,
                )
            });
            return if valid {
                Ok(())
            } else {
                Err(format!(
                    "contact {} is not a SIP address: write it as sip:user@domain (letters, digits, . _ + - in the user, letters, digits, . - in the domain)",
                    api::shown(value)
                ))
            };
        }
        "id" => "meeting id",
        "file" => "file name",
        "setting" => "setting",
        // A route added with another name gets the same check.
        other => other,
    };
    let segment_char = |c: char| c.is_ascii_alphanumeric() || "_@:+-".contains(c);
    if part(
        value,
        &segment_char,
        &|c| segment_char(c) || c == '.',
        NAME_MAX_CHARS,
    ) {
        Ok(())
    } else {
        Err(format!(
            "{what} {} must be 1-{NAME_MAX_CHARS} letters, digits or . _ @ : + -, not starting with a dot",
            api::shown(value)
        ))
    }
}

/// A JSON body, or the rejection with what the body should have been.
/// An object is required for a record (serde would also take an array for a struct).
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
    expected: &str,
) -> Result<T, Response> {
    let Json(value) =
        body.map_err(|e| error(e.status(), format!("{expected}: {}", e.body_text())))?;
    if !value.is_object() {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, expected));
    }
    serde_json::from_value(value)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, format!("{expected}: {e}")))
}

fn backend(server: &Node) -> Result<&store::BackEnd, Response> {
    server
        .backend
        .as_ref()
        .ok_or_else(|| error(StatusCode::INTERNAL_SERVER_ERROR, "no Back End"))
}

fn store_error(e: store::StoreError) -> Response {
    if e.fenced_reason().is_some() {
        return error(
            StatusCode::FORBIDDEN,
            format!("{e}; the change was not saved"),
        );
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the pool's Back End did not take the request: {e}"),
    )
}

/// One change to one item.
fn one(module: &str, key: String, value: Option<String>) -> Vec<UserChange> {
    vec![UserChange {
        module: module.into(),
        key,
        value,
    }]
}

/// The items under `prefix` as a JSON array, each with its key in `id_field`.
async fn list_keyed(server: &Node, sip: &str, prefix: &str, id_field: &str) -> Response {
    match items_under(server, sip, prefix).await {
        Ok(items) => Json(
            items
                .into_iter()
                .map(|(k, mut v)| {
                    if let Value::Object(m) = &mut v {
                        m.insert(id_field.into(), Value::String(k));
                    }
                    v
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}

/// Writes and acknowledges; the acknowledgement means committed and queued for backup.
async fn write(server: &Node, caller: &Caller, changes: Vec<UserChange>) -> Response {
    write_under(server, caller, None, changes).await
}

/// [`write`], saved only while the caller holds the item `parent` (checked in the same
/// transaction); 404 naming `missing` (what to do about it) when they do not.
async fn write_under(
    server: &Node,
    caller: &Caller,
    parent: Option<(&str, &str)>,
    changes: Vec<UserChange>,
) -> Response {
    let sip = caller.user.sip_address.as_str();
    let be = match backend(server) {
        Ok(be) => be,
        Err(r) => return r,
    };
    match be
        .write_user_under(
            &caller.user.registrar_pool,
            sip,
            parent.map(|(key, _)| key),
            &changes,
        )
        .await
    {
        Ok(seq) => {
            let saved = |commit| {
                Json(Saved {
                    saved: true,
                    change: seq,
                    commit,
                })
                .into_response()
            };
            let Some(b) = &server.backup else {
                return saved(None);
            };
            b.wake();
            // Under a synchronous pair, acknowledged once the backup pool committed it too.
            let first = seq - changes.len() as i64 + 1;
            let commit = match b.commit(first, seq).await {
                Ok(Commit::Asynchronous) => "asynchronous".to_string(),
                Ok(Commit::Synchronous { .. }) => "synchronous".to_string(),
                Ok(Commit::FellBack { reason }) => {
                    format!("asynchronous (fell back from synchronous: {reason})")
                }
                Err(e) => format!("asynchronous (the backup copy could not be checked: {e})"),
            };
            saved(Some(commit))
        }
        Err(store::StoreError::NoParent { .. }) => error(
            StatusCode::NOT_FOUND,
            parent.map_or("", |(_, missing)| missing).to_string(),
        ),
        Err(e) => store_error(e),
    }
}

async fn items_under(
    server: &Node,
    sip: &str,
    prefix: &str,
) -> Result<Vec<(String, Value)>, Response> {
    let items = backend(server)?
        .user_items(sip)
        .await
        .map_err(store_error)?;
    Ok(items
        .into_iter()
        .filter_map(|i| {
            let rest = i.key.strip_prefix(prefix)?.to_string();
            Some((rest, serde_json::from_str(&i.value).unwrap_or(Value::Null)))
        })
        .collect())
}

/// Who the caller is and how this pool serves them.
#[utoipa::path(get, path = "/users/v1/me", responses((status = 200, body = Me, description = "who the caller is and how this pool serves them")), security(("basic" = [])), tag = "user")]
async fn me(State(server): State<Arc<Node>>, Extension(caller): Extension<Caller>) -> Response {
    Json(Me {
        sip_address: caller.user.sip_address,
        home_pool: caller.user.registrar_pool,
        serving_pool: server.pool.clone(),
        mode: caller.mode.as_str().to_string(),
    })
    .into_response()
}

/// How long a Front End waits for an Edge's MRAS.
const MRAS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Media relays for the caller, with credentials: from MRAS on the Edge pool this pool is
/// associated with for media (Set-CsPoolEdgeAssociation moves new requests at once), the
/// first of its Edges that answers.
#[utoipa::path(
    get,
    path = "/users/v1/media-relay",
    responses(
        (status = 200, body = relay::MediaRelay, description = "the relays of this pool's Edge pool, and credentials for them"),
        (status = 404, body = Object, description = "this pool has no Edge pool for media"),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn media_relay(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let topology = server.replica.topology();
    let Some(edge_pool) = topology
        .front_end_pool(&server.pool)
        .and_then(|p| p.edge_pool.clone())
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "{} has no Edge pool for media; Set-CsPoolEdgeAssociation -PoolFqdn {} -EdgePoolFqdn <Edge pool> gives it one",
                server.pool, server.pool
            ),
        );
    };
    let edges = topology
        .edge_pool(&edge_pool)
        .map(|p| p.servers.clone())
        .unwrap_or_default();
    let request = relay::MrasRequest {
        user: caller.user.sip_address.clone(),
    };
    let mut problems = Vec::new();
    for edge in &edges {
        let base = api::base(edge.address, topology.ports.management);
        match server
            .api
            .post::<_, relay::MediaRelay>(&base, api::paths::MRAS, &request, MRAS_WAIT)
            .await
        {
            Ok(answer) => return Json(answer).into_response(),
            Err(e) => problems.push(format!("{}: {e}", edge.fqdn)),
        }
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no Edge of {edge_pool}, the Edge pool {} uses for media, gave relay credentials ({}); \
             Set-CsPoolEdgeAssociation -PoolFqdn {} -EdgePoolFqdn <a running Edge pool> moves media to another",
            server.pool,
            problems.join("; "),
            server.pool
        ),
    )
}

/// A contact list entry.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[utoipa::path(
    get,
    path = "/users/v1/contacts",
    responses(
        (status = 200, description = "the contact list, each with its sip_address", body = Vec<Object>),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn list_contacts(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    list_keyed(
        &server,
        &caller.user.sip_address,
        "contacts/",
        "sip_address",
    )
    .await
}

async fn get_one(server: &Node, sip: &str, key: &str, what: &str) -> Response {
    let be = match backend(server) {
        Ok(be) => be,
        Err(r) => return r,
    };
    match be.user_items(sip).await {
        Ok(items) => match items.into_iter().find(|i| i.key == key) {
            Some(i) => {
                Json(serde_json::from_str::<Value>(&i.value).unwrap_or(Value::Null)).into_response()
            }
            None => error(StatusCode::NOT_FOUND, format!("no {what}")),
        },
        Err(e) => store_error(e),
    }
}

#[utoipa::path(
    get,
    path = "/users/v1/contacts/{contact}",
    params(("contact" = String, Path, pattern = r"^(sip:)?[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,80}@[A-Za-z0-9-][A-Za-z0-9.-]{0,80}$", description = "a SIP address: sip:user@domain")),
    responses(
        (status = 200, description = "the contact", body = Contact),
        (status = 404, body = api::ErrorBody, description = "no such item"),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn get_contact(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(contact): Path<String>,
) -> Response {
    let contact = cms::directory::normalize_sip(&contact);
    get_one(
        &server,
        &caller.user.sip_address,
        &format!("contacts/{contact}"),
        &format!("contact {contact}"),
    )
    .await
}

#[utoipa::path(
    put,
    path = "/users/v1/contacts/{contact}",
    params(("contact" = String, Path, pattern = r"^(sip:)?[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,80}@[A-Za-z0-9-][A-Za-z0-9.-]{0,80}$", description = "a SIP address: sip:user@domain")),
    request_body = Contact,
    responses(
        (status = 200, description = "saved and queued for the partner pool", body = Saved),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn put_contact(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(contact): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let contact = cms::directory::normalize_sip(&contact);
    let entry: Contact = match json_body(body, "the contact is not {\"group\", \"display_name\"}") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let value = serde_json::to_string(&entry).expect("contacts serialise");
    write(
        &server,
        &caller,
        one("PresenceFocus", format!("contacts/{contact}"), Some(value)),
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/users/v1/contacts/{contact}",
    params(("contact" = String, Path, pattern = r"^(sip:)?[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,80}@[A-Za-z0-9-][A-Za-z0-9.-]{0,80}$", description = "a SIP address: sip:user@domain")),
    responses(
        (status = 200, description = "saved and queued for the partner pool", body = Saved),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn delete_contact(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(contact): Path<String>,
) -> Response {
    let contact = cms::directory::normalize_sip(&contact);
    write(
        &server,
        &caller,
        one("PresenceFocus", format!("contacts/{contact}"), None),
    )
    .await
}

/// A scheduled meeting.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Meeting {
    pub subject: String,
    /// ISO 8601 start time, as the organiser wrote it.
    pub start: String,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub attendees: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/users/v1/meetings",
    responses(
        (status = 200, description = "the meetings, each with its id", body = Vec<Object>),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn list_meetings(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    list_keyed(&server, &caller.user.sip_address, "meetings/", "id").await
}

#[utoipa::path(
    get,
    path = "/users/v1/meetings/{id}",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a meeting id: 1-200 letters, digits or . - _ @ : +")),
    responses(
        (status = 200, description = "the meeting", body = Meeting),
        (status = 404, body = api::ErrorBody, description = "no such item"),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn get_meeting(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    get_one(
        &server,
        &caller.user.sip_address,
        &format!("meetings/{id}"),
        &format!("meeting {id}"),
    )
    .await
}

#[utoipa::path(
    put,
    path = "/users/v1/meetings/{id}",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a meeting id: 1-200 letters, digits or . - _ @ : +")),
    request_body = Meeting,
    responses(
        (status = 200, description = "saved and queued for the partner pool", body = Saved),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn put_meeting(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let meeting: Meeting = match json_body(
        body,
        "the meeting is not {\"subject\", \"start\", \"end\", \"attendees\"}",
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let value = serde_json::to_string(&meeting).expect("meetings serialise");
    write(
        &server,
        &caller,
        one("PresenceFocus", format!("meetings/{id}"), Some(value)),
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/users/v1/meetings/{id}",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a meeting id: 1-200 letters, digits or . - _ @ : +")),
    responses(
        (status = 200, description = "saved and queued for the partner pool", body = Saved),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn delete_meeting(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let content =
        match items_under(&server, &caller.user.sip_address, &format!("content/{id}/")).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    let mut changes = one("PresenceFocus", format!("meetings/{id}"), None);
    changes.extend(content.into_iter().map(|(name, _)| UserChange {
        module: "DataConf".into(),
        key: format!("content/{id}/{name}"),
        value: None,
    }));
    write(&server, &caller, changes).await
}

#[utoipa::path(
    get,
    path = "/users/v1/meetings/{id}/content",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a meeting id: 1-200 letters, digits or . - _ @ : +")),
    responses(
        (status = 200, description = "what was uploaded to the meeting", body = Vec<Object>),
        (status = 404, body = api::ErrorBody, description = "no such meeting"),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn list_content(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let sip = &caller.user.sip_address;
    let content = match items_under(&server, sip, &format!("content/{id}/")).await {
        Ok(items) => items,
        Err(r) => return r,
    };
    // Content is uploaded only to a scheduled meeting, but data imported or restored from
    // elsewhere may hold content without its record: a meeting is there while its record
    // or any of its content is. Deleting the meeting deletes both, and its content is then
    // gone too (404), not an empty list.
    if content.is_empty() {
        match items_under(&server, sip, &format!("meetings/{id}")).await {
            Ok(meeting) if meeting.iter().any(|(rest, _)| rest.is_empty()) => {}
            Ok(_) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no meeting {id}; PUT /users/v1/meetings/{id} schedules it"),
                );
            }
            Err(r) => return r,
        }
    }
    Json(content.into_iter().map(|(_, v)| v).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(
    put,
    path = "/users/v1/meetings/{id}/content/{file}",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a meeting id: 1-200 letters, digits or . - _ @ : +"), ("file" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a file name: 1-200 letters, digits or . - _ @ : +")),
    request_body(content = FileBytes, content_type = "application/octet-stream", description = "the file"),
    responses(
        (status = 200, description = "saved and queued for the partner pool", body = Saved),
        (status = 404, body = api::ErrorBody, description = "no such meeting: content is uploaded to a scheduled meeting"),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn put_content(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the file is empty; send its bytes as the body (Content-Type: application/octet-stream)",
        );
    }
    let be = match backend(&server) {
        Ok(be) => be,
        Err(r) => return r,
    };
    let sha = match be.put_file(&body).await {
        Ok(sha) => sha,
        Err(e) => return store_error(e),
    };
    let value = json!({
        "meeting": id,
        "name": name,
        "size": body.len(),
        "sha256": sha,
        "uploaded_at": server.clock.now_ms(),
    });
    // Content belongs to a scheduled meeting: uploading to one that does not exist (or
    // was just deleted) is refused rather than bringing it back as content alone.
    let meeting = format!("meetings/{id}");
    let missing = format!("no meeting {id}; PUT /users/v1/meetings/{id} schedules it");
    write_under(
        &server,
        &caller,
        Some((&meeting, &missing)),
        one(
            "DataConf",
            format!("content/{id}/{name}"),
            Some(value.to_string()),
        ),
    )
    .await
}

#[utoipa::path(
    get,
    path = "/users/v1/meetings/{id}/content/{file}",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a meeting id: 1-200 letters, digits or . - _ @ : +"), ("file" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a file name: 1-200 letters, digits or . - _ @ : +")),
    responses(
        (status = 200, description = "the file", content_type = "application/octet-stream", body = FileBytes),
        (status = 404, body = api::ErrorBody, description = "no such item"),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn get_content(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let be = match backend(&server) {
        Ok(be) => be,
        Err(r) => return r,
    };
    let key = format!("content/{id}/{name}");
    let item = match be.user_items(&caller.user.sip_address).await {
        Ok(items) => items.into_iter().find(|i| i.key == key),
        Err(e) => return store_error(e),
    };
    let Some(item) = item else {
        return error(
            StatusCode::NOT_FOUND,
            format!("meeting {id} has no content {name}"),
        );
    };
    let Some(sha) = backup::service::content_sha(&item.value) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the content record names no file",
        );
    };
    match be.get_file(&sha).await {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the file store of {} has no file {sha}", server.pool),
        ),
    }
}

#[utoipa::path(
    delete,
    path = "/users/v1/meetings/{id}/content/{file}",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a meeting id: 1-200 letters, digits or . - _ @ : +"), ("file" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a file name: 1-200 letters, digits or . - _ @ : +")),
    responses(
        (status = 200, description = "saved and queued for the partner pool", body = Saved),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn delete_content(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    write(
        &server,
        &caller,
        one("DataConf", format!("content/{id}/{name}"), None),
    )
    .await
}

#[utoipa::path(
    get,
    path = "/users/v1/settings",
    responses(
        (status = 200, description = "the settings, by name", body = Object),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn list_settings(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match items_under(&server, &caller.user.sip_address, "settings/").await {
        Ok(items) => Json(
            items
                .into_iter()
                .collect::<serde_json::Map<String, Value>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}

#[utoipa::path(
    get,
    path = "/users/v1/settings/{setting}",
    params(("setting" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a setting name: 1-200 letters, digits or . - _ @ : +")),
    responses(
        (status = 200, description = "the setting (any JSON value)", body = serde_json::Value),
        (status = 404, body = api::ErrorBody, description = "no such item"),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn get_setting(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    get_one(
        &server,
        &caller.user.sip_address,
        &format!("settings/{name}"),
        &format!("setting {name}"),
    )
    .await
}

#[utoipa::path(
    put,
    path = "/users/v1/settings/{setting}",
    params(("setting" = String, Path, pattern = r"^[A-Za-z0-9_@:+-][A-Za-z0-9._@:+-]{0,199}$", description = "a setting name: 1-200 letters, digits or . - _ @ : +")),
    request_body(content = serde_json::Value, description = "any JSON value"),
    responses(
        (status = 200, description = "saved and queued for the partner pool", body = Saved),
    ),
    security(("basic" = [])),
    tag = "user"
)]
async fn put_setting(
    State(server): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let value = match body {
        Ok(Json(value)) => value,
        Err(e) => {
            return error(
                e.status(),
                format!("a setting is any JSON value: {}", e.body_text()),
            );
        }
    };
    write(
        &server,
        &caller,
        one(
            "PresenceFocus",
            format!("settings/{name}"),
            Some(value.to_string()),
        ),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn the_document_describes_every_route_with_basic_credentials() {
        let doc = super::openapi();
        let ops: Vec<String> = api::openapi::operations(&doc)
            .into_iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        assert_eq!(
            ops,
            [
                "DELETE /users/v1/contacts/{contact}",
                "DELETE /users/v1/meetings/{id}",
                "DELETE /users/v1/meetings/{id}/content/{file}",
                "GET /openapi.json",
                "GET /users/v1/contacts",
                "GET /users/v1/contacts/{contact}",
                "GET /users/v1/me",
                "GET /users/v1/media-relay",
                "GET /users/v1/meetings",
                "GET /users/v1/meetings/{id}",
                "GET /users/v1/meetings/{id}/content",
                "GET /users/v1/meetings/{id}/content/{file}",
                "GET /users/v1/settings",
                "GET /users/v1/settings/{setting}",
                "PUT /users/v1/contacts/{contact}",
                "PUT /users/v1/meetings/{id}",
                "PUT /users/v1/meetings/{id}/content/{file}",
                "PUT /users/v1/settings/{setting}",
            ]
        );
        assert_eq!(
            api::openapi::undescribed_responses(&doc),
            Vec::<String>::new()
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json["components"]["securitySchemes"]["basic"]["scheme"],
            "basic"
        );
        // Every path parameter a route names has the check `check_names` applies.
        for (path, _) in json["paths"].as_object().unwrap() {
            for param in path.split('{').skip(1) {
                let param = param.split('}').next().unwrap();
                assert!(
                    ["contact", "id", "file", "setting"].contains(&param),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn every_route_refuses_the_same_names() {
        for param in ["contact", "id", "file", "setting"] {
            for bad in ["", ".", "..", "a/b", "a b", "a\u{0}b", &"x".repeat(201)] {
                let e = check_name(param, bad).unwrap_err();
                assert!(!e.contains("\\u"), "{e}");
            }
        }
        assert!(check_name("contact", "sip:bob@contoso.com").is_ok());
        assert!(check_name("contact", "bob@contoso.com").is_ok());
        assert!(check_name("contact", "sip:..").is_err());
        assert!(check_name("contact", "sip:.a@b").is_err());
        assert!(check_name("contact", "sip:a@b@c").is_err());
        assert!(check_name("id", ".hidden").is_err());
        assert!(check_name("id", "m-1").is_ok());
        assert!(check_name("file", "slides.pdf").is_ok());
        assert!(check_name("setting", "theme").is_ok());
    }
}
