//! The web console, served by every server's management API under `/console`.
//!
//! - `GET /console`: the page (or the sign-in form, for a browser without a session);
//!   `POST /console/login` and `/console/logout` ([`session`]).
//! - `GET /console/events`: server-sent events, one per section of the page (`map`,
//!   `pools`, `backup`, `cms`, `operations`, `at`, and the session's `actions`), each the
//!   section's new HTML, sent when it changed; htmx's SSE extension swaps them in.
//! - `POST /console/actions`: a documented operation started from the page's form, as the
//!   cmdlet call the shell makes (`console::action`), through [`crate::dispatch::invoke`]
//!   as the signed-in operator: the same roles, refusals and audit log as the shell. A
//!   `-WhatIf` answers at once; a real run goes on in the background and its result comes
//!   by the session's `actions` event, its steps by `operations`.
//!   `POST /console/actions/line` answers the shell line the form stands for.
//! - `GET /console/assets/<file>`: the scripts and stylesheet, compiled in.
//!
//! The figures are read by one task per server ([`snapshot`]) once a second while at least
//! one page watches, and shared by every page; it stops a minute after the last one left.

pub mod session;
pub mod snapshot;
pub mod state;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use ::console::action::{Action, ActionForm, ActionRecord, ActionState};
use ::console::pages::{self, Fragments};
use axum::Extension;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::Mgmt;
use crate::dispatch::Caller;
use session::Session;
use state::Live;

/// How often the figures are read while a page watches.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long the reading goes on after the last page left (a reload keeps the charts).
const LINGER: Duration = Duration::from_secs(60);
/// The largest form the console takes.
const FORM_MAX_BYTES: usize = 8 * 1024;
/// How long a `-WhatIf` may take before the page is answered.
const WHAT_IF_TIMEOUT: Duration = Duration::from_secs(30);

/// The readings, starting the task that makes them if none runs.
fn watch(mgmt: &Mgmt) -> watch::Receiver<Arc<Live>> {
    let (rx, start) = mgmt.console.subscribe();
    if let Some(tx) = start {
        let m = mgmt.clone();
        mgmt.node
            .spawn(async move { read_while_watched(m, tx).await });
    }
    rx
}

/// Reads the figures every [`REFRESH`] until no page has watched for [`LINGER`] or the
/// server shuts down.
async fn read_while_watched(mgmt: Mgmt, tx: watch::Sender<Arc<Live>>) {
    let mut memory = snapshot::Memory::default();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unwatched_since: Option<tokio::time::Instant> = None;
    let mut reading = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = mgmt.node.shutdown.cancelled() => break,
        }
        // Only the console's own handle left: nobody watches.
        if tx.receiver_count() == 0 {
            let since = *unwatched_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= LINGER && mgmt.console.stop_if_unwatched(&tx) {
                break;
            }
        } else {
            unwatched_since = None;
        }
        let snapshot = snapshot::gather(&mgmt, &mut memory).await;
        let fragments = Fragments::of(&snapshot);
        reading += 1;
        tx.send_replace(Arc::new(Live {
            snapshot,
            fragments,
            reading,
        }));
    }
}

/// The console's routes.
pub fn routes() -> Router<Mgmt> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/events", get(events))
        .route("/console/actions", post(act))
        .route("/console/actions/line", post(line))
        .route("/console/assets/{file}", get(asset))
        .layer(DefaultBodyLimit::max(FORM_MAX_BYTES))
}

/// What every page answer carries: no framing by other sites, scripts and styles only from
/// here, nothing cached, no referrer.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The request's session, if it has one that still holds: an operator's session ends when
/// the operator is removed or given another token.
async fn session_of(mgmt: &Mgmt, headers: &HeaderMap) -> Option<Session> {
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
    let id = session::cookie_value(cookie)?;
    let mut s = mgmt.console.sessions.get(id, mgmt.node.clock.now_ms())?;
    if let Some(hash) = &s.token_sha256 {
        match crate::operators::current(mgmt.node.replica.store(), &s.operator.name, hash).await {
            Some(operator) => s.operator = operator,
            None => {
                mgmt.console.sessions.close(id);
                return None;
            }
        }
    }
    Some(s)
}

/// Refused: no session.
fn signed_out() -> Response {
    let mut r = html(
        StatusCode::UNAUTHORIZED,
        "<p>Your session has ended. <a href=\"/console/login\">Sign in</a> again.</p>".into(),
    );
    // htmx follows this header with a full page load.
    r.headers_mut()
        .insert("HX-Redirect", HeaderValue::from_static("/console/login"));
    r
}

