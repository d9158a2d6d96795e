//! `tandem topology check`.

use crate::{run, stderr, stdout};

#[test]
fn contoso_checks_clean() {
    let out = run(&["topology", "check", "examples/contoso.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid (0 errors, 0 warnings)"));
}

#[test]
fn a_broken_topology_fails_with_every_problem_named() {
    let out = run(&[
        "topology",
        "check",
        "crates/topology/tests/fixtures/broken/lync2010_paired.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "error: front_end_pool pool1.contoso.com: LyncServer2010 pools cannot be paired"
        ),
        "{text}"
    );
    assert!(
        text.contains("warning: front_end_pool pool1.contoso.com: paired with pool2.contoso.com"),
        "{text}"
    );
    assert!(text.contains("invalid (1 error, 1 warning)"), "{text}");
}

#[test]
fn an_unparsable_topology_names_line_and_column() {
    let out = run(&[
        "topology",
        "check",
        "crates/topology/tests/fixtures/broken/unknown_key.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown_key.toml:105:1: unknown field `federaton_enabled`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn json_report() {
    let out = run(&[
        "topology",
        "check",
        "--json",
        "crates/topology/tests/fixtures/broken/two_federation_edges.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["severity"], "Error");
    assert_eq!(report["problems"][0]["element"], "edge pools");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let out = run(&["topology", "check", "no/such.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read no/such.toml"));
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["topology", "chek"]);
    assert_eq!(out.status.code(), Some(2));
}
