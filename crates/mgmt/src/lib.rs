//! The management API of one server: every cmdlet as one call, and the routes the servers
//! call on each other.
//!
//! A cmdlet call goes through three layers, each in its own module:
//!
//! 1. [`http`]: the route checks the token and the body, nothing else;
//! 2. [`dispatch`]: the call is bound with the shell's own catalogue and binder, and the
//!    dispatch table says where that cmdlet runs (the shell, this server, the active CMS
//!    master, a Front End of a named pool, the server `-ComputerName` names). Forwarding
//!    to another server happens there and only there;
//! 3. [`cmdlets`]: the handler of that cmdlet does its work here — it never forwards and
//!    never calls back into the dispatcher — and fails in the domain's own terms, which
//!    [`error`] turns into HTTP answers in one place.

pub mod archive;
pub mod audit;
pub mod call;
pub mod cmdlets;
pub mod console;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod metrics;
pub mod operators;

use std::sync::Arc;

use edge::EdgeService;
use engine::Engine;
use node::Node;

pub use error::{Error, Refused};
pub use http::router;

/// What the management API serves from: the server's node, its operations engine, its
/// Edge listeners when it is an Edge, and the web console's sessions and readings.
#[derive(Debug, Clone)]
pub struct Mgmt {
    pub node: Arc<Node>,
    pub engine: Arc<Engine>,
    pub edge: Option<EdgeService>,
    pub console: Arc<console::state::Console>,
}
