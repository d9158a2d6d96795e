//! The registrar's group commit: REGISTERs' binding changes written to the pool's Back End
//! in batches, each REGISTER answered once the batch that holds its change has committed.
//!
//! Bindings are shared by the pool's Front Ends through its Back End, as every other piece
//! of user state is, and a Front End acknowledges a binding only once it is there: a Front
//! End killed under sign-in load loses no acknowledged binding (the window is zero), and the
//! pool's other Front Ends serve every user it acknowledged. What makes that fast is the
//! batching: the writer takes every change that queued while the previous batch committed
//! and writes them in one transaction (`store::BackEnd::apply_registrations`), so a commit
//! costs a few statements however many sign-ins wait for it, and batches grow with the load
//! instead of the queue. There is no timer: an idle registrar commits a lone REGISTER at
//! once, after one turn of the scheduler that lets REGISTERs already running join it.
//!
//! A task also purges expired bindings, in bounded rounds, every [`PURGE_EVERY`].

use std::sync::Arc;
use std::time::Duration;

use node::Node;
use store::{BackEnd, Registered, RegistrationChange, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Changes waiting for a batch, at most: a REGISTER past it waits for room.
pub const QUEUE: usize = 4_096;
/// Changes in one transaction, at most.
pub const MAX_BATCH: usize = 1_024;
/// How often a Front End purges the pool's expired bindings.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Bindings one purge round deletes, at most.
const PURGE_ROUND: i64 = 5_000;

type Waiter = oneshot::Sender<Result<Registered, Arc<StoreError>>>;

/// The queue to the writer.
#[derive(Debug, Clone)]
pub struct Committer {
    queue: mpsc::Sender<(RegistrationChange, Waiter)>,
}

impl Committer {
    /// Starts the writer (and the purge) on `be`, in tasks of `node` that end at shutdown.
    pub fn start(node: &Arc<Node>, be: BackEnd, max_bindings: usize) -> Committer {
        let (queue, mut incoming) = mpsc::channel::<(RegistrationChange, Waiter)>(QUEUE);
        let writer_be = be.clone();
        let clock = node.clock;
        let stop = node.shutdown.clone();
        node.spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            loop {
                let received = tokio::select! {
                    n = incoming.recv_many(&mut batch, MAX_BATCH) => n,
                    () = stop.cancelled() => 0,
                };
                if received == 0 {
                    return;
                }
                // Once more round the scheduler before committing: the REGISTERs already
                // running on this runtime queue their changes into this batch instead of
                // waiting a whole commit for the next. No timer: an idle registrar loses
                // one turn of the scheduler, not a delay.
                if received < MAX_BATCH {
                    tokio::task::yield_now().await;
                    while batch.len() < MAX_BATCH {
                        match incoming.try_recv() {
                            Ok(change) => batch.push(change),
                            Err(_) => break,
                        }
                    }
                }
                let (changes, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let now = clock.now_ms();
                match writer_be
                    .apply_registrations(&changes, now, max_bindings)
                    .await
                {
                    Ok(outcomes) => {
                        for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                            let _ = waiter.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, changes = changes.len(), "writing SIP bindings");
                        let e = Arc::new(e);
                        for waiter in waiters {
                            let _ = waiter.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        let clock = node.clock;
        let stop = node.shutdown.clone();
        node.spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => return,
                }
                loop {
                    match be.purge_expired_bindings(clock.now_ms(), PURGE_ROUND).await {
                        Ok(n) if n as i64 == PURGE_ROUND => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "purging expired SIP bindings");
                            break;
                        }
                    }
                }
            }
        });
        Committer { queue }
    }

    /// Queues `change` and waits for the batch that holds it to commit.
    pub async fn commit(&self, change: RegistrationChange) -> Result<Registered, Arc<StoreError>> {
        let (waiter, answer) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Refused("the registrar is stopping".into()));
        self.queue
            .send((change, waiter))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}
