//! Each file in `tests/fixtures/broken/` is a topology with one mistake. Its first lines,
//! `# expect: <text>`, say what the parse error or validation report must contain.

use std::path::Path;

use topology::{Topology, validate};

/// What an operator would read: the parse error, or every problem of the report.
fn check_output(text: &str) -> String {
    match Topology::from_toml(text) {
        Err(e) => e.to_string(),
        Ok(t) => validate(&t)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn contoso_validates_clean() {
    let report = validate(&topology::contoso());
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

#[test]
fn every_broken_fixture_produces_its_expected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures folder") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture reads");
        let expects: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with("# expect: "))
            .map(|l| l.trim_start_matches("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no # expect: line",
            path.display()
        );
        let output = check_output(&text);
        for expected in expects {
            assert!(
                output.contains(expected),
                "{}:\nexpected to find: {expected}\nin:\n{output}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} fixtures found in {}",
        dir.display()
    );
}

#[test]
fn validation_reports_all_problems_at_once() {
    let mut t = topology::contoso();
    t.edge_pools[1].federation_enabled = true;
    t.front_end_pools[1].backup_pool = None;
    t.deployment.cms_pool = "nowhere.contoso.com".into();
    let report = validate(&t);
    assert_eq!(report.errors().count(), 3, "{:#?}", report.problems);
    assert_eq!(report.summary(), "3 errors, 0 warnings");
    assert!(!report.is_valid());
}

#[test]
fn parse_errors_carry_line_and_column() {
    let err = Topology::from_toml("[deployment]\nsip_domain = 5\n").unwrap_err();
    assert_eq!((err.line, err.column), (Some(2), Some(14)));
    let err = Topology::from_toml("[deployment\n").unwrap_err();
    assert_eq!(err.line, Some(1));
}

#[test]
fn lookups_are_case_insensitive() {
    let t = topology::contoso();
    assert!(t.front_end_pool("POOL1.contoso.com").is_some());
    let s = t.server("EdgeServer1.contoso.com").expect("edge server");
    assert_eq!(s.pool_fqdn, "edgepool1.contoso.com");
    assert_eq!(
        t.federation_edge_pool().map(|e| e.fqdn.as_str()),
        Some("edgepool1.contoso.com")
    );
    assert_eq!(t.servers().count(), 6);
}

/// A witness must be a server outside both store pools; one in a store's site is allowed,
/// with a warning (losing that site loses the witness too).
#[test]
fn a_cms_witness_is_checked_against_the_pools_and_sites_of_the_stores() {
    let messages = |witness: &str| -> Vec<String> {
        let mut t = topology::contoso();
        t.deployment.cms_witness = Some(witness.into());
        validate(&t)
            .problems
            .into_iter()
            .map(|p| p.message)
            .collect()
    };
    assert!(messages("nowhere.contoso.com")[0].contains("is not a server of this topology"));
    assert!(
        messages("pool2-fe1.contoso.com")[0]
            .contains("holds a copy of the Central Management store")
    );
    // An Edge server in a store's site: a warning only.
    let mut t = topology::contoso();
    t.deployment.cms_witness = Some("edgeserver1.contoso.com".into());
    let report = validate(&t);
    assert!(report.is_valid(), "{:#?}", report.problems);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(
        report.problems[0]
            .message
            .contains("beside a copy of the Central Management store")
    );
}
