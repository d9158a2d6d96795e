//! Running cmdlets on a server of a deployment, through its management API.
//!
//! The shell binds every line itself (so errors point at the text), runs the cmdlets that
//! need no deployment locally, and sends the others to the server it is connected to, as
//! an administrator opens the Management Shell on one server. Relative file paths are made
//! absolute first: the server reads and writes them on this machine's filesystem.

use api::{CallError, InvokeRequest};
use cmdlet::catalogue::spec::{Capability, ParamType};
use cmdlet::{BoundValue, Invocation, Output};
use serde_json::Value;

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::{Executor, Failure, LocalExecutor};

/// PowerShell's `-Confirm` prompt; anything but Y (or end of input) declines.
fn confirmed(inv: &Invocation) -> bool {
    eprint!(
        "Confirm\nAre you sure you want to perform this action?\nPerforming \"{}\".\n[Y] Yes  [N] No  (default is \"N\"): ",
        inv.canonical_line()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "A" | "a")
}

/// Waits for a long operation while its progress shows: the steps done of its steps and
/// the current one, read from the operation records every half second (a bar on a
/// terminal, a line a change otherwise).
async fn with_progress<F: std::future::Future>(
    call: F,
    client: &api::Client,
    base: &str,
) -> F::Output {
    let mut call = std::pin::pin!(call);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut shown: Option<(String, crate::progress::Progress)> = None;
    loop {
        tokio::select! {
            r = &mut call => {
                if let Some((_, p)) = &shown {
                    p.finish();
                }
                return r;
            }
            _ = tick.tick() => {
                if let Some(now) = progress_of(client, base).await {
                    if shown.as_ref().is_none_or(|(name, _)| *name != now.name) {
                        let p = crate::progress::Progress::new(&now.name, now.steps, "steps");
                        shown = Some((now.name.clone(), p));
                    }
                    if let Some((_, p)) = &mut shown {
                        p.set(now.done, &now.current);
                    }
                }
            }
        }
    }
}

/// Where the newest operation stands.
struct OperationProgress {
    /// `17 FailOver of pool1.contoso.com`.
    name: String,
    steps: u64,
    done: u64,
    current: String,
}

async fn progress_of(client: &api::Client, base: &str) -> Option<OperationProgress> {
    let request = InvokeRequest {
        cmdlet: "Get-CsDisasterRecoveryOperation".into(),
        parameters: Default::default(),
    };
    let reply = client
        .invoke(base, &request, std::time::Duration::from_secs(2))
        .await
        .ok()?;
    let Output::Records(records) = reply.output else {
        return None;
    };
    let op = records.last()?;
    let field = |name: &str| op.get(name).map(cmdlet::Field::display).unwrap_or_default();
    let steps = match op.get("Steps") {
        Some(cmdlet::Field::List(l)) => l.iter().map(cmdlet::Field::display).collect::<Vec<_>>(),
        _ => vec![],
    };
    let done = steps
        .iter()
        .filter(|s| s.contains(" Done") || s.contains(" Skipped"))
        .count();
    Some(OperationProgress {
        name: format!(
            "{} {} of {}",
            field("Identity"),
            field("Operation"),
            field("PoolFqdn")
        ),
        steps: steps.len() as u64,
        done: done as u64,
        current: field("CurrentStep"),
    })
}

#[derive(Debug)]
pub(crate) struct RemoteExecutor {
    pub(crate) base_url: String,
    pub(crate) fqdn: String,
    pub(crate) lab_dir: String,
    runtime: tokio::runtime::Runtime,
    client: api::Client,
    /// The warnings (and Windows paths' places) this shell has printed: each is said once
    /// a shell, not after every call that meets it again (a topology's advisories come
    /// back with every publish).
    said: HashSet<String>,
}

