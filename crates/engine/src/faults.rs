//! Fault points for the crash tests: a test arms one on the server that will run an
//! operation, and the runner meets it before and after every step of every kind.
//!
//! In a server (`TANDEM_DR_FAULTS=1`) a kill is a real crash — `SIGKILL`, nothing after it
//! runs, no handler flushes or answers. In the engine's own unit tests a kill makes the
//! runner return at once, without another save, which is what a crash leaves behind.
//! A hold pauses before a step until the test releases it (or its longest wait passes),
//! so that the test can kill another process while the operation stands there.

use std::sync::Mutex;
use std::time::Duration;

use api::faults::FaultPoint;

use crate::error::Error;

/// Before a step's claim, or after its work and before its outcome is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

/// How long a hold lasts when the test does not release it.
const DEFAULT_HOLD: Duration = Duration::from_millis(1_000);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Armed {
    Kill { step: String, when: When },
    Hold { step: String, max: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    /// Kill the process.
    Process,
    /// Return from the runner (unit tests).
    Simulated,
}

/// The fault points of one server.
#[derive(Debug)]
pub struct Faults {
    mode: Mode,
    /// Who says what in the log.
    who: String,
    armed: Mutex<Option<Armed>>,
    release: tokio::sync::Notify,
}

impl Faults {
    /// Enabled in a server started with `TANDEM_DR_FAULTS=1`, off otherwise.
    pub fn from_env(fqdn: &str) -> Faults {
        let on = std::env::var("TANDEM_DR_FAULTS").is_ok_and(|v| v == "1");
        Faults::new(if on { Mode::Process } else { Mode::Off }, fqdn)
    }

    /// No fault point ever fires.
    pub fn disabled() -> Faults {
        Faults::new(Mode::Off, "")
    }

    /// Fault points that return from the runner instead of killing the process.
    pub fn enabled() -> Faults {
        Faults::new(Mode::Simulated, "test")
    }

    fn new(mode: Mode, who: &str) -> Faults {
        Faults {
            mode,
            who: who.to_string(),
            armed: Mutex::new(None),
            release: tokio::sync::Notify::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.mode != Mode::Off
    }

    /// Arms `point` (replacing any armed one), or disarms with `None`.
    pub fn arm(&self, point: Option<FaultPoint>) -> Result<(), String> {
        let armed = match point {
            None => None,
            Some(p) => Some(match p.when.as_str() {
                "before" => Armed::Kill {
                    step: p.step,
                    when: When::Before,
                },
                "after" => Armed::Kill {
                    step: p.step,
                    when: When::After,
                },
                "hold" => Armed::Hold {
                    step: p.step,
                    max: p.hold_ms.map_or(DEFAULT_HOLD, Duration::from_millis),
                },
                other => return Err(format!("'{other}' is not before, after or hold")),
            }),
        };
        *self.armed.lock().expect("fault lock") = armed;
        Ok(())
    }

    /// Arms a kill at `step` (unit tests).
    pub fn arm_kill(&self, step: &str, when: When) {
        *self.armed.lock().expect("fault lock") = Some(Armed::Kill {
            step: step.to_string(),
            when,
        });
    }

    /// Ends a hold now.
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    /// The fault point of `step` at `when`: nothing, a hold, or a kill.
    pub async fn at(&self, step: &str, when: When) -> Result<(), Error> {
        if self.mode == Mode::Off {
            return Ok(());
        }
        let hit = {
            let mut armed = self.armed.lock().expect("fault lock");
            let matches = match armed.as_ref() {
                Some(Armed::Kill { step: s, when: w }) => {
                    s.eq_ignore_ascii_case(step) && *w == when
                }
                Some(Armed::Hold { step: s, .. }) => {
                    s.eq_ignore_ascii_case(step) && when == When::Before
                }
                None => false,
            };
            if matches { armed.take() } else { None }
        };
        match hit {
            None => Ok(()),
            Some(Armed::Hold { max, .. }) => {
                // Registered before the line is written, so a release right after it
                // is never missed.
                let released = self.release.notified();
                eprintln!(
                    "TANDEM_DR_FAULTS: {} holds before step {step} for {} ms",
                    self.who,
                    max.as_millis()
                );
                let _ = tokio::time::timeout(max, released).await;
                Ok(())
            }
            Some(Armed::Kill { when, .. }) => {
                let when = match when {
                    When::Before => "before",
                    When::After => "after",
                };
                eprintln!("TANDEM_DR_FAULTS: {} crashes {when} step {step}", self.who);
                if self.mode == Mode::Process {
                    // A real crash: nothing after this line runs, no handler flushes or
                    // answers (an orderly exit would let the runtime's other threads go
                    // on serving meanwhile).
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                    std::process::abort();
                }
                Err(Error::internal(format!("killed {when} step {step}")))
            }
        }
    }
}
