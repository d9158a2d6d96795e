//! How many connections a listener holds at once, in all and from one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Connection caps of one listener, per listener and per source address.
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Shared>,
    total: usize,
    per_source: usize,
}

#[derive(Debug, Default)]
struct Shared {
    counts: Mutex<Counts>,
    /// `counts.open` as of its last change, read without the lock by
    /// [`Admission::has_room`].
    open: AtomicUsize,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Admitted {
    inner: Arc<Shared>,
    source: IpAddr,
}

impl Admission {
    pub fn new(total: usize, per_source: usize) -> Admission {
        Admission {
            inner: Arc::default(),
            total,
            per_source,
        }
    }

    /// A place for a connection from `source`, or `None` when the listener or that
    /// address is at its cap.
    pub fn admit(&self, source: IpAddr) -> Option<Admitted> {
        let mut counts = self.inner.counts.lock().expect("the admission lock");
        let from_source = counts.by_source.get(&source).copied().unwrap_or(0);
        if counts.open >= self.total || from_source >= self.per_source {
            return None;
        }
        counts.open += 1;
        self.inner.open.store(counts.open, Ordering::Relaxed);
        counts.by_source.insert(source, from_source + 1);
        Some(Admitted {
            inner: self.inner.clone(),
            source,
        })
    }

    /// Whether [`Admission::admit`] would admit `source` now, taking nothing; with
    /// nothing admitted anywhere, said without the lock. For work that needs a place only
    /// if it outlasts its first step (a request answered at once holds nothing): two
    /// callers that race may both be told yes for the last place.
    pub fn has_room(&self, source: IpAddr) -> bool {
        if self.inner.open.load(Ordering::Relaxed) == 0 {
            return self.total > 0 && self.per_source > 0;
        }
        let counts = self.inner.counts.lock().expect("the admission lock");
        counts.open < self.total
            && counts.by_source.get(&source).copied().unwrap_or(0) < self.per_source
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.counts.lock().expect("the admission lock").open
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.inner.counts.lock().expect("the admission lock");
        counts.open -= 1;
        self.inner.open.store(counts.open, Ordering::Relaxed);
        if let Some(n) = counts.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_source_and_in_all_and_gives_places_back() {
        let a = Admission::new(3, 2);
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        let three: IpAddr = "127.0.0.3".parse().unwrap();
        let x = a.admit(one).unwrap();
        let _y = a.admit(one).unwrap();
        assert!(a.admit(one).is_none(), "per source");
        let _z = a.admit(two).unwrap();
        assert!(a.admit(three).is_none(), "in all");
        drop(x);
        let _w = a.admit(three).expect("a place given back");
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn room_is_told_as_admit_would_without_taking_a_place() {
        let a = Admission::new(3, 2);
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(a.has_room(one), "nothing admitted");
        let x = a.admit(one).unwrap();
        assert!(a.has_room(one));
        let y = a.admit(one).unwrap();
        assert!(!a.has_room(one), "per source");
        assert!(a.has_room(two));
        let z = a.admit(two).unwrap();
        assert!(!a.has_room(two), "in all");
        assert_eq!(a.open(), 3, "asking took nothing");
        drop((x, y, z));
        assert!(a.has_room(one) && a.has_room(two));
        assert!(!Admission::new(0, 1).has_room(one));
    }
}
