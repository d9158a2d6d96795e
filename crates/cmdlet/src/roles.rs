//! Who may run what: the administrative roles, modelled on the product's role-based access
//! control (RBAC), and what each cmdlet needs.
//!
//! The product's roles are sets of cmdlets. tandem keeps the roles' names and their intent
//! and decides per cmdlet by the kind of thing it does ([`Permission`]): an exhaustive
//! match on [`CmdletId`], so a cmdlet added to the catalogue does not compile until it says
//! what it needs. The roles kept:
//!
//! - `CsAdministrator`: everything, including operators and their roles.
//! - `CsServerAdministrator`: "manage, monitor and troubleshoot servers and services":
//!   services, certificates, server setup, the Backup Service's operations, and pool
//!   failover and failback (operations on the pools' servers). Not users, not the topology
//!   or other global settings, not the Central Management store's failover or move, which
//!   change where every server's configuration comes from.
//! - `CsUserAdministrator`: enable and disable users, export and import their data.
//! - `CsLocationAdministrator`: the Location Information Service's configuration.
//! - `CsViewOnlyAdministrator`: every read (`Get-`, `Test-`, `Debug-`, `Export-CsConfiguration`
//!   …), nothing that changes state.
//!
//! Every role includes the reads.

use crate::catalogue::spec::CmdletId;

/// An administrative role an operator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminRole {
    CsAdministrator,
    CsServerAdministrator,
    CsUserAdministrator,
    CsLocationAdministrator,
    CsViewOnlyAdministrator,
}

impl AdminRole {
    pub const ALL: [AdminRole; 5] = [
        AdminRole::CsAdministrator,
        AdminRole::CsServerAdministrator,
        AdminRole::CsUserAdministrator,
        AdminRole::CsLocationAdministrator,
        AdminRole::CsViewOnlyAdministrator,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            AdminRole::CsAdministrator => "CsAdministrator",
            AdminRole::CsServerAdministrator => "CsServerAdministrator",
            AdminRole::CsUserAdministrator => "CsUserAdministrator",
            AdminRole::CsLocationAdministrator => "CsLocationAdministrator",
            AdminRole::CsViewOnlyAdministrator => "CsViewOnlyAdministrator",
        }
    }

    /// The role of that name, case-insensitively.
    pub fn parse(name: &str) -> Option<AdminRole> {
        AdminRole::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(name.trim()))
    }

    /// What the role is for, as `Get-CsAdminRole` says it.
    pub const fn description(self) -> &'static str {
        match self {
            AdminRole::CsAdministrator => "Every cmdlet, including operators and their roles.",
            AdminRole::CsServerAdministrator => {
                "Servers and services: Windows services, certificates, server setup, the Backup \
                 Service's operations, pool failover and failback; every read."
            }
            AdminRole::CsUserAdministrator => {
                "Users: enable, disable, export and import their data; every read."
            }
            AdminRole::CsLocationAdministrator => {
                "The Location Information Service's configuration; every read."
            }
            AdminRole::CsViewOnlyAdministrator => "Every read; nothing that changes state.",
        }
    }

    /// Whether the role may do what `permission` names.
    pub fn allows(self, permission: Permission) -> bool {
        match self {
            AdminRole::CsAdministrator => true,
            AdminRole::CsServerAdministrator => {
                matches!(permission, Permission::Read | Permission::Servers)
            }
            AdminRole::CsUserAdministrator => {
                matches!(permission, Permission::Read | Permission::Users)
            }
            AdminRole::CsLocationAdministrator => {
                matches!(permission, Permission::Read | Permission::Location)
            }
            AdminRole::CsViewOnlyAdministrator => permission == Permission::Read,
        }
    }
}

/// What a cmdlet does, as far as who may run it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Changes nothing.
    Read,
    /// Operates servers and pools: services, certificates, the Backup Service, pool failover.
    Servers,
    /// Changes users.
    Users,
    /// Changes the Location Information Service's configuration.
    Location,
    /// Changes the deployment as a whole: topology, global settings, the Central
    /// Management store's place.
    Global,
    /// Changes operators and their roles.
    Operators,
}

impl Permission {
    /// The roles that allow it, for a refusal that names them.
    pub fn roles(self) -> Vec<AdminRole> {
        AdminRole::ALL
            .into_iter()
            .filter(|r| r.allows(self))
            .collect()
    }

    /// In words, for a refusal.
    pub const fn describe(self) -> &'static str {
        match self {
            Permission::Read => "reads the deployment",
            Permission::Servers => "operates servers and pools",
            Permission::Users => "changes users",
            Permission::Location => "changes the Location Information Service's configuration",
            Permission::Global => "changes the deployment as a whole",
            Permission::Operators => "changes operators and their roles",
        }
    }
}

