//! The server's "Windows services", as `Get-/Start-/Stop-CsWindowsService` see them.
//!
//! The names are the product's, so the seeds' lines work unchanged. Which services a
//! server has follows its role and the topology: `MASTER` and `FTA` only on Front Ends of
//! the CMS pool and of its partner (the standby store), `LYNCBACKUP` only on paired pools, `RTCXMPPTGWPX` only on Edge pools with
//! XMPP, `RTCMEDIARELAY` and `RTCMRAUTH` (the A/V Edge) and `RTCDATAPROXY` (the Web
//! Conferencing Edge) on every Edge. Stopping `REPLICA`, `MASTER` or `FTA` stops that work for real (see the server's
//! `set_service`); the state of the others is what the registrar, Backup Service and Edge
//! listeners obey as they arrive.

use std::collections::BTreeMap;
use std::sync::Mutex;

use topology::{Role, Topology};

/// One service: its name, display name and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub name: &'static str,
    pub display_name: &'static str,
    pub running: bool,
    /// How many times it was started or stopped: a stop scheduled earlier (a failover's
    /// `-ServicesStopDelayMins`) is dropped when the service changed since.
    pub changes: u64,
}

#[derive(Debug)]
pub struct Services {
    states: Mutex<BTreeMap<&'static str, ServiceState>>,
}

pub const RTCSRV: &str = "RTCSRV";
pub const LYNCBACKUP: &str = "LYNCBACKUP";
pub const MASTER: &str = "MASTER";
pub const FTA: &str = "FTA";
pub const REPLICA: &str = "REPLICA";
pub const RTCXMPPTGWPX: &str = "RTCXMPPTGWPX";
/// The A/V Edge's media relay (TURN) on an Edge's external address.
pub const RTCMEDIARELAY: &str = "RTCMEDIARELAY";
/// The Media Relay Authentication Service: relay credentials for the Front End pools.
pub const RTCMRAUTH: &str = "RTCMRAUTH";
/// The Web Conferencing Edge: meeting content downloads from outside.
pub const RTCDATAPROXY: &str = "RTCDATAPROXY";

/// The Central Management services a Front End of the CMS pool (or its partner) runs.
pub const CMS_SERVICES: [(&str, &str); 2] = [
    (MASTER, "Skype for Business Server Master Replicator Agent"),
    (FTA, "Skype for Business Server File Transfer Agent"),
];

/// The services a server has, in the order `Get-CsWindowsService` lists them.
pub fn installed(topology: &Topology, fqdn: &str) -> Vec<(&'static str, &'static str)> {
    let Some(server) = topology.server(fqdn) else {
        return Vec::new();
    };
    let mut list = Vec::new();
    match server.role {
        Role::FrontEnd => {
            list.push((RTCSRV, "Skype for Business Server Front-End"));
            let pool = topology.front_end_pool(server.pool_fqdn);
            if pool.is_some_and(|p| p.backup_pool.is_some()) {
                list.push((LYNCBACKUP, "Skype for Business Server Backup Service"));
            }
            if hosts_cms_services(topology, server.pool_fqdn) {
                list.extend(CMS_SERVICES);
            }
        }
        Role::Edge => {
            list.push((RTCSRV, "Skype for Business Server Access Edge"));
            list.push((RTCMEDIARELAY, "Skype for Business Server Audio/Video Edge"));
            list.push((
                RTCMRAUTH,
                "Skype for Business Server Audio/Video Authentication",
            ));
            list.push((
                RTCDATAPROXY,
                "Skype for Business Server Web Conferencing Edge",
            ));
            if topology
                .edge_pool(server.pool_fqdn)
                .is_some_and(|p| p.xmpp_enabled)
            {
                list.push((
                    RTCXMPPTGWPX,
                    "Skype for Business Server XMPP Translating Gateway Proxy",
                ));
            }
        }
    }
    list.push((
        REPLICA,
        "Skype for Business Server Replica Replicator Agent",
    ));
    list
}

impl Services {
    /// Every installed service, running.
    pub fn new(topology: &Topology, fqdn: &str) -> Services {
        let states = installed(topology, fqdn)
            .into_iter()
            .map(|(name, display_name)| {
                (
                    name,
                    ServiceState {
                        name,
                        display_name,
                        running: true,
                        changes: 0,
                    },
                )
            })
            .collect();
        Services {
            states: Mutex::new(states),
        }
    }

