//! A real lab: every server a process on its own loopback address, driven through
//! `tandem lab` and `tandem shell --lab`, as an operator would.

use std::path::PathBuf;

use crate::cms::cms_status;
use crate::{run, stderr, stdout};

/// A running lab on a loopback block of its own, stopped when dropped.
pub(crate) struct Lab {
    _dir: tempfile::TempDir,
    path: PathBuf,
    token: String,
    /// The lock on the lab's loopback block, let go after the lab is down (fields drop
    /// after `Drop::drop`).
    _block: std::fs::File,
}

/// A topology moved to 127.B.x.y, with B chosen so that nothing listens there, and a lock
/// on B: tests run in many processes at once, and two that found the same block free
/// before either lab listened there would both take it.
fn topology_on_free_block(base: &topology::Topology) -> (String, std::fs::File) {
    let locks = std::env::temp_dir().join("tandem-test-blocks");
    std::fs::create_dir_all(&locks).unwrap();
    let seed = std::process::id() as usize
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as usize);
    for k in 0..150 {
        let block = 100 + ((seed + k * 13) % 150) as u8;
        let mut t = base.clone();
        t.move_to_loopback_block(block);
        // The lab's DNS server listens on 127.B.0.153 (port 53 and the management port).
        let dns = std::net::Ipv4Addr::new(127, block, 0, 153);
        // A --hosts lab of this block (its namespaces) would clash too.
        let hosts = std::path::Path::new("/run/netns").join(format!("tdm{block}-core"));
        let free = !hosts.exists()
            && t.servers()
                .all(|s| std::net::TcpListener::bind((s.server.address, 4444)).is_ok())
            && std::net::TcpListener::bind((dns, 4444)).is_ok()
            && std::net::UdpSocket::bind((dns, 53)).is_ok();
        if !free {
            continue;
        }
        let lock = std::fs::File::create(locks.join(format!("block-{block}.lock"))).unwrap();
        if lock.try_lock().is_err() {
            continue;
        }
        return (t.to_toml(), lock);
    }
    panic!("no free loopback block");
}

/// A certificate for `names` from a CA nobody trusts, installed in a folder of its own.
pub(crate) fn from_another_ca(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ca = pki::Authority::create("Mallory CA", now).unwrap();
    let issued = ca
        .issue(&pki::Request {
            names: names.iter().map(|n| n.to_string()).collect(),
            addresses: vec![],
            validity_days: 30,
            now,
        })
        .unwrap();
    pki::Installed::install(dir.path(), ca.cert_pem(), &issued).unwrap();
    dir
}

/// The second deployment of `examples/fabrikam.toml`: other names and sites, three Front
/// Ends a pool, an unpaired Lync Server 2010 pool.
pub(crate) fn fabrikam() -> topology::Topology {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fabrikam.toml"
    ))
    .unwrap();
    topology::Topology::from_toml(&text).unwrap()
}

/// Whether the labs of this run keep their Back Ends in PostgreSQL.
pub(crate) fn on_postgres() -> bool {
    std::env::var("TANDEM_TEST_LAB_BACKEND").as_deref() == Ok("postgres")
}

impl Lab {
    /// The lab's block ("127.B.", or "10.B." on hosts): the addresses the runbooks name
    /// as 127.0.x.y are 127.B.x.y (10.B.x.y) here.
    pub(crate) fn block(&self) -> String {
        let lab_json = self.file();
        let address = lab_json["servers"][0]["address"].as_str().unwrap();
        let mut octets = address.split('.');
        let (first, second) = (octets.next().unwrap(), octets.next().unwrap());
        format!("{first}.{second}.")
    }

    /// Runs a runbook of `examples/runbooks/` on `server`, with the lab's addresses;
    /// returns what it printed.
    pub(crate) fn runbook(&self, server: &str, name: &str) -> String {
        self.runbook_and_warnings(server, name).0
    }

