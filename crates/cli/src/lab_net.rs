//! `tandem lab up --hosts`: every server and every Back End on a host of its own.
//!
//! A host is a Linux network namespace with one interface and the server's own addresses;
//! nothing of a host is on loopback, so a server that reached another through `127.0.0.1`,
//! or through files beside its own, would fail here. The topology's loopback addresses
//! `127.B.x.y` become `10.B.x.y` (B, the lab's block; x.y kept), so one topology file serves
//! both kinds of lab. The network, all in namespaces named `tdm<B>-…`:
//!
//! ```text
//!   root (the operator: tandem, clients) ── tdm<B>-core (the lab's DNS server, 10.B.0.153)
//!                                            │            │
//!                                    tdm<B>-s1 (router)   tdm<B>-s2 (router)      one per site
//!                                    │   │   └── TAP ═ tandem lab wire ═ TAP ──┘   │   │
//!                                  hosts of Site1                            hosts of Site2
//! ```
//!
//! Each host routes through its site's router. Routers reach each other only across the
//! wire (`lab_wire`), which `tandem lab net` cuts, delays or makes lossy; the core reaches
//! every router directly, so the operator's shell and the DNS (which the original keeps in
//! every site) stay reachable from both sides of a cut, as an out-of-band management
//! network would. Addresses the lab uses for itself are in `10.B.252.0/22`, which no
//! topology address may take.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use topology::Topology;

/// The lab's network, as `D/lab.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Network {
    /// B of `10.B.x.y`.
    pub(crate) block: u8,
    /// The sites in the topology's order: the wire's site indexes.
    pub(crate) sites: Vec<String>,
    /// Every namespace the lab made, for `lab down`.
    pub(crate) namespaces: Vec<String>,
    /// The wire's process.
    pub(crate) wire_pid: Option<u32>,
}

/// One host to make: its namespace, its site's index and its addresses.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub(crate) namespace: String,
    pub(crate) site: usize,
    pub(crate) addresses: Vec<Ipv4Addr>,
}

/// The first octet of hosts' addresses.
const HOSTS_NET: u8 = 10;

/// The namespace of the core (and the DNS server) of lab block `block`.
pub(crate) fn core_namespace(block: u8) -> String {
    format!("tdm{block}-core")
}

/// The namespace of the router of site `site` (0-based).
pub(crate) fn router_namespace(block: u8, site: usize) -> String {
    format!("tdm{block}-s{}", site + 1)
}

/// The namespace of the host named `fqdn`.
pub(crate) fn host_namespace(block: u8, fqdn: &str) -> String {
    format!("tdm{block}-{fqdn}")
}

fn infra(block: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(HOSTS_NET, block, c, d)
}

/// The operator's (root namespace) address, and the core's, on the link between them.
fn root_address(block: u8) -> Ipv4Addr {
    infra(block, 252, 1)
}
fn core_uplink(block: u8) -> Ipv4Addr {
    infra(block, 252, 2)
}
/// The core's and router `site`'s addresses on the link between them (a /30 each).
fn core_to_router(block: u8, site: usize) -> (Ipv4Addr, Ipv4Addr) {
    let base = 4 * (site as u8 + 1);
    (infra(block, 254, base + 1), infra(block, 254, base + 2))
}
/// Router `site`'s address on the wire.
fn wan_address(block: u8, site: usize) -> Ipv4Addr {
    infra(block, 253, site as u8 + 1)
}
/// Every router's address towards its hosts (the hosts' gateway).
fn gateway(block: u8) -> Ipv4Addr {
    infra(block, 255, 254)
}

/// The root namespace's side of the link to the core.
fn root_link(block: u8) -> String {
    format!("tdm{block}up")
}

/// Runs `commands` (one `ip` command each, without `ip`) in `namespace` (None: the root),
/// in one `ip -batch`: it stops at the first that fails.
fn ip_batch(namespace: Option<&str>, commands: &[String]) -> anyhow::Result<()> {
    ip_batch_with(namespace, commands, false)
}

