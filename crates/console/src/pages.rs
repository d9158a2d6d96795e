//! The console's pages and the fragments the live updates replace, as askama templates
//! (`templates/`): the whole page once, then each section alone, sent again whenever what
//! it shows changes. Everything the templates print is escaped by askama but the SVG
//! drawn here, which escapes its own text.

use askama::Template;

use crate::action::{ActionRecord, Operation};
use crate::view::{CmsView, EdgePoolView, OperationView, PairView, PoolView, Snapshot};

/// The sign-in page.
#[derive(Debug, Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub served_by: &'a str,
    pub error: Option<&'a str>,
}

/// The console.
#[derive(Debug, Template)]
#[template(path = "console.html")]
pub struct ConsolePage<'a> {
    pub snapshot: &'a Snapshot,
    pub operator: &'a str,
    pub roles: &'a str,
    pub csrf: &'a str,
    pub map: String,
    pub pools: String,
    pub backup: String,
    pub cms: String,
    pub operations: String,
    pub actions: String,
    pub operations_offered: Vec<(&'static str, &'static str)>,
    pub pool_names: Vec<&'a str>,
    pub first_line: String,
}

#[derive(Template)]
#[template(path = "pools.html")]
struct PoolsFragment<'a> {
    pools: Vec<&'a PoolView>,
    edges: Vec<&'a EdgePoolView>,
}

impl PoolsFragment<'_> {
    fn up_count(&self, pool: &PoolView) -> usize {
        pool.servers.iter().filter(|s| s.up).count()
    }
}

#[derive(Template)]
#[template(path = "backup.html")]
struct BackupFragment<'a> {
    pairs: &'a [PairView],
}

impl BackupFragment<'_> {
    fn chart(&self, pair: &PairView) -> String {
        crate::chart::svg(
            &pair.history,
            &match pair.history.last() {
                Some(s) => format!(
                    "Backup lag of {} and {} over the last five minutes; now {:.3} s lag and {:.3} s estimated RPO",
                    pair.pools.0, pair.pools.1, s.lag_secs, s.rpo_secs
                ),
                None => format!(
                    "Backup lag of {} and {}: no figures yet",
                    pair.pools.0, pair.pools.1
                ),
            },
        )
    }
}

#[derive(Template)]
#[template(path = "cms.html")]
struct CmsFragment<'a> {
    cms: &'a CmsView,
}

#[derive(Template)]
#[template(path = "operations.html")]
struct OperationsFragment<'a> {
    operations: &'a [OperationView],
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "actions.html")]
struct ActionsFragment<'a> {
    actions: &'a [ActionRecord],
}

/// What the page shows after an action's form was sent.
#[derive(Debug, Template)]
#[template(path = "action_result.html")]
pub struct ActionResult<'a> {
    pub line: &'a str,
    pub state: &'a str,
    pub output: &'a str,
}

/// The sections the live updates replace, each by the name of its event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragments {
    pub at: String,
    pub map: String,
    pub pools: String,
    pub backup: String,
    pub cms: String,
    pub operations: String,
}

impl Fragments {
    /// Every section of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Fragments {
        // Newest operations first, the last ten.
        let operations: Vec<OperationView> =
            snapshot.operations.iter().rev().take(10).cloned().collect();
        Fragments {
            at: askama::filters::escape(&snapshot.at, askama::filters::Html)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            map: crate::map::svg(snapshot),
            pools: render(&PoolsFragment {
                pools: snapshot.pools().collect(),
                edges: snapshot.edge_pools().collect(),
            }),
            backup: render(&BackupFragment {
                pairs: &snapshot.pairs,
            }),
            cms: render(&CmsFragment { cms: &snapshot.cms }),
            operations: render(&OperationsFragment {
                operations: &operations,
                error: snapshot.operations_error.as_deref(),
            }),
        }
    }

    /// The sections as (event name, HTML) pairs.
    pub fn events(&self) -> [(&'static str, &str); 6] {
        [
            ("at", &self.at),
            ("map", &self.map),
            ("pools", &self.pools),
            ("backup", &self.backup),
            ("cms", &self.cms),
            ("operations", &self.operations),
        ]
    }
}

