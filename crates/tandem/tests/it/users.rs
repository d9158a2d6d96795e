//! Users against a real lab: sign-in over SIP with digest, user services, the Backup
//! Service between the paired pools, and resiliency mode when the home pool is lost.

use std::time::Duration;

use crate::lab::Lab;
use crate::{eventually, run, stderr, stdout};

const ALICE: &str = "sip:user0001.pool1@contoso.com";
const BOB: &str = "sip:user0002.pool1@contoso.com";
const CAROL: &str = "sip:user0001.pool2@contoso.com";

fn client(lab: &Lab, user: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["client", "--lab", lab.dir(), "--user", user];
    all.extend_from_slice(args);
    run(&all)
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn rows(v: serde_json::Value) -> Vec<serde_json::Value> {
    v.as_array().cloned().unwrap_or_else(|| vec![v])
}

#[test]
fn users_sign_in_keep_their_data_backed_up_and_survive_losing_their_pool() {
    let lab = Lab::up_with(&["--users", "1000"]);
    let users =
        std::fs::read_to_string(std::path::Path::new(lab.dir()).join("users.json")).unwrap();
    let users: serde_json::Value = serde_json::from_str(&users).unwrap();
    assert_eq!(
        users.as_array().unwrap().len(),
        2000,
        "1000 users on each pool"
    );
    let listed = rows(lab.json(None, "Get-CsUser -Identity sip:user0500.pool2@contoso.com"));
    assert_eq!(listed[0]["RegistrarPool"], "pool2.contoso.com");
    assert!(!users.to_string().is_empty());

    // Sign-in: full mode at the home pool; a registrar of the other pool redirects there.
    let out = ok(&client(&lab, ALICE, &["sign-in"]), "sign-in at pool1");
    assert!(
        out.contains("at pool1.contoso.com") && out.contains("in full mode"),
        "{out}"
    );
    let out = ok(
        &client(&lab, ALICE, &["--via", "pool2-fe1.contoso.com", "sign-in"]),
        "sign-in via pool2",
    );
    assert!(
        out.contains("redirected by") && out.contains("to pool1.contoso.com"),
        "{out}"
    );
    assert!(out.contains("at pool1.contoso.com"), "{out}");
    // A wrong password is refused with 403 and changes nothing.
    let out = client(&lab, ALICE, &["--password", "wrong", "sign-in"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    // Stored data: contacts, a meeting, an uploaded file.
    ok(
        &client(&lab, ALICE, &["contacts", "add", BOB, "--group", "Team"]),
        "add contact",
    );
    ok(
        &client(
            &lab,
            ALICE,
            &[
                "meetings",
                "add",
                "weekly",
                "--subject",
                "Weekly",
                "--start",
                "2026-12-01T10:00:00Z",
            ],
        ),
        "add meeting",
    );
    let work = tempfile::tempdir().unwrap();
    let deck = work.path().join("deck.pptx");
    std::fs::write(&deck, b"slides for the weekly meeting").unwrap();
    ok(
        &client(&lab, ALICE, &["upload", "weekly", deck.to_str().unwrap()]),
        "upload",
    );
    // Content goes to a scheduled meeting only: an upload to another is refused, saves
    // nothing, and says how to schedule it.
    let out = client(
        &lab,
        ALICE,
        &["upload", "unscheduled", deck.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no meeting unscheduled; PUT /users/v1/meetings/unscheduled"),
        "{}",
        stderr(&out)
    );
    let contacts = ok(&client(&lab, ALICE, &["contacts"]), "list contacts");
    assert!(contacts.contains(BOB), "{contacts}");

    // The Backup Service reaches its final state within a second and the copies match.
    let status = eventually(10, "FinalState", || {
        let r = rows(lab.json(
            None,
            "Get-CsBackupServiceStatus -PoolFqdn pool1.contoso.com -Category UserData",
        ));
        let out: Vec<_> = r
            .iter()
            .filter(|row| row["SourcePoolFqdn"] == "pool1.contoso.com")
            .cloned()
            .collect();
        out.iter()
            .all(|row| row["ExportStatus"] == "FinalState")
            .then_some(out)
    });
    assert_eq!(status.len(), 2, "{status:?}");
    for row in &status {
        assert_eq!(row["ImportStatus"], "NormalState");
        assert_eq!(row["PendingChanges"], 0);
        let lag: f64 = row["LagSeconds"].as_str().unwrap().parse().unwrap();
        assert!(lag < 1.0, "{row}");
    }
    let debug = rows(lab.json(
        None,
        "Debug-CsInterPoolReplication -PoolFqdn pool1.contoso.com",
    ));
    assert_eq!(debug.len(), 3, "{debug:?}");
    for row in &debug {
        assert_eq!(row["Mismatches"], 0, "{row}");
    }
    // pool2's backup copy holds Alice's data: the checksums above were computed there.
    for row in debug
        .iter()
        .filter(|r| r["BackupModule"] != "CentralMgmt.CMSMaster")
    {
        assert_eq!(
            row["UsersCompared"], 1,
            "Alice's data, in both copies: {row}"
        );
    }

    // Messages between users of both pools.
    let listener = lab.listen(BOB, 1, 20);
    eventually(10, "Bob signed in", || {
        let out = client(&lab, CAROL, &["send", "--to", BOB, "hello Bob"]);
        out.status.success().then_some(())
    });
    let out = listener.wait_with_output().unwrap();
    assert!(
        stdout(&out).contains("message from sip:user0001.pool2@contoso.com: hello Bob"),
        "{}",
        stdout(&out)
    );
    let out = client(
        &lab,
        CAROL,
        &["send", "--to", "sip:user0003.pool1@contoso.com", "anyone?"],
    );
    assert!(
        stderr(&out).contains("480"),
        "not signed in: {}",
        stderr(&out)
    );

    // Lose pool1: after the failure detection interval pool2 serves its users in
    // resiliency mode, without their stored data.
    ok(
        &run(&["lab", "kill", "pool1.contoso.com", "--dir", lab.dir()]),
        "kill pool1",
    );
    let out = eventually(20, "resiliency mode", || {
        let out = client(&lab, ALICE, &["sign-in"]);
        let text = stdout(&out);
        text.contains("in resiliency mode").then_some(text)
    });
    assert!(out.contains("at pool2.contoso.com"), "{out}");
    let out = client(&lab, ALICE, &["contacts"]);
    assert!(stderr(&out).contains("resiliency mode"), "{}", stderr(&out));
    let out = client(&lab, ALICE, &["contacts", "add", CAROL]);
    assert!(
        stderr(&out).contains("403") && stderr(&out).contains("no change can be saved"),
        "{}",
        stderr(&out)
    );
    // Two users of the lost pool can still message each other.
    let listener = lab.listen(BOB, 1, 20);
    eventually(10, "Bob signed in at pool2", || {
        let out = client(&lab, ALICE, &["send", "--to", BOB, "still here"]);
        out.status.success().then_some(())
    });
    let out = listener.wait_with_output().unwrap();
    assert!(
        stdout(&out).contains("in resiliency mode"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("still here"), "{}", stdout(&out));

    // pool1 returns: after the failback detection interval pool2 sends its users home,
    // and nothing written before the loss is lost.
    ok(
        &run(&["lab", "start", "pool1.contoso.com", "--dir", lab.dir()]),
        "start pool1",
    );
    let out = eventually(30, "redirect home", || {
        let out = client(&lab, ALICE, &["--via", "pool2-fe1.contoso.com", "sign-in"]);
        let text = stdout(&out);
        text.contains("redirected by").then_some(text)
    });
    assert!(
        out.contains("at pool1.contoso.com") && out.contains("in full mode"),
        "{out}"
    );
    let contacts = ok(
        &client(&lab, ALICE, &["contacts"]),
        "contacts after failback",
    );
    assert!(contacts.contains(BOB), "{contacts}");
    let copy = work.path().join("copy.pptx");
    ok(
        &client(
            &lab,
            ALICE,
            &[
                "download",
                "weekly",
                "deck.pptx",
                "--out",
                copy.to_str().unwrap(),
            ],
        ),
        "download",
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        b"slides for the weekly meeting"
    );
}

/// The lab's address of a server's registrar.
fn registrar(lab: &Lab, fqdn: &str) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(std::path::Path::new(lab.dir()).join("lab.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fqdn"] == fqdn)
        .unwrap();
    format!("{}:{}", s["address"].as_str().unwrap(), s["sip_port"])
        .parse()
        .unwrap()
}

fn options(n: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKopt{n}\r\n\
         From: <sip:probe@contoso.com>;tag=1\r\nTo: <sip:contoso.com>\r\nCall-ID: opt-{n}\r\n\
         CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends one datagram and returns the answer's status line, if any comes.
fn udp_exchange(
    socket: &std::net::UdpSocket,
    to: std::net::SocketAddr,
    bytes: &[u8],
) -> Option<String> {
    socket.send_to(bytes, to).ok()?;
    let mut buf = vec![0u8; 70_000];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .map(str::to_string)
}

#[test]
fn registrars_answer_bad_sip_with_the_right_codes_and_keep_serving() {
    use std::io::{Read, Write};
    let lab = Lab::up_with(&["--users", "3"]);
    let to = registrar(&lab, "pool1-fe1.contoso.com");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();

    // Every file of the sip crate's fuzz corpus, then a check that the server still answers.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sip/tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip" || e == "bin"))
        .collect();
    files.sort();
    assert!(
        files.len() > 40,
        "the corpus is there: {}",
        corpus.display()
    );
    let mut answered_400 = 0;
    for (n, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        if let Some(status) = udp_exchange(&socket, to, &bytes) {
            assert!(
                status.starts_with("SIP/2.0 "),
                "{}: {status}",
                file.display()
            );
            answered_400 += usize::from(status.starts_with("SIP/2.0 400"));
        }
        let status = udp_exchange(&socket, to, &options(n as u32 + 1))
            .unwrap_or_else(|| panic!("no answer to OPTIONS after {}", file.display()));
        assert!(
            status.starts_with("SIP/2.0 200"),
            "after {}: {status}",
            file.display()
        );
    }
    assert!(
        answered_400 >= 10,
        "malformed but addressable requests get 400: {answered_400}"
    );

    // An oversized request over UDP gets 513.
    let mut big = String::from_utf8(options(900)).unwrap();
    big = big.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: 64990\r\n\r\n{}", "x".repeat(64_990)),
    );
    let status =
        udp_exchange(&socket, to, big.as_bytes()).expect("an answer to an oversized request");
    assert!(status.starts_with("SIP/2.0 513"), "{status}");

    // Over TCP: a request too large to frame gets 513 and the connection closes; another
    // connection is served.
    let mut tcp = std::net::TcpStream::connect(to).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let head = String::from_utf8(options(901))
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 900000");
    tcp.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let read = tcp.read_to_string(&mut answer);
    assert!(
        answer.starts_with("SIP/2.0 513"),
        "answer {answer:?}, read {read:?}"
    );
    let mut tcp = std::net::TcpStream::connect(to).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tcp.write_all(&options(902)).unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));

    // An unknown user is refused as a wrong password is (nothing says who exists);
    // disabled users get 403 once they prove their password; sign-in still works for the
    // others.
    let out = client(
        &lab,
        "sip:nobody@contoso.com",
        &["--password", "x", "sign-in"],
    );
    assert!(
        stderr(&out).contains("403 Forbidden (wrong user name or password)"),
        "{}",
        stderr(&out)
    );
    ok(
        &lab.shell(
            None,
            "Disable-CsUser -Identity sip:user0003.pool1@contoso.com",
        ),
        "Disable-CsUser",
    );
    let out = client(&lab, "sip:user0003.pool1@contoso.com", &["sign-in"]);
    assert!(
        stderr(&out).contains("403") && stderr(&out).contains("disabled"),
        "{}",
        stderr(&out)
    );
    let out = ok(
        &client(&lab, ALICE, &["sign-in", "--expires", "60"]),
        "sign-in",
    );
    assert!(
        out.contains("in full mode") && out.contains("contact <sip:"),
        "{out}"
    );
    // Expires: 0 removes the binding: the next registration shows none.
    let out = ok(
        &client(&lab, ALICE, &["sign-in", "--expires", "0"]),
        "sign-out",
    );
    assert!(!out.contains("contact <sip:"), "{out}");
}

#[test]
fn backup_service_cmdlets_resync_flush_export_import_and_configure() {
    let lab = Lab::up_with(&["--users", "2"]);
    ok(
        &client(&lab, ALICE, &["contacts", "add", BOB, "--group", "Team"]),
        "add contact",
    );
    // Configuration: the documented range is enforced; a valid value is stored everywhere.
    let out = lab.shell(
        None,
        "Set-CsBackupServiceConfiguration -Identity global -SyncInterval 00:00:02",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("00:00:05"), "{}", stderr(&out));
    ok(
        &lab.shell(
            None,
            "Set-CsBackupServiceConfiguration -Identity global -SyncInterval 00:01:00",
        ),
        "set sync interval",
    );
    // Stored everywhere: another pool's server has it once its replica caught up.
    crate::eventually(15, "the new sync interval on pool2-fe2", || {
        let config = rows(lab.json(
            Some("pool2-fe2.contoso.com"),
            "Get-CsBackupServiceConfiguration",
        ));
        (config[0]["SyncInterval"] == "00:01:00").then_some(())
    });

    // A full flush waits for the backup copy; a resync converges it and nothing differs.
    let out = ok(
        &lab.shell(
            None,
            "Invoke-CsStorageServiceFlush -PoolFqdn pool1.contoso.com -FlushType FullFlush",
        ),
        "flush",
    );
    assert!(out.contains("0 changes are still waiting"), "{out}");
    ok(
        &lab.shell(
            Some("pool2-fe1.contoso.com"),
            "Invoke-CsBackupServiceSync -PoolFqdn pool1.contoso.com -BackupModule PresenceFocus",
        ),
        "resync (forwarded to pool1)",
    );
    let debug = rows(lab.json(
        None,
        "Debug-CsInterPoolReplication -PoolFqdn pool1.contoso.com -BackupModule UserServices.PresenceFocus",
    ));
    assert_eq!(debug.len(), 1);
    assert_eq!(debug[0]["Mismatches"], 0, "{:?}", debug[0]);
    assert_eq!(debug[0]["UsersCompared"], 1);

    // Export, lose the data, import it back: the contact returns and is backed up again.
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("pool1-users.zip");
    ok(
        &lab.shell(
            None,
            &format!(
                "Export-CsUserData -PoolFqdn pool1.contoso.com -FileName {}",
                zip.display()
            ),
        ),
        "export",
    );
    ok(
        &client(&lab, ALICE, &["contacts", "remove", BOB]),
        "remove contact",
    );
    assert!(!ok(&client(&lab, ALICE, &["contacts"]), "contacts").contains(BOB));
    let out = lab.shell(
        None,
        &format!(
            "Import-CsUserData -PoolFqdn pool2.contoso.com -FileName {}",
            zip.display()
        ),
    );
    assert!(
        !out.status.success(),
        "pool1's users cannot be imported into pool2"
    );
    assert!(
        stderr(&out).contains("homed on pool1.contoso.com"),
        "{}",
        stderr(&out)
    );
    ok(
        &lab.shell(
            None,
            &format!(
                "Import-CsUserData -PoolFqdn pool1.contoso.com -FileName {}",
                zip.display()
            ),
        ),
        "import",
    );
    assert!(ok(&client(&lab, ALICE, &["contacts"]), "contacts").contains(BOB));
    let status = eventually(10, "FinalState after import", || {
        let r = rows(lab.json(
            None,
            "Get-CsBackupServiceStatus -PoolFqdn pool1.contoso.com -BackupModule PresenceFocus",
        ));
        r.iter()
            .all(|row| row["ExportStatus"] == "FinalState")
            .then_some(r)
    });
    assert_eq!(status.len(), 2, "both directions: {status:?}");
    let debug = rows(lab.json(
        None,
        "Debug-CsInterPoolReplication -PoolFqdn pool1.contoso.com -BackupModule PresenceFocus",
    ));
    assert_eq!(debug[0]["Mismatches"], 0, "{:?}", debug[0]);
    // A file that is not an export is refused.
    let bogus = work.path().join("bogus.zip");
    std::fs::write(&bogus, b"not a zip").unwrap();
    let out = lab.shell(
        None,
        &format!(
            "Import-CsUserData -PoolFqdn pool1.contoso.com -FileName {}",
            bogus.display()
        ),
    );
    assert!(
        stderr(&out).contains("not a file written by Export-CsUserData"),
        "{}",
        stderr(&out)
    );
}
