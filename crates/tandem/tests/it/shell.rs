//! `tandem shell`: -c, --file, --check and output formats.

use crate::{run, stderr, stdout, tandem};

fn shell_c(line: &str) -> std::process::Output {
    run(&["shell", "-c", line])
}

fn runbook(text: &str) -> tempfile_lite::TempFile {
    tempfile_lite::TempFile::with_text(text)
}

/// A temporary file removed on drop; enough for runbooks, without another dependency.
mod tempfile_lite {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(crate) struct TempFile(pub(crate) PathBuf);

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    impl TempFile {
        pub(crate) fn with_text(text: &str) -> Self {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("tandem-test-{}-{n}.ps1", std::process::id()));
            std::fs::write(&path, text).expect("temp file writes");
            TempFile(path)
        }

        pub(crate) fn path(&self) -> &str {
            self.0.to_str().expect("utf-8 temp path")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn get_help_lists_all_eleven_reference_parameters() {
    let out = shell_c("Get-Help Invoke-CsPoolFailOver");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for p in [
        "-PoolFqdn",
        "-Confirm",
        "-DisasterMode",
        "-FlushStorageService",
        "-Force",
        "-WaitTime",
        "-WhatIf",
        "-DatabaseCommandTimeoutInSeconds",
        "-ServicesStopDelayMins",
        "-SkipDataVerification",
        "<CommonParameters>",
    ] {
        assert!(
            text.contains(&format!("\n    {p}")),
            "{p} is not listed:\n{text}"
        );
    }
}

#[test]
fn a_misspelt_parameter_gets_a_suggestion_and_exit_2() {
    let out = shell_c("Invoke-CsPoolFailOver -PoolFdqn pool1.contoso.com");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("has no parameter -PoolFdqn"), "{err}");
    assert!(err.contains("did you mean -PoolFqdn?"), "{err}");
}

#[test]
fn a_cmdlet_without_a_deployment_names_the_command_that_starts_one() {
    let out = shell_c("Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -DisasterMode");
    assert!(stdout(&out).is_empty());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("needs a running deployment: start one with `tandem lab up`"),
        "{err}"
    );
    assert!(
        err.contains("-PoolFqdn pool1.contoso.com -DisasterMode"),
        "{err}"
    );
}

#[test]
fn placeholders_are_usage_errors() {
    let out = shell_c("Invoke-CsPoolFailover -PoolFQDN <Pool1 FQDN> -DisasterMode -Verbose");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("placeholder"));
}

