//! Running cmdlets on a server of a deployment, through its management API.
//!
//! The shell binds every line itself (so errors point at the text), runs the cmdlets that
//! need no deployment locally, and sends the others to the server it is connected to, as
//! an administrator opens the Management Shell on one server. Relative file paths are made
//! absolute first: the server reads and writes them on this machine's filesystem.

use cmdlet::catalogue::spec::{Capability, ParamType};
use cmdlet::{BoundValue, Invocation, Output};
use serde_json::Value;
use server::api::{CallError, InvokeRequest};

use super::{Executor, Failure, LocalExecutor};

#[derive(Debug)]
pub(crate) struct RemoteExecutor {
    pub(crate) base_url: String,
    pub(crate) fqdn: String,
    pub(crate) token: String,
    pub(crate) lab_dir: String,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl RemoteExecutor {
    pub(crate) fn new(base_url: String, fqdn: String, token: String, lab_dir: String) -> Self {
        RemoteExecutor {
            base_url,
            fqdn,
            token,
            lab_dir,
            runtime: crate::lab::runtime(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        }
    }
}

/// A bound argument as the API's JSON.
fn json_value(value: &BoundValue, ty: Option<ParamType>) -> Value {
    match value {
        BoundValue::Switch(b) | BoundValue::Bool(b) => Value::Bool(*b),
        BoundValue::Int(i) => Value::from(*i),
        BoundValue::Array(items) => items.iter().map(|v| json_value(v, None)).collect(),
        BoundValue::Text(path) if ty == Some(ParamType::Path) => Value::String(
            std::path::absolute(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.clone()),
        ),
        other => Value::String(other.to_text()),
    }
}

pub(crate) fn request(inv: &Invocation) -> InvokeRequest {
    let parameters = inv
        .args
        .iter()
        .map(|(name, value)| {
            let ty = inv
                .cmdlet
                .params
                .iter()
                .find(|p| p.name == *name)
                .map(|p| p.ty);
            (name.to_string(), json_value(value, ty))
        })
        .collect();
    InvokeRequest {
        cmdlet: inv.cmdlet.name.to_string(),
        parameters,
    }
}

impl Executor for RemoteExecutor {
    fn execute(&mut self, inv: &Invocation) -> Result<Output, Failure> {
        if inv.cmdlet.capability == Capability::Shell {
            return LocalExecutor.execute(inv);
        }
        let body = request(inv);
        let reply = self.runtime.block_on(server::api::invoke(
            &self.client,
            &self.base_url,
            &self.token,
            None,
            &body,
            std::time::Duration::from_secs(600),
        ));
        match reply {
            Ok(reply) => {
                for w in &reply.warnings {
                    eprintln!("WARNING: {w}");
                }
                Ok(reply.output)
            }
            Err(CallError::Refused { body, .. }) => Err(Failure {
                message: body.error,
                output: body.output,
            }),
            Err(e @ CallError::Unreachable { .. }) => Err(Failure::new(format!(
                "{}: {e}. Is it running? `tandem lab status --dir {}` shows the servers; \
                 `tandem shell --lab {} --server <fqdn>` opens the shell on another one",
                self.fqdn, self.lab_dir, self.lab_dir
            ))),
        }
    }
}
