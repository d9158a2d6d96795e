//! Operators and roles, as an administrator gives them and as operators meet them: a
//! view-only operator reads everything and changes nothing (a 403 naming the role a change
//! needs), a server administrator operates servers but not users, every change and refusal
//! is in the audit log with who made it, a removed operator's token stops working, and no
//! token is kept in clear anywhere but the operator's own file.

use crate::lab::Lab;
use crate::{eventually, run, stderr, stdout};

const POOL: &str = "pool1.contoso.com";
const FE: &str = "pool1-fe1.contoso.com";

/// `tandem shell --lab D --operator NAME -c LINE --output json`.
fn as_operator(lab: &Lab, name: &str, line: &str) -> std::process::Output {
    run(&[
        "shell",
        "--lab",
        lab.dir(),
        "--operator",
        name,
        "--output",
        "json",
        "-c",
        line,
    ])
}

fn rows(v: serde_json::Value) -> Vec<serde_json::Value> {
    v.as_array().cloned().unwrap_or_else(|| vec![v])
}

/// Every file under `dir` (but `skip`) that contains `needle`.
pub(crate) fn files_containing(
    dir: &std::path::Path,
    needle: &[u8],
    skip: &std::path::Path,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path != skip
                && std::fs::read(&path)
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn a_view_only_operator_reads_but_changes_nothing_and_the_audit_log_names_who_did_what() {
    let lab = Lab::up();

    // The lab administrator creates two operators; their tokens go to files only they read.
    let created = rows(lab.json(
        None,
        "New-CsAdminOperator -Identity kim -Role CsViewOnlyAdministrator",
    ));
    assert!(
        created[0]["Token"]
            .as_str()
            .unwrap()
            .starts_with("saved to "),
        "{created:?}"
    );
    lab.ok(
        None,
        "New-CsAdminOperator -Identity sam -Role CsServerAdministrator",
    );
    let kim_file = std::path::Path::new(lab.dir()).join("operators/kim.token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kim_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let kim_token = std::fs::read_to_string(&kim_file).unwrap();
    // Only its hash is kept: not in the CMS, the replicas, the logs or the audit log.
    let clear = files_containing(
        std::path::Path::new(lab.dir()),
        kim_token.as_bytes(),
        &kim_file,
    );
    assert!(clear.is_empty(), "kim's token in clear in {clear:?}");
    let listed = rows(lab.json(None, "Get-CsAdminOperator"));
    let names: Vec<&str> = listed
        .iter()
        .map(|r| r["Identity"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["administrator", "kim", "sam"]);
    assert!(listed.iter().all(|r| r.get("Token").is_none()));

    // kim reads, on any server (the call may be forwarded), once the replicas have kim.
    let state = eventually(10, "kim's reads", || {
        let out = as_operator(
            &lab,
            "kim",
            &format!("Get-CsPoolFailoverState -PoolFqdn {POOL}"),
        );
        out.status.success().then(|| stdout(&out))
    });
    assert!(state.contains(POOL), "{state}");
    let out = as_operator(&lab, "kim", "Get-CsManagementStoreReplicationStatus");
    assert!(out.status.success(), "{}", stderr(&out));
    // ...and changes nothing: a 403 that names the role the change needs.
    let out = as_operator(
        &lab,
        "kim",
        &format!("Invoke-CsPoolFailOver -PoolFqdn {POOL} -Force"),
    );
    assert!(!out.status.success());
    let refusal = stderr(&out);
    assert!(
        refusal.contains("needs the role CsAdministrator or CsServerAdministrator")
            && refusal.contains("kim has CsViewOnlyAdministrator"),
        "{refusal}"
    );
    // Exports write a file on the server, with every user's digest hashes: not a reader's.
    let export = std::path::Path::new(lab.dir()).join("kim-export.zip");
    let out = as_operator(
        &lab,
        "kim",
        &format!("Export-CsConfiguration -FileName {}", export.display()),
    );
    assert!(
        !out.status.success() && !export.exists(),
        "{}",
        stdout(&out)
    );
    // An administrator's export is the server account's alone, and -Force replaces only
    // an earlier export — never the audit log, a database or a key.
    lab.ok(
        None,
        &format!("Export-CsConfiguration -FileName {}", export.display()),
    );
    let mode = std::fs::metadata(&export).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    lab.ok(
        None,
        &format!(
            "Export-CsConfiguration -FileName {} -Force",
            export.display()
        ),
    );
    let audit = std::path::Path::new(lab.dir()).join(format!("servers/{FE}/audit.jsonl"));
    let before = std::fs::read(&audit).unwrap();
    let out = lab.shell(
        Some(FE),
        &format!(
            "Export-CsConfiguration -FileName {} -Force -LocalStore",
            audit.display()
        ),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an earlier export"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::read(&audit).unwrap().starts_with(&before));
    let (status, body) = {
        let url = format!("{}/api/v1/invoke", crate::api_attacks::management(&lab, FE));
        let a = crate::api_attacks::call(
            &lab,
            "POST",
            &url,
            &[("authorization", &format!("Bearer {kim_token}"))],
            Some(r#"{"cmdlet":"Stop-CsWindowsService","parameters":{"Name":"RTCSRV"}}"#),
        );
        (a.status, a.error())
    };
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CsServerAdministrator"), "{body}");
    // Naming another operator, as a forwarding server does, gets an operator nowhere: only
    // the deployment's token is believed when it says whose call it forwards.
    let a = crate::api_attacks::call(
        &lab,
        "POST",
        &format!("{}/api/v1/invoke", crate::api_attacks::management(&lab, FE)),
        &[
            ("authorization", &format!("Bearer {kim_token}")),
            ("x-tandem-operator", "administrator;CsAdministrator"),
            ("x-tandem-forwarded-by", "pool1-fe2.contoso.com"),
        ],
        Some(r#"{"cmdlet":"Stop-CsWindowsService","parameters":{"Name":"RTCSRV"}}"#),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    // The servers' own routes are not an operator's.
    let a = crate::api_attacks::call(
        &lab,
        "GET",
        &format!(
            "{}/internal/v1/cms/role",
            crate::api_attacks::management(&lab, FE)
        ),
        &[("authorization", &format!("Bearer {kim_token}"))],
        None,
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(
        lab.json(None, &format!("Get-CsPoolFailoverState -PoolFqdn {POOL}"))["State"],
        "Normal"
    );

    // sam operates servers (a replication, forwarded from pool2 to the master, which checks
    // sam's role again and records the call with where sam came in) but changes no user.
    let out = run(&[
        "shell",
        "--lab",
        lab.dir(),
        "--operator",
        "sam",
        "--server",
        "pool2-fe1.contoso.com",
        "-c",
        "Invoke-CsManagementStoreReplication",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_operator(
        &lab,
        "sam",
        &format!(
            "Enable-CsUser -Identity eve -SipAddress sip:eve@contoso.com -RegistrarPool {POOL}"
        ),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the role CsAdministrator or CsUserAdministrator"),
        "{}",
        stderr(&out)
    );
    // Nor operators.
    let out = as_operator(
        &lab,
        "sam",
        "New-CsAdminOperator -Identity mallory -Role CsAdministrator",
    );
    assert!(
        stderr(&out).contains("needs the role CsAdministrator;"),
        "{}",
        stderr(&out)
    );

    // The audit log, merged from every server, says who did and tried what.
    let log = rows(lab.json(None, "Get-CsAdminAuditLog"));
    let find = |operator: &str, cmdlet: &str| {
        log.iter()
            .find(|r| r["Operator"] == operator && r["Cmdlet"] == cmdlet)
            .unwrap_or_else(|| panic!("no {operator} {cmdlet} in {log:?}"))
            .clone()
    };
    assert!(
        find("kim", "Invoke-CsPoolFailOver")["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("Refused (403)")
    );
    assert_eq!(
        find("sam", "Invoke-CsManagementStoreReplication")["Outcome"],
        "Completed"
    );
    assert!(
        find("sam", "Enable-CsUser")["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("Refused (403)")
    );
    assert_eq!(
        find("administrator", "New-CsAdminOperator")["Outcome"],
        "Completed"
    );
    let kims = rows(lab.json(None, "Get-CsAdminAuditLog -Operator kim"));
    assert!(kims.iter().all(|r| r["Operator"] == "kim"), "{kims:?}");

    // A removed operator's token is refused everywhere once the replicas have it.
    lab.ok(None, "Remove-CsAdminOperator -Identity kim");
    eventually(10, "kim's token refused", || {
        let out = as_operator(&lab, "kim", "Get-CsUser");
        (!out.status.success() && stderr(&out).contains("unknown operator or wrong token"))
            .then_some(())
    });
}
