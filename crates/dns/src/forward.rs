//! What a server that forwards a query does to the messages, no I/O: the query's id and
//! name (which zone it is for), the query sent on with an id of the server's own, the
//! master's answer checked against it and given the client's id back, and the answers the
//! server makes itself when the masters give none (SERVFAIL) or one too large for its
//! buffer (an empty answer with TC set, so the client asks again over TCP). The sockets are
//! the server's (`dnsserver`).

use hickory_server::proto::op::{
    Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder};

/// A query's id and the name it asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lower case, no final dot (`.` for the root, as an empty string).
    pub name: String,
}

/// The header and questions of a query; `None` for a response or what does not parse.
fn read_query(bytes: &[u8]) -> Option<(Header, Vec<Query>)> {
    let mut decoder = BinDecoder::new(bytes);
    let header = Header::read(&mut decoder).ok()?;
    if header.metadata.message_type != MessageType::Query {
        return None;
    }
    let queries = Message::read_queries(&mut decoder, usize::from(header.counts.queries)).ok()?;
    Some((header, queries))
}

/// The id and first question of a query; `None` for a response, a message that is not a
/// standard query (an UPDATE or a NOTIFY is not sent on), a query with no question, or what
/// does not parse (the catalog answers those itself).
pub fn question(query: &[u8]) -> Option<Question> {
    let (header, queries) = read_query(query)?;
    if header.metadata.op_code != OpCode::Query {
        return None;
    }
    let first = queries.first()?;
    let name = first.name().to_ascii().to_ascii_lowercase();
    Some(Question {
        id: header.metadata.id,
        name: name.trim_end_matches('.').to_string(),
    })
}

/// `message` with its id (the first two bytes) replaced.
pub fn with_id(message: &[u8], id: u16) -> Vec<u8> {
    let mut out = message.to_vec();
    if out.len() >= 2 {
        out[..2].copy_from_slice(&id.to_be_bytes());
    }
    out
}

/// A fresh id for a query sent on: unpredictable, so that an answer from anyone but the
/// master (who sees the query) is unlikely to be taken.
pub fn random_id() -> u16 {
    getrandom::u32().map_or(0, |r| r as u16)
}

/// Whether `answer` answers `sent` (the query as sent on): a response with its id and its
/// questions.
pub fn answers(answer: &[u8], sent: &[u8]) -> bool {
    let Some((sent_header, sent_queries)) = read_query(sent) else {
        return false;
    };
    let mut decoder = BinDecoder::new(answer);
    let Ok(header) = Header::read(&mut decoder) else {
        return false;
    };
    if header.metadata.message_type != MessageType::Response
        || header.metadata.id != sent_header.metadata.id
    {
        return false;
    }
    Message::read_queries(&mut decoder, usize::from(header.counts.queries))
        .is_ok_and(|queries| queries == sent_queries)
}

/// An answer made here for `query`, with no records: its id, op code, RD and questions.
fn made_answer(query: &[u8], change: impl FnOnce(&mut Metadata)) -> Option<Vec<u8>> {
    let (header, queries) = read_query(query)?;
    let mut message = Message::new(
        header.metadata.id,
        MessageType::Response,
        header.metadata.op_code,
    );
    message.metadata = Metadata::response_from_request(&header.metadata);
    message.metadata.recursion_available = true;
    change(&mut message.metadata);
    message.add_queries(queries);
    message.to_vec().ok()
}

/// SERVFAIL for `query`: the masters gave no answer in time, or too many queries are
/// being forwarded already.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    made_answer(query, |m| m.response_code = ResponseCode::ServFail)
}

/// An empty answer with TC set for `query`: the master's answer did not fit the server's
/// UDP buffer, so the client asks again over TCP.
pub fn truncated(query: &[u8]) -> Option<Vec<u8>> {
    made_answer(query, |m| m.truncation = true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::rr::{Name, RecordType};

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_forwarded_answer_is_matched_to_its_query_and_given_the_clients_id() {
        let q = query("Xmpp.Partner.Example.");
        assert_eq!(
            question(&q),
            Some(Question {
                id: 0x1234,
                name: "xmpp.partner.example".into()
            })
        );
        let sent = with_id(&q, 7);
        assert_eq!(question(&sent).unwrap().id, 7);
        // The master's answer: same id and question.
        let mut answer = Message::from_vec(&sent).unwrap();
        answer.metadata.message_type = MessageType::Response;
        let answer = answer.to_vec().unwrap();
        assert!(answers(&answer, &sent));
        assert!(!answers(&answer, &q), "another id");
        assert!(!answers(&sent, &sent), "a query is no answer");
        assert!(!answers(&with_id(&query("other.example."), 7), &sent));
        assert!(!answers(b"\x00\x07", &sent));
        assert_eq!(&with_id(&answer, 0x1234)[..2], &[0x12, 0x34]);
        // Answers made here keep the id and the question.
        let fail = Message::from_vec(&servfail(&q).unwrap()).unwrap();
        assert_eq!(fail.metadata.id, 0x1234);
        assert_eq!(fail.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(fail.queries.len(), 1);
        assert!(fail.metadata.recursion_desired);
        let tc = Message::from_vec(&truncated(&q).unwrap()).unwrap();
        assert!(tc.metadata.truncation && tc.answers.is_empty());
        assert!(question(&answer).is_none(), "a response is not forwarded");
        assert!(question(b"junk").is_none());
        let mut update = Message::from_vec(&q).unwrap();
        update.metadata.op_code = OpCode::Update;
        assert!(
            question(&update.to_vec().unwrap()).is_none(),
            "an UPDATE is not sent on"
        );
    }
}