/// A session's actions, newest first.
pub fn actions(actions: &[ActionRecord]) -> String {
    let newest_first: Vec<ActionRecord> = actions.iter().rev().cloned().collect();
    render(&ActionsFragment {
        actions: &newest_first,
    })
}

/// The whole console for `snapshot`.
pub fn console(
    snapshot: &Snapshot,
    fragments: &Fragments,
    operator: &str,
    roles: &str,
    csrf: &str,
    session_actions: &[ActionRecord],
) -> String {
    let pool_names: Vec<&str> = snapshot.pools().map(|p| p.fqdn.as_str()).collect();
    let first_line = pool_names
        .first()
        .map(|p| {
            crate::action::Action {
                operation: Operation::PoolFailOver,
                pool: Some((*p).to_string()),
                disaster: false,
                force: false,
                what_if: true,
            }
            .shell_line()
        })
        .unwrap_or_default();
    render(&ConsolePage {
        snapshot,
        operator,
        roles,
        csrf,
        map: fragments.map.clone(),
        pools: fragments.pools.clone(),
        backup: fragments.backup.clone(),
        cms: fragments.cms.clone(),
        operations: fragments.operations.clone(),
        actions: actions(session_actions),
        operations_offered: Operation::ALL.iter().map(|(_, v, t)| (*v, *t)).collect(),
        pool_names,
        first_line,
    })
}

/// The sign-in page, with why the last attempt failed.
pub fn login(served_by: &str, error: Option<&str>) -> String {
    render(&LoginPage { served_by, error })
}

/// A template's text. Rendering writes into a `String` and the templates call nothing that
/// fails, so an error here is a bug in a template: shown, not hidden.
pub fn render<T: Template>(template: &T) -> String {
    template
        .render()
        .unwrap_or_else(|e| format!("<p class=\"error\">the page could not be drawn: {e}</p>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionState;

    #[test]
    fn the_console_has_every_section_a_heading_and_the_live_connection() {
        let snapshot = crate::map::tests::two_sites(false);
        let fragments = Fragments::of(&snapshot);
        let page = console(&snapshot, &fragments, "kim", "CsAdministrator", "c5rf", &[]);
        for id in ["map", "pools", "backup", "cms", "operations", "actions"] {
            assert!(page.contains(&format!(r#"id="{id}""#)), "{id}");
        }
        assert!(page.contains(r#"sse-connect="/console/events""#));
        assert!(page.contains(r#"<html lang="en">"#));
        assert!(page.contains(r#"name="csrf" value="c5rf""#));
        assert!(page.contains("Invoke-CsPoolFailOver -PoolFqdn alpha.example.org -WhatIf"));
        assert!(page.contains(r#"<option value="beta.example.org">"#));
    }

    #[test]
    fn what_an_operator_typed_or_a_server_said_is_escaped() {
        let mut snapshot = crate::map::tests::two_sites(false);
        snapshot.operations_error = Some("<img src=x onerror=alert(1)>".into());
        let f = Fragments::of(&snapshot);
        assert!(!f.operations.contains("<img"), "{}", f.operations);
        let a = actions(&[ActionRecord {
            id: 1,
            line: "Invoke-CsPoolFailOver -PoolFqdn '<x>'".into(),
            started: "now".into(),
            state: ActionState::Failed,
            output: "<script>".into(),
        }]);
        assert!(!a.contains("<script>") && !a.contains("'<x>'"), "{a}");
        assert!(a.contains(r#"data-action-state="failed""#));
        let login = login("fe1", Some("<b>"));
        assert!(
            login.contains("&#60;b&#62;") || login.contains("&lt;b&gt;"),
            "{login}"
        );
    }
}
