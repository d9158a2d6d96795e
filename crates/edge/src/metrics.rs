//! What an Edge counts for `/metrics` (the recorder is the server process's; see
//! `mgmt::metrics`).

use sip::Method;

/// Federated SIP requests answered, by `method` and `status` (the answer's code).
pub const FEDERATION_MESSAGES: &str = "tandem_edge_federation_messages_total";
/// XMPP server-to-server streams peers opened, by `outcome` (how the header was answered).
pub const XMPP_STREAMS: &str = "tandem_edge_xmpp_streams_total";

/// Media relay credentials MRAS issued.
pub const MRAS_ISSUED: &str = "tandem_edge_mras_credentials_issued_total";

/// Counts one federated request answered with `status`. The method label is the method's
/// name for the methods tandem knows and `OTHER` for the rest, so that a peer cannot grow it.
pub fn federated(method: &Method, status: u16) {
    let method = match method {
        Method::Other(_) => "OTHER".to_string(),
        known => known.as_str().to_string(),
    };
    ::metrics::counter!(FEDERATION_MESSAGES, "method" => method, "status" => status.to_string())
        .increment(1);
}

/// Counts one stream a peer opened, answered as `outcome`.
pub fn xmpp_stream(outcome: &'static str) {
    ::metrics::counter!(XMPP_STREAMS, "outcome" => outcome).increment(1);
}

/// Stanzas the XMPP gateway passed, by `direction` (`in`: from a partner to a user of
/// ours, `out`: the other way) and `outcome` (`delivered`, or why not).
pub const XMPP_STANZAS: &str = "tandem_edge_xmpp_stanzas_total";
/// Peer domains the XMPP gateway authenticated, by `method` (`sasl_external`,
/// `dialback`) and `direction`; and refusals as `method="refused"`.
pub const XMPP_AUTHENTICATIONS: &str = "tandem_edge_xmpp_authentications_total";
/// SIP requests the Edge sent to federated partners for users of ours, by `status`.
pub const FEDERATION_OUTBOUND: &str = "tandem_edge_federation_outbound_total";

/// Counts one stanza passed (or not) in `direction`.
pub fn xmpp_stanza(direction: &'static str, outcome: &'static str) {
    ::metrics::counter!(XMPP_STANZAS, "direction" => direction, "outcome" => outcome).increment(1);
}

/// Counts one peer domain authenticated by `method` in `direction`.
pub fn xmpp_authenticated(direction: &'static str, method: &'static str) {
    ::metrics::counter!(XMPP_AUTHENTICATIONS, "direction" => direction, "method" => method)
        .increment(1);
}

/// Counts one request sent to a federated partner, answered with `status`.
pub fn federation_outbound(status: u16) {
    ::metrics::counter!(FEDERATION_OUTBOUND, "status" => status.to_string()).increment(1);
}
