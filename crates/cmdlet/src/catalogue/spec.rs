//! The shape of a cmdlet signature.
//!
//! Signatures are plain `'static` data so the whole catalogue can be declared as a table
//! (see `table.rs`) and checked by tests, the way PowerShell's help files describe cmdlets:
//! parameter sets, types, mandatory flags, aliases and positions.

/// What a parameter accepts. The binder converts the text the operator typed into a
/// [`crate::BoundValue`] according to this type and reports a type error otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A present/absent flag: `-Force`, or `-Force:$false`.
    Switch,
    /// `$true`, `$false`, `true`, `false`, `1`, `0`.
    Boolean,
    /// Any text.
    String,
    /// Several texts: `a,b,c` or a single value.
    StringArray,
    /// A fully qualified domain name: `pool1.contoso.com`.
    Fqdn,
    /// A signed 32-bit integer.
    Int32,
    /// A port number (1–65535).
    UInt16,
    /// A duration: `hh:mm:ss`, `d.hh:mm:ss`, or a plain number of seconds.
    TimeSpan,
    /// A SIP URI such as `sip:alice@contoso.com` (a bare `alice@contoso.com` gets the
    /// `sip:` prefix added).
    SipUri,
    /// A file path, kept as typed (`c:\CsConfigurationFile.zip` is valid).
    Path,
    /// An IPv4 address.
    Ipv4,
    /// An identity of the form `<Kind>:<fqdn>` (for example `EdgeServer:edgepool1.contoso.com`).
    /// The prefix is optional when typing; the bound value always carries it.
    Identity(IdentityKind),
    /// One of a fixed list of values, matched case-insensitively; the bound value is the
    /// canonical spelling from the list.
    Enum(&'static [&'static str]),
}

/// The kinds of `<Kind>:<fqdn>` identities the reference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    EdgeServer,
    Registrar,
    /// `global`, `site:<name>` or a bare name: settings scopes (XdsIdentity).
    Scope,
}

impl IdentityKind {
    /// The prefix as the reference spells it.
    pub fn prefix(self) -> &'static str {
        match self {
            IdentityKind::EdgeServer => "EdgeServer",
            IdentityKind::Registrar => "Registrar",
            IdentityKind::Scope => "",
        }
    }
}

/// One parameter of a cmdlet.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Canonical name, without the dash: `PoolFqdn`.
    pub name: &'static str,
    pub ty: ParamType,
    /// Other names that bind to this parameter (`cf` for `Confirm`, `MirrorSqlServerFqdn` for
    /// `BackupMirrorSqlServerFqdn`). Matched exactly, case-insensitively, and by prefix.
    pub aliases: &'static [&'static str],
    /// Parameter sets this parameter belongs to; empty means every set of the cmdlet.
    pub sets: &'static [&'static str],
    /// Mandatory in every set it belongs to.
    pub mandatory: bool,
    /// Zero-based position for unnamed arguments, if the parameter may be given by position.
    pub position: Option<u8>,
    /// One line for `Get-Help`.
    pub help: &'static str,
}

/// Which capability of tandem carries out a cmdlet. The shell runs `Shell` cmdlets itself;
/// the others need a part of the system that arrives with the named capability. Nothing
/// is ever reported as done when it was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Runs inside the shell with no deployment: help, formatting, topology validation.
    Shell,
    /// Topology, Central Management store, services: a running deployment.
    Deployment,
    /// Users, sign-in and the Backup Service.
    UsersAndBackup,
    /// Pool failover and failback.
    PoolFailover,
    /// Central Management store failover and moves.
    CmsFailover,
    /// Edge pools, federation routes, DNS.
    EdgeAndDns,
}

impl Capability {
    /// How an operator would describe the part of tandem that carries this out.
    pub fn describe(self) -> &'static str {
        match self {
            Capability::Shell => "the shell itself",
            Capability::Deployment => {
                "a running deployment (server processes and the Central Management store)"
            }
            Capability::UsersAndBackup => "users, sign-in and the Backup Service",
            Capability::PoolFailover => "pool failover and failback",
            Capability::CmsFailover => "Central Management store failover",
            Capability::EdgeAndDns => "Edge pools, federation routes and DNS",
        }
    }
}

