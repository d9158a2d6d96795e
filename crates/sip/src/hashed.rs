//! Keys kept as keyed 64-bit hashes rather than the strings they stand for.
//!
//! A registrar under sign-in load remembers tens of thousands of UDP transactions; two
//! strings each (the map's key and the forgetting order's) were most of the memory and
//! allocations of a request. [`HashedKeys`] hashes a key once, with a key random
//! per process, so no one can make two keys collide on purpose; by chance the odds are
//! about 1 in 10^13 per key among a million. A [`ByHash`] map takes those hashes as they
//! are, without hashing them again.
//!
//! A map whose keys no stranger chooses (the directory's addresses, the users a Front End
//! signed in) is a [`TrustedKeys`] map: foldhash, several times faster than the standard
//! SipHash on the short strings a registrar looks up at every request, seeded per map but
//! not built to resist keys chosen to collide — which is why a key a request brings in
//! unchecked (a branch, a source address) goes through [`HashedKeys`] instead.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

/// The per-process key that turns keys into their 64-bit hashes.
#[derive(Debug, Default)]
pub struct HashedKeys(RandomState);

impl HashedKeys {
    /// The hash that stands for `key`.
    pub fn of(&self, key: impl Hash) -> u64 {
        self.0.hash_one(key)
    }
}

/// A map whose keys come from the deployment, not from requests (see the module's
/// documentation); looking one up with a request's text is fine, as a lookup adds nothing.
pub type TrustedKeys<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A map keyed by hashes from [`HashedKeys`].
pub type ByHash<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

/// The hasher of a [`ByHash`] map: its keys are already keyed hashes, and pass through.
#[derive(Debug, Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_one_hash_per_process_and_a_map_keeps_it_as_it_is() {
        let keys = HashedKeys::default();
        assert_eq!(keys.of("nonce-1"), keys.of("nonce-1"));
        assert_ne!(keys.of("nonce-1"), keys.of("nonce-2"));
        assert_ne!(
            keys.of("nonce-1"),
            HashedKeys::default().of("nonce-1"),
            "another process's key"
        );
        let mut map = ByHash::default();
        map.insert(keys.of("nonce-1"), 7);
        assert_eq!(map.get(&keys.of("nonce-1")), Some(&7));
        assert_eq!(map.hasher().build_hasher().finish(), 0);
        let mut h = Prehashed::default();
        h.write_u64(42);
        assert_eq!(h.finish(), 42);
    }
}
