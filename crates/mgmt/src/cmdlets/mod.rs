//! The handlers: what each cmdlet does on the server its place says.
//!
//! [`run`] is the handler table, an exhaustive match on [`CmdletId`] like the dispatch
//! table beside it. A handler gets the bound call (and the master, when it runs on the
//! active master) and answers; it never forwards.

pub mod admin;
pub mod certs;
pub mod cms;
pub mod config;
pub mod dr;
pub mod pooldata;
pub mod services;
pub mod users;

use cmdlet::catalogue::spec::CmdletId;

use crate::Refused;
use crate::call::{Call, Reply};

/// Runs the handler of the call's cmdlet.
pub async fn run(call: &Call<'_>) -> Reply {
    use CmdletId::*;
    match call.inv.cmdlet.id {
        GetCsTopology
        | GetCsService
        | GetCsPoolBackupRelationship
        | GetCsPoolEdgeAssociation
        | GetCsAllowedDomain
        | GetCsXmppAllowedPartner => config::read(call).await,
        PublishCsTopology => config::publish(call).await,
        EnableCsTopology => config::enable(call).await,
        SetCsEdgePoolNextHop
        | EnableCsEdgePoolFederation
        | DisableCsEdgePoolFederation
        | SetCsPoolEdgeAssociation
        | SetCsPoolBackupRelationship
        | SetCsRegistrar
        | SetCsEdgeServer
        | SetCsSite
        | NewCsAllowedDomain
        | RemoveCsAllowedDomain
        | NewCsXmppAllowedPartner
        | SetCsXmppAllowedPartner
        | RemoveCsXmppAllowedPartner => config::edit(call).await,
        ExportCsConfiguration => config::export(call).await,
        ImportCsConfiguration => config::import(call).await,
        ExportCsLisConfiguration => config::export_lis(call).await,
        ImportCsLisConfiguration => config::import_lis(call).await,
        GetCsManagementStoreReplicationStatus => config::replication_status(call).await,
        InvokeCsManagementStoreReplication => config::replicate(call).await,
        EnableCsUser => users::enable(call).await,
        DisableCsUser => users::disable(call).await,
        SetCsBackupServiceConfiguration => users::set_backup_configuration(call).await,
        GetCsUser | GetCsUserPoolInfo | GetCsBackupServiceConfiguration => users::read(call).await,
        GetCsBackupServiceStatus => pooldata::status(call).await,
        InvokeCsBackupServiceSync => pooldata::sync(call).await,
        InvokeCsStorageServiceFlush => pooldata::flush(call).await,
        DebugCsInterPoolReplication => pooldata::debug_replication(call).await,
        ExportCsUserData => pooldata::export_user_data(call).await,
        ImportCsUserData => pooldata::import_user_data(call).await,
        InvokeCsPoolFailOver | InvokeCsPoolFailBack => dr::start(call).await,
        ResumeCsDisasterRecoveryOperation => dr::resume(call).await,
        StopCsDisasterRecoveryOperation => dr::cancel(call).await,
        GetCsPoolFailoverState => dr::failover_state(call).await,
        GetCsDisasterRecoveryOperation => dr::operations(call).await,
        InvokeCsManagementServerFailover => cms::failover(call).await,
        GetCsDatabaseMirrorState => cms::mirror_state(call).await,
        InvokeCsDatabaseFailover => cms::database_failover(call).await,
        InstallCsDatabase => cms::install_database(call).await,
        MoveCsManagementServer => cms::move_management_server(call).await,
        Bootstrapper => cms::bootstrapper(call).await,
        GetCsWindowsService | StartCsWindowsService | StopCsWindowsService => {
            services::windows_service(call).await
        }
        InvokeCsServerSetup => services::run_again(call).await,
        GetCsCertificate => certs::list(call).await,
        RequestCsCertificate => certs::request(call).await,
        SetCsCertificate => certs::assign(call).await,
        NewCsAdminOperator => admin::new_operator(call).await,
        RemoveCsAdminOperator => admin::remove_operator(call).await,
        GetCsAdminOperator => admin::operators(call).await,
        GetCsAdminRole => admin::roles_list(call).await,
        GetCsAdminAuditLog => admin::audit_log(call).await,
        GetDnsServerResourceRecord
        | AddDnsServerResourceRecordA
        | AddDnsServerResourceRecord
        | SetDnsServerResourceRecord
        | RemoveDnsServerResourceRecord
        | AddDnsServerPrimaryZone
        | AddDnsServerConditionalForwarderZone
        | GetDnsServerZone
        | RemoveDnsServerZone
        | TestNetConnection
        | TestCsTopology
        | GetCommand
        | GetHelp
        | FormatList
        | FormatTable
        | ConvertToJson => Err(Refused::Unprocessable(format!(
            "{} is not run by a tandem server",
            call.inv.cmdlet.name
        ))
        .into()),
    }
}
