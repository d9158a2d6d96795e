//! Durable operations: pool failover and failback, and Central Management store failover,
//! run by one engine.
//!
//! The decisions — which requests are refused, which steps an operation takes, what a
//! step must do given what it observes, how a record resumes — are pure functions in `dr`.
//! This crate does the I/O around them:
//!
//! - [`runner`]: the one step loop. Each kind says what its steps do and where its record
//!   is saved; the runner claims each step, does it, meets the fault points and saves the
//!   outcome by compare-and-set, the same way for every kind.
//! - [`pool`]: pool failover and failback (records in the CMS), and [`agent`], the part of
//!   a step a Front End does on its own pool's Back End when the runner asks it.
//! - [`cms_failover`]: moving the Central Management store (records in the Back End of the pool
//!   that will host it), and what the old store's Front End does when asked.
//! - [`survivors`]: the newest configuration any surviving server holds, which a disaster
//!   CMS failover catches the standby up from before promoting it.
//! - [`reconcile`]: on the active master, an operation whose runner died is carried on
//!   without an operator.
//!
//! An operation's runner lists it in its `/health`; that is the one way every server
//! decides whether a runner is still at work ([`Engine::runner_alive`]).

pub mod agent;
pub mod cms_failover;
mod error;
pub mod faults;
pub mod metrics;
pub mod pool;
pub mod reconcile;
pub mod runner;
pub mod survivors;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use node::Node;
use store::Binding;

pub use crate::error::{Error, Failure};
use crate::faults::Faults;

/// How long a `/health` probe of a runner may take.
const RUNNER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells signed-out users' endpoints where to sign in again: the registrar does it, the
/// engine asks through this when a step signs users out.
pub trait SignOut: Send + Sync + std::fmt::Debug {
    /// Notifies the endpoints of `bindings` that `serving_pool` serves them now; returns
    /// how many were told.
    fn tell_signed_out(&self, bindings: Vec<Binding>, serving_pool: &str) -> usize;
}

/// The operations engine of one server.
#[derive(Debug)]
pub struct Engine {
    node: Arc<Node>,
    faults: Faults,
    /// The operations this server runs now, by key (see [`Engine::running_operations`]).
    running: Arc<Mutex<BTreeSet<String>>>,
    sign_out: OnceLock<Arc<dyn SignOut>>,
    /// How long an operation whose runner died waits before the reconciler carries it on
    /// (an operator who resumes it sooner does it himself).
    reconcile_after: Duration,
}

impl Engine {
    pub fn new(node: Arc<Node>, reconcile_after: Duration) -> Arc<Engine> {
        Arc::new(Engine {
            faults: Faults::from_env(&node.fqdn),
            node,
            running: Arc::default(),
            sign_out: OnceLock::new(),
            reconcile_after,
        })
    }

    /// Wires the registrar that tells signed-out endpoints where to go (Front Ends).
    pub fn set_sign_out(&self, sign_out: Arc<dyn SignOut>) {
        let _ = self.sign_out.set(sign_out);
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The keys of the operations this server runs now, for its `/health`.
    pub fn running_operations(&self) -> Vec<String> {
        self.running
            .lock()
            .expect("running operations lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Runs `op` to its end with this server as the runner, its fault points and clock.
    async fn run_here<D: runner::Durable>(&self, op: &mut D) -> Result<(), Error> {
        runner::run(op, &self.node.fqdn, &self.faults, &self.node.clock).await
    }

    /// Lists `key` as running here until the guard is dropped; refuses when it already is.
    fn claim(&self, key: &str) -> Option<Running> {
        self.running
            .lock()
            .expect("running operations lock")
            .insert(key.to_string())
            .then(|| Running {
                set: self.running.clone(),
                key: key.to_string(),
            })
    }

    /// Whether `runner` is at work on the operation `key` now: it is this server and runs
    /// it, or its `/health` lists it. A runner that does not answer, or answers without
    /// it (it restarted), is gone.
    pub async fn runner_alive(&self, runner: &str, key: &str) -> bool {
        if runner.eq_ignore_ascii_case(&self.node.fqdn) {
            return self
                .running
                .lock()
                .expect("running operations lock")
                .contains(key);
        }
        let topology = self.node.topology();
        let Some(s) = topology.server(runner) else {
            return false;
        };
        let base = Node::base_of(&topology, s.server);
        self.node
            .api
            .health(&base, RUNNER_PROBE_TIMEOUT)
            .await
            .is_ok_and(|h| h.running_operations.iter().any(|k| k == key))
    }
}

/// An operation listed as running on this server, until dropped.
#[derive(Debug)]
struct Running {
    set: Arc<Mutex<BTreeSet<String>>>,
    key: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.set
            .lock()
            .expect("running operations lock")
            .remove(&self.key);
    }
}
