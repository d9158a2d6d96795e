//! Every command line of the seed documents parses and binds (fixtures/seed_lines.ps1),
//! and binds to what the procedure means.

use cmdlet::{BoundValue, parse_and_bind, parse_script};

const SEED_LINES: &str = include_str!("../fixtures/seed_lines.ps1");

/// (source comment, command line) pairs from the fixture.
fn seed_lines() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut source = "";
    for line in SEED_LINES.lines() {
        if let Some(s) = line.strip_prefix("# seed ") {
            source = s;
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push((source, line));
        }
    }
    out
}

#[test]
fn the_fixture_holds_every_seed_command_line() {
    let lines = seed_lines();
    assert_eq!(lines.len(), 41, "seed command lines in the fixture");
    for (source, line) in &lines {
        assert!(!source.is_empty(), "{line} has no source comment");
        assert!(!line.contains('<'), "{source}: placeholder left in {line}");
    }
}

#[test]
fn every_seed_line_parses_and_binds() {
    for (source, line) in seed_lines() {
        if let Err(errors) = parse_and_bind(line) {
            panic!("seed {source}: {line}\n{errors:#?}");
        }
    }
}

#[test]
fn the_whole_fixture_binds_as_one_runbook() {
    let bound = parse_and_bind(SEED_LINES).expect("binds");
    assert_eq!(bound.len(), 41);
    // Statement lines point back into the file.
    assert_eq!(bound[0].line, 6);
}

fn bind_one(line: &str) -> cmdlet::Invocation {
    parse_and_bind(line).expect("binds").remove(0).invocation
}

#[test]
fn seed_lines_mean_what_the_procedures_say() {
    let inv = bind_one("Invoke-CsPoolFailover -PoolFQDN pool1.contoso.com -DisasterMode -Verbose");
    assert_eq!(inv.cmdlet.name, "Invoke-CsPoolFailOver");
    assert_eq!(inv.text("PoolFqdn").as_deref(), Some("pool1.contoso.com"));
    assert!(inv.switch("DisasterMode") && inv.switch("Verbose"));

    let inv = bind_one(
        "Invoke-CSManagementServerFailover -BackupSQLServerFqdn pool2-be.contoso.com -BackupSQLInstanceName rtc",
    );
    assert_eq!(inv.cmdlet.name, "Invoke-CsManagementServerFailover");
    assert_eq!(
        inv.text("BackupSqlServerFqdn").as_deref(),
        Some("pool2-be.contoso.com")
    );
    assert_eq!(inv.text("BackupSqlInstanceName").as_deref(), Some("rtc"));

    let inv = bind_one(
        "Invoke-CSManagementServerFailover -MirrorSQLServerFqdn pool2-be-mirror.contoso.com -MirrorSQLInstanceName rtc",
    );
    assert_eq!(
        inv.text("BackupMirrorSqlServerFqdn").as_deref(),
        Some("pool2-be-mirror.contoso.com")
    );
    assert_eq!(
        inv.text("BackupMirrorSqlInstanceName").as_deref(),
        Some("rtc")
    );

    let inv = bind_one(
        "Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com",
    );
    assert_eq!(
        inv.get("Identity"),
        Some(&BoundValue::Identity {
            prefix: "EdgeServer".into(),
            fqdn: "edgepool1.contoso.com".into()
        })
    );
    assert_eq!(
        inv.text("Registrar").as_deref(),
        Some("Registrar:pool2.contoso.com")
    );

    let inv =
        bind_one("Get-CsDatabaseMirrorState -DatabaseType Centralmgmt -PoolFqdn pool2.contoso.com");
    assert_eq!(inv.text("DatabaseType").as_deref(), Some("CentralMgmt"));

    let inv = bind_one(
        r"Move-CsManagementServer -ConfigurationFileName c:\CsConfigurationFile.zip -LisConfigurationFileName c:\CsLisConfigurationFile.zip -Force",
    );
    assert_eq!(
        inv.text("ConfigurationFileName").as_deref(),
        Some(r"c:\CsConfigurationFile.zip")
    );
    assert!(inv.switch("Force"));

    let inv = bind_one("Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus");
    assert!(inv.switch("CentralManagementStoreStatus"));

    let inv = bind_one("Bootstrapper /Setup");
    assert!(inv.switch("Setup"));
}

#[test]
fn placeholders_copied_from_the_seeds_are_caught() {
    let err = parse_script("Get-CsPoolBackupRelationship -PoolFQDN <CMS_Pool FQDN>").unwrap_err();
    assert!(err.message.contains("<CMS_Pool FQDN>"));
}