/// The page, drawn from the newest reading (waiting for the first one, up to a few
/// seconds).
async fn page(State(mgmt): State<Mgmt>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&mgmt, &headers).await else {
        return Redirect::to("/console/login").into_response();
    };
    let mut rx = watch(&mgmt);
    let _ =
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|live| live.reading > 0)).await;
    let live = rx.borrow().clone();
    let actions = session.actions.borrow().clone();
    html(
        StatusCode::OK,
        pages::console(
            &live.snapshot,
            &live.fragments,
            &session.operator.name,
            &session.operator.roles_text(),
            &session.csrf,
            &actions,
        ),
    )
}

async fn login_page(State(mgmt): State<Mgmt>) -> Response {
    html(StatusCode::OK, pages::login(&mgmt.node.fqdn, None))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Trades a token for a session: checked as the API checks a bearer token.
async fn login(
    State(mgmt): State<Mgmt>,
    peer: Option<Extension<listener::PeerAddress>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let now = mgmt.node.clock.now_ms();
    let fqdn = &mgmt.node.fqdn;
    let source = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(p)| {
        p.0.ip()
    });
    if !mgmt.console.sessions.may_try(source, now) {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(
                fqdn,
                Some("Too many failed sign-ins from your address; try again in a minute."),
            ),
        );
    }
    let token = form.map(|Form(f)| f.token).unwrap_or_default();
    let token = token.trim();
    let mut headers = HeaderMap::new();
    let operator = match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(v) if !token.is_empty() && token.len() <= 200 => {
            headers.insert(header::AUTHORIZATION, v);
            crate::operators::authenticate(&headers, &mgmt.node.token, mgmt.node.replica.store())
                .await
                .ok()
        }
        _ => None,
    };
    let Some(operator) = operator else {
        mgmt.console.sessions.failed(source, now);
        tracing::info!("console sign-in refused");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                fqdn,
                Some(
                    "That token was not accepted. New-CsAdminOperator makes an operator's token; the lab's lab.json holds the deployment's.",
                ),
            ),
        );
    };
    let hash = (!operator.deployment).then(|| crate::operators::token_hash(token));
    tracing::info!(operator = %operator.name, "console sign-in");
    let id = mgmt.console.sessions.open(operator, hash, now);
    let mut r = Redirect::to("/console").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(&id)).expect("hex is a header value"),
    );
    r
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(mgmt): State<Mgmt>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Some(s) = session_of(&mgmt, &headers).await
        && form.is_ok_and(|Form(f)| api::constant_time_eq(f.csrf.as_bytes(), s.csrf.as_bytes()))
        && let Some(id) =
            session::cookie_value(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()))
    {
        mgmt.console.sessions.close(id);
    }
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie()).expect("a header value"),
    );
    r
}

