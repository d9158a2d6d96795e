//! Who is calling the management API, and whether the call's role allows it.
//!
//! Operators are CMS items (`operators/<name>`: roles, the SHA-256 hash of the token, who
//! created the operator and when), so every server authenticates them from its own
//! replica, even while the store is down. A token is `<name>.<64 hex digits>`, made up by
//! `New-CsAdminOperator` and shown once: the hash cannot be turned back into it, so a
//! replica read on any server (an Edge's included) gives no one a way in.
//!
//! The deployment's token (`--admin-token`, lab.json's `admin_token`) is the lab
//! administrator, `CsAdministrator`, and is also what servers present to each other (CMS
//! pushes, operation steps, forwarded calls). When a server forwards an operator's cmdlet,
//! it says whose call it is in [`OPERATOR_HEADER`]; only a caller holding the deployment's
//! token may say so, and the server that runs the call checks the role again.

use api::ApiError;
use axum::http::{HeaderMap, StatusCode};
use cmdlet::catalogue::spec::CmdletId;
use cmdlet::roles::{AdminRole, permission};
use serde::{Deserialize, Serialize};

/// The CMS items of operators.
pub const OPERATOR_PREFIX: &str = "operators/";

/// The name of the deployment token's operator.
pub const LAB_ADMINISTRATOR: &str = "administrator";

pub use api::OPERATOR_HEADER;

/// An operator as the CMS keeps it: never the token, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRecord {
    pub name: String,
    pub roles: Vec<String>,
    /// Hex SHA-256 of the whole token.
    pub token_sha256: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

/// Who made a call, with the roles it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub roles: Vec<AdminRole>,
    /// The call came with the deployment's token: the lab administrator, or a server
    /// (forwarding an operator's call or calling on its own).
    pub deployment: bool,
}

impl Operator {
    /// The deployment token's operator.
    pub fn lab_administrator() -> Operator {
        Operator {
            name: LAB_ADMINISTRATOR.to_string(),
            roles: vec![AdminRole::CsAdministrator],
            deployment: true,
        }
    }

    /// `name;Role,Role`, the value of [`OPERATOR_HEADER`].
    pub fn header_value(&self) -> String {
        let roles: Vec<&str> = self.roles.iter().map(|r| r.name()).collect();
        format!("{};{}", self.name, roles.join(","))
    }

    /// The roles, comma-separated.
    pub fn roles_text(&self) -> String {
        let roles: Vec<&str> = self.roles.iter().map(|r| r.name()).collect();
        roles.join(", ")
    }

    /// Whether this operator may run `id`; the 403 that names the roles it needs otherwise.
    pub fn may_run(&self, id: CmdletId) -> Result<(), ApiError> {
        let needed = permission(id);
        if self.roles.iter().any(|r| r.allows(needed)) {
            return Ok(());
        }
        let allowed: Vec<&str> = needed.roles().iter().map(|r| r.name()).collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} {} and needs the role {}; operator {} has {}. Nothing was changed. \
                 A CsAdministrator gives roles with New-CsAdminOperator; Get-CsAdminRole lists what each allows",
                id.name(),
                needed.describe(),
                allowed.join(" or "),
                self.name,
                self.roles_text()
            ),
        ))
    }
}

/// A refusal of a route that only servers call.
pub fn servers_only(operator: &Operator) -> Result<(), ApiError> {
    if operator.deployment {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this route is the servers' own and takes the deployment's token; operator {} runs cmdlets through POST /api/v1/invoke",
                operator.name
            ),
        ))
    }
}

/// Whether `name` can name an operator: 1-64 letters, digits, `_` or `-` (no dot: the
/// token is `<name>.<secret>`), and not the lab administrator's name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(format!(
            "operator name {} must be 1-64 letters, digits, _ or -",
            api::shown(name)
        ));
    }
    if name.eq_ignore_ascii_case(LAB_ADMINISTRATOR) {
        return Err(format!(
            "{LAB_ADMINISTRATOR} is the lab administrator (the deployment's token); choose another name"
        ));
    }
    Ok(())
}

/// A new token for `name`: `<name>.<64 hex digits>` from the operating system's random
/// source.
pub fn new_token(name: &str) -> String {
    format!("{name}.{}", random_hex())
}

/// 32 bytes from the operating system's random source, as 64 hex digits: an operator's
/// token secret, a console session's id and its anti-forgery token.
pub fn random_hex() -> String {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source");
    hex(&secret)
}

