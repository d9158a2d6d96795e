//! What the console shows, read once a second while someone watches: a `/health` probe of
//! every server of the topology (a server that does not answer within
//! [`PROBE_TIMEOUT`] is down), and the read cmdlets the shell runs for the rest —
//! `Get-CsPoolFailoverState`, `Get-CsBackupServiceStatus` per pair (asked of a pool of the
//! pair that answers), `Get-CsManagementStoreReplicationStatus`,
//! `Get-CsDisasterRecoveryOperation` — through the same dispatcher as any call, so the
//! console shows what the shell would, forwarded where the shell's call would be.
//!
//! The reads are made as the lab administrator (a forwarded call must name an operator the
//! receiving server knows): they are only ever these `Get-` cmdlets, which every role may
//! run, so a view-only operator sees nothing through the console it could not read in the
//! shell.

use std::collections::HashMap;
use std::time::Duration;

use api::InvokeRequest;
use cmdlet::{Field, Output, Record};
use console::chart::{History, Sample};
use console::view::*;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::Mgmt;
use crate::dispatch::Caller;
use crate::operators::Operator;

/// How long a server has to answer its probe before the map shows it down.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long one read cmdlet may take before its section says it could not be read.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// What the console remembers between readings: when each server last answered, and each
/// pair's figures over the last minutes.
#[derive(Debug, Default)]
pub struct Memory {
    last_up_ms: HashMap<String, i64>,
    first_seen_ms: HashMap<String, i64>,
    histories: HashMap<(String, String), History>,
}

