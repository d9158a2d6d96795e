//! Randomized rounds of the Central Management store's life on real SQLite files: two
//! pools' stores (one active, one standby), three servers' replicas, and between
//! configuration writes, every way the store moves — planned failovers, disasters with the
//! old store coming back, pushes and shipments that reach only some copies.
//!
//! After every round, for every key: the value the active store holds is the newest
//! acknowledged write of it that no failover reported lost, and no write a report names
//! is still there. The seed is printed on failure; `CMS_HISTORY_SEED` replays one.

use std::collections::HashMap;

use store::{ApplyOutcome, BackEnd, Batch, Item, ReplicaStore, Standing};

/// A small deterministic generator (xorshift64*), so a seed replays a run exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const TTL: i64 = 3_600_000;

/// One acknowledged write: its key and its (unique) value.
#[derive(Debug, Clone)]
struct Write {
    key: String,
    value: String,
}

struct World {
    stores: [BackEnd; 2],
    active: usize,
    holder: String,
    epoch: i64,
    replicas: Vec<ReplicaStore>,
    writes: Vec<Write>,
    written: u64,
}

impl World {
    async fn write(&mut self) {
        self.written += 1;
        let key = KEYS[(self.written % KEYS.len() as u64) as usize].to_string();
        let value = format!("w{}", self.written);
        self.stores[self.active]
            .write(
                &self.holder,
                self.epoch,
                &[(key.clone(), Some(value.clone()))],
                "edit",
            )
            .await
            .unwrap()
            .unwrap();
        self.writes.push(Write { key, value });
    }

    /// The master pushes to replica `r` (what `cms::master` does).
    async fn push(&self, r: usize) {
        let active = &self.stores[self.active];
        let line = active.history().await.unwrap();
        let Some(current) = active.current_version().await.unwrap() else {
            return;
        };
        let replica = &self.replicas[r];
        let at = replica.state().await.unwrap().version;
        let items = active
            .changes_since(at.min(current.version), 100_000)
            .await
            .unwrap();
        let batch = Batch {
            master_fqdn: &self.holder,
            epoch: self.epoch,
            from_version: at.min(current.version),
            to_version: current.version,
            to_version_created_at: current.created_at,
            items: &items,
            history: &line,
            replace: false,
        };
        match replica.apply(&batch, 0).await.unwrap() {
            ApplyOutcome::Applied { .. } => {}
            ApplyOutcome::Diverged { .. } => {
                let whole = active.items().await.unwrap();
                let replace = Batch {
                    from_version: 0,
                    items: &whole,
                    replace: true,
                    ..batch
                };
                assert!(matches!(
                    replica.apply(&replace, 0).await.unwrap(),
                    ApplyOutcome::Applied { .. }
                ));
            }
            other => panic!("a push from the active master was answered {other:?}"),
        }
    }

    /// The Backup Service ships the standby everything it lacks (as one snapshot).
    async fn ship(&self) {
        let (from, to) = (&self.stores[self.active], &self.stores[1 - self.active]);
        let line = from.history().await.unwrap();
        let held = to.current_version().await.unwrap().map_or(0, |v| v.version);
        let mine = to.history().await.unwrap();
        let after = match store::history::standing(&mine, held, &line) {
            Standing::OnLine => held,
            Standing::OffLine { .. } => 0,
        };
        let batch = from.cms_shipment(after).await.unwrap();
        to.import_cms_versions(&line, after, &batch).await.unwrap();
    }

    /// The standby becomes the active store, the old one its standby (told of the new
    /// line at once in a planned failover; when it comes back after a disaster).
    async fn promote(&mut self, disaster: bool) {
        let new = 1 - self.active;
        if disaster {
            // Take the newest configuration a surviving replica holds on the standby's line.
            let standby = &self.stores[new];
            let line = standby.history().await.unwrap();
            let have = standby
                .current_version()
                .await
                .unwrap()
                .map_or(0, |v| v.version);
            let mut best: Option<(usize, i64)> = None;
            for (i, r) in self.replicas.iter().enumerate() {
                let s = r.state().await.unwrap();
                let on = store::history::standing(&line, have, &r.history().await.unwrap())
                    == Standing::OnLine;
                if on && s.version > best.map_or(have, |b| b.1) {
                    best = Some((i, s.version));
                }
            }
            if let Some((i, version)) = best {
                let s = self.replicas[i].state().await.unwrap();
                let items = self.replicas[i].changed_since(have, "").await.unwrap();
                let history = self.replicas[i].history().await.unwrap();
                standby
                    .catch_up_cms(
                        "replica",
                        &history,
                        s.epoch,
                        version,
                        s.last_update_creation,
                        &items,
                    )
                    .await
                    .unwrap();
            }
        } else {
            self.ship().await;
            // The old store froze: nothing more is written there.
        }
        let promoted = self.stores[new]
            .promote_cms(self.epoch, "old", "fe-new", TTL)
            .await
            .unwrap()
            .unwrap();
        let line = self.stores[new].history().await.unwrap();
        self.stores[self.active]
            .demote_cms("new", &line, promoted.epoch_floor + 1)
            .await
            .unwrap();
        self.active = new;
        self.holder = "fe-new".into();
        let (_, lease) = self.stores[new]
            .acquire_lease("fe-new", TTL, store::now_ms())
            .await
            .unwrap();
        self.epoch = lease.epoch;
    }

