//! Prosody (Debian's `prosody` 0.12, with `lua-unbound`) as a test process: a real XMPP
//! server for one domain, on one loopback address we choose, that federates (s2s) with
//! whatever our DNS server says the other domain is; and `tests/xmpp_client.py`
//! (`/usr/bin/python3` with Debian's `python3-slixmpp`) as its users' client.
//!
//! What a start does, found by running Prosody 0.12.3:
//! - the config file is our own (`prosody -F --config FILE`): data, log and certificates
//!   in a temporary folder, `run_as_root = true` (the tests run as root; without it
//!   `mod_posix` refuses to run), c2s and s2s listening only on `address`, no other
//!   listener (direct TLS, legacy SSL, HTTP, admin socket are off);
//! - DNS goes only to `dns` (`unbound = { resolvconf = false; hoststxt = false; forward =
//!   { "IP@PORT" } }`): Prosody asks `_xmpps-server._tcp.<domain>` SRV first (XEP-0368
//!   direct TLS: answer NXDOMAIN), then `_xmpp-server._tcp.<domain>` SRV, then the
//!   target's A (`use_ipv6 = false`: no AAAA). libunbound caches answers for their TTL
//!   (none with TTL 0; NXDOMAIN without SOA is not cached); no DNSSEC validation without
//!   a trust anchor, which we do not give;
//! - users are written as `internal_plain` account files before the start (the same file
//!   `prosodyctl register` writes);
//! - it is ready when its c2s and s2s ports accept (the hosts are loaded before the
//!   listeners open); the log is at debug level with every stanza in and out
//!   (`mod_stanza_debug`: lines `SEND: <...>` and `RECV: <...>`);
//! - `Drop` kills it.
//!
//! Its outgoing s2s connections come from 127.0.0.1 whatever `address` is (Prosody 0.12
//! has no option for the source address).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The XMPP client script the tests run with `/usr/bin/python3`.
pub(crate) const XMPP_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp_client.py");

/// Debian's python, which has `python3-slixmpp` (the `python3` on PATH may not).
pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// The certificate Prosody presents (c2s and s2s, both directions).
#[derive(Clone, Debug)]
pub(crate) enum Certificate {
    /// PEM files: the certificate (chain, leaf first) and its key, e.g. issued by a
    /// test's CA for the domain.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for the domain (`openssl req -x509`, P-256), made in the
    /// temporary folder.
    SelfSigned,
}

/// How to run one Prosody. `ProsodyOptions::new` gives the defaults; the fields and the
/// builder methods change them.
#[derive(Clone, Debug)]
pub(crate) struct ProsodyOptions {
    /// The one VirtualHost, e.g. `jabber.example`.
    pub(crate) domain: String,
    /// The address c2s and s2s listen on, e.g. 127.0.77.10.
    pub(crate) address: IpAddr,
    pub(crate) c2s_port: u16,
    pub(crate) s2s_port: u16,
    /// The DNS server all of Prosody's lookups go to (any port).
    pub(crate) dns: SocketAddr,
    pub(crate) certificate: Certificate,
    /// CA certificates (PEM) Prosody trusts for peers' certificates, besides the system's.
    pub(crate) cafile: Option<PathBuf>,
    /// `s2s_secure_auth`: a peer must present a certificate that chains to a trusted CA and
    /// names its domain, or the stream is closed with `<not-authorized/>`; when false a
    /// peer whose certificate does not do so is authenticated by dialback.
    pub(crate) s2s_secure_auth: bool,
    /// `s2s_require_encryption` (Prosody's default true): STARTTLS on every s2s stream.
    pub(crate) s2s_require_encryption: bool,
    /// `mod_dialback` (XEP-0220) loaded: offered, used, and able to verify.
    pub(crate) dialback: bool,
    /// `mod_offline` loaded (Prosody's default): a chat message to a user who is not
    /// online is kept and delivered at their next login; without it the sender gets
    /// `<service-unavailable/>` back.
    pub(crate) offline_storage: bool,
    /// `s2s_timeout`: how long an s2s stream may take to be authenticated before Prosody
    /// closes it (`<connection-timeout/>`) and bounces what it queued (Prosody's default
    /// is 90 s).
    pub(crate) s2s_timeout: Duration,
    /// Users (name, password) written before the start.
    pub(crate) users: Vec<(String, String)>,
    /// Lua lines added to the global section of the config.
    pub(crate) extra_config: String,
    /// How long the start may take.
    pub(crate) start_timeout: Duration,
}