/// A read cmdlet's records, or why there are none.
async fn read(
    mgmt: &Mgmt,
    cmdlet: &str,
    parameters: &[(&str, &str)],
) -> Result<Vec<Record>, String> {
    let request = InvokeRequest {
        cmdlet: cmdlet.into(),
        parameters: parameters
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect::<Map<_, _>>(),
    };
    let caller = Caller {
        operator: Operator::lab_administrator(),
        forwarded_by: None,
    };
    match tokio::time::timeout(
        READ_TIMEOUT,
        crate::dispatch::invoke(mgmt, request, &caller),
    )
    .await
    {
        Err(_) => Err(format!(
            "{cmdlet} did not answer in {} s",
            READ_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(e.message().to_string()),
        Ok(Ok(reply)) => match reply.output {
            Output::Records(records) => Ok(records),
            Output::None => Ok(Vec::new()),
            Output::Text(text) => Err(format!("{cmdlet} answered with text: {text}")),
        },
    }
}

fn text(r: &Record, name: &str) -> String {
    r.get(name).map(Field::display).unwrap_or_default()
}

fn number(r: &Record, name: &str) -> f64 {
    match r.get(name) {
        Some(Field::Int(i)) => *i as f64,
        Some(Field::Float(f)) => *f,
        Some(Field::Text(t)) => t.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn integer(r: &Record, name: &str) -> i64 {
    number(r, name) as i64
}

/// Probes every Front End and Edge server of the topology at once.
async fn probe_all(
    mgmt: &Mgmt,
    topology: &topology::Topology,
) -> HashMap<String, Option<api::Health>> {
    let mut probes = JoinSet::new();
    for s in topology.servers() {
        let fqdn = s.server.fqdn.clone();
        let base = node::Node::base_of(topology, s.server);
        let api = mgmt.node.api.clone();
        probes.spawn(async move { (fqdn, api.health(&base, PROBE_TIMEOUT).await.ok()) });
    }
    let mut found = HashMap::new();
    while let Some(done) = probes.join_next().await {
        if let Ok((fqdn, health)) = done {
            found.insert(fqdn, health);
        }
    }
    found
}

/// Reads everything the console shows now.
pub async fn gather(mgmt: &Mgmt, memory: &mut Memory) -> Snapshot {
    let node = &mgmt.node;
    let topology = node.topology();
    let now = node.clock.now_ms();

    // The reads that do not depend on the probes start at once, beside them.
    let states = {
        let m = mgmt.clone();
        tokio::spawn(async move { read(&m, "Get-CsPoolFailoverState", &[]).await })
    };
    let replicas = {
        let m = mgmt.clone();
        tokio::spawn(async move { read(&m, "Get-CsManagementStoreReplicationStatus", &[]).await })
    };
    let operations = {
        let m = mgmt.clone();
        tokio::spawn(async move { read(&m, "Get-CsDisasterRecoveryOperation", &[]).await })
    };
    let probes = probe_all(mgmt, &topology).await;

    let server_view = |memory: &mut Memory, s: &topology::Server| {
        let health = probes.get(&s.fqdn).cloned().flatten();
        let up = health.is_some();
        memory.first_seen_ms.entry(s.fqdn.clone()).or_insert(now);
        if up {
            memory.last_up_ms.insert(s.fqdn.clone(), now);
        }
        let since = memory
            .last_up_ms
            .get(&s.fqdn)
            .or_else(|| memory.first_seen_ms.get(&s.fqdn))
            .copied()
            .unwrap_or(now);
        ServerView {
            fqdn: s.fqdn.clone(),
            up,
            replica_version: health.as_ref().map(|h| h.replica_version),
            cms_master: health.as_ref().is_some_and(|h| h.cms_master),
            down_for_secs: (!up).then(|| ((now - since).max(0) / 1000) as u64),
        }
    };

    // Pairs: each once, asked of a pool of the pair that answers (this server's first).
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pool in &topology.front_end_pools {
        if let Some(b) = &pool.backup_pool {
            let pair = if pool.fqdn < *b {
                (pool.fqdn.clone(), b.clone())
            } else {
                (b.clone(), pool.fqdn.clone())
            };
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
    }
    let answers = |pool: &str| {
        topology.front_end_pool(pool).is_some_and(|p| {
            p.servers
                .iter()
                .any(|s| probes.get(&s.fqdn).is_some_and(Option::is_some))
        })
    };
    let mut backup_reads = JoinSet::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        let ask = if node.pool.eq_ignore_ascii_case(b) || (!answers(a) && answers(b)) {
            b.clone()
        } else {
            a.clone()
        };
        let m = mgmt.clone();
        backup_reads.spawn(async move {
            (
                i,
                read(&m, "Get-CsBackupServiceStatus", &[("PoolFqdn", &ask)]).await,
            )
        });
    }

    let mut sites: Vec<SiteView> = Vec::new();
    let states: HashMap<String, FailoverView> = match states.await {
        Ok(Ok(records)) => records
            .iter()
            .map(|r| {
                (
                    text(r, "PoolFqdn").to_ascii_lowercase(),
                    FailoverView {
                        state: text(r, "State"),
                        mode: text(r, "Mode"),
                        serving_pool: text(r, "ServingPoolFqdn"),
                    },
                )
            })
            .collect(),
        _ => HashMap::new(),
    };
    let cms_pool = topology.deployment.cms_pool.clone();
    let standby = topology.backup_pool_of(&cms_pool).map(str::to_string);
    for site in &topology.sites {
        let mut view = SiteView {
            name: site.name.clone(),
            pools: Vec::new(),
            edge_pools: Vec::new(),
        };
        for pool in topology
            .front_end_pools
            .iter()
            .filter(|p| p.site == site.name)
        {
            let servers: Vec<ServerView> = pool
                .servers
                .iter()
                .map(|s| server_view(memory, s))
                .collect();
            let cms = if pool.fqdn.eq_ignore_ascii_case(&cms_pool) {
                Some("active")
            } else if standby
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(&pool.fqdn))
            {
                Some("standby")
            } else {
                None
            };
            view.pools.push(PoolView {
                fqdn: pool.fqdn.clone(),
                site: pool.site.clone(),
                health: Health::of_servers(&servers),
                servers,
                backup_pool: pool.backup_pool.clone(),
                edge_pool: pool.edge_pool.clone(),
                failover: states.get(&pool.fqdn.to_ascii_lowercase()).cloned(),
                cms,
            });
        }
        for edge in topology.edge_pools.iter().filter(|p| p.site == site.name) {
            let servers: Vec<ServerView> = edge
                .servers
                .iter()
                .map(|s| server_view(memory, s))
                .collect();
            let through = |route: &Option<String>| {
                route.as_deref().is_some_and(|r| {
                    // A route is written bare or as `EdgeServer:<fqdn>`.
                    let r = r
                        .get(..11)
                        .filter(|p| p.eq_ignore_ascii_case("EdgeServer:"))
                        .map_or(r, |_| &r[11..]);
                    r.eq_ignore_ascii_case(&edge.fqdn)
                        || edge.servers.iter().any(|s| s.fqdn.eq_ignore_ascii_case(r))
                })
            };
            let mut routes = Vec::new();
            for s in &topology.sites {
                if through(&s.federation_route) {
                    routes.push(format!("SIP federation route of {}", s.name));
                }
                if through(&s.xmpp_federation_route) {
                    routes.push(format!("XMPP route of {}", s.name));
                }
            }
            view.edge_pools.push(EdgePoolView {
                fqdn: edge.fqdn.clone(),
                site: edge.site.clone(),
                health: Health::of_servers(&servers),
                servers,
                next_hop: edge.next_hop.clone(),
                routes,
            });
        }
        sites.push(view);
    }

    let mut pair_views: Vec<PairView> = pairs
        .iter()
        .map(|(a, b)| PairView {
            pools: (a.clone(), b.clone()),
            modules: Vec::new(),
            error: None,
            history: Vec::new(),
        })
        .collect();
    while let Some(done) = backup_reads.join_next().await {
        let Ok((i, result)) = done else { continue };
        let pair = &mut pair_views[i];
        match result {
            Ok(records) => {
                pair.modules = records
                    .iter()
                    .map(|r| BackupView {
                        module: text(r, "BackupModule"),
                        source: text(r, "SourcePoolFqdn"),
                        target: text(r, "TargetPoolFqdn"),
                        export_status: text(r, "ExportStatus"),
                        pending: integer(r, "PendingChanges"),
                        lag_secs: number(r, "LagSeconds"),
                        rpo_secs: number(r, "EstimatedRpoSeconds"),
                        commit_mode: text(r, "CommitMode"),
                        last_error: text(r, "LastError"),
                    })
                    .collect();
                let history = memory.histories.entry(pair.pools.clone()).or_default();
                history.push(Sample {
                    at_ms: now,
                    lag_secs: pair.modules.iter().map(|m| m.lag_secs).fold(0.0, f64::max),
                    rpo_secs: pair.modules.iter().map(|m| m.rpo_secs).fold(0.0, f64::max),
                    pending: pair.modules.iter().map(|m| m.pending).sum(),
                });
            }
            Err(e) => pair.error = Some(e),
        }
        pair.history = memory
            .histories
            .get(&pair.pools)
            .map(History::samples)
            .unwrap_or_default();
    }

    let master = probes
        .iter()
        .find(|(_, h)| h.as_ref().is_some_and(|h| h.cms_master))
        .map(|(fqdn, _)| fqdn.clone());
    let mut cms = CmsView {
        active_pool: cms_pool,
        standby_pool: standby,
        master,
        replicas: Vec::new(),
        error: None,
    };
    match replicas.await {
        Ok(Ok(records)) => {
            cms.replicas = records
                .iter()
                .map(|r| ReplicaView {
                    fqdn: text(r, "ReplicaFqdn"),
                    version: integer(r, "Version"),
                    up_to_date: matches!(r.get("UpToDate"), Some(Field::Bool(true))),
                    versions_behind: integer(r, "VersionsBehind"),
                    last_report: text(r, "LastStatusReport"),
                })
                .collect();
        }
        Ok(Err(e)) => cms.error = Some(e),
        Err(e) => cms.error = Some(e.to_string()),
    }

    let (operations, operations_error) = match operations.await {
        Ok(Ok(records)) => (records.iter().map(operation_view).collect(), None),
        Ok(Err(e)) => (Vec::new(), Some(e)),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };

    Snapshot {
        domain: topology.deployment.sip_domain.clone(),
        served_by: node.fqdn.clone(),
        at: clock::format_timestamp(now),
        sites,
        cms,
        pairs: pair_views,
        operations,
        operations_error,
    }
}

/// An operation's record as the console shows it.
fn operation_view(r: &Record) -> OperationView {
    let steps = match r.get("Steps") {
        Some(Field::List(items)) => items
            .iter()
            .map(|s| StepView::parse(&s.display()))
            .collect(),
        _ => Vec::new(),
    };
    OperationView {
        id: text(r, "Identity"),
        kind: text(r, "Operation"),
        pool: text(r, "PoolFqdn"),
        mode: text(r, "Mode"),
        state: text(r, "State"),
        started: text(r, "Started"),
        duration_secs: text(r, "DurationSeconds"),
        data_lost: text(r, "DataLost"),
        steps,
        error: text(r, "Error"),
        runner: text(r, "Runner"),
    }
}
