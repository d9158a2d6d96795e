//! Progress of long work: an indicatif bar with the count and the rate on a terminal, and
//! plain lines — one when something changed — when standard error is not one (a log, a
//! CI job), so that neither gets the other's form.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The unit of a bar that counts time (a phase of a benchmark that lasts so many seconds):
/// its plain lines give no rate.
pub(crate) const SECONDS: &str = "s";

/// How often a plain line may be written, at most, while the count moves.
const LINE_EVERY: Duration = Duration::from_secs(2);

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    unit: &'static str,
    total: u64,
    started: Instant,
    /// What the last plain line said (count, note) and when (no bar).
    said: Option<(u64, String, Instant)>,
    /// A figure shown beside the count that does not, by changing, make a plain line of
    /// its own ([`Progress::figure`]).
    figure: String,
}

impl Progress {
    /// `total` `unit`s of `what` to do, shown on standard error.
    pub(crate) fn new(what: &str, total: u64, unit: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{elapsed}}) {{msg}}"
                ))
                .expect("the template is well formed")
                .progress_chars("#>-"),
            );
            bar.set_prefix(what.to_string());
            bar
        });
        Progress {
            bar,
            what: what.to_string(),
            unit,
            total,
            started: Instant::now(),
            said: None,
            figure: String::new(),
        }
    }

    /// A figure that moves all the time (`1234 sign-ins, 2,400/s`): on the bar at once,
    /// in the next plain line otherwise.
    pub(crate) fn figure(&mut self, figure: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(figure.to_string());
        }
        self.figure = figure.to_string();
    }

    /// `done` of the total, and what is being done now (`note`, may be empty).
    pub(crate) fn set(&mut self, done: u64, note: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(note.to_string());
            }
            None => {
                let due = match &self.said {
                    None => true,
                    Some((last_done, last_note, at)) => {
                        // A new note at once; a moving count at most every LINE_EVERY,
                        // and its end.
                        last_note != note
                            || (*last_done != done
                                && (done == self.total || at.elapsed() >= LINE_EVERY))
                    }
                };
                if due {
                    let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
                    let shown = if note.is_empty() { &self.figure } else { note };
                    let line = plain_line(&self.what, done, self.total, self.unit, shown);
                    if self.unit == SECONDS {
                        eprintln!("{line}");
                    } else {
                        eprintln!("{line} ({rate:.0} {}/s)", self.unit);
                    }
                    self.said = Some((done, note.to_string(), Instant::now()));
                }
            }
        }
    }

    /// Ends the bar (it stays on the terminal as its last state) or writes nothing more.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// `what: done/total unit note`.
fn plain_line(what: &str, done: u64, total: u64, unit: &str, note: &str) -> String {
    let line = format!("{what}: {done}/{total} {unit}");
    if note.is_empty() {
        line
    } else {
        format!("{line} {note}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_names_the_work_the_count_and_the_note() {
        assert_eq!(
            plain_line("Enabling users", 10, 40, "users", ""),
            "Enabling users: 10/40 users"
        );
        assert_eq!(
            plain_line("17 FailOver of pool1.contoso.com", 3, 9, "steps", "Promote"),
            "17 FailOver of pool1.contoso.com: 3/9 steps Promote"
        );
    }
}
