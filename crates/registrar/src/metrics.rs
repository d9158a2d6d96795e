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

/// Counts one REGISTER answered with `status`.
pub fn sign_in(status: u16) {
    ::metrics::counter!(SIGN_INS, "outcome" => outcome(status)).increment(1);
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
    }
}
