//! How many connections a listener holds at once, in all and from one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connection caps of one listener, per listener and per source address.
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Mutex<Counts>>,
    total: usize,
    per_source: usize,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Admitted {
    inner: Arc<Mutex<Counts>>,
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
        let mut counts = self.inner.lock().expect("the admission lock");
        let from_source = counts.by_source.get(&source).copied().unwrap_or(0);
        if counts.open >= self.total || from_source >= self.per_source {
            return None;
        }
        counts.open += 1;
        counts.by_source.insert(source, from_source + 1);
        Some(Admitted {
            inner: self.inner.clone(),
            source,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.lock().expect("the admission lock").open
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.inner.lock().expect("the admission lock");
        counts.open -= 1;
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
}
