//! The A/V Edge: what an Edge server does for media. `server`: a TURN relay (RFC 8656)
//! on the Edge's external address, UDP and TCP, relaying between external clients and their
//! peers. `credentials`: the shared-secret credentials the Media Relay Authentication
//! Service (MRAS) hands out and the relay checks, with no table per user. `stun`: the
//! messages both speak. `client`: a TURN client, for `tandem client media`, the benchmark
//! and the tests.
//!
//! Written here rather than taken from webrtc-rs's `turn` crate: its server keeps a nonce
//! for every unauthenticated request until a client comes back with it (one entry per
//! packet an attacker sends, never dropped), has no TCP listener, no quota per user, and
//! brings its own copies of the error, random and crypto crates. The protocol is small;
//! what it needs of bounds and clocks is this project's.

pub mod client;
pub mod credentials;
pub mod mras;
pub mod server;
pub mod stun;

pub use credentials::{Credentials, SECRET_FILE, Secret};
pub use mras::{MediaRelay, MrasRequest, RelayAddress};
pub use server::{Config, Limits, Reading, Relay, Stats};

#[cfg(test)]
mod tests {
    /// Waits (a few seconds at most) until `done` holds.
    pub(crate) async fn eventually(done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("did not happen within 2 s");
    }
}