/// Hex SHA-256 of a token, as the CMS keeps it.
pub fn token_hash(token: &str) -> String {
    hex(&api::token_digest(token))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unknown() -> ApiError {
    api::unauthorized(
        "unknown operator or wrong token; `tandem shell --lab <dir> --operator <name>` sends the token New-CsAdminOperator saved",
    )
}

/// The operator a request's `Authorization` (and, from a server, [`OPERATOR_HEADER`])
/// names, checked against `deployment_token` and the operators in `replica`.
pub async fn authenticate(
    headers: &HeaderMap,
    deployment_token: &str,
    replica: &store::ReplicaStore,
) -> Result<Operator, ApiError> {
    let token = api::bearer_token(headers)?;
    if api::tokens_match(token, deployment_token) {
        let Some(value) = headers.get(OPERATOR_HEADER) else {
            return Ok(Operator::lab_administrator());
        };
        // A header that does not parse names no one: refused, never the administrator.
        let on_behalf = value.to_str().ok().and_then(parse_header).ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "the forwarded operator is not named as name;roles",
            )
        })?;
        if on_behalf.name == LAB_ADMINISTRATOR {
            return Ok(Operator {
                deployment: true,
                ..on_behalf
            });
        }
        // The operator as this server's replica knows it: one removed, or whose roles were
        // cut, gets no more through a server that has not heard of it yet.
        let record = operator_record(replica, &on_behalf.name)
            .await
            .ok_or_else(unknown)?;
        let roles = on_behalf
            .roles
            .into_iter()
            .filter(|r| record.roles.iter().any(|k| AdminRole::parse(k) == Some(*r)))
            .collect();
        return Ok(Operator {
            name: on_behalf.name,
            roles,
            deployment: true,
        });
    }
    let Some((name, _)) = token.rsplit_once('.') else {
        return Err(unknown());
    };
    if check_name(name).is_err() {
        return Err(unknown());
    }
    let record = operator_record(replica, name).await.ok_or_else(unknown)?;
    if !api::constant_time_eq(token_hash(token).as_bytes(), record.token_sha256.as_bytes()) {
        return Err(unknown());
    }
    Ok(record.operator())
}

/// The operator `name` as the replica holds it now, if its token is still the one whose
/// hash is `token_sha256` (a console session checks this on every request).
pub async fn current(
    replica: &store::ReplicaStore,
    name: &str,
    token_sha256: &str,
) -> Option<Operator> {
    let record = operator_record(replica, name).await?;
    api::constant_time_eq(record.token_sha256.as_bytes(), token_sha256.as_bytes())
        .then(|| record.operator())
}

impl OperatorRecord {
    /// The operator this record makes, with the roles this build knows.
    fn operator(self) -> Operator {
        Operator {
            roles: self
                .roles
                .iter()
                .filter_map(|r| AdminRole::parse(r))
                .collect(),
            name: self.name,
            deployment: false,
        }
    }
}

/// The record of the operator `name` in `replica`.
async fn operator_record(replica: &store::ReplicaStore, name: &str) -> Option<OperatorRecord> {
    replica
        .get(&format!("{OPERATOR_PREFIX}{name}"))
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str::<OperatorRecord>(&v).ok())
}

/// An operator named by a forwarding server.
fn parse_header(value: &str) -> Option<Operator> {
    let (name, roles) = value.split_once(';')?;
    if name != LAB_ADMINISTRATOR {
        check_name(name).ok()?;
    }
    let roles: Vec<AdminRole> = roles.split(',').filter_map(AdminRole::parse).collect();
    Some(Operator {
        name: name.to_string(),
        deployment: name == LAB_ADMINISTRATOR,
        roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_only_operator_is_refused_a_failover_with_the_role_it_needs() {
        let viewer = Operator {
            name: "kim".into(),
            roles: vec![AdminRole::CsViewOnlyAdministrator],
            deployment: false,
        };
        assert!(viewer.may_run(CmdletId::GetCsPoolFailoverState).is_ok());
        let refused = viewer.may_run(CmdletId::InvokeCsPoolFailOver).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused
                .body
                .error
                .contains("CsAdministrator or CsServerAdministrator"),
            "{}",
            refused.body.error
        );
        assert!(
            Operator::lab_administrator()
                .may_run(CmdletId::NewCsAdminOperator)
                .is_ok()
        );
    }

    #[test]
    fn a_forwarded_operator_keeps_its_name_and_roles() {
        let kim = Operator {
            name: "kim".into(),
            roles: vec![
                AdminRole::CsServerAdministrator,
                AdminRole::CsUserAdministrator,
            ],
            deployment: false,
        };
        assert_eq!(parse_header(&kim.header_value()), Some(kim));
        assert_eq!(
            parse_header(&Operator::lab_administrator().header_value()),
            Some(Operator::lab_administrator())
        );
        assert_eq!(parse_header("bad.name;CsAdministrator"), None);
    }

    #[test]
    fn tokens_are_long_random_and_name_their_operator() {
        let a = new_token("kim");
        assert!(a.starts_with("kim.") && a.len() == 4 + 64, "{a}");
        assert_ne!(a, new_token("kim"));
        assert_eq!(token_hash(&a).len(), 64);
        assert!(check_name("administrator").is_err());
        assert!(check_name("a.b").is_err());
    }
}
