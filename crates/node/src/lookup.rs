//! Lookups in the deployment's DNS, as the servers make them (an Edge finding its next
//! hop's registrars, a registrar relaying to another pool's), counted for `/metrics`.

use std::net::Ipv4Addr;

/// Lookups made, by `outcome` (`answered`, or `no_answer`: no address within the wait),
/// for `/metrics`.
pub const DNS_LOOKUPS: &str = "tandem_dns_lookups_total";

/// The A records of `name`; `None` when the DNS server does not answer within
/// [`dns::Patience::SERVER`] or has no such name.
pub async fn resolve_a(dns: &dns::Resolver, name: &str) -> Option<Vec<Ipv4Addr>> {
    let found = dns
        .addresses(name)
        .await
        .ok()
        .filter(|addresses| !addresses.is_empty());
    let outcome = if found.is_some() {
        "answered"
    } else {
        "no_answer"
    };
    metrics::counter!(DNS_LOOKUPS, "outcome" => outcome).increment(1);
    found
}