impl RemoteExecutor {
    pub(crate) fn new(
        base_url: String,
        fqdn: String,
        token: String,
        lab_dir: String,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> Self {
        RemoteExecutor {
            client: api::Client::new(token.clone(), tls),
            base_url,
            fqdn,
            lab_dir,
            runtime: crate::lab::runtime(),
            said: Default::default(),
        }
    }
}

/// A bound argument as the API's JSON.
fn json_value(value: &BoundValue, ty: Option<ParamType>, lab_dir: &Path) -> Value {
    match value {
        BoundValue::Switch(b) | BoundValue::Bool(b) => Value::Bool(*b),
        BoundValue::Int(i) => Value::from(*i),
        BoundValue::Array(items) => items.iter().map(|v| json_value(v, None, lab_dir)).collect(),
        BoundValue::Text(path) if ty == Some(ParamType::Path) => {
            let here = local_path(path, lab_dir);
            Value::String(
                std::path::absolute(&here)
                    .unwrap_or(here)
                    .display()
                    .to_string(),
            )
        }
        other => Value::String(other.to_text()),
    }
}

/// The lab's folder that stands for Windows drives: `c:\x.zip` is `D/drives/c/x.zip`.
const DRIVES_DIR: &str = "drives";

/// Where a file a cmdlet names is on this machine. A Windows path — `c:\File.zip` as the
/// documents write it, any drive letter, either slash — is under the lab's folder, one
/// folder a drive (`D/drives/c/File.zip`), rather than a file named with a backslash in
/// the current folder; any other path is as written. Pure: see [`say_where`].
pub(crate) fn local_path(path: &str, lab_dir: &Path) -> PathBuf {
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if drive {
        let mut here = lab_dir
            .join(DRIVES_DIR)
            .join(path[..1].to_ascii_lowercase());
        for part in path[2..]
            .split(['\\', '/'])
            .filter(|p| !p.is_empty() && *p != ".")
        {
            // `..` cannot climb out of the drive, as it cannot climb above C:\.
            if part == ".." {
                continue;
            }
            here.push(part);
        }
        here
    } else if path.contains('\\') {
        path.split('\\').collect::<PathBuf>()
    } else {
        PathBuf::from(path)
    }
}

/// Says where a Windows path of `inv` is on this machine (once a path, on stderr), and
/// makes its folder, so that an export to `c:\` works as it would on the server the
/// documents speak of.
fn say_where(inv: &Invocation, lab_dir: &Path, said: &mut HashSet<String>) {
    for (name, value) in &inv.args {
        let is_path = inv
            .cmdlet
            .params
            .iter()
            .any(|p| p.name == *name && p.ty == ParamType::Path);
        let BoundValue::Text(path) = value else {
            continue;
        };
        if !is_path {
            continue;
        }
        let here = local_path(path, lab_dir);
        if here == Path::new(path) {
            continue;
        }
        if let Some(folder) = here.parent() {
            let _ = std::fs::create_dir_all(folder);
        }
        if said.insert(path.clone()) {
            eprintln!("{path} is {} on this machine", here.display());
        }
    }
}

pub(crate) fn request(inv: &Invocation, lab_dir: &Path) -> InvokeRequest {
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
            (name.to_string(), json_value(value, ty, lab_dir))
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
        if inv.cmdlet.changes_state && inv.switch("Confirm") && !confirmed(inv) {
            return Err(Failure::new(
                "not confirmed; nothing was changed (answer Y to go on)",
            ));
        }
        if inv.cmdlet.name == "Test-NetConnection" {
            return test_net_connection(&self.lab_dir, inv);
        }
        // The DnsServer cmdlets go to the lab's DNS server, as the Windows module talks to
        // the company's DNS server rather than to a Skype for Business server.
        let base_url = if inv.cmdlet.name.contains("DnsServer") {
            let lab = crate::lab::LabFile::load(std::path::Path::new(&self.lab_dir))
                .map_err(|e| Failure::new(e.to_string()))?;
            let dns = lab.dns().ok_or_else(|| {
                Failure::new(format!(
                    "the lab in {} runs no DNS server; start it with `tandem lab up`",
                    self.lab_dir
                ))
            })?;
            api::base(&dns.address, dns.management_port)
        } else {
            self.base_url.clone()
        };
        let lab_dir = Path::new(&self.lab_dir);
        say_where(inv, lab_dir, &mut self.said);
        let body = request(inv, lab_dir);
        let call = self
            .client
            .invoke(&base_url, &body, std::time::Duration::from_secs(3600));
        let long = inv.cmdlet.capability == Capability::PoolFailover
            && inv.cmdlet.changes_state
            && !inv.switch("WhatIf");
        let reply = if long && std::io::stderr().is_terminal() {
            self.runtime
                .block_on(with_progress(call, &self.client, &self.base_url))
        } else {
            self.runtime.block_on(call)
        };
        match reply {
            Ok(reply) => {
                for w in &reply.warnings {
                    if inv.cmdlet.name != "New-CsAdminOperator" && self.said.insert(w.clone()) {
                        eprintln!("WARNING: {w}");
                    }
                }
                if inv.cmdlet.name == "New-CsAdminOperator" {
                    return save_operator_token(&self.lab_dir, reply.output);
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

/// `Test-NetConnection -ComputerName <fqdn> -Port <n>`, run where the shell runs: the name
/// is looked up in the lab's DNS (A record), then a TCP connection is tried.
fn test_net_connection(lab_dir: &str, inv: &Invocation) -> Result<Output, Failure> {
    let name = inv.text("ComputerName").unwrap_or_default();
    let port: u16 = inv
        .text("Port")
        .unwrap_or_default()
        .parse()
        .map_err(|_| Failure::new("-Port must be a TCP port number"))?;
    let address: std::net::Ipv4Addr = match name.parse() {
        Ok(ip) => ip,
        Err(_) => {
            let dns = crate::dns_cmd::LabDns::of_lab(std::path::Path::new(lab_dir))
                .map_err(|e| Failure::new(e.to_string()))?;
            dns.addresses(&name)
                .map_err(|e| Failure::new(e.to_string()))?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    Failure::new(format!(
                        "Name resolution of {name} failed: the lab's DNS has no A record for it \
                         (Get-DnsServerResourceRecord -ZoneName <zone> -Name <name> shows what it has)"
                    ))
                })?
        }
    };
    let target = std::net::SocketAddr::from((address, port));
    let open =
        std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(2)).is_ok();
    if !open {
        // The seeds run this right after moving a route: an Edge applies a new route on its
        // next look at its replica, a few seconds later.
        eprintln!(
            "WARNING: TCP connect to {target} failed. If a route to {name} changed moments ago,              its Edge may still be applying it: run Test-NetConnection again in a few seconds,              or Invoke-CsServerSetup -ComputerName <that Edge server> to apply it now"
        );
    }
    Ok(Output::Records(vec![
        cmdlet::Record::new()
            .with("ComputerName", name)
            .with("RemoteAddress", address.to_string())
            .with("RemotePort", i64::from(port))
            .with("TcpTestSucceeded", open),
    ]))
}

/// Where the shell keeps an operator's token in a lab: `DIR/operators/NAME.token`.
fn token_file(lab_dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    lab_dir.join("operators").join(format!("{name}.token"))
}

/// The token of operator `name` of the lab in `lab_dir`, as New-CsAdminOperator saved it.
pub(crate) fn operator_token(lab_dir: &std::path::Path, name: &str) -> anyhow::Result<String> {
    let path = token_file(lab_dir, name);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            anyhow::anyhow!(
                "no token for operator {name} ({}: {e}); a CsAdministrator creates one with \
                 `tandem shell --lab {} -c 'New-CsAdminOperator -Identity {name} -Role CsViewOnlyAdministrator'`",
                path.display(),
                lab_dir.display()
            )
        })
}