/// Every cmdlet of the catalogue, by name: the key a server's dispatch table matches on,
/// so that a cmdlet added here does not compile until the server says where it runs and
/// what runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CmdletId {
    GetCsTopology,
    PublishCsTopology,
    EnableCsTopology,
    TestCsTopology,
    SetCsEdgePoolNextHop,
    EnableCsEdgePoolFederation,
    DisableCsEdgePoolFederation,
    SetCsPoolEdgeAssociation,
    SetCsPoolBackupRelationship,
    ExportCsConfiguration,
    ImportCsConfiguration,
    ExportCsLisConfiguration,
    ImportCsLisConfiguration,
    GetCsService,
    GetCsPoolBackupRelationship,
    GetCsPoolEdgeAssociation,
    SetCsRegistrar,
    SetCsEdgeServer,
    SetCsSite,
    NewCsAllowedDomain,
    GetCsAllowedDomain,
    RemoveCsAllowedDomain,
    NewCsXmppAllowedPartner,
    GetCsXmppAllowedPartner,
    SetCsXmppAllowedPartner,
    RemoveCsXmppAllowedPartner,
    GetCsManagementStoreReplicationStatus,
    InvokeCsManagementStoreReplication,
    InvokeCsManagementServerFailover,
    GetCsDatabaseMirrorState,
    InvokeCsDatabaseFailover,
    InstallCsDatabase,
    MoveCsManagementServer,
    Bootstrapper,
    EnableCsUser,
    GetCsUser,
    DisableCsUser,
    GetCsUserPoolInfo,
    GetCsBackupServiceStatus,
    InvokeCsBackupServiceSync,
    GetCsBackupServiceConfiguration,
    SetCsBackupServiceConfiguration,
    InvokeCsStorageServiceFlush,
    DebugCsInterPoolReplication,
    ExportCsUserData,
    ImportCsUserData,
    InvokeCsPoolFailOver,
    InvokeCsPoolFailBack,
    GetCsPoolFailoverState,
    GetCsDisasterRecoveryOperation,
    ResumeCsDisasterRecoveryOperation,
    StopCsDisasterRecoveryOperation,
    GetCsWindowsService,
    StartCsWindowsService,
    StopCsWindowsService,
    InvokeCsServerSetup,
    GetCsCertificate,
    RequestCsCertificate,
    SetCsCertificate,
    NewCsAdminOperator,
    RemoveCsAdminOperator,
    GetCsAdminOperator,
    GetCsAdminRole,
    GetCsAdminAuditLog,
    GetDnsServerResourceRecord,
    AddDnsServerResourceRecordA,
    AddDnsServerResourceRecord,
    SetDnsServerResourceRecord,
    RemoveDnsServerResourceRecord,
    AddDnsServerPrimaryZone,
    AddDnsServerConditionalForwarderZone,
    GetDnsServerZone,
    RemoveDnsServerZone,
    TestNetConnection,
    GetCommand,
    GetHelp,
    FormatList,
    FormatTable,
    ConvertToJson,
}

