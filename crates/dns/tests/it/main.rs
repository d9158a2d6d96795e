//! Property tests: the DNS parsers never panic, whatever arrives.

use dns::{RecordType, build_query, parse_query, parse_response};
use proptest::prelude::*;

proptest! {
    #[test]
    fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_query(&bytes);
        let _ = parse_response(&bytes);
    }

    #[test]
    fn queries_for_valid_names_round_trip(labels in proptest::collection::vec("[a-z0-9_-]{1,20}", 1..6)) {
        let name = labels.join(".");
        let q = parse_query(&build_query(9, &name, RecordType::A)).unwrap();
        prop_assert_eq!(q.name, name);
        prop_assert_eq!(q.qtype, RecordType::A);
    }

    #[test]
    fn a_corrupted_query_never_panics(pos in 0usize..40, byte in any::<u8>()) {
        let mut bytes = build_query(9, "_xmpp-server._tcp.contoso.com", RecordType::Srv);
        if pos < bytes.len() {
            bytes[pos] = byte;
        }
        let _ = parse_query(&bytes);
    }
}