/// What running `id` needs.
pub fn permission(id: CmdletId) -> Permission {
    use CmdletId::*;
    match id {
        GetCsTopology
        | TestCsTopology
        | GetCsService
        | GetCsPoolBackupRelationship
        | GetCsPoolEdgeAssociation
        | GetCsManagementStoreReplicationStatus
        | GetCsDatabaseMirrorState
        | GetCsUser
        | GetCsUserPoolInfo
        | GetCsBackupServiceStatus
        | GetCsBackupServiceConfiguration
        | DebugCsInterPoolReplication
        | GetCsPoolFailoverState
        | GetCsDisasterRecoveryOperation
        | GetCsWindowsService
        | GetCsCertificate
        | GetDnsServerResourceRecord
        | GetDnsServerZone
        | GetCsAllowedDomain
        | GetCsXmppAllowedPartner
        | TestNetConnection
        | GetCommand
        | GetHelp
        | FormatList
        | FormatTable
        | ConvertToJson
        | GetCsAdminRole
        | GetCsAdminOperator
        | GetCsAdminAuditLog => Permission::Read,
        InvokeCsManagementStoreReplication
        | InvokeCsBackupServiceSync
        | InvokeCsStorageServiceFlush
        | InvokeCsPoolFailOver
        | InvokeCsPoolFailBack
        | ResumeCsDisasterRecoveryOperation
        | StopCsDisasterRecoveryOperation
        | StartCsWindowsService
        | StopCsWindowsService
        | InvokeCsServerSetup
        | RequestCsCertificate
        | SetCsCertificate
        | Bootstrapper
        // Exports write a file on the server that runs them, holding every user's digest
        // hashes: not a reader's.
        | ExportCsConfiguration
        | ExportCsLisConfiguration => Permission::Servers,
        EnableCsUser | DisableCsUser | ExportCsUserData | ImportCsUserData => Permission::Users,
        ImportCsLisConfiguration => Permission::Location,
        PublishCsTopology
        | EnableCsTopology
        | SetCsEdgePoolNextHop
        | EnableCsEdgePoolFederation
        | DisableCsEdgePoolFederation
        | SetCsPoolEdgeAssociation
        | SetCsPoolBackupRelationship
        | ImportCsConfiguration
        // -Clean empties a standby Central Management store, the copy its failover needs.
        | InstallCsDatabase
        | SetCsRegistrar
        | SetCsEdgeServer
        | SetCsSite
        | InvokeCsManagementServerFailover
        | InvokeCsDatabaseFailover
        | MoveCsManagementServer
        | SetCsBackupServiceConfiguration
        | AddDnsServerResourceRecordA
        | AddDnsServerResourceRecord
        | SetDnsServerResourceRecord
        | RemoveDnsServerResourceRecord
        | AddDnsServerPrimaryZone
        | AddDnsServerConditionalForwarderZone
        | RemoveDnsServerZone
        // Who may federate with the deployment: as the federation settings of its Edge.
        | NewCsAllowedDomain
        | RemoveCsAllowedDomain
        | NewCsXmppAllowedPartner
        | SetCsXmppAllowedPartner
        | RemoveCsXmppAllowedPartner => Permission::Global,
        NewCsAdminOperator | RemoveCsAdminOperator => Permission::Operators,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::catalogue;

    #[test]
    fn what_changes_state_is_never_a_read_and_view_only_reads_everything_else() {
        for spec in catalogue().entries().iter().map(|e| e.spec) {
            let p = permission(spec.id);
            if spec.changes_state {
                assert_ne!(p, Permission::Read, "{} changes state", spec.name);
                assert!(
                    !AdminRole::CsViewOnlyAdministrator.allows(p),
                    "{}",
                    spec.name
                );
            }
            if spec.name.starts_with("Get-") {
                assert_eq!(p, Permission::Read, "{}", spec.name);
            }
            for role in AdminRole::ALL {
                assert!(role.allows(Permission::Read));
            }
            assert!(AdminRole::CsAdministrator.allows(p));
        }
    }

    #[test]
    fn a_server_administrator_runs_failovers_but_not_users_or_topology() {
        let server = AdminRole::CsServerAdministrator;
        assert!(server.allows(permission(CmdletId::InvokeCsPoolFailOver)));
        assert!(server.allows(permission(CmdletId::StopCsWindowsService)));
        assert!(!server.allows(permission(CmdletId::EnableCsUser)));
        assert!(!server.allows(permission(CmdletId::PublishCsTopology)));
        assert!(!server.allows(permission(CmdletId::InvokeCsManagementServerFailover)));
        assert!(!server.allows(permission(CmdletId::NewCsAdminOperator)));
        assert_eq!(
            permission(CmdletId::NewCsAdminOperator).roles(),
            vec![AdminRole::CsAdministrator]
        );
        assert_eq!(
            AdminRole::parse("csviewonlyadministrator"),
            Some(AdminRole::CsViewOnlyAdministrator)
        );
    }
}
