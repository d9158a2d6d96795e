//! The Web Conferencing Edge: meeting content that external users download goes through
//! the Edge pool their Front End pool is associated with, so moving the association
//! (`Set-CsPoolEdgeAssociation`) moves that traffic too.
//!
//! It listens on the Edge's external address (`ports.web_conferencing_edge`, HTTPS with the
//! Edge's external certificate, no client certificate) while `RTCDATAPROXY` runs, and
//! takes only content downloads (`GET /users/v1/meetings/{id}/content[/{file}]`): anything
//! else of user services stays inside. A download is passed, with the user's own
//! credentials, to user services of a Front End pool associated with this Edge pool; the
//! 307 that names the user's serving pool is followed only when that pool is associated
//! with this Edge pool too — a user whose pool uses another Edge pool for media is told
//! which (403), so that this pool's traffic goes where the association says. The outside
//! client's address goes along (`api::CLIENT_ADDRESS_HEADER`, from the Edge's internal
//! address), so that failed sign-ins lock out that client and not every user of the Edge.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use node::Node;
use topology::Topology;

/// How long a Front End has to answer a download passed on.
const FORWARD_WAIT: Duration = Duration::from_secs(10);

/// What the proxy needs.
#[derive(Clone)]
pub(crate) struct WebConf {
    node: Arc<Node>,
    http: reqwest::Client,
}

/// The routes of the Web Conferencing Edge.
pub(crate) fn router(node: Arc<Node>) -> Result<Router, String> {
    // From the Edge's internal address: user services believe the client address it names
    // only from there.
    let http = api::https(&node.tls)
        .local_address(node.address.ip())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FORWARD_WAIT)
        .build()
        .map_err(|e| format!("the web conferencing proxy's client: {e}"))?;
    Ok(Router::new()
        .route("/users/v1/meetings/{id}/content", get(list))
        .route("/users/v1/meetings/{id}/content/{file}", get(download))
        .fallback(|| async {
            refuse(
                StatusCode::NOT_FOUND,
                "the Web Conferencing Edge passes on meeting content downloads only \
                 (GET /users/v1/meetings/{id}/content/{file})"
                    .to_string(),
            )
        })
        .with_state(WebConf { node, http }))
}

fn refuse(status: StatusCode, reason: String) -> Response {
    (status, Json(serde_json::json!({ "error": reason }))).into_response()
}

/// The outside client's address, as the listener saw it.
type Peer = Option<Extension<listener::PeerAddress>>;

async fn list(
    State(w): State<WebConf>,
    peer: Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/users/v1/meetings/{id}/content");
    forward(&w, &path, &headers, peer.map(|Extension(p)| p.0.ip())).await
}

async fn download(
    State(w): State<WebConf>,
    peer: Peer,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/users/v1/meetings/{id}/content/{file}");
    forward(&w, &path, &headers, peer.map(|Extension(p)| p.0.ip())).await
}

/// The Front End pools that use this Edge's pool for media.
fn associated<'t>(topology: &'t Topology, edge_pool: &str) -> Vec<&'t topology::FrontEndPool> {
    topology
        .front_end_pools
        .iter()
        .filter(|p| {
            p.edge_pool
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(edge_pool))
        })
        .collect()
}

/// Passes a download on to the user's serving pool, if that pool uses this Edge pool.
async fn forward(
    w: &WebConf,
    path: &str,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Response {
    let topology = w.node.replica.topology();
    let Some(edge_pool) = topology
        .server(&w.node.fqdn)
        .filter(|s| s.role == topology::Role::Edge)
        .map(|s| s.pool_fqdn.to_string())
    else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} is no Edge server of the topology", w.node.fqdn),
        );
    };
    let pools = associated(&topology, &edge_pool);
    let Some(first) = pools.first() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no Front End pool uses {} for web conferencing now; Get-CsPoolEdgeAssociation shows which Edge pool each uses",
                edge_pool
            ),
        );
    };
    let port = topology.ports.user_services;
    let mut targets: Vec<String> = first
        .servers
        .iter()
        .map(|s| api::base(s.address, port))
        .collect();
    let mut problems = Vec::new();
    for _hop in 0..3 {
        let mut redirected = None;
        for base in &targets {
            let mut call = w.http.get(format!("{base}{path}"));
            if let Some(auth) = headers.get(header::AUTHORIZATION) {
                call = call.header(header::AUTHORIZATION, auth);
            }
            if let Some(client) = client {
                call = call.header(api::CLIENT_ADDRESS_HEADER, client.to_string());
            }
            let answer = match call.send().await {
                Ok(a) => a,
                Err(e) => {
                    problems.push(format!("{base}: {e}"));
                    continue;
                }
            };
            if answer.status() == StatusCode::TEMPORARY_REDIRECT {
                redirected = Some(answer.json::<serde_json::Value>().await.unwrap_or_default());
                break;
            }
            return pass_back(answer).await;
        }
        // The user is served by another pool: followed only if it uses this Edge pool.
        let Some(redirect) = redirected else { break };
        let serving = redirect["serving_pool"].as_str().unwrap_or_default();
        let Some(pool) = pools.iter().find(|p| p.fqdn.eq_ignore_ascii_case(serving)) else {
            let uses = topology
                .front_end_pool(serving)
                .and_then(|p| p.edge_pool.clone())
                .unwrap_or_else(|| "no Edge pool".into());
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "the user is served by {serving}, whose web conferencing goes through {uses}, not {}",
                    edge_pool
                ),
            );
        };
        targets = pool
            .servers
            .iter()
            .map(|s| api::base(s.address, port))
            .collect();
    }
    refuse(
        StatusCode::BAD_GATEWAY,
        format!(
            "no Front End of the pools using {} answered ({})",
            edge_pool,
            problems.join("; ")
        ),
    )
}

/// A Front End's answer, passed back as it is (status, type, body).
async fn pass_back(answer: reqwest::Response) -> Response {
    let status = answer.status();
    let kind = answer.headers().get(header::CONTENT_TYPE).cloned();
    match answer.bytes().await {
        Ok(body) => {
            let mut response = (status, Body::from(body)).into_response();
            if let Some(kind) = kind {
                response.headers_mut().insert(header::CONTENT_TYPE, kind);
            }
            response
        }
        Err(e) => refuse(
            StatusCode::BAD_GATEWAY,
            format!("the Front End's answer broke off: {e}"),
        ),
    }
}