    /// The writes some failover reported lost (by value), from both stores' records.
    async fn reported_lost(&self) -> HashMap<String, String> {
        let mut lost = HashMap::new();
        for s in &self.stores {
            for l in s.lost_cms_versions().await.unwrap() {
                // Each version wrote one key; which write it was is known by its
                // (epoch, version).
                for key in l.keys {
                    lost.insert(format!("{key}@{}@{}", l.epoch, l.version), key);
                }
            }
        }
        lost
    }
}

async fn run(db: store::testing::TestDb, seed: u64, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let a = db.open("a").await;
    let b = db.open("b").await;
    a.bootstrap(&[("a".into(), Some("w0".into()))], "install")
        .await
        .unwrap();
    let (_, lease) = a
        .acquire_lease("fe-old", TTL, store::now_ms())
        .await
        .unwrap();
    let mut replicas = vec![];
    for i in 0..3 {
        replicas.push(
            ReplicaStore::open(&dir.path().join(format!("r{i}.db")))
                .await
                .unwrap(),
        );
    }
    let mut w = World {
        stores: [a, b],
        active: 0,
        holder: "fe-old".into(),
        epoch: lease.epoch,
        replicas,
        writes: vec![Write {
            key: "a".into(),
            value: "w0".into(),
        }],
        written: 0,
    };
    // Which write each (epoch, version) of any store was, to name what a report lost.
    let mut identity: HashMap<(i64, i64), String> = HashMap::new();
    let mut rng = Rng(seed | 1);
    for round in 0..rounds {
        for _ in 0..=rng.below(4) {
            w.write().await;
            let v = w.stores[w.active].current_version().await.unwrap().unwrap();
            identity.insert((v.epoch, v.version), w.writes.last().unwrap().value.clone());
            for r in 0..w.replicas.len() {
                if rng.below(3) > 0 {
                    w.push(r).await;
                }
            }
            if rng.below(2) == 0 {
                w.ship().await;
            }
        }
        match rng.below(4) {
            0 => w.promote(false).await,
            1 => w.promote(true).await,
            _ => {}
        }
        // Check: every key holds its newest write not reported lost, and no lost write
        // is still there.
        let lost_values: Vec<String> = w
            .reported_lost()
            .await
            .keys()
            .filter_map(|k| {
                let mut parts = k.split('@').skip(1);
                let epoch: i64 = parts.next()?.parse().ok()?;
                let version: i64 = parts.next()?.parse().ok()?;
                identity.get(&(epoch, version)).cloned()
            })
            .collect();
        let active = &w.stores[w.active];
        for key in KEYS {
            let expected = w
                .writes
                .iter()
                .rev()
                .find(|x| x.key == key && !lost_values.contains(&x.value))
                .map(|x| x.value.clone());
            let held = active.get(key).await.unwrap();
            assert_eq!(
                held, expected,
                "seed {seed}, round {round}: key {key} (lost: {lost_values:?})"
            );
        }
        for value in &lost_values {
            let still = active
                .items()
                .await
                .unwrap()
                .iter()
                .any(|i: &Item| i.value.as_deref() == Some(value));
            assert!(
                !still,
                "seed {seed}, round {round}: {value} was reported lost but is there"
            );
        }
    }
}

store::each_backend! {
    async fn no_acknowledged_configuration_is_missing_unless_reported_and_none_reported_is_there(
        db
    ) {
        let seed = std::env::var("CMS_HISTORY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| store::now_ms() as u64);
        eprintln!("CMS_HISTORY_SEED={seed}");
        super::run(db, seed, 60).await;
    }
}
