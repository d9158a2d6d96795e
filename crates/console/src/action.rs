//! What an administrator can start from the console, as the cmdlet call the shell makes.
//!
//! A form on the page names an operation, a pool and its switches; [`Action::from_form`]
//! checks them against the deployment's pools and turns them into the same
//! [`InvokeRequest`] the shell sends, and the page shows the line the shell's binder reads
//! from it (`Invocation::canonical_line`), so an operator can run it there instead. The
//! call then goes through the management API's one dispatcher: the same role checks,
//! refusals and audit log as a call from the shell.

use api::InvokeRequest;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The operations the console starts, each a documented cmdlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `Invoke-CsPoolFailOver -PoolFqdn <pool> [-DisasterMode]`.
    PoolFailOver,
    /// `Invoke-CsPoolFailBack -PoolFqdn <pool>`.
    PoolFailBack,
    /// `Invoke-CsManagementServerFailover [-Force]`.
    CmsFailover,
}

impl Operation {
    /// Every operation, with its form value and what the page calls it.
    pub const ALL: [(Operation, &'static str, &'static str); 3] = [
        (
            Operation::PoolFailOver,
            "pool-failover",
            "Fail a pool over to its backup pool",
        ),
        (
            Operation::PoolFailBack,
            "pool-failback",
            "Fail a pool back to its home",
        ),
        (
            Operation::CmsFailover,
            "cms-failover",
            "Fail the Central Management store over",
        ),
    ];

    fn cmdlet(self) -> &'static str {
        match self {
            Operation::PoolFailOver => "Invoke-CsPoolFailOver",
            Operation::PoolFailBack => "Invoke-CsPoolFailBack",
            Operation::CmsFailover => "Invoke-CsManagementServerFailover",
        }
    }
}

/// The action form as the browser posts it (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub pool: String,
    /// A checked box is posted as `on`; an unchecked one is not posted.
    #[serde(default)]
    pub disaster: Option<String>,
    #[serde(default)]
    pub force: Option<String>,
    /// Which button: `whatif` or `run`.
    #[serde(default)]
    pub submit: String,
    /// The session's token against cross-site requests.
    #[serde(default)]
    pub csrf: String,
}

/// A checked action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub operation: Operation,
    pub pool: Option<String>,
    pub disaster: bool,
    pub force: bool,
    pub what_if: bool,
}

impl Action {
    /// The form's action, if it names an operation, a pool of the deployment where the
    /// operation needs one, and a button; the reason otherwise.
    pub fn from_form(form: &ActionForm, pools: &[String]) -> Result<Action, String> {
        let operation = Operation::ALL
            .iter()
            .find(|(_, value, _)| *value == form.operation)
            .map(|(op, _, _)| *op)
            .ok_or_else(|| "choose an operation".to_string())?;
        let what_if = match form.submit.as_str() {
            "whatif" | "" => true,
            "run" => false,
            _ => return Err("the form was sent by an unknown button".into()),
        };
        let pool = match operation {
            Operation::CmsFailover => None,
            _ => {
                let pool = form.pool.trim();
                if pool.is_empty() {
                    return Err("choose a pool".into());
                }
                let known = pools
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(pool))
                    .ok_or_else(|| {
                        format!(
                            "{} is not a Front End pool of this deployment; Get-CsService -Registrar lists them",
                            pool.chars().take(80).collect::<String>()
                        )
                    })?;
                Some(known.clone())
            }
        };
        let checked = |v: &Option<String>| v.as_deref().is_some_and(|v| v == "on" || v == "true");
        Ok(Action {
            operation,
            pool,
            disaster: operation == Operation::PoolFailOver && checked(&form.disaster),
            force: operation == Operation::CmsFailover && checked(&form.force),
            what_if,
        })
    }

    /// The call, as the shell sends it.
    pub fn request(&self) -> InvokeRequest {
        let mut parameters = Map::new();
        if let Some(pool) = &self.pool {
            parameters.insert("PoolFqdn".into(), Value::String(pool.clone()));
        }
        if self.disaster {
            parameters.insert("DisasterMode".into(), Value::Bool(true));
        }
        if self.force {
            parameters.insert("Force".into(), Value::Bool(true));
        }
        if self.what_if {
            parameters.insert("WhatIf".into(), Value::Bool(true));
        }
        InvokeRequest {
            cmdlet: self.operation.cmdlet().into(),
            parameters,
        }
    }

    /// The line the shell's binder reads from the call: what an operator types to do the
    /// same in `tandem shell`.
    pub fn shell_line(&self) -> String {
        let request = self.request();
        api::bind::bind_one(&request)
            .map(|inv| inv.canonical_line())
            .unwrap_or_else(|e| format!("{} ({})", request.cmdlet, e.body.error))
    }
}

