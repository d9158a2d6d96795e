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

/// A cmdlet signature.
#[derive(Debug, Clone, Copy)]
pub struct CmdletSpec {
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
    name: &'static str,
    capability: Capability,
    synopsis: &'static str,
    params: &'static [ParamSpec],
) -> CmdletSpec {
    CmdletSpec {
        name,
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
