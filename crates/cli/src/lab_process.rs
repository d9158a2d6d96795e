//! One process of a lab, as `D/lab.json` records it: a server, the DNS server, or a Back
//! End's PostgreSQL cluster; how it is started and what a signal to it must reach (one
//! place, so that a server and a cluster are started, paused, killed and stopped alike);
//! how the lab knows it is still that process; the lab's secrets.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The lab file's role of a Back End cluster and of its mirror (`--backend postgres`).
pub(crate) const BACKEND_ROLE: &str = "BackEnd";
pub(crate) const MIRROR_ROLE: &str = "BackEndMirror";

/// Whether a lab process is a PostgreSQL cluster.
pub(crate) fn is_cluster(s: &LabServer) -> bool {
    s.role == BACKEND_ROLE || s.role == MIRROR_ROLE
}

/// Whether the command line `args` is this cluster's postmaster (started with its data
/// folder and its name, see `lab_pg::start`).
fn is_postmaster_of(s: &LabServer, args: &[&[u8]]) -> bool {
    let data = s.data_dir.join("data");
    let data = data.as_os_str().as_encoded_bytes();
    let name = format!("cluster_name={}", s.fqdn);
    args.windows(2).any(|w| w[0] == b"-D" && w[1] == data) && args.contains(&name.as_bytes())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LabServer {
    pub(crate) fqdn: String,
    pub(crate) role: String,
    pub(crate) pool: String,
    pub(crate) site: String,
    pub(crate) address: String,
    pub(crate) management_port: u16,
    pub(crate) pid: Option<u32>,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
    /// The registrar's port (SIP over UDP and TCP), Front Ends only.
    #[serde(default)]
    pub(crate) sip_port: u16,
    /// The user-services port, Front Ends only.
    #[serde(default)]
    pub(crate) user_services_port: u16,
    /// The DNS port, the lab's DNS server only.
    #[serde(default)]
    pub(crate) dns_port: u16,
    /// The SIP TLS port, Front Ends only.
    #[serde(default)]
    pub(crate) sip_tls_port: u16,
    /// The host (network namespace) it runs on, `lab up --hosts` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) netns: Option<String>,
}

impl LabServer {
    pub(crate) fn base_url(&self) -> String {
        api::base(&self.address, self.management_port)
    }

    /// Whether this server's recorded pid is still this server: a live process (not a
    /// thread: `/proc` answers for thread ids too) whose command line names this server's
    /// own data folder. Every lab uses the same server names, and pids and thread ids are
    /// recycled within seconds when many labs run at once; matching only the name once let
    /// one test's `lab down` stop another test's server.
    pub(crate) fn alive(&self) -> bool {
        let Some(pid) = self.pid else { return false };
        // A process that has only just been spawned shows an empty command line for a
        // moment (its parent wakes while the kernel is still copying the arguments in), as
        // a zombie does for good: wait out the first, never the second.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut backoff = clock::Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
        let cmdline = loop {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_string()
            };
            if field("Tgid:") != pid.to_string() || field("State:").starts_with('Z') {
                return false;
            }
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            if !cmdline.is_empty() || Instant::now() > deadline {
                break cmdline;
            }
            std::thread::sleep(backoff.next_wait());
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if is_cluster(self) {
            return is_postmaster_of(self, &args);
        }
        let data_dir = self.data_dir.as_os_str().as_encoded_bytes();
        args.windows(2)
            .any(|w| w[0] == b"--data-dir" && w[1] == data_dir)
            && args.contains(&self.fqdn.as_bytes())
    }

    /// Whether the process this lab just started has gone (exited, or a zombie). Unlike
    /// `!alive()`, a process still starting (its command line not yet readable, or still
    /// its launcher's: `setpriv`, `ip netns exec`) has not: a loaded machine can take
    /// longer than [`LabServer::alive`] waits for it, and a wait for readiness must not
    /// call that "exited while starting".
    pub(crate) fn exited(&self) -> bool {
        self.pid.is_none_or(is_dead)
    }

    /// What a signal to this lab process, running as `pid`, must reach: a cluster's
    /// postmaster and its children (see [`family`]), a server's one process.
    pub(crate) fn processes(&self, pid: u32) -> Vec<u32> {
        if is_cluster(self) {
            family(pid)
        } else {
            vec![pid]
        }
    }

    /// Starts `command` as this lab process: on its host (`lab up --hosts`), in a process
    /// group of its own, its output appended to its log; records its pid. Servers, the DNS
    /// server and the clusters are all started here, so they all run alike.
    pub(crate) fn spawn(&mut self, command: Command, what: &str) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = crate::lab_net::wrapped(command, self.netns.as_deref())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        self.pid = Some(child.id());
        Ok(())
    }
}

/// 24 random bytes, in hex: the lab's admin token and its database password.
pub(crate) fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `pid` is gone, or a zombie all of whose threads have exited. A multi-threaded
/// server killed shows its main thread as a zombie (`State: Z`) while its other threads
/// are still on their way out, holding its sockets open: a connection made then is
/// accepted and reset. Only once the last thread is gone are its listeners closed.
pub(crate) fn is_dead(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let zombie = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|state| state.trim_start().starts_with('Z'));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    zombie && threads <= 1
}

/// A PostgreSQL postmaster and its children (each of which leaves the postmaster's process
/// group, so a signal to the group reaches the postmaster alone): what `lab kill` and
/// `lab pause` signal for a cluster.
pub(crate) fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let ppid = std::fs::read_to_string(format!("/proc/{child}/status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PPid:"))
                    .and_then(|v| v.trim().parse::<u32>().ok())
            });
        if ppid == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

/// Reaps `pids` that are this process's own children and have exited (a bench starts
/// its lab's processes itself and lives on: a killed postmaster would otherwise stay a
/// zombie, whose pid a new postmaster takes for a live one). Others are left alone.
pub(crate) fn reap(pids: &[u32]) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    for &p in pids {
        let _ = waitpid(
            nix::unistd::Pid::from_raw(p as i32),
            Some(WaitPidFlag::WNOHANG),
        );
    }
}

/// Whether any of `pids` still exists, even as a zombie (a zombie postmaster still holds
/// its pid, and a new postmaster refuses to start over it).
pub(crate) fn any_exists(pids: &[u32]) -> bool {
    pids.iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}
