//! What the console keeps on a server: its sessions, and the one reading of the figures
//! that every watching page shares (a `watch` channel, present only while a reading task
//! runs).

use std::sync::{Arc, Mutex};

use ::console::pages::Fragments;
use ::console::view::Snapshot;
use tokio::sync::watch;

use super::session::Sessions;

/// The figures at one reading, and their sections as HTML.
#[derive(Debug, Default)]
pub struct Live {
    pub snapshot: Snapshot,
    pub fragments: Fragments,
    /// 0 before the first reading.
    pub reading: u64,
}

/// The console's state on one server.
#[derive(Debug, Default)]
pub struct Console {
    pub sessions: Sessions,
    live: Mutex<Option<watch::Sender<Arc<Live>>>>,
}

impl Console {
    /// A receiver of the readings, and the sender when no reading task runs: the caller
    /// then starts one with it.
    pub fn subscribe(&self) -> (watch::Receiver<Arc<Live>>, Option<watch::Sender<Arc<Live>>>) {
        let mut live = self.live.lock().expect("console lock");
        if let Some(tx) = live.as_ref() {
            return (tx.subscribe(), None);
        }
        let (tx, rx) = watch::channel(Arc::new(Live::default()));
        *live = Some(tx.clone());
        (rx, Some(tx))
    }

    /// Forgets the reading if no page watches it (checked under the lock a new page
    /// subscribes under); whether it did, and so whether the reading task stops.
    pub fn stop_if_unwatched(&self, tx: &watch::Sender<Arc<Live>>) -> bool {
        let mut live = self.live.lock().expect("console lock");
        if tx.receiver_count() == 0 {
            *live = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reading_task_serves_every_page_and_stops_when_none_watches() {
        let console = Console::default();
        let (first, tx) = console.subscribe();
        let tx = tx.expect("the first page starts the reading");
        let (second, again) = console.subscribe();
        assert!(again.is_none(), "a second page shares it");
        assert!(!console.stop_if_unwatched(&tx));
        drop((first, second));
        assert!(console.stop_if_unwatched(&tx));
        let (_third, restart) = console.subscribe();
        assert!(restart.is_some(), "a page after that starts a new one");
    }
}
