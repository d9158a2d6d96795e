//! Which DR operation a call belongs to, carried from server to server.
//!
//! The server running an operation runs its steps inside [`scope`] and names each step
//! with [`set`]; every call the [`crate::Client`] makes from there — a step's part on a
//! Front End of another pool, a CMS read or write on the master — carries
//! [`OPERATION_HEADER`] (`<id> <step>`), and the server that answers runs the call in a
//! span with the same `op_id`. So `tandem lab logs --operation N` finds an operation's
//! lines on every server it touched, not only on its runner.

use std::cell::RefCell;
use std::future::Future;

/// The header naming the operation and step a call is part of: `<id> <step>`.
pub const OPERATION_HEADER: &str = "x-tandem-operation";

tokio::task_local! {
    static CURRENT: RefCell<(String, String)>;
}

/// Runs `work` as part of operation `id` (its number may be set later, with [`set`]).
pub async fn scope<F: Future>(id: String, work: F) -> F::Output {
    CURRENT.scope(RefCell::new((id, String::new())), work).await
}

/// Names the operation and the step the current task is in (no-op outside [`scope`]).
pub fn set(id: &str, step: &str) {
    let _ = CURRENT.try_with(|c| *c.borrow_mut() = (id.to_string(), step.to_string()));
}

/// The header's value for a call made now: `None` outside an operation, or before it has
/// a number.
pub fn header_value() -> Option<String> {
    CURRENT
        .try_with(|c| {
            let (id, step) = &*c.borrow();
            (!id.is_empty() && id != "0").then(|| format!("{id} {step}").trim_end().to_string())
        })
        .ok()
        .flatten()
}

/// The operation and step a received header names, if it is well formed: a number of at
/// most 20 digits and a step name of at most 32 letters.
pub fn parse(value: &str) -> Option<(&str, &str)> {
    let (id, step) = value.split_once(' ').unwrap_or((value, ""));
    let id_ok = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    let step_ok = step.len() <= 32 && step.bytes().all(|b| b.is_ascii_alphabetic());
    (id_ok && step_ok).then_some((id, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_inside_an_operation_names_it_and_its_step() {
        assert_eq!(header_value(), None);
        scope("0".into(), async {
            assert_eq!(header_value(), None, "not numbered yet");
            set("12", "Drain");
            assert_eq!(header_value().as_deref(), Some("12 Drain"));
            set("12", "");
            assert_eq!(header_value().as_deref(), Some("12"));
        })
        .await;
        assert_eq!(header_value(), None);
    }

    #[test]
    fn only_a_well_formed_header_is_believed() {
        assert_eq!(parse("12 Drain"), Some(("12", "Drain")));
        assert_eq!(parse("12"), Some(("12", "")));
        for bad in [
            "",
            "x",
            "12 Drain\n",
            "12 a b",
            "-1",
            &"9".repeat(21),
            &format!("1 {}", "a".repeat(33)),
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