/// The live updates: each section's HTML when it changed, and the session's actions.
async fn events(State(mgmt): State<Mgmt>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&mgmt, &headers).await else {
        return signed_out();
    };
    let mut readings = watch(&mgmt);
    let mut actions = session.actions.subscribe();
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(16);
    let shutdown = mgmt.node.shutdown.clone();
    mgmt.node.spawn(async move {
        // The reading this page was last sent; the first round sends every section.
        let mut sent: Arc<Live> = Arc::default();
        let mut sent_actions: Option<String> = None;
        loop {
            let live = readings.borrow_and_update().clone();
            if live.reading > 0 {
                // The same sections in the same order: send those that differ.
                for ((name, html), (_, before)) in live
                    .fragments
                    .events()
                    .into_iter()
                    .zip(sent.fragments.events())
                {
                    if html != before
                        && tx
                            .send(Ok(Event::default().event(name).data(html)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                sent = live;
            }
            let html = pages::actions(&actions.borrow_and_update());
            if sent_actions.as_deref() != Some(&html) {
                let event = Event::default().event("actions").data(&html);
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                sent_actions = Some(html);
            }
            tokio::select! {
                r = readings.changed() => if r.is_err() { return },
                r = actions.changed() => if r.is_err() { return },
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    });
    let mut r = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The Front End pools an action may name.
fn pool_names(mgmt: &Mgmt) -> Vec<String> {
    mgmt.node
        .topology()
        .front_end_pools
        .iter()
        .map(|p| p.fqdn.clone())
        .collect()
}

/// The shell line the form stands for (or why it stands for none).
async fn line(
    State(mgmt): State<Mgmt>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if session_of(&mgmt, &headers).await.is_none() {
        return signed_out();
    }
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let text = match Action::from_form(&form, &pool_names(&mgmt)) {
        Ok(a) => a.shell_line(),
        Err(e) => e,
    };
    html(StatusCode::OK, ::console::chart::escape(&text))
}

/// What a cmdlet's answer prints in the shell: its warnings, then its output.
fn printed(reply: &api::InvokeResponse) -> String {
    let mut out = String::new();
    for w in &reply.warnings {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    match &reply.output {
        cmdlet::Output::Records(records) => out.push_str(&cmdlet::render(
            records,
            cmdlet::OutputFormat::List,
            None,
            false,
        )),
        cmdlet::Output::Text(text) => out.push_str(text),
        cmdlet::Output::None => {}
    }
    out.trim().to_string()
}

/// Starts an action from the page's form.
async fn act(
    State(mgmt): State<Mgmt>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let Some(session) = session_of(&mgmt, &headers).await else {
        return signed_out();
    };
    let htmx = headers.contains_key("HX-Request");
    let answer = |status: StatusCode, line: &str, state: &str, output: &str| {
        if htmx {
            html(
                status,
                pages::render(&pages::ActionResult {
                    line,
                    state,
                    output,
                }),
            )
        } else {
            // Without script the page is loaded again; the action is in its list.
            Redirect::to("/console").into_response()
        }
    };
    let Ok(Form(form)) = form else {
        return answer(
            StatusCode::BAD_REQUEST,
            "",
            "refused",
            "the form could not be read",
        );
    };
    if !api::constant_time_eq(form.csrf.as_bytes(), session.csrf.as_bytes()) {
        return answer(
            StatusCode::FORBIDDEN,
            "",
            "refused",
            "the form did not come from this session's page; load /console again",
        );
    }
    let action = match Action::from_form(&form, &pool_names(&mgmt)) {
        Ok(a) => a,
        Err(e) => {
            // Kept in the session's list too, for a browser without script, which is sent
            // back to the page.
            session::record_action(
                &session.actions,
                ActionRecord {
                    id: mgmt.console.sessions.next_action(),
                    line: "(the form)".into(),
                    started: clock::format_timestamp(mgmt.node.clock.now_ms()),
                    state: ActionState::Failed,
                    output: e.clone(),
                },
            );
            return answer(StatusCode::UNPROCESSABLE_ENTITY, "", "refused", &e);
        }
    };
    let line = action.shell_line();
    let id = mgmt.console.sessions.next_action();
    let started = clock::format_timestamp(mgmt.node.clock.now_ms());
    let caller = Caller {
        operator: session.operator.clone(),
        forwarded_by: None,
    };
    tracing::info!(operator = %caller.operator.name, %line, "console action");
    let record = |state, output: String| ActionRecord {
        id,
        line: line.clone(),
        started: started.clone(),
        state,
        output,
    };
    if action.what_if {
        let result = tokio::time::timeout(
            WHAT_IF_TIMEOUT,
            crate::dispatch::invoke(&mgmt, action.request(), &caller),
        )
        .await;
        let (state, output) = match result {
            Ok(Ok(reply)) => (ActionState::Succeeded, printed(&reply)),
            Ok(Err(e)) => (ActionState::Failed, e.message().to_string()),
            Err(_) => (
                ActionState::Failed,
                format!("no answer in {} s", WHAT_IF_TIMEOUT.as_secs()),
            ),
        };
        session::record_action(&session.actions, record(state, output.clone()));
        return answer(StatusCode::OK, &line, state.word(), &output);
    }
    session::record_action(
        &session.actions,
        record(ActionState::Running, String::new()),
    );
    let m = mgmt.clone();
    let actions = session.actions.clone();
    let request = action.request();
    let done = record(ActionState::Running, String::new());
    mgmt.node.spawn(async move {
        let (state, output) = match crate::dispatch::invoke(&m, request, &caller).await {
            Ok(reply) => (ActionState::Succeeded, printed(&reply)),
            Err(e) => (ActionState::Failed, e.message().to_string()),
        };
        session::record_action(
            &actions,
            ActionRecord {
                state,
                output,
                ..done
            },
        );
    });
    // "started", not "running": this answer is not updated, and stays true once the
    // operation has ended (its state is in the session's list, which is).
    answer(
        StatusCode::ACCEPTED,
        &line,
        "started",
        "started; its steps show under DR operations, its result under this session's actions",
    )
}

async fn asset(Path(file): Path<String>) -> Response {
    match ::console::assets::get(&file) {
        Some((kind, bytes)) => {
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