/// How an action started from the console stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    Running,
    Succeeded,
    Failed,
}

impl ActionState {
    pub fn word(self) -> &'static str {
        match self {
            ActionState::Running => "running",
            ActionState::Succeeded => "succeeded",
            ActionState::Failed => "failed",
        }
    }
}

/// An action a session started, and what it returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRecord {
    pub id: u64,
    /// The shell line it ran.
    pub line: String,
    /// When it started (RFC 3339).
    pub started: String,
    pub state: ActionState,
    /// What the cmdlet printed, or the error the shell would print.
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(operation: &str, pool: &str, submit: &str) -> ActionForm {
        ActionForm {
            operation: operation.into(),
            pool: pool.into(),
            submit: submit.into(),
            ..ActionForm::default()
        }
    }

    fn pools() -> Vec<String> {
        vec!["red.example.org".into(), "blue.example.org".into()]
    }

    #[test]
    fn each_action_is_the_line_the_shell_binds_to_the_same_call() {
        let mut f = form("pool-failover", "RED.example.org", "whatif");
        f.disaster = Some("on".into());
        let a = Action::from_form(&f, &pools()).unwrap();
        assert_eq!(
            a.shell_line(),
            "Invoke-CsPoolFailOver -PoolFqdn red.example.org -DisasterMode -WhatIf"
        );
        for a in [
            a,
            Action::from_form(&form("pool-failback", "blue.example.org", "run"), &pools()).unwrap(),
            Action::from_form(&form("cms-failover", "", "whatif"), &pools()).unwrap(),
        ] {
            let line = a.shell_line();
            let bound = cmdlet::parse_and_bind(&line).unwrap();
            assert_eq!(bound.len(), 1, "{line}");
            assert_eq!(bound[0].invocation.canonical_line(), line);
            assert_eq!(
                api::bind::bind_one(&a.request()).unwrap().canonical_line(),
                line
            );
        }
    }

    #[test]
    fn a_switch_that_does_not_belong_to_the_operation_is_not_sent() {
        let mut f = form("pool-failback", "blue.example.org", "run");
        f.disaster = Some("on".into());
        f.force = Some("on".into());
        let a = Action::from_form(&f, &pools()).unwrap();
        assert_eq!(
            a.shell_line(),
            "Invoke-CsPoolFailBack -PoolFqdn blue.example.org"
        );
        let mut f = form("cms-failover", "blue.example.org", "run");
        f.force = Some("on".into());
        let a = Action::from_form(&f, &pools()).unwrap();
        assert_eq!(a.shell_line(), "Invoke-CsManagementServerFailover -Force");
    }

    #[test]
    fn what_is_not_an_action_is_refused_with_the_reason() {
        assert_eq!(
            Action::from_form(&form("drop-tables", "red.example.org", "run"), &pools())
                .unwrap_err(),
            "choose an operation"
        );
        assert_eq!(
            Action::from_form(&form("pool-failover", "", "run"), &pools()).unwrap_err(),
            "choose a pool"
        );
        let e = Action::from_form(&form("pool-failover", "<b>x</b>", "run"), &pools()).unwrap_err();
        assert!(e.starts_with("<b>x</b> is not a Front End pool"), "{e}");
        assert!(
            Action::from_form(&form("pool-failover", "red.example.org", "rm"), &pools()).is_err()
        );
    }

    proptest::proptest! {
        /// Whatever a form holds, the console either refuses it or makes a call the
        /// shell's binder accepts, for a pool of the deployment.
        #[test]
        fn any_form_is_refused_or_binds(operation in "[a-z-]{0,16}|pool-failover|pool-failback|cms-failover",
                                        pool in ".{0,40}|red.example.org",
                                        disaster in proptest::option::of(".{0,4}"),
                                        submit in "whatif|run|.{0,6}") {
            let f = ActionForm { operation, pool, disaster, force: None, submit, csrf: String::new() };
            if let Ok(a) = Action::from_form(&f, &pools()) {
                proptest::prop_assert!(api::bind::bind_one(&a.request()).is_ok());
                if let Some(p) = &a.pool {
                    proptest::prop_assert!(pools().contains(p));
                }
            }
        }
    }
}
