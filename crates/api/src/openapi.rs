//! What every API description of tandem shares: how a caller proves who it is (the
//! security schemes) and the error answers every route can give, each an [`ErrorBody`].
//!
//! Routes are described where they are served (`#[utoipa::path]` on the handler, mounted
//! with `utoipa_axum`), so a route cannot be served without being described. What is the
//! same for every route — a 401 for a route that takes a token, a 415 for a route that
//! takes JSON — is added here once by [`describe_errors`], so no handler can forget it.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

use crate::types::ErrorBody;

/// The security scheme of routes that take an operator's or a server's token:
/// `Authorization: Bearer <token>`.
pub const BEARER: &str = "bearer";

/// The security scheme of user services: the user's SIP address and password (HTTP Basic).
pub const BASIC: &str = "basic";

/// Adds the security schemes the document's routes name and, to every operation, the
/// error answers it can give and does not describe itself.
pub fn describe_errors(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.insert(
        "ErrorBody".to_string(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );
    let mut schemes = std::collections::BTreeSet::new();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            schemes.extend(security_of(operation));
            add_errors(operation);
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    for scheme in schemes {
        let definition = match scheme.as_str() {
            BEARER => {
                let mut http = Http::new(HttpAuthScheme::Bearer);
                http.description = Some(
                    "An operator's token (the lab administrator's is `admin_token` in lab.json; \
                     New-CsAdminOperator makes others) or, for the routes servers call on each \
                     other, the deployment's token."
                        .into(),
                );
                SecurityScheme::Http(http)
            }
            BASIC => {
                let mut http = Http::new(HttpAuthScheme::Basic);
                http.description =
                    Some("The user's SIP address without `sip:`, and the user's password.".into());
                SecurityScheme::Http(http)
            }
            other => panic!("a route names the undefined security scheme {other}"),
        };
        components.add_security_scheme(scheme, definition);
    }
}

/// The schemes an operation names.
fn security_of(operation: &Operation) -> Vec<String> {
    operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect()
}

fn add_errors(operation: &mut Operation) {
    let secured = !security_of(operation).is_empty();
    let takes_body = operation.request_body.is_some();
    let mut errors: Vec<(&str, &str)> = Vec::new();
    if secured {
        errors.extend([
            (
                "401",
                "no token, a token in another form than `Bearer <token>`, or a wrong one",
            ),
            (
                "403",
                "the caller's role does not allow this call; the answer names the role it needs",
            ),
            ("500", "the server failed; its log says why"),
            (
                "503",
                "a part of the deployment this call needs does not answer, or a service is stopped",
            ),
        ]);
    }
    if takes_body {
        errors.extend([
            ("400", "the body is not JSON, or the request is malformed"),
            ("413", "the body is larger than this route takes"),
            ("415", "the body is not `application/json`"),
            (
                "422",
                "the body is JSON of another shape than this route takes",
            ),
        ]);
    }
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(error_response(description)));
    }
}

/// An error answer with `description`, whose body is an [`ErrorBody`].
pub fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// Every `(method, path)` a document describes, methods upper-case, sorted: what tests
/// compare with the routes a router serves.
pub fn operations(doc: &OpenApi) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, operation) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
            ("HEAD", &item.head),
            ("OPTIONS", &item.options),
            ("TRACE", &item.trace),
        ] {
            if operation.is_some() {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out.sort();
    out
}

/// The responses of a document without a description (OpenAPI 3.1 requires one on every
/// response; strict validators refuse a document that lacks it): `METHOD path status`.
pub fn undescribed_responses(doc: &OpenApi) -> Vec<String> {
    let json = serde_json::to_value(doc).expect("a document serialises");
    let mut out = Vec::new();
    for (path, item) in json["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                if response.get("description").is_none() {
                    out.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    out
}