    /// Adds the services this server gained (running), keeping the state of those it had:
    /// a server whose pool now hosts the Central Management store has `MASTER` and `FTA`
    /// from the moment its master is installed.
    pub fn add(&self, services: &[(&'static str, &'static str)]) {
        let mut states = self.states.lock().expect("services lock");
        for &(name, display_name) in services {
            states.entry(name).or_insert(ServiceState {
                name,
                display_name,
                running: true,
                changes: 0,
            });
        }
    }

    /// Every service, or the one named (case-insensitively).
    pub fn list(&self, name: Option<&str>) -> Vec<ServiceState> {
        let states = self.states.lock().expect("services lock");
        states
            .values()
            .filter(|s| name.is_none_or(|n| s.name.eq_ignore_ascii_case(n)))
            .cloned()
            .collect()
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.states
            .lock()
            .expect("services lock")
            .get(name)
            .is_some_and(|s| s.running)
    }

    /// Records a service's new state; returns the canonical name, or `None` if this server
    /// has no such service.
    pub fn set(&self, name: &str, running: bool) -> Option<&'static str> {
        let mut states = self.states.lock().expect("services lock");
        let state = states
            .values_mut()
            .find(|s| s.name.eq_ignore_ascii_case(name))?;
        state.running = running;
        state.changes += 1;
        Some(state.name)
    }

    /// Stops `name` if it has not been started or stopped since it showed `changes`;
    /// true when it was stopped.
    pub fn stop_unless_changed(&self, name: &str, changes: u64) -> bool {
        let mut states = self.states.lock().expect("services lock");
        match states
            .values_mut()
            .find(|s| s.name.eq_ignore_ascii_case(name))
        {
            Some(state) if state.changes == changes => {
                state.running = false;
                state.changes += 1;
                true
            }
            _ => false,
        }
    }
}

/// Whether the Front Ends of `pool` run the Central Management services: the pool that
/// hosts the CMS, and its partner, which holds the standby store.
pub fn hosts_cms_services(topology: &Topology, pool: &str) -> bool {
    let cms = &topology.deployment.cms_pool;
    cms.eq_ignore_ascii_case(pool)
        || topology
            .backup_pool_of(cms)
            .is_some_and(|b| b.eq_ignore_ascii_case(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_gains_the_cms_services_lists_them_and_keeps_the_others_state() {
        let mut topology = topology::contoso();
        for p in &mut topology.front_end_pools {
            p.backup_pool = None;
        }
        let services = Services::new(&topology, "pool2-fe1.contoso.com");
        assert!(services.list(Some(MASTER)).is_empty());
        services.set(RTCSRV, false);
        services.add(&CMS_SERVICES);
        services.add(&CMS_SERVICES);
        assert_eq!(services.list(Some(MASTER)).len(), 1);
        assert!(services.is_running(MASTER) && services.is_running(FTA));
        assert!(!services.is_running(RTCSRV));
    }

    #[test]
    fn a_scheduled_stop_does_not_undo_a_later_start() {
        let services = Services::new(&topology::contoso(), "pool2-fe1.contoso.com");
        let seen = services.list(Some(RTCSRV))[0].changes;
        // A failback starts the service before the failover's delayed stop comes due.
        services.set(RTCSRV, true);
        assert!(!services.stop_unless_changed(RTCSRV, seen));
        assert!(services.is_running(RTCSRV));
        let seen = services.list(Some(RTCSRV))[0].changes;
        assert!(services.stop_unless_changed(RTCSRV, seen));
        assert!(!services.is_running(RTCSRV));
    }

    #[test]
    fn services_follow_role_and_topology() {
        let t = topology::contoso();
        let names = |fqdn| -> Vec<_> { installed(&t, fqdn).into_iter().map(|(n, _)| n).collect() };
        assert_eq!(
            names("pool1-fe1.contoso.com"),
            [RTCSRV, LYNCBACKUP, MASTER, FTA, REPLICA]
        );
        // pool2 holds the standby store: the Central Management services run there too.
        assert_eq!(
            names("pool2-fe1.contoso.com"),
            [RTCSRV, LYNCBACKUP, MASTER, FTA, REPLICA]
        );
        assert_eq!(
            names("edgeserver1.contoso.com"),
            [
                RTCSRV,
                RTCMEDIARELAY,
                RTCMRAUTH,
                RTCDATAPROXY,
                RTCXMPPTGWPX,
                REPLICA
            ]
        );
        assert!(names("nowhere.contoso.com").is_empty());
    }
}
