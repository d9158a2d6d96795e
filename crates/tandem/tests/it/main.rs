//! The `tandem` command line, run as a process: exit codes, messages, formats.

mod api_attacks;
mod architecture;
mod browser;
mod cms;
mod cms_turns;
mod console;
mod disaster;
mod dns;
mod edge;
mod failover;
mod federation;
mod federation_peers;
mod hosts;
mod lab;
mod lab_postgres;
mod media;
mod metrics;
mod mirror;
mod prosody;
mod restart;
mod roles;
mod shell;
mod shipping;
mod signin_load;
mod sip_attacks;
mod sip_tls;
mod sipp;
mod tls;
mod topology;
mod users;
mod xmpp;

use assert_cmd::Command;

/// The built `tandem` binary, run from the workspace root so example paths resolve.
pub(crate) fn tandem() -> Command {
    let mut cmd = Command::cargo_bin("tandem").expect("the tandem binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    cmd
}

/// Runs `tandem` with these arguments and waits for it.
pub(crate) fn run(args: &[&str]) -> std::process::Output {
    tandem().args(args).output().expect("tandem runs")
}

/// The same with environment variables (they reach the servers a `lab` command starts).
pub(crate) fn run_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tandem();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tandem runs")
}

pub(crate) fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Retries `check` until it returns Some or `secs` pass: the one way a lab test waits for
/// an event (polling starts at 20 ms and backs off to 200 ms between looks).
pub(crate) fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}