/// `ip_batch`, or with `force` every command tried whatever fails (teardown).
fn ip_batch_with(namespace: Option<&str>, commands: &[String], force: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut command = Command::new("ip");
    if let Some(ns) = namespace {
        command.args(["-n", ns]);
    }
    if force {
        command.arg("-force");
    }
    let mut child = command
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ip` (Debian package iproute2)")?;
    let text = commands.join("\n") + "\n";
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin for ip"))?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "setting up the lab's network{} failed: {}",
            namespace.map(|n| format!(" in {n}")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Turns on forwarding in a router namespace (its own sysctl, not the machine's).
fn forward(namespace: &str) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["netns", "exec", namespace, "sh", "-c"])
        .arg("echo 1 > /proc/sys/net/ipv4/ip_forward")
        .status()?;
    if !status.success() {
        bail!("cannot turn on forwarding in {namespace}");
    }
    Ok(())
}

/// Moves a loopback topology onto hosts: `127.B.x.y` becomes `10.B.x.y`. Returns B.
/// Refuses a topology whose addresses are not all in one loopback block, or that uses the
/// lab's own `x` of 252–255.
pub(crate) fn readdress(topology: &mut Topology) -> anyhow::Result<u8> {
    let addresses: Vec<Ipv4Addr> = topology
        .servers()
        .flat_map(|s| [Some(s.server.address), s.server.external_address])
        .flatten()
        .collect();
    let Some(first) = addresses.first() else {
        bail!("the topology has no servers");
    };
    let block = first.octets()[1];
    for a in &addresses {
        let o = a.octets();
        if o[0] != 127 || o[1] != block {
            bail!(
                "--hosts puts the topology's loopback block 127.{block}.x.y on hosts as 10.{block}.x.y, and {a} is not in it; give every server an address in 127.{block}.0.0/16"
            );
        }
        if o[2] >= 252 {
            bail!(
                "{a}: --hosts keeps 127.{block}.252.0/22 (10.{block}.252.0/22) for the lab's own routers; give the server another address"
            );
        }
    }
    topology.move_addresses([HOSTS_NET, block]);
    Ok(block)
}

/// Refuses to build over another lab's network: its namespaces, or a route to `10.B/16`.
pub(crate) fn check_free(block: u8) -> anyhow::Result<()> {
    let prefix = format!("tdm{block}-");
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("cannot run `ip` (Debian package iproute2); --hosts needs it")?;
    if let Some(taken) = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find(|l| l.starts_with(&prefix))
    {
        bail!(
            "the network namespace {} exists: another --hosts lab uses block {block} (stop it with `tandem lab down`, or remove it with `ip netns del`)",
            taken.split_whitespace().next().unwrap_or(taken)
        );
    }
    let routes = Command::new("ip")
        .args([
            "-4",
            "route",
            "show",
            "to",
            "match",
            &format!("10.{block}.0.1"),
        ])
        .output()?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    if let Some(r) = routes.lines().find(|l| !l.starts_with("default")) {
        bail!(
            "10.{block}.0.0/16 is already routed on this machine ({r}); --hosts needs it for the lab's hosts: move the topology to another block"
        );
    }
    Ok(())
}

/// Makes the lab's network: the core, a router per site, `hosts`, and starts the wire
/// between the routers. The DNS server's address goes to the core. On failure, what was
/// made is removed.
pub(crate) fn build(
    dir: &Path,
    block: u8,
    sites: &[String],
    hosts: &[Host],
    dns: Ipv4Addr,
) -> anyhow::Result<Network> {
    let mut network = Network {
        block,
        sites: sites.to_vec(),
        namespaces: Vec::new(),
        wire_pid: None,
    };
    match build_into(&mut network, dir, hosts, dns) {
        Ok(()) => Ok(network),
        Err(e) => {
            teardown(&mut network);
            Err(e)
        }
    }
}

fn build_into(
    network: &mut Network,
    dir: &Path,
    hosts: &[Host],
    dns: Ipv4Addr,
) -> anyhow::Result<()> {
    let block = network.block;
    let core = core_namespace(block);
    let routers: Vec<String> = (0..network.sites.len())
        .map(|i| router_namespace(block, i))
        .collect();
    // One at a time, each recorded once made: a failure part-way removes only what this
    // lab made, never a namespace of another lab that took the name meanwhile.
    for ns in std::iter::once(&core)
        .chain(&routers)
        .chain(hosts.iter().map(|h| &h.namespace))
    {
        ip_batch(None, &[format!("netns add {ns}")])?;
        network.namespaces.push(ns.clone());
    }
    // The operator's link to the core.
    let up = root_link(block);
    let root_commands = [
        format!("link add {up} type veth peer name uplink netns {core}"),
        format!("addr add {}/30 dev {up}", root_address(block)),
        format!("link set dev {up} up"),
        format!(
            "route add {HOSTS_NET}.{block}.0.0/16 via {} dev {up}",
            core_uplink(block)
        ),
    ];
    ip_batch(None, &root_commands)?;
    let mut core_commands = vec![
        "link set dev lo up".to_string(),
        format!("addr add {dns}/32 dev lo"),
        format!("addr add {}/30 dev uplink", core_uplink(block)),
        "link set dev uplink up".to_string(),
    ];
    let mut router_commands: Vec<Vec<String>> = vec![Vec::new(); routers.len()];
    for (i, router) in routers.iter().enumerate() {
        let (core_side, router_side) = core_to_router(block, i);
        let link = format!("s{}", i + 1);
        core_commands.push(format!(
            "link add {link} type veth peer name core netns {router}"
        ));
        core_commands.push(format!("addr add {core_side}/30 dev {link}"));
        core_commands.push(format!("link set dev {link} up"));
        router_commands[i].extend([
            "link set dev lo up".to_string(),
            format!("addr add {router_side}/30 dev core"),
            "link set dev core up".to_string(),
            format!("route add default via {core_side} dev core"),
        ]);
    }
    for (k, host) in hosts.iter().enumerate() {
        let link = format!("h{k}");
        let (_, router_side) = core_to_router(block, host.site);
        router_commands[host.site].extend([
            format!(
                "link add {link} type veth peer name eth0 netns {}",
                host.namespace
            ),
            format!("addr add {}/32 dev {link}", gateway(block)),
            format!("link set dev {link} up"),
        ]);
        for a in &host.addresses {
            router_commands[host.site].push(format!("route add {a}/32 dev {link}"));
            core_commands.push(format!(
                "route add {a}/32 via {router_side} dev s{}",
                host.site + 1
            ));
            for other in (0..routers.len()).filter(|j| *j != host.site) {
                router_commands[other].push(format!(
                    "route add {a}/32 via {} dev {}",
                    wan_address(block, host.site),
                    crate::lab_wire::tap_name(block, other)
                ));
            }
        }
    }
    ip_batch(Some(&core), &core_commands)?;
    forward(&core)?;
    // The wire makes each router's TAP device, which moves into the router; then the
    // routers get their addresses and routes (those across the wire need the TAP's
    // address first).
    network.wire_pid = Some(start_wire(dir, block, routers.len())?);
    ip_batch(
        None,
        &routers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "link set dev {} netns {r}",
                    crate::lab_wire::tap_name(block, i)
                )
            })
            .collect::<Vec<_>>(),
    )?;
    for (i, router) in routers.iter().enumerate() {
        let tap = crate::lab_wire::tap_name(block, i);
        let mut commands = vec![
            format!("addr add {}/24 dev {tap}", wan_address(block, i)),
            format!("link set dev {tap} up"),
        ];
        commands.append(&mut router_commands[i]);
        ip_batch(Some(router), &commands)?;
        forward(router)?;
    }
    for host in hosts {
        ip_batch(Some(&host.namespace), &host_setup(host, block))?;
    }
    Ok(())
}

/// A host's own side: its addresses on its one interface, its site's router as gateway.
fn host_setup(host: &Host, block: u8) -> Vec<String> {
    let mut commands = vec!["link set dev lo up".to_string()];
    for a in &host.addresses {
        commands.push(format!("addr add {a}/32 dev eth0"));
    }
    commands.extend([
        "link set dev eth0 up".to_string(),
        format!("route add {} dev eth0 scope link", gateway(block)),
        format!("route add default via {} dev eth0", gateway(block)),
    ]);
    commands
}

/// Starts `tandem lab wire` in its own process group and waits until it answers.
fn start_wire(dir: &Path, block: u8, sites: usize) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs").join("wire.log"))?;
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["lab", "wire", "--dir"]).arg(dir).args([
        "--block",
        &block.to_string(),
        "--sites",
        &sites.to_string(),
    ]);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the lab's link between sites")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut backoff = clock::Backoff::polling();
    loop {
        if crate::lab_wire::ask(dir, &crate::lab_wire::Request::Status).is_ok() {
            return Ok(child.id());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the lab's link between sites exited ({status}); see {}",
                dir.join("logs").join("wire.log").display()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the lab's link between sites did not answer within 10 s");
        }
        std::thread::sleep(backoff.next_wait());
    }
}

/// Removes the lab's network: stops the wire, deletes every namespace (their interfaces
/// go with them, the operator's link and route too).
pub(crate) fn teardown(network: &mut Network) {
    if let Some(pid) = network.wire_pid.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    }
    let mut commands: Vec<String> = network
        .namespaces
        .drain(..)
        .rev()
        .map(|ns| format!("netns del {ns}"))
        .collect();
    commands.push(format!("link del {}", root_link(network.block)));
    let _ = ip_batch_with(None, &commands, true);
}

/// `command` run on host `namespace` (its own network, the same files): `ip netns exec`,
/// which then executes the program itself, so the pid is the program's. None: as it is.
pub(crate) fn wrapped(command: Command, namespace: Option<&str>) -> Command {
    let Some(ns) = namespace else {
        return command;
    };
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => c.env(key, v),
            None => c.env_remove(key),
        };
    }
    c
}

/// `tandem lab net`: what crosses between the sites of a lab started with --hosts.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum NetCommand {
    /// Cut the link between two sites: nothing crosses, either way, until `lab net heal`.
    Cut {
        site_a: String,
        site_b: String,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Delay everything that crosses, each way (`50ms`, `1s`): between two sites, or all.
    Delay {
        delay: String,
        sites: Vec<String>,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Lose a share of what crosses, each way (`5%`): between two sites, or all.
    Loss {
        percent: String,
        sites: Vec<String>,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Mend the link between two sites, or every link: no cut, delay or loss.
    Heal {
        sites: Vec<String>,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Each link: its settings and the frames that crossed or were dropped.
    Status {
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

impl NetCommand {
    /// The lab folder it names.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            NetCommand::Cut { dir, .. }
            | NetCommand::Delay { dir, .. }
            | NetCommand::Loss { dir, .. }
            | NetCommand::Heal { dir, .. }
            | NetCommand::Status { dir, .. } => dir,
        }
    }
}

/// `tandem lab net …`.
pub(crate) fn net(dir: &Path, network: &Network, command: &NetCommand) -> anyhow::Result<()> {
    use crate::lab_wire::Request;
    use NetCommand as N;
    let json = matches!(command, N::Status { json: true, .. });
    let site = |name: &str| {
        network
            .sites
            .iter()
            .position(|s| s.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                anyhow!(
                    "'{name}' is not a site of this lab; choose among {}",
                    network.sites.join(", ")
                )
            })
    };
    let pair = |sites: &[String]| -> anyhow::Result<Option<(usize, usize)>> {
        match sites {
            [] => Ok(None),
            [a, b] if !a.eq_ignore_ascii_case(b) => Ok(Some((site(a)?, site(b)?))),
            _ => bail!("name two different sites, or none for every link"),
        }
    };
    let request = match command {
        N::Cut { site_a, site_b, .. } => Request::Cut {
            between: pair(&[site_a.clone(), site_b.clone()])?,
        },
        N::Delay { delay, sites, .. } => Request::Delay {
            between: pair(sites)?,
            ms: parse_delay(delay)?,
        },
        N::Loss { percent, sites, .. } => Request::Loss {
            between: pair(sites)?,
            percent: parse_percent(percent)?,
        },
        N::Heal { sites, .. } => Request::Heal {
            between: pair(sites)?,
        },
        N::Status { .. } => Request::Status,
    };
    let wan = crate::lab_wire::ask(dir, &request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&wan)?);
        return Ok(());
    }
    let rows = wan
        .links
        .iter()
        .map(|l| {
            let c = &l.counters;
            vec![
                format!("{} - {}", network.sites[l.a], network.sites[l.b]),
                if l.settings.cut { "yes" } else { "no" }.to_string(),
                format!("{}ms", l.settings.delay_ms),
                format!("{}%", l.settings.loss_percent),
                c.forwarded.to_string(),
                (c.dropped_cut + c.dropped_loss + c.dropped_queue_full).to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        crate::table::render(
            &["Link", "Cut", "Delay", "Loss", "Forwarded", "Dropped"],
            rows,
            &[2, 3, 4, 5]
        )
    );
    Ok(())
}

/// `50ms`, `2s`, `0`: milliseconds.
pub(crate) fn parse_delay(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else {
        (t, 1)
    };
    let n: u64 = number
        .trim()
        .parse()
        .map_err(|_| anyhow!("'{text}' is not a delay; write it as 50ms or 1s"))?;
    let ms = n
        .checked_mul(scale)
        .filter(|ms| *ms <= 60_000)
        .ok_or_else(|| anyhow!("'{text}': the lab's link delays at most 60 s"))?;
    Ok(ms)
}

/// `5%` or `5`: a percentage, 0 to 100.
pub(crate) fn parse_percent(text: &str) -> anyhow::Result<f64> {
    let t = text.trim();
    let n: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| anyhow!("'{text}' is not a share; write it as 5%"))?;
    if !(0.0..=100.0).contains(&n) {
        bail!("'{text}' is not between 0% and 100%");
    }
    Ok(n)
}

/// The source address this machine uses towards `remote` (a UDP socket's `connect` sends
/// nothing; it only picks the route): loopback for a lab on one machine, the operator's
/// address on a `--hosts` lab. Loopback if no route is found.
pub(crate) fn source_address_towards(remote: std::net::IpAddr) -> std::net::IpAddr {
    let local = Ipv4Addr::LOCALHOST.into();
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((remote, 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_read_in_milliseconds_or_seconds() {
        assert_eq!(parse_delay("50ms").unwrap(), 50);
        assert_eq!(parse_delay("2s").unwrap(), 2000);
        assert_eq!(parse_delay("0").unwrap(), 0);
        for bad in ["", "fast", "-5ms", "61s", "99999999999999999999s"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_read_as_percentages() {
        assert_eq!(parse_percent("5%").unwrap(), 5.0);
        assert_eq!(parse_percent("12.5").unwrap(), 12.5);
        for bad in ["", "101%", "-1", "lots"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_loopback_topology_moves_onto_hosts_keeping_its_block() {
        let mut t = Topology::from_toml(topology::CONTOSO_TOML).unwrap();
        t.move_to_loopback_block(42);
        assert_eq!(readdress(&mut t).unwrap(), 42);
        assert!(
            t.servers()
                .all(|s| s.server.address.octets()[..2] == [10, 42])
        );
    }

    #[test]
    fn a_topology_outside_one_loopback_block_is_refused() {
        let mut t = Topology::from_toml(topology::CONTOSO_TOML).unwrap();
        t.front_end_pools[0].servers[0].address = Ipv4Addr::new(192, 0, 2, 7);
        let e = readdress(&mut t).unwrap_err().to_string();
        assert!(e.contains("192.0.2.7"), "{e}");
        let mut t = Topology::from_toml(topology::CONTOSO_TOML).unwrap();
        t.front_end_pools[0].servers[0].address = Ipv4Addr::new(127, 0, 253, 1);
        assert!(readdress(&mut t).is_err());
    }

    #[test]
    fn the_labs_own_addresses_stay_out_of_the_hosts_range() {
        let b = 7;
        for a in [
            root_address(b),
            core_uplink(b),
            wan_address(b, 3),
            gateway(b),
        ]
        .into_iter()
        .chain((0..8).flat_map(|s| {
            let (x, y) = core_to_router(b, s);
            [x, y]
        })) {
            assert!(a.octets()[2] >= 252, "{a}");
        }
    }
}
