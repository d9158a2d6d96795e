//! `tandem bench federation`: how long a user's message takes across a federation path,
//! on running labs.
//!
//! A user of the lab in `--lab` signs in over TLS and sends `--count` messages to `--to`,
//! one after another; each is timed from being sent to its final answer. What the answer
//! means depends on the path, and the report says which:
//!
//! - to a user of another deployment (`--to-lab`, the lab it federates with): the answer
//!   comes from the recipient's client, through the recipient's Front End, its Access
//!   Edge, ours and our Front End — the whole round trip of a delivered message. The
//!   recipient is signed in by the benchmark (a `tandem client listen` of that lab), which
//!   must print every message, or the run fails;
//! - to an XMPP user: XMPP has no delivery answer, so the answer comes when the Edge's
//!   gateway has written the stanza on the partner's stream (the way there, through the
//!   Front End and the Edge, and the partner server's TCP taking it).
//!
//! With `--echo` the recipient sends each message back (the tests' XMPP client has an echo
//! mode) and each is timed until the echo arrives at the sender: the path both ways — for
//! XMPP, the gateway out and in, and the partner server between.
//!
//! The first message is reported apart: it opens the connections (TLS to the partner's
//! Access Edge, or the XMPP stream with its authentication) that the others reuse.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::bench_users::pct;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// The lab of the sender.
    #[arg(long, default_value = "tandem-lab")]
    lab: PathBuf,
    /// The sender, a user of that lab (its password from the lab's users.json).
    #[arg(long)]
    user: String,
    /// The recipient: a user of the other deployment, or an XMPP user
    /// (`sip:alice@<xmpp partner>`).
    #[arg(long)]
    to: String,
    /// The lab of the recipient, when it is a tandem deployment: the benchmark signs the
    /// recipient in there and checks that every message arrived.
    #[arg(long)]
    to_lab: Option<PathBuf>,
    /// The recipient echoes each message back (an XMPP client in echo mode, say): each is
    /// timed until its echo arrives, a round trip through the path both ways.
    #[arg(long)]
    echo: bool,
    /// Messages to send, one after another.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    count: u32,
    #[arg(long)]
    json: bool,
}

/// `tandem bench federation`.
pub(crate) fn federation(options: Options) -> anyhow::Result<()> {
    let count = options.count as usize;
    let listener = match &options.to_lab {
        Some(lab) => Some(listen(lab, &options.to, count)?),
        None => None,
    };
    let took = crate::client::message_round_trips(
        &options.lab,
        &options.user,
        &options.to,
        count,
        options.echo,
        |i| format!("bench message {}", i + 1),
    )?;
    let delivered = match listener {
        Some(recipient) => {
            let (lines, errors) = recipient.finish()?;
            let arrived = lines
                .iter()
                .filter(|l| l.contains("bench message "))
                .count();
            if arrived != count {
                bail!(
                    "{arrived} of {count} messages reached {}: {errors}",
                    options.to
                );
            }
            Some(arrived)
        }
        None => None,
    };
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let first = ms(&took[0]);
    let mut rest: Vec<f64> = took[1..].iter().map(ms).collect();
    rest.sort_by(f64::total_cmp);
    let mean = rest.iter().sum::<f64>() / rest.len() as f64;
    let path = if options.echo {
        "there and back: until the recipient's echo arrived"
    } else if delivered.is_some() {
        "SIP federation to another deployment: until the recipient's client answered"
    } else {
        "through the Edge to a federated or XMPP partner: until the Edge passed it on"
    };
    let report = serde_json::json!({
        "from": options.user,
        "to": options.to,
        "path": path,
        "messages": count,
        "delivered_and_counted": delivered,
        "first_ms": first,
        "latency_ms": {
            "p50": pct(&rest, 0.5),
            "p90": pct(&rest, 0.9),
            "p99": pct(&rest, 0.99),
            "max": rest.last().copied().unwrap_or(0.0),
            "mean": mean,
        },
    });
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} → {} ({path})", options.user, options.to);
        println!(
            "  {count} messages{}; the first (connections opened) {first:.2} ms",
            delivered.map_or(String::new(), |n| format!(", {n} counted at the recipient"))
        );
        println!(
            "  the others: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {mean:.2} ms",
            pct(&rest, 0.5),
            pct(&rest, 0.9),
            pct(&rest, 0.99),
            rest.last().copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// The recipient's client, signed in and printing what arrives.
struct Recipient {
    child: std::process::Child,
    /// Its output after the sign-in line, when it has ended.
    output: std::sync::mpsc::Receiver<Vec<String>>,
}

impl Recipient {
    /// Waits for it to end (it stops after `count` messages): what it printed, and its
    /// errors.
    fn finish(mut self) -> anyhow::Result<(Vec<String>, String)> {
        let status = self.child.wait()?;
        let mut errors = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut errors);
        }
        let lines = self
            .output
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        if !status.success() {
            errors.push_str(&format!(" ({status})"));
        }
        Ok((lines, errors))
    }
}

/// The recipient signed in to its lab, printing what arrives until `count` messages did:
/// started, and waited for until it is signed in.
fn listen(lab: &std::path::Path, user: &str, count: usize) -> anyhow::Result<Recipient> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["client", "--lab"])
        .arg(lab)
        .args(["--user", user, "listen", "--count"])
        .arg(count.to_string())
        .args(["--seconds", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the recipient's client")?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    // It may be redirected to the pool that serves the user first, and says so.
    let mut said = Vec::new();
    loop {
        match lines.next().transpose()? {
            Some(line) if line.starts_with("signed in") => break,
            Some(line) => said.push(line),
            None => {
                let out = child.wait_with_output()?;
                return Err(anyhow!(
                    "{user} could not sign in to the lab in {}: {}{}",
                    lab.display(),
                    said.join("; "),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    let (tx, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lines.map_while(Result::ok).collect());
    });
    Ok(Recipient { child, output })
}
