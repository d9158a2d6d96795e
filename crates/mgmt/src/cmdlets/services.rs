//! A server's own services: `Get-/Start-/Stop-CsWindowsService` and `Invoke-CsServerSetup`
//! (the Deployment Wizard's Run Again). The dispatcher has already brought the call to
//! the server `-ComputerName` names.

use std::time::Duration;

use api::{InvokeRequest, InvokeResponse};
use cmdlet::{Output, Record};
use node::MasterAt;

use crate::Refused;
use crate::call::{Call, Reply};

/// How long asking the master for a refresh may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// `Get-`, `Start-` and `Stop-CsWindowsService` on this server.
pub async fn windows_service(call: &Call<'_>) -> Reply {
    let node = call.node();
    let inv = call.inv;
    let name = inv.text("Name");
    let listed = node.services.list(name.as_deref());
    if listed.is_empty() {
        let known: Vec<_> = node.services.list(None).iter().map(|s| s.name).collect();
        return Err(Refused::BadRequest(format!(
            "{} has no service '{}'; its services are {}",
            node.fqdn,
            name.unwrap_or_default(),
            known.join(", ")
        ))
        .into());
    }
    let start = match inv.cmdlet.name {
        "Start-CsWindowsService" => Some(true),
        "Stop-CsWindowsService" => Some(false),
        _ => None,
    };
    if let Some(running) = start {
        for s in &listed {
            node.set_service(s.name, running).await;
        }
        if let Some(edge) = &call.mgmt.edge {
            // The Edge's listeners open or close before the cmdlet answers.
            edge.settle().await;
        }
        return Ok(InvokeResponse::of(Output::None));
    }
    let rows = listed
        .into_iter()
        .map(|s| {
            Record::new()
                .with("Name", s.name)
                .with("Status", if s.running { "Running" } else { "Stopped" })
                .with("ComputerName", node.fqdn.clone())
                .with("DisplayName", s.display_name)
        })
        .collect();
    Ok(InvokeResponse::records(rows))
}

/// `Invoke-CsServerSetup` on this server: the master is asked to push this server's
/// replica the configuration as the store holds it now, the listeners follow it, and the
/// report says what the server applies.
pub async fn run_again(call: &Call<'_>) -> Reply {
    let node = call.node();
    let mut warnings = Vec::new();
    match node.locate_master().await {
        Ok(MasterAt::Here(m)) => m.replicate_now(Some(&node.fqdn)).await,
        Ok(MasterAt::There(base)) => {
            let refresh = InvokeRequest {
                cmdlet: "Invoke-CsManagementStoreReplication".into(),
                parameters: serde_json::json!({ "ReplicaFqdn": node.fqdn })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            };
            if let Err(e) = node.api.invoke(&base, &refresh, REFRESH_TIMEOUT).await {
                warnings.push(format!("could not refresh the configuration: {e}"));
            }
        }
        Err(e) => warnings.push(format!("applied the configuration this server has; {e}")),
    }
    if let Some(edge) = &call.mgmt.edge {
        edge.settle().await;
    }
    warnings.extend(edge::inbound_federation_warning(node).await);
    Ok(InvokeResponse {
        output: Output::Records(edge::setup_report(node).await),
        warnings,
        cms_version: None,
    })
}