#[test]
fn output_formats() {
    let out = shell_c("Get-Command Get-CsUser | ConvertTo-Json -Compress");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["Name"], "Get-CsUser");

    let out = run(&["shell", "--output", "json", "-c", "Get-Command Get-CsUser"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["CommandType"], "Cmdlet");

    let out = shell_c("Get-Command Get-Cs*User | Format-Table Name");
    assert!(
        stdout(&out).contains("\nName\n----\nGet-CsUser\n"),
        "{}",
        stdout(&out)
    );

    let out = shell_c("Get-Command Get-CsUser");
    assert!(
        stdout(&out).contains("\nCommandType : Cmdlet\nName        : Get-CsUser\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn test_cstopology_runs_in_the_shell() {
    let out = shell_c("Test-CsTopology -FileName examples/contoso.toml");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid (0 errors, 0 warnings)"));

    let out = shell_c(
        "Test-CsTopology crates/topology/tests/fixtures/broken/next_hop_unknown.toml | Format-Table",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("next_hop 'pool9.contoso.com' is not a Front End pool"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("is not a valid topology (1 error, 0 warnings)"));
}

#[test]
fn check_binds_every_seed_line_without_running_anything() {
    let out = run(&[
        "shell",
        "--check",
        "crates/cmdlet/tests/fixtures/seed_lines.ps1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("41 statements parse and bind; nothing was run"),
        "{text}"
    );
    assert!(text.contains("Invoke-CsManagementServerFailover -BackupMirrorSqlServerFqdn pool2-be-mirror.contoso.com"), "{text}");
}

#[test]
fn check_reports_every_binding_error_at_once() {
    let file = runbook(
        "Get-Help Get-CsUser\nInvoke-CsPoolFailOver -PoolFdqn x.contoso.com\nSet-CsSite Site1 -XmppFederationRoute\nGet-CsUsr\n",
    );
    let out = run(&["shell", "--check", file.path()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("did you mean -PoolFqdn?"), "{err}");
    assert!(err.contains("-XmppFederationRoute needs a value"), "{err}");
    assert!(err.contains("did you mean Get-CsUser?"), "{err}");
    assert!(err.contains("3 problems; nothing was run"), "{err}");
}

#[test]
fn a_runbook_stops_at_the_first_failing_line_and_names_it() {
    let file = runbook(
        "# fail over pool1\nGet-Help Get-CsUser -Examples\nInvoke-CsPoolFailOver -PoolFqdn pool1.contoso.com `\n   -DisasterMode\nGet-Command Get-CsUser\n",
    );
    let out = run(&["shell", "--file", file.path()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3: Invoke-CsPoolFailOver failed", file.path())),
        "{err}"
    );
    assert!(err.contains("stopped at line 3"), "{err}");
    let text = stdout(&out);
    assert!(text.contains("Get-CsUser"), "line 2 ran: {text}");
    assert!(!text.contains("CommandType"), "line 5 must not run: {text}");
}

#[test]
fn error_action_continue_goes_on() {
    let file = runbook(
        "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -ErrorAction Continue\nGet-Command Get-CsUser\n",
    );
    let out = run(&["shell", "--file", file.path()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed line still fails the runbook"
    );
    assert!(stdout(&out).contains("CommandType"), "{}", stdout(&out));
}

#[test]
fn a_runbook_with_a_syntax_error_runs_nothing() {
    let file = runbook("Get-Command Get-CsUser\nGet-CsUser -Identity 'alice\n");
    let out = run(&["shell", "--file", file.path()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("missing its closing single quote"));
}

#[test]
fn a_missing_runbook_is_named() {
    let out = run(&["shell", "--file", "no/such.ps1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read runbook no/such.ps1"));
}

#[test]
fn the_prompt_reads_lines_from_standard_input() {
    let out = tandem()
        .args(["shell"])
        .env("HOME", std::env::temp_dir())
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join(format!("tandem-hist-{}", std::process::id())),
        )
        .write_stdin("Get-Command Get-CsUser | Format-Table Name\nGet-CsUsr\nexit\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Get-CsUser"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("did you mean Get-CsUser?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_cstopology_honours_the_output_format() {
    let out = run(&[
        "shell",
        "--output",
        "json",
        "-c",
        "Test-CsTopology examples/contoso.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["Message"], "valid (0 errors, 0 warnings)");
}

/// The documents' `c:\CsConfigurationFile.zip` is a file under the lab's `drives/c/`, the
/// shell says so once, and a successful export is its outcome, not a warning.
#[test]
fn a_windows_path_is_a_file_under_the_lab_and_the_shell_says_where() {
    let lab = crate::lab::Lab::up();
    let out = lab.shell(
        None,
        "Export-CsConfiguration -FileName c:\\CsConfigurationFile.zip",
    );
    let (said, printed) = (stderr(&out), stdout(&out));
    assert!(out.status.success(), "{printed}{said}");
    let file = std::path::Path::new(lab.dir()).join("drives/c/CsConfigurationFile.zip");
    assert!(file.is_file(), "{} is not there: {said}", file.display());
    assert!(
        said.contains(&format!(
            "c:\\CsConfigurationFile.zip is {} on this machine",
            file.display()
        )),
        "{said}"
    );
    assert!(!said.contains("WARNING"), "{said}");
    assert!(printed.contains("exported version"), "{printed}");
}

#[test]
fn a_hint_names_the_labs_own_pools_not_the_documentations() {
    let lab = crate::lab::Lab::up_topology(&crate::lab::fabrikam(), &[], &[]);
    let out = lab.shell(
        None,
        "Set-CsEdgeServer -Identity EdgeServer:edge-red.fabrikam.net -Registrar fe-dub",
    );
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("such as fe-dub.fabrikam.net"), "{text}");
    assert!(
        text.contains("for example: -Registrar Registrar:fe-red.fabrikam.net"),
        "{text}"
    );
    assert!(!text.contains("contoso"), "{text}");
}

#[test]
fn bash_completes_tandem_and_the_manual_has_a_page_for_every_command() {
    let script = stdout(&run(&["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tandem.bash");
    std::fs::write(&file, &script).unwrap();
    // Bash itself, as a user's shell would: `tandem la<Tab>` and `tandem lab <Tab>`.
    let complete = |words: &str, cword: usize| {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _tandem tandem \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
                file.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(complete("tandem la", 1).trim(), "lab");
    let lab = complete("tandem lab ''", 2);
    for sub in ["up", "status", "kill", "logs", "down"] {
        assert!(lab.split_whitespace().any(|w| w == sub), "{sub}: {lab}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let page = stdout(&run(&["man"]));
    assert!(page.contains(".TH tandem 1"), "{page}");
    let pages = dir.path().join("man");
    let out = run(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "tandem.1",
        "tandem-lab-up.1",
        "tandem-shell.1",
        "tandem-bench-signin.1",
    ] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
}

/// The federation partners' cmdlets on a running lab: SIP allowed domains and XMPP
/// partners added, listed, changed and removed through the CMS, the refusals naming what
/// to run instead.
#[test]
fn federation_partners_are_added_listed_changed_and_removed() {
    let lab = crate::lab::Lab::up();
    let rows = |line: &str| {
        let v = lab.json(None, line);
        v.as_array().cloned().unwrap_or_else(|| vec![v])
    };

    // SIP federation partners (contoso's topology has fabrikam.com).
    lab.ok(None, "New-CsAllowedDomain -Identity Northwind.Example");
    let domains: Vec<String> = rows("Get-CsAllowedDomain")
        .iter()
        .map(|r| r["Identity"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(domains, ["fabrikam.com", "northwind.example"]);
    let one = lab.record(None, "Get-CsAllowedDomain -Identity NORTHWIND.example");
    assert_eq!(one["Domain"], "northwind.example", "{one}");
    lab.refused(
        None,
        "New-CsAllowedDomain -Identity northwind.example.",
        "already a SIP federation partner",
    );
    lab.refused(
        None,
        "New-CsAllowedDomain -Identity tailspin.example -ProxyFqdn sip.tailspin.example",
        "_sipfederationtls._tcp",
    );
    lab.refused(
        None,
        "New-CsAllowedDomain -Identity contoso.com",
        "own SIP domain",
    );
    lab.ok(None, "Remove-CsAllowedDomain -Identity northwind.example");
    lab.refused(
        None,
        "Remove-CsAllowedDomain -Identity northwind.example",
        "New-CsAllowedDomain -Identity northwind.example",
    );
    assert_eq!(rows("Get-CsAllowedDomain").len(), 1);

    // XMPP partners.
    lab.ok(
        None,
        "New-CsXmppAllowedPartner -Identity jabber.example -TlsNegotiation Required",
    );
    let p = lab.record(None, "Get-CsXmppAllowedPartner -Identity jabber.example");
    assert_eq!(p["Identity"], "jabber.example", "{p}");
    assert_eq!(p["TlsNegotiation"], "Required", "{p}");
    assert_eq!(p["SaslNegotiation"], "Optional", "{p}");
    assert_eq!(p["SupportDialbackNegotiation"], true, "{p}");
    lab.refused(
        None,
        "New-CsXmppAllowedPartner -Identity JABBER.example",
        "Set-CsXmppAllowedPartner -Identity jabber.example",
    );
    lab.refused(
        None,
        "New-CsXmppAllowedPartner -Identity fabrikam.com",
        "both an allowed SIP federation domain and an XMPP partner",
    );
    lab.ok(
        None,
        "Set-CsXmppAllowedPartner -Identity jabber.example -SaslNegotiation Required -SupportDialbackNegotiation $false -ProxyFqdn xmpp.jabber.example",
    );
    // SASL without TLS: refused, on a change and on a new partner, and nothing changed.
    lab.refused(
        None,
        "Set-CsXmppAllowedPartner -Identity jabber.example -TlsNegotiation NotSupported",
        "SASL needs TLS",
    );
    lab.refused(
        None,
        "New-CsXmppAllowedPartner -Identity chat.example -TlsNegotiation NotSupported -SaslNegotiation Required",
        "SASL needs TLS",
    );
    lab.refused(
        None,
        "Set-CsXmppAllowedPartner -Identity chat.example -TlsNegotiation Optional",
        "Get-CsXmppAllowedPartner",
    );
    let p = lab.record(None, "Get-CsXmppAllowedPartner jabber.example");
    assert_eq!(p["TlsNegotiation"], "Required", "{p}");
    assert_eq!(p["SaslNegotiation"], "Required", "{p}");
    assert_eq!(p["SupportDialbackNegotiation"], false, "{p}");
    assert_eq!(p["ProxyFqdn"], "xmpp.jabber.example", "{p}");
    // The topology's own partners, and this one.
    assert_eq!(
        rows("Get-CsXmppAllowedPartner").len(),
        topology::contoso().deployment.xmpp_partners.len() + 1
    );
    // Replicated: another pool's server has it in its own replica.
    lab.wait_all_up_to_date(None);
    let there = lab.record(
        Some("pool2-fe1.contoso.com"),
        "Get-CsXmppAllowedPartner -Identity jabber.example -LocalStore",
    );
    assert_eq!(there["SaslNegotiation"], "Required", "{there}");

    lab.ok(None, "Remove-CsXmppAllowedPartner -Identity jabber.example");
    lab.refused(
        None,
        "Get-CsXmppAllowedPartner -Identity jabber.example",
        "is not an XMPP partner",
    );
    lab.refused(
        None,
        "Remove-CsXmppAllowedPartner -Identity jabber.example",
        "New-CsXmppAllowedPartner -Identity jabber.example",
    );
}
