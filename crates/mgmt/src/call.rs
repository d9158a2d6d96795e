//! One cmdlet call as its handler sees it, and what a handler answers.

use api::InvokeResponse;
use cmdlet::Invocation;
use cms::master::Master;

use crate::Mgmt;
use crate::error::Error;
use crate::operators::Operator;

/// What a handler answers.
pub type Reply = Result<InvokeResponse, Error>;

/// One call, where its handler needs it.
#[derive(Debug)]
pub struct Call<'a> {
    pub mgmt: &'a Mgmt,
    pub inv: &'a Invocation,
    /// This server's master, when the call runs on the active master.
    pub master: Option<Master>,
    /// Why no master answered, when the call runs on the replica because of it.
    pub unavailable: Option<String>,
    /// Who made the call.
    pub operator: &'a Operator,
}

impl Call<'_> {
    pub fn node(&self) -> &node::Node {
        &self.mgmt.node
    }
}

/// The master a master-placed handler runs with; the dispatcher always gives one (or
/// chooses the replica on purpose, which the handler's own read path covers).
pub(crate) fn master<'a>(call: &'a Call<'_>) -> Result<&'a Master, Error> {
    call.master.as_ref().ok_or_else(|| {
        crate::Refused::Unavailable(call.unavailable.clone().unwrap_or_else(|| {
            format!(
                "{} is not the active Central Management master",
                call.node().fqdn
            )
        }))
        .into()
    })
}
