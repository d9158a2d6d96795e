//! The pool failover cmdlets: `Invoke-CsPoolFailOver`, `Invoke-CsPoolFailBack`,
//! `Resume-CsDisasterRecoveryOperation`, `Get-CsPoolFailoverState` and
//! `Get-CsDisasterRecoveryOperation`. The operations engine does the work; this module
//! reads the parameters and renders the records.

use api::InvokeResponse;
use cmdlet::{BoundValue, Field, Invocation, Record};
use dr::operation::{DEFAULT_WAIT_MS, Kind, Operation, Options};
use dr::{Phase, Refusal};
use engine::pool::PoolRequest;
use store::format_timestamp;

use crate::Refused;
use crate::call::{Call, Reply};

/// The cmdlet's parameters as an operation's options.
fn options_from(inv: &Invocation, kind: Kind) -> Result<Options, Refused> {
    let wait_ms = match inv.get("WaitTime") {
        Some(BoundValue::TimeSpan(d)) => d.as_millis() as u64,
        _ => DEFAULT_WAIT_MS,
    };
    let positive = |name: &str| -> Result<Option<u32>, Refused> {
        match inv.get(name) {
            Some(BoundValue::Int(n)) if *n >= 0 && *n <= i64::from(u32::MAX) => Ok(Some(*n as u32)),
            Some(BoundValue::Int(n)) => Err(Refused::Unprocessable(format!(
                "-{name} must be zero or more, not {n}"
            ))),
            _ => Ok(None),
        }
    };
    Ok(Options {
        disaster: inv.switch("DisasterMode"),
        flush: kind == Kind::FailOver && inv.switch("FlushStorageService"),
        force: inv.switch("Force"),
        wait_ms,
        skip_verification: inv.switch("SkipDataVerification"),
        db_timeout_secs: positive("DatabaseCommandTimeoutInSeconds")?,
        services_stop_delay_mins: if kind == Kind::FailOver {
            positive("ServicesStopDelayMins")?
        } else {
            None
        },
    })
}

/// `Invoke-CsPoolFailOver` and `Invoke-CsPoolFailBack`.
pub async fn start(call: &Call<'_>) -> Reply {
    let inv = call.inv;
    let kind = if inv.cmdlet.name == "Invoke-CsPoolFailBack" {
        Kind::FailBack
    } else {
        Kind::FailOver
    };
    let request = PoolRequest {
        kind,
        pool: inv.text("PoolFqdn").unwrap_or_default(),
        options: options_from(inv, kind)?,
        what_if: inv.switch("WhatIf"),
        verbose: inv.switch("Verbose"),
    };
    let text = call.mgmt.engine.start_pool_operation(request).await?;
    Ok(InvokeResponse::text(text))
}

/// `Resume-CsDisasterRecoveryOperation -Identity`.
pub async fn resume(call: &Call<'_>) -> Reply {
    let inv = call.inv;
    let text = call
        .mgmt
        .engine
        .resume_pool_operation(
            &inv.text("Identity").unwrap_or_default(),
            inv.switch("WhatIf"),
            inv.switch("Verbose"),
        )
        .await?;
    Ok(InvokeResponse::text(text))
}

/// `Stop-CsDisasterRecoveryOperation -Identity`.
pub async fn cancel(call: &Call<'_>) -> Reply {
    let text = call
        .mgmt
        .engine
        .cancel_pool_operation(&call.inv.text("Identity").unwrap_or_default())
        .await?;
    Ok(InvokeResponse::text(text))
}

/// `Get-CsPoolFailoverState`.
pub async fn failover_state(call: &Call<'_>) -> Reply {
    let (view, warnings) = call.mgmt.engine.dr_view_for_reading().await?;
    let topology = call.node().topology();
    let wanted = call.inv.text("PoolFqdn");
    if let Some(p) = &wanted
        && topology.front_end_pool(p).is_none()
    {
        return Err(Refusal::NotAPool { pool: p.clone() }.into());
    }
    let rows = topology
        .front_end_pools
        .iter()
        .filter(|p| {
            wanted
                .as_ref()
                .is_none_or(|w| w.eq_ignore_ascii_case(&p.fqdn))
        })
        .map(|p| {
            let backup = p.backup_pool.clone().unwrap_or_default();
            let s = view.state(&p.fqdn, &backup);
            Record::new()
                .with("PoolFqdn", p.fqdn.clone())
                .with("BackupPoolFqdn", backup)
                .with("State", s.phase.as_str())
                .with(
                    "Mode",
                    if s.phase == Phase::Normal {
                        String::new()
                    } else {
                        s.mode.as_str().to_string()
                    },
                )
                .with("ServingPoolFqdn", s.serving_pool().to_string())
                .with("Since", format_timestamp(s.since_ms))
                .with(
                    "OperationId",
                    s.operation.map_or(String::new(), |o| o.to_string()),
                )
                .with("Epoch", s.epoch)
        })
        .collect();
    Ok(InvokeResponse {
        warnings,
        ..InvokeResponse::records(rows)
    })
}

/// `Get-CsDisasterRecoveryOperation [-Identity]`.
pub async fn operations(call: &Call<'_>) -> Reply {
    let (view, warnings) = call.mgmt.engine.dr_view_for_reading().await?;
    let rows: Vec<Record> = match call.inv.text("Identity") {
        Some(id) => vec![op_record(view.find(&id)?)],
        None => view.ops.iter().map(op_record).collect(),
    };
    Ok(InvokeResponse {
        warnings,
        ..InvokeResponse::records(rows)
    })
}

fn op_record(op: &Operation) -> Record {
    let p = &op.progress;
    Record::new()
        .with("Identity", op.id.to_string())
        .with("Operation", op.kind.as_str())
        .with("PoolFqdn", op.pool.clone())
        .with("BackupPoolFqdn", op.backup_pool.clone())
        .with("Mode", op.mode().as_str())
        .with("State", p.state.as_str())
        .with(
            "CurrentStep",
            if op.is_finished() {
                String::new()
            } else {
                op.current_step()
                    .map_or("", dr::operation::Step::as_str)
                    .to_string()
            },
        )
        .with("Started", format_timestamp(p.started_ms))
        .with(
            "Finished",
            p.finished_ms.map_or(String::new(), format_timestamp),
        )
        .with(
            "DurationSeconds",
            p.finished_ms.map_or(String::new(), |f| {
                format!("{:.3}", (f - p.started_ms) as f64 / 1000.0)
            }),
        )
        .with("Users", op.users)
        .with("DataLost", op.loss_text())
        .with("LostChanges", op.loss.as_ref().map_or(0, |l| l.changes))
        .with(
            "LostUsers",
            Field::List(
                op.loss
                    .as_ref()
                    .map(|l| l.users.iter().cloned().map(Field::from).collect())
                    .unwrap_or_default(),
            ),
        )
        .with("LossIsExact", op.loss.as_ref().is_none_or(|l| l.exact))
        .with(
            "LossEstimatedAtOnce",
            op.loss
                .as_ref()
                .and_then(|l| l.estimated)
                .map_or(String::new(), |[low, high]| format!("{low} to {high}")),
        )
        .with(
            "Steps",
            Field::List(p.step_lines().into_iter().map(Field::from).collect()),
        )
        .with("Error", p.error.clone().unwrap_or_default())
        .with(
            "Undone",
            Field::List(op.undone.iter().cloned().map(Field::from).collect()),
        )
        .with("Runner", p.runner.clone())
}
