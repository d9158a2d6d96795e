//! `tandem lab up --backend postgres`: a PostgreSQL cluster per Back End server.
//!
//! Each Back End server of the topology (and its mirror) gets a cluster of its own, made
//! by `initdb` (never a copy: a streaming standby checks the primary's system identifier,
//! so the mirror is made by `pg_basebackup -R` from its primary), in
//! `<lab>/backend/<server fqdn>/data`, listening only on its own address (`127.B.0.161` and
//! up, beside the lab's DNS server on `127.B.0.153`; `10.B.…` on hosts) on port 5432, with
//! no Unix socket (every cluster would clash on one socket file). The lab rewrites each
//! `database_url` of the topology it installs to `postgres://tandem@<address>:5432/<instance>`;
//! the password is in `<lab>/pgpass` (0600), which servers read through `PGPASSFILE`, so no
//! secret enters the topology every server replicates. The role `tandem` owns the
//! cluster: it promotes a standby and fences a primary (`Invoke-CsDatabaseFailover`).
//!
//! Run as root, the clusters run as the `postgres` system user (`initdb` refuses root).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use topology::Topology;

pub(crate) use crate::lab_process::{BACKEND_ROLE, MIRROR_ROLE, is_cluster};
use crate::lab_process::{LabServer, random_token};

/// The clusters' superuser, the one role tandem's servers connect as.
pub(crate) const PG_USER: &str = "tandem";
/// The port every cluster listens on (each on its own address).
pub(crate) const PG_PORT: u16 = 5432;
/// The password file of the lab's clusters.
pub(crate) const PGPASS_FILE: &str = "pgpass";

