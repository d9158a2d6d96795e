//! What the registrar counts for `/metrics` (the recorder is the server process's; see
//! `mgmt::metrics`).

/// REGISTERs answered, by `outcome`.
pub const SIGN_INS: &str = "tandem_sign_ins_total";

/// The outcome a REGISTER's answer stands for: bounded, so that a label never grows with
/// what clients send.
pub fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "signed_in",
        301 | 302 => "redirected",
        401 | 407 => "challenged",
        403 => "refused",
        423 => "interval_too_brief",
        400..=499 => "bad_request",
        _ => "failed",
    }
}

/// Every outcome [`outcome`] gives.
const OUTCOMES: [&str; 7] = [
    "signed_in",
    "redirected",
    "challenged",
    "refused",
    "interval_too_brief",
    "bad_request",
    "failed",
];

/// The counters, one an outcome, taken from the recorder once: a REGISTER is the hot
/// path, and looking a labelled counter up hashes its key each time. The server installs
/// its recorder before the registrar answers anything, so the first REGISTER finds it.
static COUNTERS: std::sync::OnceLock<[::metrics::Counter; 7]> = std::sync::OnceLock::new();

/// Counts one REGISTER answered with `status`.
pub fn sign_in(status: u16) {
    let counters =
        COUNTERS.get_or_init(|| OUTCOMES.map(|o| ::metrics::counter!(SIGN_INS, "outcome" => o)));
    let outcome = outcome(status);
    let i = OUTCOMES
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(OUTCOMES.len() - 1);
    counters[i].increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_has_one_of_a_few_outcomes() {
        assert_eq!(outcome(200), "signed_in");
        assert_eq!(outcome(301), "redirected");
        assert_eq!(outcome(401), "challenged");
        assert_eq!(outcome(403), "refused");
        assert_eq!(outcome(423), "interval_too_brief");
        assert_eq!(outcome(400), "bad_request");
        assert_eq!(outcome(500), "failed");
        assert_eq!(outcome(503), "failed");
        for status in [200, 301, 401, 403, 423, 400, 500] {
            assert!(OUTCOMES.contains(&outcome(status)), "{status}");
        }
    }
}