impl CmdletId {
    /// Every cmdlet, in catalogue order.
    pub const ALL: &'static [CmdletId] = &[
        CmdletId::GetCsTopology,
        CmdletId::PublishCsTopology,
        CmdletId::EnableCsTopology,
        CmdletId::TestCsTopology,
        CmdletId::SetCsEdgePoolNextHop,
        CmdletId::EnableCsEdgePoolFederation,
        CmdletId::DisableCsEdgePoolFederation,
        CmdletId::SetCsPoolEdgeAssociation,
        CmdletId::SetCsPoolBackupRelationship,
        CmdletId::ExportCsConfiguration,
        CmdletId::ImportCsConfiguration,
        CmdletId::ExportCsLisConfiguration,
        CmdletId::ImportCsLisConfiguration,
        CmdletId::GetCsService,
        CmdletId::GetCsPoolBackupRelationship,
        CmdletId::GetCsPoolEdgeAssociation,
        CmdletId::SetCsRegistrar,
        CmdletId::SetCsEdgeServer,
        CmdletId::SetCsSite,
        CmdletId::NewCsAllowedDomain,
        CmdletId::GetCsAllowedDomain,
        CmdletId::RemoveCsAllowedDomain,
        CmdletId::NewCsXmppAllowedPartner,
        CmdletId::GetCsXmppAllowedPartner,
        CmdletId::SetCsXmppAllowedPartner,
        CmdletId::RemoveCsXmppAllowedPartner,
        CmdletId::GetCsManagementStoreReplicationStatus,
        CmdletId::InvokeCsManagementStoreReplication,
        CmdletId::InvokeCsManagementServerFailover,
        CmdletId::GetCsDatabaseMirrorState,
        CmdletId::InvokeCsDatabaseFailover,
        CmdletId::InstallCsDatabase,
        CmdletId::MoveCsManagementServer,
        CmdletId::Bootstrapper,
        CmdletId::EnableCsUser,
        CmdletId::GetCsUser,
        CmdletId::DisableCsUser,
        CmdletId::GetCsUserPoolInfo,
        CmdletId::GetCsBackupServiceStatus,
        CmdletId::InvokeCsBackupServiceSync,
        CmdletId::GetCsBackupServiceConfiguration,
        CmdletId::SetCsBackupServiceConfiguration,
        CmdletId::InvokeCsStorageServiceFlush,
        CmdletId::DebugCsInterPoolReplication,
        CmdletId::ExportCsUserData,
        CmdletId::ImportCsUserData,
        CmdletId::InvokeCsPoolFailOver,
        CmdletId::InvokeCsPoolFailBack,
        CmdletId::GetCsPoolFailoverState,
        CmdletId::GetCsDisasterRecoveryOperation,
        CmdletId::ResumeCsDisasterRecoveryOperation,
        CmdletId::StopCsDisasterRecoveryOperation,
        CmdletId::GetCsWindowsService,
        CmdletId::StartCsWindowsService,
        CmdletId::StopCsWindowsService,
        CmdletId::InvokeCsServerSetup,
        CmdletId::GetCsCertificate,
        CmdletId::RequestCsCertificate,
        CmdletId::SetCsCertificate,
        CmdletId::NewCsAdminOperator,
        CmdletId::RemoveCsAdminOperator,
        CmdletId::GetCsAdminOperator,
        CmdletId::GetCsAdminRole,
        CmdletId::GetCsAdminAuditLog,
        CmdletId::GetDnsServerResourceRecord,
        CmdletId::AddDnsServerResourceRecordA,
        CmdletId::AddDnsServerResourceRecord,
        CmdletId::SetDnsServerResourceRecord,
        CmdletId::RemoveDnsServerResourceRecord,
        CmdletId::AddDnsServerPrimaryZone,
        CmdletId::AddDnsServerConditionalForwarderZone,
        CmdletId::GetDnsServerZone,
        CmdletId::RemoveDnsServerZone,
        CmdletId::TestNetConnection,
        CmdletId::GetCommand,
        CmdletId::GetHelp,
        CmdletId::FormatList,
        CmdletId::FormatTable,
        CmdletId::ConvertToJson,
    ];

    /// `Verb-Noun`, as the reference spells it.
    pub const fn name(self) -> &'static str {
        match self {
            CmdletId::GetCsTopology => "Get-CsTopology",
            CmdletId::PublishCsTopology => "Publish-CsTopology",
            CmdletId::EnableCsTopology => "Enable-CsTopology",
            CmdletId::TestCsTopology => "Test-CsTopology",
            CmdletId::SetCsEdgePoolNextHop => "Set-CsEdgePoolNextHop",
            CmdletId::EnableCsEdgePoolFederation => "Enable-CsEdgePoolFederation",
            CmdletId::DisableCsEdgePoolFederation => "Disable-CsEdgePoolFederation",
            CmdletId::SetCsPoolEdgeAssociation => "Set-CsPoolEdgeAssociation",
            CmdletId::SetCsPoolBackupRelationship => "Set-CsPoolBackupRelationship",
            CmdletId::ExportCsConfiguration => "Export-CsConfiguration",
            CmdletId::ImportCsConfiguration => "Import-CsConfiguration",
            CmdletId::ExportCsLisConfiguration => "Export-CsLisConfiguration",
            CmdletId::ImportCsLisConfiguration => "Import-CsLisConfiguration",
            CmdletId::GetCsService => "Get-CsService",
            CmdletId::GetCsPoolBackupRelationship => "Get-CsPoolBackupRelationship",
            CmdletId::GetCsPoolEdgeAssociation => "Get-CsPoolEdgeAssociation",
            CmdletId::SetCsRegistrar => "Set-CsRegistrar",
            CmdletId::SetCsEdgeServer => "Set-CsEdgeServer",
            CmdletId::SetCsSite => "Set-CsSite",
            CmdletId::NewCsAllowedDomain => "New-CsAllowedDomain",
            CmdletId::GetCsAllowedDomain => "Get-CsAllowedDomain",
            CmdletId::RemoveCsAllowedDomain => "Remove-CsAllowedDomain",
            CmdletId::NewCsXmppAllowedPartner => "New-CsXmppAllowedPartner",
            CmdletId::GetCsXmppAllowedPartner => "Get-CsXmppAllowedPartner",
            CmdletId::SetCsXmppAllowedPartner => "Set-CsXmppAllowedPartner",
            CmdletId::RemoveCsXmppAllowedPartner => "Remove-CsXmppAllowedPartner",
            CmdletId::GetCsManagementStoreReplicationStatus => {
                "Get-CsManagementStoreReplicationStatus"
            }
            CmdletId::InvokeCsManagementStoreReplication => "Invoke-CsManagementStoreReplication",
            CmdletId::InvokeCsManagementServerFailover => "Invoke-CsManagementServerFailover",
            CmdletId::GetCsDatabaseMirrorState => "Get-CsDatabaseMirrorState",
            CmdletId::InvokeCsDatabaseFailover => "Invoke-CsDatabaseFailover",
            CmdletId::InstallCsDatabase => "Install-CsDatabase",
            CmdletId::MoveCsManagementServer => "Move-CsManagementServer",
            CmdletId::Bootstrapper => "Bootstrapper",
            CmdletId::EnableCsUser => "Enable-CsUser",
            CmdletId::GetCsUser => "Get-CsUser",
            CmdletId::DisableCsUser => "Disable-CsUser",
            CmdletId::GetCsUserPoolInfo => "Get-CsUserPoolInfo",
            CmdletId::GetCsBackupServiceStatus => "Get-CsBackupServiceStatus",
            CmdletId::InvokeCsBackupServiceSync => "Invoke-CsBackupServiceSync",
            CmdletId::GetCsBackupServiceConfiguration => "Get-CsBackupServiceConfiguration",
            CmdletId::SetCsBackupServiceConfiguration => "Set-CsBackupServiceConfiguration",
            CmdletId::InvokeCsStorageServiceFlush => "Invoke-CsStorageServiceFlush",
            CmdletId::DebugCsInterPoolReplication => "Debug-CsInterPoolReplication",
            CmdletId::ExportCsUserData => "Export-CsUserData",
            CmdletId::ImportCsUserData => "Import-CsUserData",
            CmdletId::InvokeCsPoolFailOver => "Invoke-CsPoolFailOver",
            CmdletId::InvokeCsPoolFailBack => "Invoke-CsPoolFailBack",
            CmdletId::GetCsPoolFailoverState => "Get-CsPoolFailoverState",
            CmdletId::GetCsDisasterRecoveryOperation => "Get-CsDisasterRecoveryOperation",
            CmdletId::ResumeCsDisasterRecoveryOperation => "Resume-CsDisasterRecoveryOperation",
            CmdletId::StopCsDisasterRecoveryOperation => "Stop-CsDisasterRecoveryOperation",
            CmdletId::GetCsWindowsService => "Get-CsWindowsService",
            CmdletId::StartCsWindowsService => "Start-CsWindowsService",
            CmdletId::StopCsWindowsService => "Stop-CsWindowsService",
            CmdletId::InvokeCsServerSetup => "Invoke-CsServerSetup",
            CmdletId::GetCsCertificate => "Get-CsCertificate",
            CmdletId::RequestCsCertificate => "Request-CsCertificate",
            CmdletId::SetCsCertificate => "Set-CsCertificate",
            CmdletId::NewCsAdminOperator => "New-CsAdminOperator",
            CmdletId::RemoveCsAdminOperator => "Remove-CsAdminOperator",
            CmdletId::GetCsAdminOperator => "Get-CsAdminOperator",
            CmdletId::GetCsAdminRole => "Get-CsAdminRole",
            CmdletId::GetCsAdminAuditLog => "Get-CsAdminAuditLog",
            CmdletId::GetDnsServerResourceRecord => "Get-DnsServerResourceRecord",
            CmdletId::AddDnsServerResourceRecordA => "Add-DnsServerResourceRecordA",
            CmdletId::AddDnsServerResourceRecord => "Add-DnsServerResourceRecord",
            CmdletId::SetDnsServerResourceRecord => "Set-DnsServerResourceRecord",
            CmdletId::RemoveDnsServerResourceRecord => "Remove-DnsServerResourceRecord",
            CmdletId::AddDnsServerPrimaryZone => "Add-DnsServerPrimaryZone",
            CmdletId::AddDnsServerConditionalForwarderZone => {
                "Add-DnsServerConditionalForwarderZone"
            }
            CmdletId::GetDnsServerZone => "Get-DnsServerZone",
            CmdletId::RemoveDnsServerZone => "Remove-DnsServerZone",
            CmdletId::TestNetConnection => "Test-NetConnection",
            CmdletId::GetCommand => "Get-Command",
            CmdletId::GetHelp => "Get-Help",
            CmdletId::FormatList => "Format-List",
            CmdletId::FormatTable => "Format-Table",
            CmdletId::ConvertToJson => "ConvertTo-Json",
        }
    }
}

