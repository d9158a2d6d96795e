//! Pure SIP (RFC 3261) message logic for tandem: parsing and serialising requests and
//! responses, SIP URIs and name-addrs, stream framing, and HTTP digest authentication.
//!
//! There is deliberately no I/O here. Every byte that arrives from the network goes
//! through this one bounded, panic-free parser, so the transport code can stay thin and
//! everything protocol-shaped can be unit-tested and fuzzed in isolation.

pub mod digest;
pub mod federation;
pub mod hashed;
mod hex;
pub use hex::{HexDigest, digits};
pub mod message;
pub mod nonce;
mod syntax;
pub mod uri;

pub use message::*;
pub use uri::*;

/// Largest message accepted, header section and body together (leading keep-alive
/// CRLFs not counted). Anything bigger is answered with 513 Message Too Large.
pub const MAX_MESSAGE_BYTES: usize = 65_000;

/// Largest header section accepted: the start line, all header lines and the blank line
/// that ends them.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
