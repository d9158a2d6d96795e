//! Server Dialback's keys (XEP-0185): what an originating server sends in `<db:result>`
//! and its authoritative server confirms in answer to `<db:verify>`.
//!
//! The key is HMAC-SHA256 over `receiving originating stream-id` with the SHA-256 of a
//! secret (as lowercase hex) as the HMAC key, in lowercase hex. Every Edge server of the
//! deployment derives the same secret from the deployment's token, so whichever of them a
//! partner's verification reaches can confirm a key another sent, and nothing is kept
//! per stream. The stream id the receiving server chose binds a key to one stream: a key
//! seen on the wire confirms nothing for another.

use aws_lc_rs::{digest, hmac};

/// The dialback secret of a deployment, from its token.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dialback::Secret(..)")
    }
}

impl Secret {
    /// The secret every Edge server of the deployment whose token is `token` derives.
    pub fn of_token(token: &str) -> Secret {
        let secret = digest::digest(
            &digest::SHA256,
            format!("tandem xmpp dialback secret:{token}").as_bytes(),
        );
        Secret::new(secret.as_ref())
    }

    /// XEP-0185's key from the secret itself.
    pub fn new(secret: &[u8]) -> Secret {
        let hashed = hex(digest::digest(&digest::SHA256, secret).as_ref());
        Secret(hmac::Key::new(hmac::HMAC_SHA256, hashed.as_bytes()))
    }

    /// The key for a stream from `originating` to `receiving` whose id (given by the
    /// receiving server) is `stream_id`.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let text = format!(
            "{} {} {stream_id}",
            receiving.to_ascii_lowercase(),
            originating.to_ascii_lowercase()
        );
        hex(hmac::sign(&self.0, text.as_bytes()).as_ref())
    }

    /// Whether `key` is the key for that stream (compared in constant time).
    pub fn verify(&self, key: &str, receiving: &str, originating: &str, stream_id: &str) -> bool {
        let expected = self.key(receiving, originating, stream_id);
        let key = key.trim();
        !stream_id.is_empty()
            && expected.len() == key.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                key.as_bytes(),
            )
            .is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_xep_0185() {
        // The inputs of the script that made XEP-0185's example (the XMPP wiki's):
        // secret "s3cr3tf0rd14lb4ck", receiving domain2.tld, originating domain1.tld,
        // stream id D60000229F; the value computed independently with Python's hmac.
        let secret = Secret::new(b"s3cr3tf0rd14lb4ck");
        let key = secret.key("domain2.tld", "domain1.tld", "D60000229F");
        assert_eq!(
            key,
            "5e598fae34b90be084fb6a4a8a543ceb33549140bac9d829ef8d734d900616e4"
        );
        assert!(secret.verify(&key, "domain2.tld", "domain1.tld", "D60000229F"));
        assert!(!secret.verify(&key, "domain2.tld", "domain1.tld", "D60000229G"));
        assert!(!secret.verify(&key, "domain3.tld", "domain1.tld", "D60000229F"));
        assert!(!secret.verify("", "domain2.tld", "domain1.tld", "D60000229F"));
        // Whitespace around a key is no difference; a key bound to no stream proves nothing.
        assert!(secret.verify(
            &format!(" {key}\n"),
            "domain2.tld",
            "domain1.tld",
            "D60000229F"
        ));
        let unbound = secret.key("domain2.tld", "domain1.tld", "");
        assert!(!secret.verify(&unbound, "domain2.tld", "domain1.tld", ""));
        // Every server of a deployment derives the same secret; another deployment not.
        let a = Secret::of_token("t1").key("x.example", "contoso.com", "1");
        assert_eq!(
            a,
            Secret::of_token("t1").key("x.example", "contoso.com", "1")
        );
        assert_ne!(
            a,
            Secret::of_token("t2").key("x.example", "contoso.com", "1")
        );
    }
}