    /// Runs a runbook as [`Lab::runbook`] does; its output and what it wrote to standard
    /// error (the shell's warnings).
    pub(crate) fn runbook_and_warnings(&self, server: &str, name: &str) -> (String, String) {
        let text = std::fs::read_to_string(format!(
            "{}/../../examples/runbooks/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .replace("127.0.", &self.block());
        let file = self.path.join(name);
        std::fs::write(&file, text).unwrap();
        let out = run(&[
            "shell",
            "--lab",
            self.dir(),
            "--server",
            server,
            "--file",
            file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{name} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        (stdout(&out), stderr(&out))
    }

    /// A user's client, signed in and printing the messages that arrive, until `count`
    /// did or `seconds` passed.
    pub(crate) fn listen(&self, user: &str, count: usize, seconds: u64) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("tandem"))
            .args([
                "client",
                "--lab",
                self.dir(),
                "--user",
                user,
                "listen",
                "--seconds",
                &seconds.to_string(),
                "--count",
                &count.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
    pub(crate) fn up() -> Lab {
        Lab::up_with(&[])
    }

    /// `tandem lab up` with extra arguments (`--users N`, ...).
    pub(crate) fn up_with(extra: &[&str]) -> Lab {
        Lab::up_env(extra, &[])
    }

    /// The same, with environment variables for the lab's servers.
    pub(crate) fn up_env(extra: &[&str], env: &[(&str, &str)]) -> Lab {
        Lab::up_topology(&topology::contoso(), extra, env)
    }

    /// A lab of another deployment (see `fabrikam`).
    ///
    /// With `TANDEM_TEST_LAB_BACKEND=postgres` the lab's Back Ends are PostgreSQL clusters,
    /// and with `TANDEM_TEST_LAB_HOSTS=1` as well every server is on a host of its own
    /// (`.ci/run` runs the CMS, backup and failover tests so).
    pub(crate) fn up_topology(
        base: &topology::Topology,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Lab {
        if on_postgres() {
            return Lab::up_on_postgres(base, extra, env);
        }
        Lab::up_in(tempfile::tempdir().unwrap(), base, extra, env)
    }

    /// `up_in` with `--backend postgres`, in a folder the clusters' `postgres` user can
    /// pass through.
    fn up_on_postgres(base: &topology::Topology, extra: &[&str], env: &[(&str, &str)]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let mut args = vec!["--backend", "postgres"];
        // TANDEM_TEST_LAB_HOSTS=1: every server on a host of its own too.
        if std::env::var("TANDEM_TEST_LAB_HOSTS").as_deref() == Ok("1")
            && !extra.contains(&"--hosts")
        {
            args.push("--hosts");
        }
        args.extend_from_slice(extra);
        Lab::up_in(dir, base, &args, env)
    }

    /// A lab whose Back Ends are PostgreSQL clusters (`--backend postgres`), or `None`
    /// (after saying why) where PostgreSQL is not installed, unless the run requires it
    /// (`TANDEM_TEST_POSTGRES_REQUIRED=1`, as in CI).
    pub(crate) fn up_postgres(base: &topology::Topology, extra: &[&str]) -> Option<Lab> {
        let installed = std::fs::read_dir("/usr/lib/postgresql")
            .is_ok_and(|d| d.flatten().any(|e| e.path().join("bin/initdb").exists()));
        if !installed {
            assert!(
                std::env::var("TANDEM_TEST_POSTGRES_REQUIRED").as_deref() != Ok("1"),
                "TANDEM_TEST_POSTGRES_REQUIRED=1 but PostgreSQL is not installed (apt-get install postgresql)"
            );
            eprintln!("skipped: PostgreSQL is not installed");
            return None;
        }
        Some(Lab::up_on_postgres(base, extra, &[]))
    }

    /// A lab with every server and Back End on a host of its own (`--hosts --backend
    /// postgres`), or `None` (after saying why) where this machine cannot make hosts (not
    /// root, no `ip`, no `/dev/net/tun`) or has no PostgreSQL, unless the run requires it
    /// (`TANDEM_TEST_HOSTS_REQUIRED=1`, as in CI).
    pub(crate) fn up_hosts(base: &topology::Topology, extra: &[&str]) -> Option<Lab> {
        let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .is_some_and(|u| u.split_whitespace().next() == Some("0"))
        });
        let why = if !root {
            Some("not root")
        } else if !std::path::Path::new("/dev/net/tun").exists() {
            Some("no /dev/net/tun")
        } else if std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            Some("no `ip netns` (iproute2)")
        } else {
            None
        };
        if let Some(why) = why {
            assert!(
                std::env::var("TANDEM_TEST_HOSTS_REQUIRED").as_deref() != Ok("1"),
                "TANDEM_TEST_HOSTS_REQUIRED=1 but this machine cannot make hosts: {why}"
            );
            eprintln!("skipped: this machine cannot make hosts ({why})");
            return None;
        }
        let mut args = vec!["--hosts"];
        args.extend_from_slice(extra);
        Lab::up_postgres(base, &args)
    }

    fn up_in(
        dir: tempfile::TempDir,
        base: &topology::Topology,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Lab {
        let path = dir.path().join("lab");
        let topology = dir.path().join("topology.toml");
        let (toml, block) = topology_on_free_block(base);
        std::fs::write(&topology, toml).unwrap();
        let mut args = vec![
            "lab",
            "up",
            "--detach",
            "--topology",
            topology.to_str().unwrap(),
            "--dir",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = crate::run_env(&args, env);
        let lab_json: serde_json::Value = std::fs::read_to_string(path.join("lab.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let lab = Lab {
            _dir: dir,
            _block: block,
            path,
            token: lab_json["admin_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        assert!(
            out.status.success(),
            "lab up failed: {}{}\nthe servers' logs end with:\n{}",
            stdout(&out),
            stderr(&out),
            lab.log_tails()
        );
        assert!(stdout(&out).contains("every replica up to date"));
        lab
    }

    /// The last lines of every server's log, for a failure message.
    fn log_tails(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.path.join("logs")) else {
            return "(no logs)".into();
        };
        let mut out = String::new();
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("== {}\n", entry.file_name().to_string_lossy()));
            for line in &lines[lines.len().saturating_sub(8)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Posts a cmdlet to `server`'s management API as it arrives on the wire; returns the
    /// HTTP status and the body (for the status codes the shell does not show).
    pub(crate) fn invoke_http(
        &self,
        server: &str,
        cmdlet: &str,
        parameters: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.post(
            server,
            "/api/v1/invoke",
            &serde_json::json!({ "cmdlet": cmdlet, "parameters": parameters }),
        )
    }

    /// The rows of `tandem lab status --json`: servers, the DNS server, clusters.
    pub(crate) fn status_rows(&self) -> Vec<serde_json::Value> {
        let out = run(&["lab", "status", "--dir", self.dir(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        rows.as_array().unwrap().clone()
    }

    /// How many contacts of `user` the Back End at `url` holds, read from the database
    /// itself (a `sqlite://` URL from the lab's folder, or one of its PostgreSQL clusters,
    /// with the lab's password).
    pub(crate) fn contacts_in_store(&self, url: &str, user: &str) -> usize {
        let url = match self.database_password() {
            Some(password) if url.starts_with("postgres://") => {
                url.replacen("://tandem@", &format!("://tandem:{password}@"), 1)
            }
            _ => url.to_string(),
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let be = store::BackEnd::open(&url, &self.path).await.unwrap();
            let n = be
                .user_items(user)
                .await
                .unwrap()
                .iter()
                .filter(|i| i.key.starts_with("contacts/"))
                .count();
            be.close().await;
            n
        })
    }

    /// The password of the lab's PostgreSQL clusters, from its 0600 `pgpass` (none
    /// without PostgreSQL Back Ends).
    pub(crate) fn database_password(&self) -> Option<String> {
        let pgpass = std::fs::read_to_string(self.path.join("pgpass")).ok()?;
        Some(pgpass.trim().rsplit(':').next().unwrap().to_string())
    }

    /// The lab's `lab.json`: servers, clusters, network, admin token.
    pub(crate) fn file(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path.join("lab.json")).unwrap()).unwrap()
    }

    /// The servers of `lab.json` (address, ports, pool), in its order.
    pub(crate) fn servers(&self) -> Vec<serde_json::Value> {
        self.file()["servers"].as_array().unwrap().clone()
    }

    /// One server of `lab.json`.
    pub(crate) fn server(&self, fqdn: &str) -> serde_json::Value {
        self.servers()
            .into_iter()
            .find(|s| s["fqdn"] == fqdn)
            .unwrap_or_else(|| panic!("{fqdn} is not in lab.json"))
    }

    /// `https://address:port` of a Front End's user services.
    pub(crate) fn user_services(server: &serde_json::Value) -> String {
        format!(
            "https://{}:{}",
            server["address"].as_str().unwrap(),
            server["user_services_port"]
        )
    }

    /// An HTTPS client that trusts the lab's CA (and nothing else), as users and
    /// operators of the lab do.
    pub(crate) fn http(&self) -> reqwest::ClientBuilder {
        let roots = pki::Roots::from_pem_file(&self.path.join("pki").join("ca.pem")).unwrap();
        api::https(&pki::client_config(&roots, None))
    }

    /// The lab's users.json: every enabled user with home pool and password.
    pub(crate) fn users(&self) -> Vec<serde_json::Value> {
        let users: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.path.join("users.json")).unwrap())
                .unwrap();
        users.as_array().unwrap().clone()
    }

    /// The SIP address and password of every user homed on `pool`.
    pub(crate) fn credentials_on(&self, pool: &str) -> Vec<(String, String)> {
        self.users()
            .iter()
            .filter(|u| u["home_pool"] == pool)
            .map(|u| {
                (
                    u["sip_address"].as_str().unwrap().to_string(),
                    u["password"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// A user's password, from the lab's users.json.
    pub(crate) fn password(&self, sip: &str) -> String {
        self.users()
            .iter()
            .find(|u| u["sip_address"] == sip)
            .unwrap_or_else(|| panic!("{sip} is not in users.json"))["password"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Posts `body` to `path` of `server`'s management API with the admin token; returns
    /// the HTTP status and the body.
    pub(crate) fn post(
        &self,
        server: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let s = self.server(server);
        let url = format!(
            "https://{}:{}{path}",
            s["address"].as_str().unwrap(),
            s["management_port"]
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = self
                .http()
                .build()
                .unwrap()
                .post(url)
                .header("authorization", format!("Bearer {}", self.token))
                .json(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or_default())
        })
    }

    /// The lab administrator's token (lab.json's `admin_token`).
    pub(crate) fn admin_token(&self) -> String {
        self.token.clone()
    }

    pub(crate) fn dir(&self) -> &str {
        self.path.to_str().unwrap()
    }

    pub(crate) fn shell(&self, server: Option<&str>, line: &str) -> std::process::Output {
        let mut args = vec!["shell", "--lab", self.dir(), "--output", "json", "-c", line];
        if let Some(s) = server {
            args.extend(["--server", s]);
        }
        run(&args)
    }

    /// Runs `line` and asserts that it succeeds.
    pub(crate) fn ok(&self, server: Option<&str>, line: &str) {
        let out = self.shell(server, line);
        assert!(out.status.success(), "{line}: {}", stderr(&out));
    }

    /// Runs `line`, which must be refused (exit code 1) with `naming` in the message.
    pub(crate) fn refused(&self, server: Option<&str>, line: &str, naming: &str) {
        let out = self.shell(server, line);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(naming), "{}", stderr(&out));
    }

    /// `tandem lab kill`: a server, a pool or a site, gone when this returns.
    pub(crate) fn kill(&self, what: &str) {
        let out = run(&["lab", "kill", what, "--dir", self.dir()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// `tandem lab start` of a site, pool or server.
    pub(crate) fn start(&self, what: &str) {
        let out = run(&["lab", "start", what, "--dir", self.dir()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// `tandem lab pause` (`true`) or `lab resume` (`false`) of a site, pool or server.
    pub(crate) fn pause(&self, what: &str, pause: bool) {
        let verb = if pause { "pause" } else { "resume" };
        let out = run(&["lab", verb, what, "--dir", self.dir()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    pub(crate) fn json(&self, server: Option<&str>, line: &str) -> serde_json::Value {
        let out = self.shell(server, line);
        assert!(
            out.status.success(),
            "{line}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{line}: {e}: {}", stdout(&out)))
    }

    /// The first record `line` returns (or its one record).
    pub(crate) fn record(&self, server: Option<&str>, line: &str) -> serde_json::Value {
        let v = self.json(server, line);
        v.as_array().map_or(v.clone(), |a| a[0].clone())
    }

    /// Waits until every replica reports `UpToDate True`; returns the rows.
    pub(crate) fn wait_all_up_to_date(&self, server: Option<&str>) -> Vec<serde_json::Value> {
        crate::eventually(20, "every replica to converge", || {
            let rows = self.json(server, "Get-CsManagementStoreReplicationStatus");
            let rows = rows.as_array().cloned().unwrap_or_default();
            (!rows.is_empty() && rows.iter().all(|r| r["UpToDate"] == true)).then_some(rows)
        })
    }

    fn wait_for_master(&self, via: &str, not: &str) -> String {
        crate::eventually(15, &format!("a new master after {not} died"), || {
            let master = cms_status(self, via)["ActiveMasterFqdn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (!master.is_empty() && master != not).then_some(master)
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = run(&["lab", "down", "--dir", self.dir()]);
    }
}

#[test]
fn a_lab_replicates_changes_everywhere_and_survives_losing_its_master() {
    let lab = Lab::up();
    let rows = lab.wait_all_up_to_date(None);
    assert_eq!(
        rows.len(),
        6,
        "every server of the topology is a replica: {rows:?}"
    );

    let status = cms_status(&lab, "pool2-fe1.contoso.com");
    let master = status["ActiveMasterFqdn"].as_str().unwrap().to_string();
    assert!(master.starts_with("pool1-fe"), "{status}");
    assert_eq!(
        status["ActiveFileTransferAgents"],
        serde_json::json!([master])
    );

    // A change reaches every replica, Edge servers included.
    lab.ok(
        None,
        "Set-CsSite -Identity Site2 -FederationRoute EdgeServer:edgepool1.contoso.com",
    );
    lab.wait_all_up_to_date(None);
    let out = lab.shell(
        Some("edgeserver2.contoso.com"),
        "Get-CsTopology -LocalStore -AsToml",
    );
    let toml = stdout(&out);
    let site2 = &toml[toml
        .find("name = \"Site2\"")
        .expect("Site2 in the topology")..];
    assert!(
        site2
            .lines()
            .nth(1)
            .unwrap()
            .contains("edgepool1.contoso.com"),
        "{toml}"
    );

    // Killing the master moves the role to the other Front End of pool1; replication goes on.
    let out = run(&["lab", "kill", &master, "--dir", lab.dir()]);
    assert!(out.status.success());
    let survivor = lab.wait_for_master("pool2-fe1.contoso.com", &master);
    assert!(survivor.starts_with("pool1-fe"));
    lab.ok(
        Some("pool2-fe1.contoso.com"),
        "Set-CsRegistrar -Identity Registrar:pool2.contoso.com -FailureDetectionInterval 90",
    );
    let reg = lab.json(
        Some("edgeserver1.contoso.com"),
        "Get-CsService -Registrar -PoolFqdn pool2.contoso.com",
    );
    let reg = reg.as_array().map_or(reg.clone(), |a| a[0].clone());
    assert_eq!(reg["FailureDetectionInterval"], 90, "{reg}");

    // Losing the whole CMS pool: servers keep running, changes are refused with the fix named.
    let out = run(&["lab", "kill", "pool1.contoso.com", "--dir", lab.dir()]);
    assert!(out.status.success());
    let status = cms_status(&lab, "pool2-fe1.contoso.com");
    assert_eq!(status["ActiveMasterFqdn"], "", "{status}");
    let out = lab.shell(
        Some("pool2-fe1.contoso.com"),
        "Set-CsSite -Identity Site2 -FederationRoute EdgeServer:edgepool2.contoso.com",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Invoke-CsManagementServerFailover"),
        "{}",
        stderr(&out)
    );
    let out = lab.shell(
        Some("edgeserver2.contoso.com"),
        "Get-CsTopology -LocalStore",
    );
    assert!(
        out.status.success(),
        "an Edge server still answers from its replica"
    );

    // pool1 back: the lab converges again.
    let out = run(&["lab", "start", "pool1.contoso.com", "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    lab.wait_all_up_to_date(Some("pool2-fe1.contoso.com"));
}

#[test]
fn the_api_refuses_bad_input_and_a_stopped_replica_falls_behind() {
    let lab = Lab::up();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lab_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.path.join("lab.json")).unwrap()).unwrap();
    let fe = lab_json["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fqdn"] == "pool2-fe1.contoso.com")
        .unwrap();
    let base = format!(
        "https://{}:{}",
        fe["address"].as_str().unwrap(),
        fe["management_port"]
    );
    let client = lab.http().build().unwrap();
    let version = |rt: &tokio::runtime::Runtime| -> i64 {
        rt.block_on(async {
            let h: serde_json::Value = client
                .get(format!("{base}/health"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            h["replica_version"].as_i64().unwrap()
        })
    };
    let before = version(&rt);
    let post = |token: Option<&str>, body: &str| -> (u16, serde_json::Value) {
        rt.block_on(async {
            let mut req = client
                .post(format!("{base}/api/v1/invoke"))
                .header("content-type", "application/json")
                .body(body.to_string());
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or_default())
        })
    };
    let change = r#"{"cmdlet":"Set-CsSite","parameters":{"Identity":"Site2","FederationRoute":"EdgeServer:edgepool1.contoso.com"}}"#;
    let cases: Vec<(Option<&str>, &str, u16)> = vec![
        (None, change, 401),
        (Some("wrong-token"), change, 401),
        (Some(&lab.token), "{not json", 400),
        (
            Some(&lab.token),
            r#"{"cmdlet":"Set-CsSite","parameters":{},"extra":1}"#,
            422,
        ),
        (Some(&lab.token), r#"{"cmdlet":5}"#, 422),
        (
            Some(&lab.token),
            r#"{"cmdlet":"Set-CsSite","parameters":{"Identity":{"a":1}}}"#,
            422,
        ),
        (
            Some(&lab.token),
            r#"{"cmdlet":"Set-CsRegistrar","parameters":{"Identity":"Registrar:pool2.contoso.com","FailureDetectionInterval":"soon"}}"#,
            422,
        ),
        (
            Some(&lab.token),
            r#"{"cmdlet":"Set-CsSitee","parameters":{}}"#,
            422,
        ),
        (
            Some(&lab.token),
            r#"{"cmdlet":"Set-CsSite","parameters":{"Identity":"Site9","FederationRoute":"EdgeServer:edgepool1.contoso.com"}}"#,
            409,
        ),
    ];
    for (token, body, expected) in cases {
        let (status, reply) = post(token, body);
        assert_eq!(status, expected, "{body}: {reply}");
        assert!(
            !reply["error"].as_str().unwrap_or_default().is_empty(),
            "{body}: a reason is given"
        );
    }
    // A bulk enable larger than one chunk is refused whole, with the limit named.
    let users: Vec<serde_json::Value> = (0..2_001)
        .map(|i| {
            serde_json::json!({
                "identity": format!("u{i}"),
                "sip_address": format!("sip:u{i}@contoso.com"),
                "registrar_pool": "pool1.contoso.com",
                "ha1": "0123456789abcdef0123456789abcdef",
            })
        })
        .collect();
    let (status, reply) = rt.block_on(async {
        let resp = client
            .post(format!("{base}/api/v1/users/bulk"))
            .header("authorization", format!("Bearer {}", lab.token))
            .json(&serde_json::json!({ "users": users }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            resp.json::<serde_json::Value>().await.unwrap_or_default(),
        )
    });
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 2000"),
        "{reply}"
    );
    assert_eq!(
        version(&rt),
        before,
        "no bad request changed the configuration"
    );
    let doc: serde_json::Value = rt.block_on(async {
        client
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert!(doc["paths"]["/api/v1/invoke"].is_object(), "{doc}");

    // A stopped REPLICA applies nothing and shows UpToDate False after the next change.
    lab.ok(
        None,
        "Stop-CsWindowsService -Name REPLICA -ComputerName edgeserver2.contoso.com",
    );
    let services = lab.json(
        None,
        "Get-CsWindowsService -ComputerName edgeserver2.contoso.com",
    );
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Name"] == "REPLICA" && s["Status"] == "Stopped"),
        "{services}"
    );
    let (status, reply) = post(Some(&lab.token), change);
    assert_eq!(status, 200, "{reply}");
    // Every other replica applies the change; edgeserver2 stays behind.
    crate::eventually(10, "every replica but edgeserver2 up to date", || {
        let rows = lab.json(None, "Get-CsManagementStoreReplicationStatus");
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["UpToDate"] == (r["ReplicaFqdn"] != "edgeserver2.contoso.com"))
            .then_some(())
    });
    let out = lab.shell(
        None,
        "Start-CsWindowsService -Name REPLICA -ComputerName edgeserver2.contoso.com",
    );
    assert!(out.status.success());
    lab.wait_all_up_to_date(None);
}

#[test]
fn publish_enable_export_and_import_work_against_the_store() {
    let lab = Lab::up();
    let interval = |lab: &Lab| {
        let reg = lab.json(None, "Get-CsService -Registrar -PoolFqdn pool2.contoso.com");
        let reg = reg.as_array().map_or(reg.clone(), |a| a[0].clone());
        reg["FailbackDetectionInterval"].clone()
    };
    let work = lab.path.parent().unwrap().to_path_buf();
    let saved = work.join("saved.zip");
    let ok = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    };
    ok(
        lab.shell(
            None,
            &format!("Export-CsConfiguration -FileName {}", saved.display()),
        ),
        "export",
    );
    assert!(saved.exists());

    // Publish stores the document; only Enable makes it the topology servers run.
    let toml = stdout(&lab.shell(None, "Get-CsTopology -AsToml"));
    let pool2 = toml.find("fqdn = \"pool2.contoso.com\"").unwrap();
    // The lab runs with a short failback detection interval (10 s).
    let old = "failback_detection_interval_secs = 10\n";
    let at = pool2 + toml[pool2..].find(old).unwrap();
    let edited = format!(
        "{}failback_detection_interval_secs = 300\n{}",
        &toml[..at],
        &toml[at + old.len()..]
    );
    let file = work.join("edited.toml");
    std::fs::write(&file, edited).unwrap();
    ok(
        lab.shell(
            None,
            &format!("Publish-CsTopology -FileName {}", file.display()),
        ),
        "publish",
    );
    assert_eq!(interval(&lab), 10, "published but not enabled");
    ok(lab.shell(None, "Enable-CsTopology"), "enable");
    assert_eq!(interval(&lab), 300);

    // Importing the export puts the store back as it was, on every replica.
    ok(
        lab.shell(
            None,
            &format!("Import-CsConfiguration -FileName {}", saved.display()),
        ),
        "import",
    );
    assert_eq!(interval(&lab), 10);
    ok(
        lab.shell(None, "Invoke-CsManagementStoreReplication"),
        "replicate",
    );
    lab.wait_all_up_to_date(None);
    let edge = stdout(&lab.shell(
        Some("edgeserver1.contoso.com"),
        "Get-CsTopology -LocalStore -AsToml",
    ));
    assert!(!edge.contains("= 300"), "{edge}");

    // -LocalStore exports and imports one server's replica.
    let local = work.join("edge1.zip");
    let edge1 = Some("edgeserver1.contoso.com");
    ok(
        lab.shell(
            edge1,
            &format!(
                "Export-CsConfiguration -LocalStore -FileName {}",
                local.display()
            ),
        ),
        "local export",
    );
    ok(
        lab.shell(
            edge1,
            &format!(
                "Import-CsConfiguration -LocalStore -FileName {}",
                local.display()
            ),
        ),
        "local import",
    );
    let out = lab.shell(
        edge1,
        &format!(
            "Import-CsConfiguration -LocalStore -FileName {}",
            file.display()
        ),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a topology file is not an export"
    );
    assert!(
        stderr(&out).contains("Export-CsConfiguration"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_lab_enables_more_users_than_one_call_takes_in_chunks() {
    // 2 × 1,500 users are two bulk calls of at most 2,000, two CMS versions.
    let lab = Lab::up_env(&["--users", "1500"], &[]);
    let users = lab.json(
        Some("pool2-fe2.contoso.com"),
        "Get-CsUser | ConvertTo-Json -Compress",
    );
    let users = users.as_array().expect("a list of users");
    assert_eq!(users.len(), 3_000);
    let on_pool2 = users
        .iter()
        .filter(|u| u["RegistrarPool"] == "pool2.contoso.com")
        .count();
    assert_eq!(on_pool2, 1_500);
    let file: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(lab.path.join("users.json")).unwrap())
            .unwrap();
    assert_eq!(file.len(), 3_000, "every user's password is in users.json");
}

/// Files and folders under `dir` that anyone but their owner may read, write or enter.
pub(crate) fn open_to_others(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut open = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                open.push(format!("{} ({mode:o})", entry.path().display()));
            }
            if meta.is_dir() {
                todo.push(entry.path());
            }
        }
    }
    open
}