/// Writes the token `New-CsAdminOperator` returned to `DIR/operators/NAME.token`, readable
/// by its owner only, and shows where it is instead of the token.
fn save_operator_token(lab_dir: &str, output: Output) -> Result<Output, Failure> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let Output::Records(mut records) = output else {
        return Ok(output);
    };
    for record in &mut records {
        let name = record
            .get("Identity")
            .map(|f| f.display())
            .unwrap_or_default();
        let Some(token) = record.get("Token").map(|f| f.display()) else {
            continue;
        };
        let path = token_file(std::path::Path::new(lab_dir), &name);
        let saved = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path.parent().expect("a token file has a folder"))
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
            })
            .and_then(|mut f| f.write_all(token.as_bytes()));
        let shown = match saved {
            Ok(()) => format!("saved to {}", path.display()),
            Err(e) => {
                return Err(Failure::new(format!(
                    "operator {name} was created but its token could not be saved to {}: {e}; \
                     remove it with Remove-CsAdminOperator -Identity {name} and create it again",
                    path.display()
                )));
            }
        };
        for (field, value) in &mut record.fields {
            if field == "Token" {
                *value = cmdlet::Field::Text(shown.clone());
            }
        }
    }
    Ok(Output::Records(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_windows_path_is_under_the_labs_drives_folder() {
        let lab = Path::new("/labs/red");
        assert_eq!(
            local_path("c:\\CsConfigurationFile.zip", lab),
            Path::new("/labs/red/drives/c/CsConfigurationFile.zip")
        );
        assert_eq!(
            local_path("D:\\exports\\2026/users.zip", lab),
            Path::new("/labs/red/drives/d/exports/2026/users.zip")
        );
        // `..` does not climb out of the drive.
        assert_eq!(
            local_path("c:\\..\\..\\etc\\passwd", lab),
            Path::new("/labs/red/drives/c/etc/passwd")
        );
    }

    #[test]
    fn other_paths_are_as_written_with_backslashes_as_folders() {
        let lab = Path::new("/labs/red");
        assert_eq!(local_path("/tmp/x.zip", lab), Path::new("/tmp/x.zip"));
        assert_eq!(local_path("x.zip", lab), Path::new("x.zip"));
        assert_eq!(
            local_path("exports\\x.zip", lab),
            Path::new("exports/x.zip")
        );
    }
}