/// PostgreSQL's programs: the newest installed version's.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").exists());
    versions.sort();
    versions.pop().ok_or_else(|| {
        anyhow!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); install it with `apt-get install postgresql`, or run the lab on SQLite (without --backend postgres)"
        )
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` system user's uid and gid, from `/etc/passwd`.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// A command run as the clusters' owner: `postgres` when we are root.
fn as_owner(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn give_to_owner(path: &Path) -> anyhow::Result<()> {
    if running_as_root() {
        let (uid, gid) = postgres_user().ok_or_else(|| {
            anyhow!("there is no `postgres` system user to run PostgreSQL as; install PostgreSQL with `apt-get install postgresql`")
        })?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("giving {} to the postgres user", path.display()))?;
    }
    Ok(())
}

/// The lab folder must let the `postgres` user reach the clusters inside it.
fn open_path_to(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !running_as_root() {
        return Ok(());
    }
    // The lab folder itself: traversable by others (its files keep their own modes).
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))?;
    }
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "the postgres user cannot reach the lab folder {}: {} is closed to others (chmod o+x {}, or choose another --dir)",
                dir.display(),
                ancestor.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// One cluster to make: its lab server entry, and the primary it streams from when it is
/// a mirror.
pub(crate) struct Cluster {
    pub(crate) server: LabServer,
    pub(crate) mirror_of: Option<String>,
}

/// Plans the clusters of `topology`'s Back Ends and rewrites the topology's URLs to them.
/// Addresses are `127.B.0.161` and up, B the block of the deployment's addresses.
pub(crate) fn plan(topology: &mut Topology, dir: &Path) -> anyhow::Result<Vec<Cluster>> {
    // The first two octets of the deployment's addresses: 127.B (10.B on hosts).
    let [net, block, _, _] = topology
        .servers()
        .next()
        .map(|s| s.server.address.octets())
        .unwrap_or([127, 0, 0, 0]);
    let taken: Vec<Ipv4Addr> = topology.servers().map(|s| s.server.address).collect();
    let mut next = 161u8;
    let mut address = || -> anyhow::Result<Ipv4Addr> {
        loop {
            let a = Ipv4Addr::new(net, block, 0, next);
            next = next
                .checked_add(1)
                .ok_or_else(|| anyhow!("too many Back End servers for the lab's addresses"))?;
            if !taken.contains(&a) {
                return Ok(a);
            }
        }
    };
    let mut clusters = Vec::new();
    for pool in &mut topology.front_end_pools {
        let be = &mut pool.back_end;
        // Each copy of the pool's Back End: its server, its URL (pointed at its cluster
        // here), and the primary it streams from when it is the mirror.
        let mut copies = vec![(be.server_fqdn.clone(), &mut be.database_url, None)];
        if let Some(m) = &mut be.mirror {
            let primary = Some(be.server_fqdn.clone());
            copies.push((m.server_fqdn.clone(), &mut m.database_url, primary));
        }
        for (fqdn, url, mirror_of) in copies {
            let at = address()?;
            *url = format!("postgres://{PG_USER}@{at}:{PG_PORT}/{}", be.instance);
            let role = if mirror_of.is_some() {
                MIRROR_ROLE
            } else {
                BACKEND_ROLE
            };
            clusters.push(Cluster {
                server: LabServer {
                    role: role.into(),
                    pool: pool.fqdn.clone(),
                    site: pool.site.clone(),
                    address: at.to_string(),
                    management_port: PG_PORT,
                    pid: None,
                    data_dir: dir.join("backend").join(&fqdn),
                    log: dir.join("logs").join(format!("{fqdn}.log")),
                    sip_port: 0,
                    user_services_port: 0,
                    dns_port: 0,
                    sip_tls_port: 0,
                    netns: None,
                    fqdn,
                },
                mirror_of,
            });
        }
    }
    Ok(clusters)
}

/// The lab's PostgreSQL password, made up once and kept in `<lab>/pgpass` (0600).
pub(crate) fn password(dir: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = dir.join(PGPASS_FILE);
    if let Ok(text) = std::fs::read_to_string(&file)
        && let Some(p) = text.lines().next().and_then(|l| l.rsplit(':').next())
    {
        return Ok(p.to_string());
    }
    let password = random_token()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("creating {}", file.display()))?;
    use std::io::Write;
    writeln!(f, "*:*:*:{PG_USER}:{password}")?;
    Ok(password)
}

/// `url` with the lab's password in it, for the lab's own connections (its servers read
/// the password file instead).
pub(crate) fn with_password(url: &str, dir: &Path) -> anyhow::Result<String> {
    if !store::is_postgres_url(url) {
        return Ok(url.to_string());
    }
    let password = password(dir)?;
    Ok(url.replacen(
        &format!("://{PG_USER}@"),
        &format!("://{PG_USER}:{password}@"),
        1,
    ))
}

/// Opens the Back End `be` of the lab's installed topology, its mirror with it, as the
/// lab's own tools do: with the lab's password (its servers read the password file).
pub(crate) async fn open_back_end(
    be: &topology::BackEnd,
    dir: &Path,
) -> anyhow::Result<store::BackEnd> {
    let url = with_password(&be.database_url, dir)?;
    let mirror = be
        .mirror
        .as_ref()
        .map(|m| with_password(&m.database_url, dir))
        .transpose()?;
    store::BackEnd::open_mirrored(&url, mirror.as_deref(), dir)
        .await
        .with_context(|| {
            format!(
                "opening {} under {}",
                store::redacted_url(&url),
                dir.display()
            )
        })
}

/// Makes the cluster of `c` (once: a cluster already there is kept).
pub(crate) fn create(c: &Cluster, dir: &Path, primary_address: Option<&str>) -> anyhow::Result<()> {
    let bin = bin_dir()?;
    let data = c.server.data_dir.join("data");
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    open_path_to(dir)?;
    for d in [dir.join("backend"), c.server.data_dir.clone()] {
        std::fs::create_dir_all(&d)?;
    }
    // The postgres user passes through the lab's `backend` folder to its own.
    std::fs::set_permissions(
        dir.join("backend"),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )?;
    give_to_owner(&c.server.data_dir)?;
    std::fs::set_permissions(
        &c.server.data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let password = password(dir)?;
    // The password file for initdb and pg_basebackup, readable by the owner only.
    let secret = c.server.data_dir.join("pw.tmp");
    std::fs::write(&secret, format!("{password}\n"))?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    give_to_owner(&secret)?;
    let made = match (&c.mirror_of, primary_address) {
        (None, _) => {
            run(
                as_owner(&bin.join("initdb"))
                    .arg("-D")
                    .arg(&data)
                    .args([
                        "-U",
                        PG_USER,
                        "--auth-host=scram-sha-256",
                        "--auth-local=peer",
                    ])
                    .arg(format!("--pwfile={}", secret.display()))
                    .args(["--locale=C", "-E", "UTF8"]),
                "initdb",
            )?;
            // Connections from the lab's addresses, replication too, by password.
            let hba = data.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba)?;
            let lab = lab_network(&c.server.address);
            text.push_str(&format!(
                "\n# tandem lab: servers and the mirror connect from the lab's addresses, by password\n\
                 host all all {lab} scram-sha-256\n\
                 host replication all {lab} scram-sha-256\n",
            ));
            std::fs::write(&hba, text)?;
            Ok(())
        }
        (Some(primary), Some(at)) => {
            // The mirror: a copy of the running primary that streams from it.
            let pgpass = dir.join(PGPASS_FILE);
            let own_pgpass = c.server.data_dir.join("pgpass");
            std::fs::copy(&pgpass, &own_pgpass)?;
            give_to_owner(&own_pgpass)?;
            let r = run(
                as_owner(&bin.join("pg_basebackup"))
                    .env("PGPASSFILE", &own_pgpass)
                    .args(["-h", at, "-p", &PG_PORT.to_string(), "-U", PG_USER])
                    .arg("-D")
                    .arg(&data)
                    .args(["-R", "-X", "stream", "--checkpoint=fast"]),
                &format!("pg_basebackup of {primary}"),
            );
            let _ = std::fs::remove_file(&own_pgpass);
            r?;
            // Its name in the primary's pg_stat_replication, and the password in the
            // connection string (pg_basebackup -R writes it only from a URL).
            let auto = data.join("postgresql.auto.conf");
            let mut text = std::fs::read_to_string(&auto)?;
            text.push_str(&format!(
                "primary_conninfo = 'host={at} port={PG_PORT} user={PG_USER} password={password} application_name={}'\n",
                application_name(&c.server.fqdn)
            ));
            std::fs::write(&auto, text)?;
            Ok(())
        }
        (Some(primary), None) => Err(anyhow!(
            "the primary {primary} of mirror {} has no address",
            c.server.fqdn
        )),
    };
    let _ = std::fs::remove_file(&secret);
    made
}

/// The addresses a cluster at `address` takes connections from: the lab's loopback
/// (`127.0.0.0/8`), or on hosts the lab's network (`10.B.0.0/16`).
fn lab_network(address: &str) -> String {
    match address.parse::<Ipv4Addr>().map(|a| a.octets()) {
        Ok([127, ..]) | Err(_) => "127.0.0.0/8".into(),
        Ok([a, b, _, _]) => format!("{a}.{b}.0.0/16"),
    }
}

/// The name a mirror streams under (its `application_name` in the primary's
/// `pg_stat_replication`): its FQDN with dots as underscores.
fn application_name(fqdn: &str) -> String {
    fqdn.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Starts a cluster as a child of no one (its own process group), recording its pid.
pub(crate) fn start(s: &mut LabServer) -> anyhow::Result<()> {
    start_with(s, &[])
}

fn start_with(s: &mut LabServer, extra: &[&str]) -> anyhow::Result<()> {
    let bin = bin_dir()?;
    let data = s.data_dir.join("data");
    // A cluster killed by `lab kill` leaves its pid file: postgres itself checks that the
    // pid is not a live postmaster before starting. Wait until the old one is gone whole,
    // a zombie included, or it refuses.
    if let Some(old) = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut backoff = clock::Backoff::polling();
        while crate::lab_process::any_exists(&[old]) && !s.alive() && Instant::now() < deadline {
            crate::lab_process::reap(&[old]);
            std::thread::sleep(backoff.next_wait());
        }
    }
    let mut command = as_owner(&bin.join("postgres"));
    command
        .arg("-D")
        .arg(&data)
        .arg("-c")
        .arg(format!("listen_addresses={}", s.address))
        .arg("-c")
        .arg(format!("port={PG_PORT}"))
        .args(["-c", "unix_socket_directories="])
        .arg("-c")
        .arg(format!("cluster_name={}", s.fqdn))
        .args(extra);
    let what = format!("PostgreSQL for {}", s.fqdn);
    s.spawn(command, &what)
}

/// Waits until the cluster accepts connections (a standby: until it streams too).
pub(crate) async fn wait_ready(s: &LabServer, dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let url = url_of(s, dir, "postgres")?;
    let deadline = Instant::now() + timeout;
    let mut backoff = clock::Backoff::polling();
    loop {
        let ready = async {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
            if s.role == MIRROR_ROLE {
                let (streaming,): (bool,) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
                )
                .fetch_one(&mut c)
                .await?;
                return Ok::<_, sqlx::Error>(streaming);
            }
            Ok(true)
        }
        .await;
        match ready {
            Ok(true) => return Ok(()),
            _ if s.exited() => {
                let log = std::fs::read_to_string(&s.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                bail!(
                    "PostgreSQL for {} exited while starting; the end of its log {}:\n{}",
                    s.fqdn,
                    s.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
            _ if Instant::now() > deadline => {
                bail!(
                    "PostgreSQL for {} did not {} within {} s; its log is {}",
                    s.fqdn,
                    if s.role == MIRROR_ROLE {
                        "stream from its primary"
                    } else {
                        "accept connections"
                    },
                    timeout.as_secs(),
                    s.log.display()
                )
            }
            _ => tokio::time::sleep(backoff.next_wait()).await,
        }
    }
}

/// Creates the database a Back End is (`instance`, `rtc` in the seeds) on a new primary,
/// and makes its standby synchronous when the topology says so (`synchronous`).
pub(crate) async fn prepare_primary(
    s: &LabServer,
    dir: &Path,
    database: &str,
    synchronous: bool,
) -> anyhow::Result<()> {
    let url = url_of(s, dir, "postgres")?;
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    let (exists,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut c)
            .await?;
    if !exists {
        let name: String = database
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await?;
    }
    if synchronous {
        // Any standby: after a failover the old primary, rebuilt, is the standby, under
        // another name; the mirror's own name would leave a promoted mirror waiting for itself.
        sqlx::query("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .execute(&mut c)
            .await?;
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut c)
            .await?;
    }
    Ok(())
}

/// Whether a cluster accepts a connection within `timeout` (`lab status`).
pub(crate) async fn answers(s: &LabServer, timeout: Duration) -> bool {
    let Some(dir) = s.data_dir.parent().and_then(Path::parent) else {
        return false;
    };
    let Ok(url) = url_of(s, dir, "postgres") else {
        return false;
    };
    tokio::time::timeout(timeout, async {
        <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// The URL of the `database` on a cluster, with the lab's password (the lab's own use).
fn url_of(s: &LabServer, dir: &Path, database: &str) -> anyhow::Result<String> {
    with_password(
        &format!("postgres://{PG_USER}@{}:{PG_PORT}/{database}", s.address),
        dir,
    )
}

async fn is_primary(s: &LabServer, dir: &Path) -> bool {
    let Ok(url) = url_of(s, dir, "postgres") else {
        return false;
    };
    let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await else {
        return false;
    };
    sqlx::query_as::<_, (bool,)>("SELECT pg_is_in_recovery()")
        .fetch_one(&mut c)
        .await
        .is_ok_and(|(r,)| !r)
}

async fn term_of(s: &LabServer, dir: &Path, database: &str) -> anyhow::Result<i64> {
    let mut c =
        <sqlx::PgConnection as sqlx::Connection>::connect(&url_of(s, dir, database)?).await?;
    let (term,): (i64,) = sqlx::query_as("SELECT term FROM backend_principal WHERE id = 1")
        .fetch_one(&mut c)
        .await?;
    Ok(term)
}

/// Stops a cluster cleanly (PostgreSQL's fast shutdown) and waits until it is gone.
fn stop_and_wait(s: &LabServer) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    if let Some(pid) = s.pid.filter(|_| s.alive()) {
        let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut backoff = clock::Backoff::polling();
        while s.alive() {
            if Instant::now() > deadline {
                bail!("PostgreSQL for {} did not stop within 30 s", s.fqdn);
            }
            std::thread::sleep(backoff.next_wait());
        }
    }
    Ok(())
}

/// Makes `s` a new standby of `primary`: its old data is kept beside (`data.replaced-<ms>`),
/// a `pg_basebackup -R` from the principal takes its place, and it starts streaming.
async fn rebuild_as_standby(
    s: &mut LabServer,
    primary: &LabServer,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    stop_and_wait(s)?;
    let data = s.data_dir.join("data");
    let kept = s
        .data_dir
        .join(format!("data.replaced-{}", store::now_ms()));
    std::fs::rename(&data, &kept)?;
    let cluster = Cluster {
        server: s.clone(),
        mirror_of: Some(primary.fqdn.clone()),
    };
    create(&cluster, dir, Some(&primary.address))?;
    start(s)?;
    wait_ready(s, dir, Duration::from_secs(60)).await?;
    Ok(kept)
}

/// `lab start` of a Back End cluster. A copy that would come back as a second primary of
/// its pool (an old principal, after `Invoke-CsDatabaseFailover -Force`) never takes a
/// write: it starts read-only, what it had committed beyond the failover is counted into
/// the principal, and it is rebuilt as the principal's standby. Of two primaries the one
/// with the higher term is the principal. `lab start` of a running copy that a planned
/// failover fenced rebuilds it as the standby too (the original's mirror resumes; here it
/// is copied again).
pub(crate) async fn start_cluster(
    clusters: &mut [LabServer],
    i: usize,
    dir: &Path,
    database: &str,
    synchronous: bool,
) -> anyhow::Result<()> {
    let running = clusters[i].alive();
    let peer = (0..clusters.len()).find(|&j| {
        j != i && clusters[j].pool.eq_ignore_ascii_case(&clusters[i].pool) && clusters[j].alive()
    });
    let primary = if running {
        is_primary(&clusters[i], dir).await
    } else {
        !clusters[i]
            .data_dir
            .join("data")
            .join("standby.signal")
            .exists()
    };
    let peer = match peer {
        Some(j) if primary && is_primary(&clusters[j], dir).await => j,
        // A running copy is left as it is; a stopped one starts as it was.
        _ if running => return Ok(()),
        _ => {
            start(&mut clusters[i])?;
            return wait_ready(&clusters[i], dir, Duration::from_secs(60)).await;
        }
    };
    // Two primaries (a running one is the fenced old principal of a planned failover):
    // look at this one without letting anything write to it.
    if !running {
        start_with(
            &mut clusters[i],
            &["-c", "default_transaction_read_only=on"],
        )?;
        wait_ready(&clusters[i], dir, Duration::from_secs(60)).await?;
    }
    let mine = term_of(&clusters[i], dir, database).await?;
    let theirs = term_of(&clusters[peer], dir, database).await?;
    let (old, new) = if mine <= theirs { (i, peer) } else { (peer, i) };
    let lost = store::mirror::record_loss_from(
        &url_of(&clusters[new], dir, database)?,
        &url_of(&clusters[old], dir, database)?,
    )
    .await?;
    if new == i {
        // This copy is the principal after all: start it writable.
        stop_and_wait(&clusters[i])?;
        start(&mut clusters[i])?;
        wait_ready(&clusters[i], dir, Duration::from_secs(60)).await?;
    }
    let principal = clusters[new].clone();
    let kept = rebuild_as_standby(&mut clusters[old], &principal, dir).await?;
    if synchronous {
        // The promotion made the principal commit alone; with its standby back, it waits
        // for it again, as the topology says.
        prepare_primary(&principal, dir, database, true).await?;
    }
    eprintln!(
        "{} had been failed over from (term {} < {}): it is rebuilt as the standby of {} (its old data is in {}){}",
        clusters[old].fqdn,
        mine.min(theirs),
        mine.max(theirs),
        principal.fqdn,
        kept.display(),
        lost.map_or(String::new(), |n| format!(
            "; the failover lost {n} write transactions it had committed"
        ))
    );
    Ok(())
}
