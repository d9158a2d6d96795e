//! Replays the hostile-input corpus in `tests/corpus/` through [`Message::parse`] and
//! checks each outcome against the `EXPECTED` manifest, so a parser change that alters
//! how malformed or oversized input is treated shows up as a test failure. Cases too big
//! to store (`gen:` names) are built here.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use sip::{MAX_HEADER_BYTES, MAX_MESSAGE_BYTES, Message, ParseError, frame_length};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn register() -> String {
    fs::read_to_string(corpus_dir().join("register_rfc3261.sip")).expect("register corpus file")
}

/// `register()` with `extra` header lines inserted before Content-Length and `body`
/// appended (Content-Length adjusted unless `keep_length`).
fn register_with(extra: &str, body: &[u8], set_length: bool) -> Vec<u8> {
    let reg = register();
    let (head, _) = reg
        .split_once("Content-Length: 0\r\n")
        .expect("has Content-Length");
    let mut out = format!("{head}{extra}").into_bytes();
    if set_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn generated(name: &str) -> Vec<u8> {
    match name {
        "gen:header_line_20k" => {
            register_with(&format!("X-Long: {}\r\n", "a".repeat(20 * 1024)), b"", true)
        }
        "gen:many_headers_over_16k" => {
            register_with(&"X-Filler: 0123456789abcdef\r\n".repeat(700), b"", true)
        }
        "gen:body_70k" => {
            register_with("Content-Type: text/plain\r\n", &vec![b'x'; 70 * 1024], true)
        }
        "gen:body_70k_no_content_length" => register_with(
            "Content-Type: text/plain\r\n",
            &vec![b'x'; 70 * 1024],
            false,
        ),
        "gen:keepalives_then_register" => {
            let mut out = b"\r\n".repeat(MAX_MESSAGE_BYTES);
            out.extend_from_slice(register().as_bytes());
            out
        }
        "gen:header_exactly_at_limit" => {
            let base = register_with("X-Pad: \r\n", b"", true).len();
            let pad = "p".repeat(MAX_HEADER_BYTES - base);
            let out = register_with(&format!("X-Pad: {pad}\r\n"), b"", true);
            assert_eq!(out.len(), MAX_HEADER_BYTES);
            out
        }
        other => panic!("EXPECTED names unknown generated case {other}"),
    }
}

fn outcome(result: &Result<Message, ParseError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ParseError::TooLarge { .. }) => "too_large",
        Err(ParseError::Malformed(_)) => "malformed",
        Err(ParseError::Incomplete) => "incomplete",
    }
}

#[test]
fn corpus_matches_expected() {
    let dir = corpus_dir();
    let manifest = fs::read_to_string(dir.join("EXPECTED")).expect("EXPECTED manifest");
    let mut listed = BTreeSet::new();
    let mut failures = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, expected) = line.split_once(' ').expect("`name outcome` lines");
        let expected = expected.trim();
        assert!(
            ["ok", "too_large", "malformed", "incomplete"].contains(&expected),
            "bad outcome {expected:?} for {name}"
        );
        assert!(listed.insert(name.to_owned()), "{name} listed twice");
        let bytes = if name.starts_with("gen:") {
            generated(name)
        } else {
            fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let result = Message::parse(&bytes);
        // Framing must not panic either, whatever it decides.
        let _ = frame_length(&bytes);
        if outcome(&result) != expected {
            failures.push(format!("{name}: expected {expected}, got {result:?}"));
            continue;
        }
        if let Ok(message) = result {
            let again = Message::parse(&message.to_bytes()).expect("re-parse serialised message");
            assert_eq!(again.to_bytes(), message.to_bytes(), "{name} is not stable");
        }
    }
    assert!(
        failures.is_empty(),
        "corpus mismatches:\n{}",
        failures.join("\n")
    );

    let mut stored = 0;
    for entry in fs::read_dir(&dir).expect("corpus dir") {
        let file = entry.expect("dir entry").file_name();
        let file = file.to_string_lossy();
        if file == "EXPECTED" || file.starts_with('.') {
            continue;
        }
        stored += 1;
        assert!(
            listed.contains(file.as_ref()),
            "{file} has no line in EXPECTED"
        );
    }
    assert!(stored >= 25, "only {stored} corpus files");
}