impl ProsodyOptions {
    /// Prosody for `domain` on `address` (ports 5222 and 5269), resolving through `dns`,
    /// with a self-signed certificate, `s2s_secure_auth` off, encryption required,
    /// dialback and offline storage on, an s2s timeout of 20 s and no users.
    pub(crate) fn new(domain: &str, address: IpAddr, dns: SocketAddr) -> ProsodyOptions {
        ProsodyOptions {
            domain: domain.to_string(),
            address,
            c2s_port: 5222,
            s2s_port: 5269,
            dns,
            certificate: Certificate::SelfSigned,
            cafile: None,
            s2s_secure_auth: false,
            s2s_require_encryption: true,
            dialback: true,
            offline_storage: true,
            s2s_timeout: Duration::from_secs(20),
            users: Vec::new(),
            extra_config: String::new(),
            start_timeout: Duration::from_secs(20),
        }
    }

    pub(crate) fn user(mut self, name: &str, password: &str) -> ProsodyOptions {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// Presents `cert` (PEM chain) and `key`, trusts `ca` for peers, and requires valid
    /// certificates of peers (`s2s_secure_auth = true`): the SASL EXTERNAL setup.
    pub(crate) fn certificates(mut self, cert: &Path, key: &Path, ca: &Path) -> ProsodyOptions {
        self.certificate = Certificate::Files {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        self.cafile = Some(ca.to_path_buf());
        self.s2s_secure_auth = true;
        self
    }

    pub(crate) fn secure_auth(mut self, on: bool) -> ProsodyOptions {
        self.s2s_secure_auth = on;
        self
    }
}

/// A running Prosody; killed on drop.
#[derive(Debug)]
pub(crate) struct Prosody {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) domain: String,
    /// Where clients connect (`xmpp_client.py --server`).
    pub(crate) c2s: SocketAddr,
    /// Where other servers connect (the target of `_xmpp-server._tcp.<domain>`).
    pub(crate) s2s: SocketAddr,
    passwords: Mutex<BTreeMap<String, String>>,
}

impl Prosody {
    /// Writes the config, the users and (if asked) a self-signed certificate, starts
    /// Prosody and waits until its c2s and s2s ports accept. Panics with its log when it
    /// does not come up.
    pub(crate) fn start(opts: ProsodyOptions) -> Prosody {
        let dir = tempfile::Builder::new()
            .prefix("prosody-")
            .tempdir()
            .expect("a temporary folder for Prosody");
        let root = dir.path().to_path_buf();
        for sub in ["data", "certs"] {
            std::fs::create_dir_all(root.join(sub)).expect("Prosody's folders");
        }
        let (cert, key) = match &opts.certificate {
            Certificate::Files { cert, key } => (Some(cert.clone()), Some(key.clone())),
            Certificate::SelfSigned => {
                let (c, k) = self_signed(&root, &opts.domain);
                (Some(c), Some(k))
            }
        };
        let config = root.join("prosody.cfg.lua");
        std::fs::write(
            &config,
            config_text(&opts, &root, cert.as_deref(), key.as_deref()),
        )
        .expect("Prosody's config is written");
        for (name, password) in &opts.users {
            write_account(&root, &opts.domain, name, password);
        }
        let out = std::fs::File::create(root.join("stdout.log")).expect("stdout file");
        let err = std::fs::File::create(root.join("stderr.log")).expect("stderr file");
        let child = Command::new("prosody")
            .arg("-F")
            .arg("--config")
            .arg(&config)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("prosody starts (Debian's package `prosody` with `lua-unbound`)");
        let mut prosody = Prosody {
            child,
            domain: opts.domain.clone(),
            c2s: SocketAddr::new(opts.address, opts.c2s_port),
            s2s: SocketAddr::new(opts.address, opts.s2s_port),
            passwords: Mutex::new(opts.users.iter().cloned().collect()),
            dir,
        };
        prosody.wait_ready(opts.start_timeout);
        prosody
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prosody for {} exited during its start ({status}):\n{}",
                    self.domain,
                    self.diagnostics()
                );
            }
            let up =
                |a: SocketAddr| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok();
            if up(self.c2s) && up(self.s2s) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "prosody for {} did not accept on {} and {} within {timeout:?}:\n{}",
                    self.domain,
                    self.c2s,
                    self.s2s,
                    self.diagnostics()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Its temporary folder (config, `data/`, `prosody.log`, certificates).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `user@domain`.
    pub(crate) fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }

    /// `xmpp_client.py` logged in to this server as `user` (registered here), over plain
    /// TCP: add the command and its arguments (`send --to JID --text T`, `receive --from
    /// JID --count N --timeout S`, `exchange ...`).
    pub(crate) fn client(&self, user: &str) -> Command {
        let password = self
            .passwords
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_else(|| panic!("{user} is not a user of the test's {}", self.domain));
        let mut cmd = Command::new(PYTHON);
        cmd.arg(XMPP_CLIENT)
            .args(["--jid", &self.jid(user), "--password", &password])
            .args(["--server", &self.c2s.to_string()])
            .stdin(Stdio::null());
        cmd
    }

    /// `user` logs in and becomes available, waiting for `count` chat messages from
    /// `from` (a bare JID, or `*` for anyone) for at most `timeout`; returns once the
    /// client is online (Prosody has its presence), so what is sent after reaches it.
    pub(crate) fn receiver(
        &self,
        user: &str,
        from: &str,
        count: usize,
        timeout: Duration,
    ) -> Receiver {
        self.receive(user, from, count, timeout, false)
    }

    /// `receiver`, sending each message back to its sender as it arrives.
    pub(crate) fn echo(&self, user: &str, from: &str, count: usize, timeout: Duration) -> Receiver {
        self.receive(user, from, count, timeout, true)
    }

    fn receive(
        &self,
        user: &str,
        from: &str,
        count: usize,
        timeout: Duration,
        echo: bool,
    ) -> Receiver {
        let mut command = self.client(user);
        command
            .args(["receive", "--from", from, "--count", &count.to_string()])
            .args(["--timeout", &format!("{}", timeout.as_secs_f64())]);
        if echo {
            command.arg("--echo");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xmpp_client.py runs");
        let stderr = child.stderr.take().expect("piped stderr");
        let (online_tx, online_rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("xmpp_client: online as ") {
                    let _ = online_tx.send(());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let online = online_rx.recv_timeout(Duration::from_secs(15)).is_ok();
        let mut receiver = Receiver {
            child,
            stderr_lines: lines,
            stderr_reader: Some(reader),
        };
        if !online {
            let _ = receiver.child.kill();
            let _ = receiver.child.wait();
            panic!(
                "{} did not get online at {}: {}",
                self.jid(user),
                self.c2s,
                receiver.stderr()
            );
        }
        receiver
    }

    /// Its config, stdout, stderr and the end of its log, for a failure message.
    pub(crate) fn diagnostics(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir().join(f)).unwrap_or_default();
        format!(
            "--- config\n{}--- stdout\n{}--- stderr\n{}--- log (end)\n{}",
            read("prosody.cfg.lua"),
            read("stdout.log"),
            read("stderr.log"),
            tail(&read("prosody.log"), 80)
        )
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An `xmpp_client.py receive` running in the background.
#[derive(Debug)]
pub(crate) struct Receiver {
    child: Child,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Waits for the client to end: the (sender bare JID, body) pairs it received, or Err
    /// with its exit status and stderr (a timeout exits 1).
    pub(crate) fn wait(mut self) -> Result<Vec<(String, String)>, String> {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let status = self.child.wait().expect("xmpp_client.py is reaped");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let messages = parse_received(&stdout);
        if status.success() {
            Ok(messages)
        } else {
            Err(format!(
                "xmpp_client.py receive ended with {status} after {messages:?}: {}",
                self.stderr()
            ))
        }
    }

    /// What it wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr_lines.lock().unwrap().join("\n")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `FROM<TAB>BODY` lines (a newline in a body comes as `\n`, a backslash as `\\`).
pub(crate) fn parse_received(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(from, body)| (from.to_string(), unescape(body)))
        .collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Lua string literal.
fn lua(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\{:03}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn lua_path(p: &Path) -> String {
    lua(p.to_str().expect("a UTF-8 path"))
}

fn config_text(
    opts: &ProsodyOptions,
    root: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> String {
    let mut modules = vec!["roster", "saslauth", "tls", "disco", "ping", "stanza_debug"];
    if opts.dialback {
        modules.push("dialback");
    }
    let mut disabled = Vec::new();
    if !opts.offline_storage {
        disabled.push("offline");
    }
    let list = |m: &[&str]| m.iter().map(|s| lua(s)).collect::<Vec<_>>().join("; ");
    let mut ssl = Vec::new();
    if let (Some(c), Some(k)) = (cert, key) {
        ssl.push(format!("certificate = {}", lua_path(c)));
        ssl.push(format!("key = {}", lua_path(k)));
    }
    if let Some(ca) = &opts.cafile {
        ssl.push(format!("cafile = {}", lua_path(ca)));
    }
    let dns = format!("{}@{}", opts.dns.ip(), opts.dns.port());
    format!(
        r#"-- Written by the tests (tests/it/prosody.rs).
run_as_root = true
data_path = {data}
pidfile = {pid}
certificates = {certs}
log = {{ debug = {log} }}

interfaces = {{ {address} }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}

-- All DNS through the tests' server, nothing from /etc/resolv.conf or /etc/hosts.
unbound = {{ resolvconf = false; hoststxt = false; forward = {{ {dns} }} }}
use_ipv6 = false

modules_enabled = {{ {modules} }}
modules_disabled = {{ {disabled} }}

authentication = "internal_plain"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

s2s_secure_auth = {secure}
s2s_require_encryption = {require}
s2s_allow_encryption = {allow}
s2s_timeout = {timeout}
{ssl}
{extra}
VirtualHost {domain}
"#,
        data = lua_path(&root.join("data")),
        pid = lua_path(&root.join("prosody.pid")),
        certs = lua_path(&root.join("certs")),
        log = lua_path(&root.join("prosody.log")),
        address = lua(&opts.address.to_string()),
        c2s = opts.c2s_port,
        s2s = opts.s2s_port,
        dns = lua(&dns),
        modules = list(&modules),
        disabled = list(&disabled),
        secure = opts.s2s_secure_auth,
        require = opts.s2s_require_encryption,
        allow = true,
        timeout = opts.s2s_timeout.as_secs().max(1),
        ssl = if ssl.is_empty() {
            String::new()
        } else {
            format!("ssl = {{ {} }}", ssl.join("; "))
        },
        extra = opts.extra_config,
        domain = lua(&opts.domain),
    )
}

/// Prosody's file-store name for a host or user: every character but ASCII letters and
/// digits as `%xx` (lower-case hex), as its `util.datamanager` does.
fn store_name(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

/// The `internal_plain` account file `prosodyctl register` writes.
fn write_account(root: &Path, domain: &str, name: &str, password: &str) {
    let dir = root.join("data").join(store_name(domain)).join("accounts");
    std::fs::create_dir_all(&dir).expect("the accounts folder");
    std::fs::write(
        dir.join(format!("{}.dat", store_name(&name.to_lowercase()))),
        format!("return {{\n\t[\"password\"] = {};\n}};\n", lua(password)),
    )
    .expect("an account file");
}

/// A self-signed P-256 certificate for `domain` (subjectAltName DNS:domain) in `dir`.
pub(crate) fn self_signed(dir: &Path, domain: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{domain}.self.crt"));
    let key = dir.join(format!("{domain}.self.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj", &format!("/CN={domain}")])
        .args(["-addext", &format!("subjectAltName=DNS:{domain}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl req -x509 for {domain}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
