//! Operators, roles and the audit log: `New-CsAdminOperator`, `Remove-CsAdminOperator`,
//! `Get-CsAdminOperator`, `Get-CsAdminRole`, `Get-CsAdminAuditLog`.
//!
//! Operators are CMS items (see [`crate::operators`]): changes run on the active master,
//! reads come from this server's replica, which authenticates the callers anyway.

use api::InvokeResponse;
use cmdlet::catalogue::catalogue;
use cmdlet::roles::{AdminRole, Permission, permission};
use cmdlet::{BoundValue, Output, Record};

use crate::call::{Call, Reply, master};
use crate::operators::{
    LAB_ADMINISTRATOR, OPERATOR_PREFIX, OperatorRecord, check_name, new_token, token_hash,
};
use crate::{Refused, audit};

fn key(name: &str) -> String {
    format!("{OPERATOR_PREFIX}{name}")
}

/// The roles `-Role` names, each known.
fn roles(call: &Call<'_>) -> Result<Vec<AdminRole>, Refused> {
    let texts: Vec<String> = match call.inv.get("Role") {
        Some(BoundValue::Array(items)) => items.iter().map(BoundValue::to_text).collect(),
        Some(other) => vec![other.to_text()],
        None => Vec::new(),
    };
    let mut roles = Vec::new();
    for text in texts {
        let role = AdminRole::parse(&text).ok_or_else(|| {
            let known: Vec<&str> = AdminRole::ALL.iter().map(|r| r.name()).collect();
            Refused::BadRequest(format!(
                "{} is not a role; the roles are {} (Get-CsAdminRole)",
                api::shown(&text),
                known.join(", ")
            ))
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(Refused::BadRequest(
            "-Role names no role; Get-CsAdminRole lists them".into(),
        ));
    }
    Ok(roles)
}

/// `New-CsAdminOperator`.
pub async fn new_operator(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let name = call.inv.text("Identity").unwrap_or_default();
    check_name(&name).map_err(Refused::BadRequest)?;
    let roles = roles(call)?;
    let _guard = master.lock().await;
    if master.backend().get(&key(&name)).await?.is_some() {
        return Err(Refused::Conflict(format!(
            "operator {name} exists; Remove-CsAdminOperator -Identity {name} first to give it other roles or a new token"
        ))
        .into());
    }
    let token = new_token(&name);
    let record = OperatorRecord {
        name: name.clone(),
        roles: roles.iter().map(|r| r.name().to_string()).collect(),
        token_sha256: token_hash(&token),
        created_by: call.operator.name.clone(),
        created_at_ms: call.node().clock.now_ms(),
    };
    let value = serde_json::to_string(&record).expect("operator records serialise");
    let info = master
        .write(
            &[(key(&name), Some(value))],
            &format!("New-CsAdminOperator {name} by {}", call.operator.name),
        )
        .await?;
    Ok(InvokeResponse {
        output: Output::Records(vec![
            Record::new()
                .with("Identity", name.as_str())
                .with("Roles", record.roles.join(", "))
                .with("Token", token)
                .with("CreatedBy", record.created_by.as_str()),
        ]),
        warnings: vec![format!(
            "the token of {name} is shown only now; tandem keeps only its SHA-256 hash"
        )],
        cms_version: Some(info.version),
    })
}

/// `Remove-CsAdminOperator`.
pub async fn remove_operator(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let name = call.inv.text("Identity").unwrap_or_default();
    let _guard = master.lock().await;
    if master.backend().get(&key(&name)).await?.is_none() {
        return Err(Refused::NotFound(format!(
            "no operator {}; Get-CsAdminOperator lists them",
            api::shown(&name)
        ))
        .into());
    }
    let info = master
        .write(
            &[(key(&name), None)],
            &format!("Remove-CsAdminOperator {name} by {}", call.operator.name),
        )
        .await?;
    Ok(InvokeResponse {
        cms_version: Some(info.version),
        ..InvokeResponse::of(Output::None)
    })
}

/// `Get-CsAdminOperator`.
pub async fn operators(call: &Call<'_>) -> Reply {
    let items = call
        .node()
        .replica
        .store()
        .items_with_prefix(OPERATOR_PREFIX)
        .await?;
    let mut rows = vec![
        Record::new()
            .with("Identity", LAB_ADMINISTRATOR)
            .with("Roles", AdminRole::CsAdministrator.name())
            .with("CreatedBy", "tandem lab up (the deployment's token)")
            .with("WhenCreated", Option::<String>::None),
    ];
    rows.extend(
        items
            .iter()
            .filter_map(|i| serde_json::from_str::<OperatorRecord>(i.value.as_deref()?).ok())
            .map(|o| {
                Record::new()
                    .with("Identity", o.name.as_str())
                    .with("Roles", o.roles.join(", "))
                    .with("CreatedBy", o.created_by.as_str())
                    .with("WhenCreated", clock::format_timestamp(o.created_at_ms))
            }),
    );
    if let Some(wanted) = call.inv.text("Identity") {
        rows.retain(|r| {
            r.get("Identity")
                .is_some_and(|f| f.display().eq_ignore_ascii_case(&wanted))
        });
        if rows.is_empty() {
            return Err(Refused::NotFound(format!(
                "no operator {}; Get-CsAdminOperator lists them",
                api::shown(&wanted)
            ))
            .into());
        }
    }
    Ok(InvokeResponse::records(rows))
}

/// `Get-CsAdminRole`: each role, and the cmdlets that change state it allows.
pub async fn roles_list(call: &Call<'_>) -> Reply {
    let wanted = call.inv.text("Identity");
    let rows: Vec<Record> = AdminRole::ALL
        .into_iter()
        .filter(|r| {
            wanted
                .as_deref()
                .is_none_or(|w| r.name().eq_ignore_ascii_case(w))
        })
        .map(|role| {
            let changes: Vec<&str> = catalogue()
                .entries()
                .iter()
                .map(|e| e.spec.id)
                .filter(|id| permission(*id) != Permission::Read && role.allows(permission(*id)))
                .map(|id| id.name())
                .collect();
            let cmdlets = if changes.is_empty() {
                "every read".to_string()
            } else {
                format!("every read, {}", changes.join(", "))
            };
            Record::new()
                .with("Identity", role.name())
                .with("Description", role.description())
                .with("Cmdlets", cmdlets)
        })
        .collect();
    if rows.is_empty() {
        return Err(Refused::NotFound(format!(
            "no role {}; Get-CsAdminRole lists them",
            api::shown(wanted.as_deref().unwrap_or_default())
        ))
        .into());
    }
    Ok(InvokeResponse::records(rows))
}

/// `Get-CsAdminAuditLog` on one server: its own log (the dispatcher merges every server's).
pub async fn audit_log(call: &Call<'_>) -> Reply {
    let operator = call.inv.text("Operator");
    let entries = audit::read(&call.node().data_dir, operator.as_deref());
    Ok(InvokeResponse::records(
        entries.iter().map(audit::AuditEntry::record).collect(),
    ))
}
