//! `tandem bench`: figures, measured on a real lab.
//!
//! `replication` starts a lab of N servers (one Front End holding the CMS, the rest Edge
//! servers, each a process on its own loopback address), then times configuration
//! changes from the moment the cmdlet is sent until the master's status shows every
//! replica up to date with it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::lab::{self, LabFile, UpOptions};

/// A topology of `replicas` servers on a free loopback block.
pub(crate) fn bench_topology(replicas: usize, block: u8) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "[deployment]\nsip_domain = \"bench.test\"\ndns_zone = \"bench.test\"\ncms_pool = \"cms.bench.test\"\n\n\
         [[site]]\nname = \"BenchSite\"\n\n\
         [[front_end_pool]]\nfqdn = \"cms.bench.test\"\nsite = \"BenchSite\"\nproduct_version = \"SkypeForBusinessServer2019\"\n\n\
         [front_end_pool.back_end]\nserver_fqdn = \"cms-be.bench.test\"\ninstance = \"rtc\"\ndatabase_url = \"sqlite://backend/cms.db\"\n\n\
         [[front_end_pool.server]]\nfqdn = \"fe1.bench.test\"\naddress = \"127.{block}.0.10\"\n"
    );
    let edges = replicas - 1;
    for pool in 0..edges.div_ceil(topology::MAX_EDGE_SERVERS) {
        let _ = writeln!(
            t,
            "[[edge_pool]]\nfqdn = \"edgepool{pool}.bench.test\"\nsite = \"BenchSite\"\nnext_hop = \"cms.bench.test\"\n"
        );
        let first = pool * topology::MAX_EDGE_SERVERS;
        for i in first..(first + topology::MAX_EDGE_SERVERS).min(edges) {
            let (a, b) = (1 + i / 200, 10 + i % 200);
            let ext = a + 100;
            let _ = writeln!(
                t,
                "[[edge_pool.server]]\nfqdn = \"edge{i}.bench.test\"\naddress = \"127.{block}.{a}.{b}\"\n\
                 external_address = \"127.{block}.{ext}.{b}\"\n"
            );
        }
    }
    t
}

/// A loopback block (127.B.0.0/16) where nothing listens on the management port.
fn free_block(port: u16) -> anyhow::Result<u8> {
    let seed = std::process::id() as usize;
    for k in 0..100 {
        let block = 30 + ((seed + k * 7) % 70) as u8;
        if std::net::TcpListener::bind(("127.".to_string() + &format!("{block}.0.10"), port))
            .is_ok()
        {
            return Ok(block);
        }
    }
    bail!("no free loopback block found for the benchmark lab")
}

pub(crate) fn replication(replicas: usize, changes: usize, json: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tandem-bench-{}", std::process::id()));
    let block = free_block(4444)?;
    std::fs::create_dir_all(&dir)?;
    let topology_file = dir.join("topology.toml");
    std::fs::write(&topology_file, bench_topology(replicas, block))?;
    let started = Instant::now();
    let backend = lab::Backend::Sqlite;
    let up = lab::up(UpOptions {
        block: None,
        federate_with: None,
        hosts: false,
        topology: Some(topology_file),
        dir: dir.clone(),
        detach: true,
        quiet: true,
        users: 0,
        detection_secs: None,
        reconcile_after_secs: lab::DEFAULT_RECONCILE_AFTER_SECS,
        backend,
    });
    let result = up.and_then(|()| {
        let lab_up = started.elapsed();
        let lab = LabFile::load(&dir)?;
        measure(&lab, changes).map(|times| (lab_up, times))
    });
    let _ = lab::down(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (lab_up, mut times) = result?;
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = times[times.len() / 2];
    let max = *times.last().expect("at least one change");
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "replication",
                "replicas": replicas,
                "changes": changes,
                "lab_up_seconds": lab_up.as_secs_f64(),
                "p50_ms": ms(p50),
                "mean_ms": ms(mean),
                "max_ms": ms(max),
                "samples_ms": times.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "replication to {replicas} replicas ({changes} changes; lab up in {:.1} s)",
            lab_up.as_secs_f64()
        );
        println!(
            "  change → every replica up to date: p50 {:.1} ms, mean {:.1} ms, max {:.1} ms",
            ms(p50),
            ms(mean),
            ms(max)
        );
    }
    Ok(())
}

fn measure(lab: &LabFile, changes: usize) -> anyhow::Result<Vec<Duration>> {
    let rt = lab::runtime();
    let client = lab.api()?;
    let master = &lab.servers[0];
    rt.block_on(async {
        let mut times = Vec::new();
        let mut bar = crate::progress::Progress::new(
            "Changes replicated",
            changes.max(1) as u64,
            "changes",
        );
        for n in 0..changes.max(1) {
            bar.set(n as u64, "");
            let t0 = Instant::now();
            let reply = lab::call(
                &client,
                lab,
                master,
                "Set-CsRegistrar",
                serde_json::json!({"Identity": "Registrar:cms.bench.test", "FailureDetectionInterval": 60 + n}),
            )
            .await?;
            let Some(version) = reply.cms_version else {
                bail!("the change created no CMS version");
            };
            loop {
                let (all, min) = lab::all_up_to_date(&client, lab).await?;
                if all && min >= version {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(30) {
                    bail!("replicas did not converge within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            times.push(t0.elapsed());
        }
        bar.set(changes.max(1) as u64, "");
        bar.finish();
        Ok(times)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_topologies_are_valid_at_every_size() {
        for n in [2, 13, 14, 100, 200] {
            let t = topology::Topology::from_toml(&bench_topology(n, 40)).unwrap();
            assert_eq!(t.servers().count(), n);
            let report = topology::validate(&t);
            assert!(report.is_valid(), "{n}: {:?}", report.problems);
        }
    }
}