/// A cmdlet signature.
#[derive(Debug, Clone, Copy)]
pub struct CmdletSpec {
    /// Which cmdlet it is.
    pub id: CmdletId,
    /// `Verb-Noun`, as the reference spells it.
    pub name: &'static str,
    /// Other names that run this cmdlet (`Bootstrapper.exe`).
    pub aliases: &'static [&'static str],
    /// One sentence: what it does.
    pub synopsis: &'static str,
    /// A paragraph for `Get-Help -Full`: behaviour, tandem's decisions where the docs disagree.
    pub description: &'static str,
    /// Parameters, in the order `Get-Help` lists them (after the common parameters are added).
    pub params: &'static [ParamSpec],
    /// Parameter set used when the bound parameters leave more than one possible; `None` when
    /// the cmdlet has a single set.
    pub default_set: Option<&'static str>,
    /// Changes something: gets `-WhatIf`, `-Confirm` and `-Force` as common parameters.
    pub changes_state: bool,
    /// Arguments starting with `/` bind to switches of that name (`Bootstrapper /Setup`).
    pub slash_switches: bool,
    /// Output fields in the order they print.
    pub outputs: &'static [&'static str],
    /// Example command lines with one line of explanation each.
    pub examples: &'static [(&'static str, &'static str)],
    /// Where the cmdlet's behaviour lives.
    pub capability: Capability,
}

/// Builds a [`ParamSpec`] with defaults: optional, named only, in every set.
pub const fn param(name: &'static str, ty: ParamType, help: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        aliases: &[],
        sets: &[],
        mandatory: false,
        position: None,
        help,
    }
}

impl ParamSpec {
    /// Marks the parameter mandatory.
    pub const fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self
    }

    /// Lets the parameter be given by position (zero-based).
    pub const fn at(mut self, position: u8) -> Self {
        self.position = Some(position);
        self
    }

    /// Adds other names for the parameter.
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// Restricts the parameter to some parameter sets.
    pub const fn sets(mut self, sets: &'static [&'static str]) -> Self {
        self.sets = sets;
        self
    }
}

/// Builds a [`CmdletSpec`] with defaults; fill the rest with struct update syntax.
pub const fn cmdlet(
    id: CmdletId,
    capability: Capability,
    synopsis: &'static str,
    params: &'static [ParamSpec],
) -> CmdletSpec {
    CmdletSpec {
        id,
        name: id.name(),
        aliases: &[],
        synopsis,
        description: "",
        params,
        default_set: None,
        changes_state: false,
        slash_switches: false,
        outputs: &[],
        examples: &[],
        capability,
    }
}
