//! Every cmdlet the tandem shell accepts, declared once as data.
//!
//! This table is the single source for `Get-Command`, `Get-Help`, parameter binding and
//! tab completion: a cmdlet or parameter that is not here does not exist for the shell, and
//! one that is here is described the same way everywhere. The entries follow the public
//! reference (`reference/sfb-dr-facts.md`, section 2) and `CMDLETS.md`, which settles the
//! places where the runbooks and the reference disagree (for example `-MirrorSqlServerFqdn`
//! as an alias of `-BackupMirrorSqlServerFqdn`).
//!
//! Not listed here, because the binder adds them to every cmdlet: the PowerShell common
//! parameters (`-Verbose`, `-ErrorAction`, …) and, on cmdlets that change state, `-WhatIf`,
//! `-Confirm` and `-Force`.

use super::spec::{Capability, CmdletId, CmdletSpec, IdentityKind, ParamType::*, cmdlet, param};

/// Backup Service module names, long (dotted), short and `All`: the runbooks use both
/// spellings and `CMDLETS.md` accepts both.
const BACKUP_MODULES: &[&str] = &[
    "All",
    "UserServices.PresenceFocus",
    "PresenceFocus",
    "ConfServices.DataConf",
    "DataConf",
    "CentralMgmt.CMSMaster",
    "CMSMaster",
    "CentralMgmt",
    "ApplicationServer.RGSDataStore",
    "ApplicationServer.RGSFileStore",
];

/// Backup Service categories (`Get-CsBackupServiceStatus -Category`).
const BACKUP_CATEGORIES: &[&str] = &["CMS", "UserData", "RGS"];

/// `DatabaseNameType`: the Skype for Business Server 2015+ list plus the Lync 2013 names
/// that differ from it (`CMS`, `App`).
/// Certificate types of the original; a tandem server has one, Default, for every use.
const CERTIFICATE_TYPES: &[&str] = &["Default"];

const DATABASE_TYPES: &[&str] = &[
    "ActiveMonitoring",
    "Application",
    "Archiving",
    "CentralMgmt",
    "Edge",
    "Lyss",
    "Monitoring",
    "PersistentChat",
    "PersistentChatCompliance",
    "Provision",
    "Registrar",
    "SigninTelemetry",
    "User",
    "CMS",
    "App",
];

/// How an XMPP partner negotiates TLS or SASL.
const NEGOTIATION: &[&str] = &["NotSupported", "Optional", "Required"];

/// The parameters of `New-` and `Set-CsXmppAllowedPartner`.
const XMPP_PARTNER_PARAMS: &[super::spec::ParamSpec] = &[
    param(
        "Identity",
        String,
        "The partner's XMPP domain, for example jabber.example.",
    )
    .mandatory()
    .at(0),
    param(
        "TlsNegotiation",
        Enum(NEGOTIATION),
        "Whether the stream is encrypted with TLS (STARTTLS): NotSupported, Optional or Required.",
    ),
    param(
        "SaslNegotiation",
        Enum(NEGOTIATION),
        "Whether the partner proves itself with SASL EXTERNAL (its certificate): NotSupported, Optional or Required; needs TLS.",
    ),
    param(
        "SupportDialbackNegotiation",
        Boolean,
        "Whether the partner may prove itself with Server Dialback (XEP-0220).",
    ),
    param(
        "ProxyFqdn",
        String,
        "The partner's XMPP server, when its domain has no _xmpp-server._tcp SRV record; an empty value ('') removes it (Set).",
    ),
];

/// `-ReplicationScope` of the Windows zone cmdlets (accepted, ignored).
const REPLICATION_SCOPES: &[&str] = &["Forest", "Domain", "Legacy", "Custom"];

/// DNS record types the lab's DNS server keeps.
const RR_TYPES: &[&str] = &["A", "AAAA", "CNAME", "SRV", "TXT", "NS", "SOA", "PTR", "MX"];

pub(crate) static CMDLETS: &[CmdletSpec] = &[
    // ------------------------------------------------------------------------------------
    // Topology and configuration
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Reads the topology published in the Central Management store: sites, \
            Front End pools and their servers, Back End databases, Edge pools, pool pairing, \
            next hops and federation routes. Without a switch it prints a summary; -AsXml and \
            -AsToml print the whole document in that format; the TOML form is what \
            Publish-CsTopology and Test-CsTopology accept back. The two switches cannot be combined. -LocalStore \
            reads the local replica instead, which works while the Central Management store \
            is down.",
        default_set: Some("Object"),
        examples: &[
            ("Get-CsTopology", "Shows the active topology."),
            (
                "Get-CsTopology -AsXml -LocalStore",
                "Prints the topology from this server's local replica as XML.",
            ),
        ],
        ..cmdlet(
            CmdletId::GetCsTopology,
            Capability::Deployment,
            "Returns the topology currently published in the Central Management store.",
            &[
                param("AsXml", Switch, "Return the topology as an XML document.")
                    .mandatory()
                    .sets(&["Xml"]),
                param("AsToml", Switch, "Return the topology as a TOML document.")
                    .mandatory()
                    .sets(&["Toml"]),
                param(
                    "LocalStore",
                    Switch,
                    "Read from the local replica of the Central Management store instead of the store itself.",
                )
                .sets(&["Object", "Xml", "Toml"]),
            ],
        )
    },
    CmdletSpec {
        description: "Writes a topology document to the Central Management store as the new \
            published topology; replication then carries it to every server. The file is a TOML \
            document, such as one written by Get-CsTopology -AsToml and edited. Run Enable-CsTopology \
            afterwards to activate it, as Topology Builder's Publish does in one step.",
        changes_state: true,
        examples: &[(
            "Publish-CsTopology -FileName c:\\topology.xml",
            "Publishes the topology in c:\\topology.xml.",
        )],
        ..cmdlet(
            CmdletId::PublishCsTopology,
            Capability::Deployment,
            "Publishes a topology document to the Central Management store.",
            &[
                param("FileName", Path, "Path of the topology document to publish.")
                    .mandatory()
                    .at(0),
                param("Report", Path, "Path of a log file describing what was done."),
            ],
        )
    },
    CmdletSpec {
        description: "Activates the most recently published topology: objects that were \
            published join the running deployment only when the topology is enabled. \
            Topology Builder's Publish publishes and enables in one step.",
        changes_state: true,
        examples: &[("Enable-CsTopology", "Activates the topology published last.")],
        ..cmdlet(
            CmdletId::EnableCsTopology,
            Capability::Deployment,
            "Activates the most recently published topology.",
            &[param("Report", Path, "Path of a log file describing what was done.")],
        )
    },
    CmdletSpec {
        description: "Checks a topology document against tandem's topology rules without \
            publishing it and without a running deployment: pairing (each pool has at most one \
            backup pool, reciprocally), Edge next hops, the single federation-enabled Edge \
            pool, Back End databases and mirrors. Each finding is one row with its severity, \
            the element concerned and a message naming the fix.",
        outputs: &["Severity", "Element", "Message"],
        examples: &[(
            "Test-CsTopology -FileName examples/contoso.toml",
            "Validates the seeds' deployment and lists every problem found.",
        )],
        ..cmdlet(
            CmdletId::TestCsTopology,
            Capability::Shell,
            "Validates a topology document without publishing it.",
            &[param("FileName", Path, "Path of the topology document to validate.")
                .mandatory()
                .at(0)],
        )
    },
    // Topology Builder steps (no reference cmdlet; tandem names).
    CmdletSpec {
        description: "Stands for Topology Builder's Edge pool > Edit Properties > Next Hop: \
            sets the Front End pool (or Director) an Edge pool sends internal traffic to, and \
            publishes the changed topology. The reference has no such cmdlet. For a next hop \
            pool in another site the runbooks use Set-CsEdgeServer -Registrar, which tandem \
            also accepts. Do this before failing over a pool that is an Edge next hop: \
            Invoke-CsPoolFailOver refuses such a pool.",
        changes_state: true,
        examples: &[(
            "Set-CsEdgePoolNextHop -Identity edgepool1.contoso.com -NextHopPool pool2.contoso.com",
            "Makes pool2 the next hop of edgepool1 so that pool1 can be failed over.",
        )],
        ..cmdlet(
            CmdletId::SetCsEdgePoolNextHop,
            Capability::Deployment,
            "Sets the next hop pool of an Edge pool and publishes the topology.",
            &[
                param("Identity", Fqdn, "The Edge pool whose next hop changes.")
                    .mandatory()
                    .at(0),
                param(
                    "NextHopPool",
                    Fqdn,
                    "The Front End pool or Director the Edge pool will use as its next hop.",
                )
                .mandatory(),
            ],
        )
    },
    CmdletSpec {
        description: "Stands for ticking \"Enable federation for this Edge pool (Port 5061)\" \
            in Topology Builder and publishing. The reference has no such cmdlet. At most one \
            Edge pool may have federation enabled: while another pool has it the cmdlet \
            refuses and names the Disable-CsEdgePoolFederation command to run first. After \
            publishing, run the Deployment Wizard again on the Edge servers \
            (Invoke-CsServerSetup).",
        changes_state: true,
        examples: &[(
            "Enable-CsEdgePoolFederation -Identity edgepool2.contoso.com",
            "Makes edgepool2 the Edge pool used for federation after edgepool1 was disabled.",
        )],
        ..cmdlet(
            CmdletId::EnableCsEdgePoolFederation,
            Capability::Deployment,
            "Enables SIP federation on an Edge pool and publishes the topology.",
            &[param("Identity", Fqdn, "The Edge pool that will carry federation traffic.")
                .mandatory()
                .at(0)],
        )
    },
    CmdletSpec {
        description: "Stands for clearing \"Enable federation for this Edge pool (Port 5061)\" \
            in Topology Builder and publishing. The reference has no such cmdlet. It is the \
            first step of moving federation to another Edge pool; federation is unavailable \
            until Enable-CsEdgePoolFederation runs on the new pool.",
        changes_state: true,
        examples: &[(
            "Disable-CsEdgePoolFederation -Identity edgepool1.contoso.com",
            "Stops using the failed edgepool1 for federation.",
        )],
        ..cmdlet(
            CmdletId::DisableCsEdgePoolFederation,
            Capability::Deployment,
            "Disables SIP federation on an Edge pool and publishes the topology.",
            &[param("Identity", Fqdn, "The Edge pool that stops carrying federation traffic.")
                .mandatory()
                .at(0)],
        )
    },
    CmdletSpec {
        description: "Stands for Topology Builder's Front End pool > Edit Properties > \
            Associations > Associate Edge Pool (for media components), and publishes the \
            changed topology. The reference has no such cmdlet. Used when a site's Edge pool \
            fails while its Front End pool survives, and again to revert once it is repaired.",
        changes_state: true,
        examples: &[(
            "Set-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com -EdgePoolFqdn edgepool2.contoso.com",
            "Sends pool1's media through edgepool2 while edgepool1 is down.",
        )],
        ..cmdlet(
            CmdletId::SetCsPoolEdgeAssociation,
            Capability::Deployment,
            "Sets the Edge pool a Front End pool uses for media and publishes the topology.",
            &[
                param("PoolFqdn", Fqdn, "The Front End pool whose associated Edge pool changes.")
                    .mandatory(),
                param(
                    "EdgePoolFqdn",
                    Fqdn,
                    "The Edge pool the Front End pool will use for media components.",
                )
                .mandatory(),
            ],
        )
    },
    CmdletSpec {
        description: "Pairs two Front End pools: each becomes the other's backup pool and \
            backup Registrar, and the Backup Service starts synchronising them once the \
            changed topology is published. The reference has no such cmdlet; it stands for \
            Topology Builder's Resiliency > Associated Backup Pool. Pairing is reciprocal, so \
            a pool that is already paired with a third pool is refused.",
        changes_state: true,
        examples: &[(
            "Set-CsPoolBackupRelationship -PoolFqdn pool1.contoso.com -BackupPoolFqdn pool2.contoso.com",
            "Pairs pool1 and pool2 as each other's backup pool.",
        )],
        ..cmdlet(
            CmdletId::SetCsPoolBackupRelationship,
            Capability::Deployment,
            "Pairs a Front End pool with its backup pool and publishes the topology.",
            &[
                param("PoolFqdn", Fqdn, "One Front End pool of the pair.").mandatory(),
                param("BackupPoolFqdn", Fqdn, "The Front End pool that becomes its backup pool.")
                    .mandatory(),
            ],
        )
    },
    CmdletSpec {
        description: "Writes the topology, policies and configuration settings to a ZIP file. \
            Keep a recent export: Move-CsManagementServer needs it to rebuild the Central \
            Management store after a disaster. -LocalStore reads the local replica, which \
            works while the store is down. The file is written by the server that runs the \
            cmdlet, readable by its account only, and holds every user's digest hashes: a new \
            file, or with -Force an earlier export.",
        changes_state: true,
        examples: &[(
            "Export-CsConfiguration -FileName c:\\CsConfigurationFile.zip",
            "Saves the whole configuration to c:\\CsConfigurationFile.zip.",
        )],
        ..cmdlet(
            CmdletId::ExportCsConfiguration,
            Capability::Deployment,
            "Exports the topology and configuration settings to a ZIP file.",
            &[
                param("FileName", Path, "Path of the ZIP file to write.")
                    .mandatory()
                    .at(0),
                param(
                    "LocalStore",
                    Switch,
                    "Read from the local replica of the Central Management store instead of the store itself.",
                ),
                param("Force", Switch, "Suppress non-fatal error prompts, such as overwriting an existing file."),
            ],
        )
    },
    CmdletSpec {
        description: "Imports a ZIP file written by Export-CsConfiguration. Without \
            -LocalStore it writes to the Central Management store and replication distributes \
            it; with -LocalStore it writes only to this server's local replica (used to seed \
            an Edge server, and to repair a stuck Central Management store failover).",
        changes_state: true,
        examples: &[(
            "Import-CsConfiguration -FileName c:\\temp\\configuration.zip -LocalStore",
            "Loads the configuration into this server's local replica.",
        )],
        ..cmdlet(
            CmdletId::ImportCsConfiguration,
            Capability::Deployment,
            "Imports topology and configuration settings from a ZIP file.",
            &[
                param("FileName", Path, "Path of the ZIP file to import.")
                    .mandatory()
                    .at(0),
                param(
                    "LocalStore",
                    Switch,
                    "Write to the local replica of the Central Management store instead of the store itself.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Writes the Location Information Service data (locations, subnets, \
            switches, ports) to a ZIP file. The data may be empty; the file is still written, \
            because Move-CsManagementServer -LisConfigurationFileName expects it. Written by \
            the server that runs the cmdlet, to a new file.",
        changes_state: true,
        examples: &[(
            "Export-CsLisConfiguration -FileName c:\\CsLisConfigurationFile.zip",
            "Saves the location data to c:\\CsLisConfigurationFile.zip.",
        )],
        ..cmdlet(
            CmdletId::ExportCsLisConfiguration,
            Capability::CmsFailover,
            "Exports the Location Information Service configuration to a ZIP file.",
            &[param("FileName", Path, "Path of the ZIP file to write.")
                .mandatory()
                .at(0)],
        )
    },
    CmdletSpec {
        description: "Loads Location Information Service data from a ZIP file written by \
            Export-CsLisConfiguration into the Central Management store. An empty export \
            imports nothing and succeeds.",
        changes_state: true,
        examples: &[(
            "Import-CsLisConfiguration -FileName c:\\CsLisConfigurationFile.zip",
            "Restores the location data after the Central Management store moved.",
        )],
        ..cmdlet(
            CmdletId::ImportCsLisConfiguration,
            Capability::CmsFailover,
            "Imports the Location Information Service configuration from a ZIP file.",
            &[param("FileName", Path, "Path of the ZIP file to import.")
                .mandatory()
                .at(0)],
        )
    },
    CmdletSpec {
        description: "Lists the services defined in the topology. Give one role switch to \
            list only that role (one per call, as in the reference), -PoolFqdn to keep one \
            pool, or -Identity for a single service. Get-CsService -CentralManagement shows \
            which pool holds the active Central Management store.",
        default_set: Some("Identity"),
        outputs: &["Identity", "ServiceId", "SiteId", "PoolFqdn", "Role", "Version", "DependentServiceList"],
        examples: &[
            ("Get-CsService -Registrar", "Lists every Registrar service."),
            (
                "Get-CsService -EdgeServer -PoolFqdn edgepool1.contoso.com",
                "Shows edgepool1's Edge service, including its next hop Registrar.",
            ),
        ],
        ..cmdlet(
            CmdletId::GetCsService,
            Capability::Deployment,
            "Returns the services configured in the topology.",
            &[
                param(
                    "Identity",
                    String,
                    "A single service, for example Registrar:pool1.contoso.com or EdgeServer:edgepool1.contoso.com.",
                )
                .at(0)
                .sets(&["Identity"]),
                param("Registrar", Switch, "Return Registrar services.")
                    .mandatory()
                    .sets(&["Registrar"]),
                param("EdgeServer", Switch, "Return Edge services.")
                    .mandatory()
                    .sets(&["EdgeServer"]),
                param("CentralManagement", Switch, "Return the Central Management services.")
                    .mandatory()
                    .sets(&["CentralManagement"]),
                param(
                    "CentralManagementDatabase",
                    Switch,
                    "Return the Central Management store databases.",
                )
                .mandatory()
                .sets(&["CentralManagementDatabase"]),
                param("UserServer", Switch, "Return User services.")
                    .mandatory()
                    .sets(&["UserServer"]),
                param("BackupServer", Switch, "Return Backup services.")
                    .mandatory()
                    .sets(&["BackupServer"]),
                param("PoolFqdn", Fqdn, "Return only services of this pool."),
            ],
        )
    },
    CmdletSpec {
        description: "Returns the Edge pool each Front End pool uses for media (the A/V Edge \
            that relays its users' media, and whose MRAS gives them relay credentials), with \
            that pool's relays. Set-CsPoolEdgeAssociation changes it; users' next requests for \
            relay credentials go to the new Edge pool at once. Read-only.",
        outputs: &["PoolFqdn", "Site", "EdgePoolFqdn", "EdgeSite", "MediaRelays"],
        examples: &[(
            "Get-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com",
            "Shows which Edge pool relays pool1's media.",
        )],
        ..cmdlet(
            CmdletId::GetCsPoolEdgeAssociation,
            Capability::Deployment,
            "Returns the Edge pool a Front End pool uses for media.",
            &[
                param("PoolFqdn", Fqdn, "Return only this Front End pool.").at(0),
                param(
                    "LocalStore",
                    Switch,
                    "Read from the local replica of the Central Management store instead of the store itself.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Returns the backup pool a Front End pool is paired with (empty when it \
            has none). Read-only.",
        outputs: &["PoolFqdn", "BackupPoolFqdn"],
        examples: &[(
            "Get-CsPoolBackupRelationship -PoolFQDN pool1.contoso.com",
            "Shows that pool2 is pool1's backup pool.",
        )],
        ..cmdlet(
            CmdletId::GetCsPoolBackupRelationship,
            Capability::Deployment,
            "Returns the backup pool associated with a Front End pool.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose backup relationship is read.").mandatory(),
                param(
                    "LocalStore",
                    Switch,
                    "Read from the local replica of the Central Management store instead of the store itself.",
                ),
                param("Force", Switch, "Suppress non-fatal error prompts."),
            ],
        )
    },
    CmdletSpec {
        description: "Changes the resiliency settings of a Registrar service: whether users \
            move to the backup Registrar automatically when their Registrar is unreachable, \
            and how long to wait before declaring it down and before dropping back. The \
            intervals accept hh:mm:ss or a number of seconds, from 1 s to 86,400 s (the \
            reference's \"84,400\" is a typo for 24 hours); values under 30 s are allowed for \
            labs and warned about. Both intervals require a backup Registrar (a paired pool).",
        changes_state: true,
        examples: &[(
            "Set-CsRegistrar -Identity Registrar:pool1.contoso.com -EnableAutomaticFailover $true -FailureDetectionInterval 00:02:00 -FailbackDetectionInterval 00:04:00",
            "Turns on automatic failover for pool1 with the Topology Builder default intervals.",
        )],
        ..cmdlet(
            CmdletId::SetCsRegistrar,
            Capability::Deployment,
            "Changes a Registrar's automatic failover and detection settings.",
            &[
                param(
                    "Identity",
                    Identity(IdentityKind::Registrar),
                    "The Registrar service to change, Registrar:<pool fqdn>; the prefix is optional.",
                )
                .mandatory()
                .at(0),
                param(
                    "FailureDetectionInterval",
                    TimeSpan,
                    "How long the Registrar must be unreachable before it is declared down (default 120 seconds).",
                ),
                param(
                    "FailbackDetectionInterval",
                    TimeSpan,
                    "How long the Registrar must be back before users return to it (default 240 seconds).",
                ),
                param(
                    "EnableAutomaticFailover",
                    Boolean,
                    "When true, users move to the backup Registrar while their Registrar is down and back when it returns.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Changes an Edge pool's Edge service. -Registrar sets its next hop; the \
            runbooks use it to point an Edge pool at a Front End pool in another site before \
            that site's pool is failed over. The port parameters change the ports the Edge \
            servers listen on.",
        changes_state: true,
        examples: &[(
            "Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com",
            "Makes pool2 (in Site2) the next hop of edgepool1 (in Site1).",
        )],
        ..cmdlet(
            CmdletId::SetCsEdgeServer,
            Capability::Deployment,
            "Changes an Edge pool's next hop Registrar and ports.",
            &[
                param(
                    "Identity",
                    Identity(IdentityKind::EdgeServer),
                    "The Edge service to change, EdgeServer:<edge pool fqdn>; the prefix is optional.",
                )
                .mandatory()
                .at(0),
                param(
                    "Registrar",
                    Identity(IdentityKind::Registrar),
                    "The next hop Registrar, Registrar:<pool fqdn>; the prefix is optional.",
                ),
                param("AccessEdgeClientSipPort", UInt16, "Port for client SIP traffic (set in Topology Builder)."),
                param("AccessEdgeExternalSipPort", UInt16, "External SIP port (default 5061)."),
                param("AccessEdgeInternalSipPort", UInt16, "Internal SIP port (default 5061)."),
                param("DataPsomClientPort", UInt16, "PSOM client port for web conferencing."),
                param("DataPsomServerPort", UInt16, "PSOM server port for web conferencing."),
                param(
                    "MediaCommunicationPortStart",
                    UInt16,
                    "First port of the external media range (default 50000).",
                ),
                param(
                    "MediaCommunicationPortCount",
                    UInt16,
                    "Number of ports in the external media range (default 10000).",
                ),
                param("MediaRelayAuthEdgePort", UInt16, "Media relay authentication port (default 5062)."),
                param(
                    "MediaRelayExternalTurnTcpPort",
                    UInt16,
                    "External TURN/TCP port (default 444 with a single IP address, 443 with several).",
                ),
                param("MediaRelayExternalTurnUdpPort", UInt16, "External TURN/UDP port (default 3478)."),
                param("MediaRelayInternalTurnTcpPort", UInt16, "Internal TURN/TCP port (default 443)."),
                param("MediaRelayInternalTurnUdpPort", UInt16, "Internal TURN/UDP port (default 3478)."),
                param("XmppInternalPort", UInt16, "Internal XMPP port (default 5098)."),
                param("XmppListeningPort", UInt16, "Port the XMPP proxy listens on."),
                param("SkypeSearchProxyPort", UInt16, "Port of the Skype directory search proxy."),
            ],
        )
    },
    CmdletSpec {
        description: "Changes a site's settings, in particular the Edge pool that carries its \
            SIP federation route and its XMPP federation route. -XmppExternalFederationRoute \
            (the runbooks' spelling) and -XmppFederationRoute (the reference's) are both \
            accepted and mean the same; the value may be a bare Edge FQDN or prefixed with \
            EdgeServer:. The site is named bare (Site2), not site:Site2.",
        changes_state: true,
        examples: &[
            (
                "Set-CsSite Site2 -XmppExternalFederationRoute EdgeServer2.contoso.com",
                "Moves XMPP federation to the Edge pool of Site2.",
            ),
            (
                "Set-CsSite Site1 -XmppExternalFederationRoute EdgeServer1.contoso.com",
                "Moves XMPP federation back to the restored Edge pool of Site1.",
            ),
        ],
        ..cmdlet(
            CmdletId::SetCsSite,
            Capability::Deployment,
            "Changes a site's federation routes and descriptive settings.",
            &[
                param("Identity", Identity(IdentityKind::Scope), "The site to change, for example Site2.")
                    .mandatory()
                    .at(0),
                param(
                    "FederationRoute",
                    Identity(IdentityKind::EdgeServer),
                    "The Edge used as the site's SIP federation route, EdgeServer:<fqdn>.",
                ),
                param(
                    "XmppFederationRoute",
                    Identity(IdentityKind::EdgeServer),
                    "The Edge used for XMPP federation, EdgeServer:<fqdn> (the reference's spelling).",
                ),
                param(
                    "XmppExternalFederationRoute",
                    Identity(IdentityKind::EdgeServer),
                    "The Edge used for XMPP federation, a bare FQDN or EdgeServer:<fqdn> (the runbooks' spelling).",
                ),
                param("Description", String, "Free text describing the site."),
                param("DisplayName", String, "The site's display name."),
            ],
        )
    },
    // ------------------------------------------------------------------------------------
    // Federation partners: who may federate with the deployment (the topology's
    // deployment.allowed_domains and deployment.xmpp_partner), changed through the Central
    // Management store like every configuration setting.
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Adds a SIP federation partner: a domain whose users may exchange \
            messages with the deployment's through the Access Edge (the topology's \
            deployment.allowed_domains). The change is validated (not the deployment's own \
            domain, not already listed, not an XMPP partner), written through the active \
            Central Management master and replicated; every Edge applies it from its replica. \
            -ProxyFqdn is refused: tandem finds a partner's Access Edge by the partner \
            domain's _sipfederationtls._tcp SRV record, never by a name kept here; publish \
            that record in the partner's DNS zone instead (in a lab, \
            Add-DnsServerResourceRecord -Srv -ZoneName <partner domain> on the lab's DNS \
            server).",
        changes_state: true,
        examples: &[(
            "New-CsAllowedDomain -Identity fabrikam.com",
            "Lets users of fabrikam.com exchange messages with the deployment's users.",
        )],
        ..cmdlet(
            CmdletId::NewCsAllowedDomain,
            Capability::EdgeAndDns,
            "Adds a domain to the SIP federation partners.",
            &[
                param("Identity", String, "The partner's SIP domain, for example fabrikam.com.")
                    .mandatory()
                    .at(0),
                param(
                    "ProxyFqdn",
                    Fqdn,
                    "The partner's Access Edge. Refused in tandem: partners are found by their _sipfederationtls._tcp SRV record.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Lists the SIP federation partners (the topology's \
            deployment.allowed_domains), from the active Central Management master, or from \
            this server's replica (with a warning) when no master answers or with \
            -LocalStore. ProxyFqdn is always empty: tandem finds a partner's Access Edge by \
            DNS SRV.",
        outputs: &["Identity", "Domain", "ProxyFqdn"],
        examples: &[
            ("Get-CsAllowedDomain", "Lists every SIP federation partner."),
            ("Get-CsAllowedDomain -Filter *.com", "Lists the partners whose domain ends in .com."),
        ],
        ..cmdlet(
            CmdletId::GetCsAllowedDomain,
            Capability::EdgeAndDns,
            "Returns the SIP federation partners.",
            &[
                param("Identity", String, "Return only this domain.").at(0),
                param("Filter", String, "Return the domains matching this pattern (* and ? as wildcards)."),
                param("LocalStore", Switch, "Read this server's local replica instead of the Central Management store."),
            ],
        )
    },
    CmdletSpec {
        description: "Removes a SIP federation partner: from then on the Access Edge refuses \
            messages from that domain (403). Written through the active Central Management \
            master and replicated.",
        changes_state: true,
        examples: &[(
            "Remove-CsAllowedDomain -Identity fabrikam.com",
            "Stops federation with fabrikam.com.",
        )],
        ..cmdlet(
            CmdletId::RemoveCsAllowedDomain,
            Capability::EdgeAndDns,
            "Removes a domain from the SIP federation partners.",
            &[param("Identity", String, "The partner's SIP domain.").mandatory().at(0)],
        )
    },
    CmdletSpec {
        description: "Adds an XMPP federation partner: a domain whose XMPP servers the Edge's \
            XMPP gateway exchanges messages and presence with (the topology's \
            deployment.xmpp_partner). -TlsNegotiation and -SaslNegotiation say whether the \
            stream's TLS and SASL EXTERNAL (the partner proved by its certificate) are \
            NotSupported, Optional or Required (default Optional); \
            -SupportDialbackNegotiation whether Server Dialback may prove the partner \
            instead (default $true). SASL needs TLS, SaslNegotiation Required needs \
            TlsNegotiation Required, and a partner needs SASL or dialback: other \
            combinations are refused. -ProxyFqdn names the partner's XMPP server when its \
            domain has no _xmpp-server._tcp SRV record. The change is validated, written \
            through the active Central Management master and replicated.",
        changes_state: true,
        examples: &[
            (
                "New-CsXmppAllowedPartner -Identity jabber.example -TlsNegotiation Required -SaslNegotiation Required -SupportDialbackNegotiation $false",
                "Federates with jabber.example over TLS, the partner proved by its certificate only.",
            ),
            (
                "New-CsXmppAllowedPartner -Identity chat.example",
                "Federates with chat.example with tandem's defaults (TLS and SASL when offered, dialback otherwise).",
            ),
        ],
        ..cmdlet(
            CmdletId::NewCsXmppAllowedPartner,
            Capability::EdgeAndDns,
            "Adds an XMPP federation partner.",
            XMPP_PARTNER_PARAMS,
        )
    },
    CmdletSpec {
        description: "Lists the XMPP federation partners and how each negotiates, from the \
            active Central Management master, or from this server's replica (with a \
            warning) when no master answers or with -LocalStore.",
        outputs: &[
            "Identity",
            "Domain",
            "TlsNegotiation",
            "SaslNegotiation",
            "SupportDialbackNegotiation",
            "ProxyFqdn",
        ],
        examples: &[("Get-CsXmppAllowedPartner", "Lists every XMPP federation partner.")],
        ..cmdlet(
            CmdletId::GetCsXmppAllowedPartner,
            Capability::EdgeAndDns,
            "Returns the XMPP federation partners.",
            &[
                param("Identity", String, "Return only this partner's domain.").at(0),
                param("Filter", String, "Return the domains matching this pattern (* and ? as wildcards)."),
                param("LocalStore", Switch, "Read this server's local replica instead of the Central Management store."),
            ],
        )
    },
    CmdletSpec {
        description: "Changes how an XMPP federation partner negotiates; only the parameters \
            given change. -ProxyFqdn '' (an empty value) removes the proxy. The same \
            combinations as New-CsXmppAllowedPartner are refused.",
        changes_state: true,
        examples: &[(
            "Set-CsXmppAllowedPartner -Identity jabber.example -SaslNegotiation Optional -SupportDialbackNegotiation $true",
            "Lets jabber.example's servers prove themselves by dialback when they offer no SASL.",
        )],
        ..cmdlet(
            CmdletId::SetCsXmppAllowedPartner,
            Capability::EdgeAndDns,
            "Changes an XMPP federation partner.",
            XMPP_PARTNER_PARAMS,
        )
    },
    CmdletSpec {
        description: "Removes an XMPP federation partner: the XMPP gateway opens no stream \
            with its servers and takes none from them.",
        changes_state: true,
        examples: &[(
            "Remove-CsXmppAllowedPartner -Identity jabber.example",
            "Stops XMPP federation with jabber.example.",
        )],
        ..cmdlet(
            CmdletId::RemoveCsXmppAllowedPartner,
            Capability::EdgeAndDns,
            "Removes an XMPP federation partner.",
            &[param("Identity", String, "The partner's XMPP domain.").mandatory().at(0)],
        )
    },
    // ------------------------------------------------------------------------------------
    // Central Management store
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Without a switch, returns one row per replica (every server holding a \
            copy of the configuration): whether it is up to date, when it last reported and \
            which configuration version it holds; healthy means every replica is UpToDate. \
            With -CentralManagementStoreStatus it returns one record for the store itself \
            with the fields ActiveMasterFqdn, ActiveFileTransferAgents, ActiveReplicas, \
            DeletedReplicas, ActiveMasterLastHeartbeat and FileTransferAgentLastHeartbeat; an \
            empty ActiveMasterFqdn means the Central Management store is unavailable and must \
            be failed over.",
        outputs: &["ReplicaFqdn", "UpToDate", "LastStatusReport", "LastUpdateCreation", "ProductVersion"],
        examples: &[
            (
                "Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus",
                "Shows which pool runs the active master and the File Transfer Agent.",
            ),
            (
                "Get-CsManagementStoreReplicationStatus",
                "Lists every replica; all should show UpToDate True.",
            ),
        ],
        ..cmdlet(
            CmdletId::GetCsManagementStoreReplicationStatus,
            Capability::Deployment,
            "Returns the replication status of the Central Management store.",
            &[
                param("ReplicaFqdn", Fqdn, "Return only this computer's replica; omitted means every computer.")
                    .at(0),
                param(
                    "CentralManagementStoreStatus",
                    Switch,
                    "Return the status of the store itself instead of per-replica status.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Makes the active master send the current configuration to one replica \
            or to all of them now, instead of at the next change.",
        changes_state: true,
        examples: &[
            ("Invoke-CsManagementStoreReplication", "Replicates to every computer."),
            (
                "Invoke-CsManagementStoreReplication -ReplicaFqdn pool2-fe1.contoso.com",
                "Replicates to pool2-fe1 only.",
            ),
        ],
        ..cmdlet(
            CmdletId::InvokeCsManagementStoreReplication,
            Capability::Deployment,
            "Forces Central Management store replication to one or all replicas.",
            &[param("ReplicaFqdn", Fqdn, "The computer to replicate to; omitted means every computer.").at(0)],
        )
    },
    CmdletSpec {
        description: "Moves the active Central Management store to the backup database of \
            the paired pool; run it on a Front End server of the pool that takes over. With \
            -WhatIf it shows which pool hosts the store now and what would change. With no \
            target it fails over to the topology's backup database. With -BackupSqlServerFqdn \
            (the primary Back End of the backup pool is principal) or -MirrorSqlServerFqdn \
            (its mirror is principal; alias of -BackupMirrorSqlServerFqdn) it fails over to \
            that server. -Force is not required: when the active master is unreachable the \
            cmdlet runs in disaster mode and says so; when it is reachable it fails over \
            safely (read-only, replicate, switch). -Restore clears a half-finished failover.",
        changes_state: true,
        default_set: Some("Normal"),
        examples: &[
            (
                "Invoke-CsManagementServerFailover -Whatif",
                "Shows which pool hosts the Central Management store.",
            ),
            (
                "Invoke-CSManagementServerFailover -BackupSQLServerFqdn pool2-be.contoso.com -BackupSQLInstanceName rtc",
                "Fails the store over to pool2's primary Back End.",
            ),
            (
                "Invoke-CSManagementServerFailover -MirrorSQLServerFqdn pool2-be-mirror.contoso.com -MirrorSQLInstanceName rtc",
                "Fails the store over to pool2's mirror Back End, which is principal.",
            ),
        ],
        ..cmdlet(
            CmdletId::InvokeCsManagementServerFailover,
            Capability::CmsFailover,
            "Fails the Central Management store over to the backup pool's database.",
            &[
                param(
                    "BackupSqlServerFqdn",
                    Fqdn,
                    "The computer hosting the backup database (the backup pool's primary Back End).",
                )
                .mandatory()
                .sets(&["DisasterRecovery"]),
                param(
                    "BackupSqlInstanceName",
                    String,
                    "SQL Server instance of the backup database, for example rtc.",
                )
                .sets(&["DisasterRecovery"]),
                param(
                    "BackupMirrorSqlServerFqdn",
                    Fqdn,
                    "The computer hosting the mirror of the backup database.",
                )
                .aliases(&["MirrorSqlServerFqdn"])
                .sets(&["DisasterRecovery", "DisasterRecoveryMirror"]),
                param(
                    "BackupMirrorSqlInstanceName",
                    String,
                    "SQL Server instance of the mirror, for example rtc.",
                )
                .aliases(&["MirrorSqlInstanceName"])
                .sets(&["DisasterRecovery", "DisasterRecoveryMirror"]),
                param(
                    "Restore",
                    Switch,
                    "Restore the existing Central Management store database, clearing a stuck failover.",
                )
                .sets(&["Normal"]),
                param("Report", Path, "Path of the log file, for example C:\\Logs\\CMSFailover.html.")
                    .sets(&["Normal", "DisasterRecovery", "DisasterRecoveryMirror"]),
            ],
        )
    },
    CmdletSpec {
        description: "Returns, for each database of a pool's Back End, its mirroring state on \
            the primary and on the mirror server. A State of Principal marks the server that \
            currently holds the live copy; DatabaseInaccessibleOrMirroringNotEnabled means no \
            mirror is assigned. The runbook uses -DatabaseType CentralMgmt to decide which \
            server to pass to Invoke-CsManagementServerFailover.",
        outputs: &[
            "DatabaseName",
            "StateOnPrimary",
            "StateOnMirror",
            "MirroringStatusOnPrimary",
            "MirroringStatusOnSecondary",
        ],
        examples: &[(
            "Get-CsDatabaseMirrorState -DatabaseType Centralmgmt -PoolFqdn pool2.contoso.com",
            "Shows whether pool2-be or pool2-be-mirror holds the principal Central Management store.",
        )],
        ..cmdlet(
            CmdletId::GetCsDatabaseMirrorState,
            Capability::CmsFailover,
            "Returns the mirroring state of a pool's Back End databases.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose databases are checked.").mandatory(),
                param(
                    "DatabaseType",
                    Enum(DATABASE_TYPES),
                    "Check only this kind of database, for example CentralMgmt or User.",
                ),
                param(
                    "LocalStore",
                    Switch,
                    "Read the topology from the local replica of the Central Management store.",
                ),
                param("Report", Path, "Path of a log file."),
            ],
        )
    },
    CmdletSpec {
        description: "Makes the primary or the mirror copy of a pool's Back End its \
            principal. tandem keeps a pool's databases (User, CentralMgmt, …) in one Back \
            End, so they fail over together whichever -DatabaseType is named. A planned \
            failover brings the mirror in step first and loses nothing; the old principal \
            becomes the mirror. With -Force the mirror takes over with what it holds when \
            the principal does not answer, and the old principal is fenced: it takes no \
            writes and is rebuilt as the mirror when it returns. The other Front Ends of the \
            pool follow at their next write.",
        changes_state: true,
        outputs: &[
            "PoolFqdn",
            "From",
            "To",
            "PrincipalSqlServerFqdn",
            "Term",
            "LostWrites",
            "OldPrincipalInStep",
        ],
        examples: &[(
            "Invoke-CsDatabaseFailover -PoolFqdn pool2.contoso.com -DatabaseType CentralMgmt -NewPrincipal Mirror",
            "Makes pool2-be-mirror hold the principal copy of pool2's Back End.",
        )],
        ..cmdlet(
            CmdletId::InvokeCsDatabaseFailover,
            Capability::CmsFailover,
            "Fails a pool's Back End over to its mirror, or back to its primary.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose Back End fails over.").mandatory(),
                param(
                    "DatabaseType",
                    Enum(DATABASE_TYPES),
                    "The database to fail over (all of tandem's fail over together).",
                )
                .mandatory(),
                param(
                    "NewPrincipal",
                    Enum(&["Primary", "Mirror"]),
                    "The copy that becomes principal.",
                )
                .mandatory(),
            ],
        )
    },
    CmdletSpec {
        description: "Creates databases on a SQL Server instance. The disaster-recovery use is \
            -CentralManagementDatabase: it creates an empty Central Management store on the \
            backup pool's Back End before Move-CsManagementServer fills it. Without -Clean \
            existing databases are never overwritten; -Clean drops and recreates them.",
        changes_state: true,
        default_set: Some("ByCMS"),
        examples: &[(
            "Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn pool2-be.contoso.com -SqlInstanceName rtc",
            "Creates a new Central Management store on pool2's Back End.",
        )],
        ..cmdlet(
            CmdletId::InstallCsDatabase,
            Capability::CmsFailover,
            "Installs Skype for Business Server databases on a SQL Server.",
            &[
                param(
                    "CentralManagementDatabase",
                    Switch,
                    "Install the Central Management store database.",
                )
                .mandatory()
                .sets(&["ByCMS"]),
                param("DatabaseType", Enum(DATABASE_TYPES), "Install this kind of database.")
                    .mandatory()
                    .sets(&["ByDatabase"]),
                param(
                    "ConfiguredDatabases",
                    Switch,
                    "Install every database the topology assigns to the SQL Server.",
                )
                .mandatory()
                .sets(&["ByConfigured"]),
                param("LocalDatabases", Switch, "Install the local databases of this computer.")
                    .mandatory()
                    .sets(&["ByLocal"]),
                param("SqlServerFqdn", Fqdn, "The SQL Server computer to install on.")
                    .mandatory()
                    .sets(&["ByCMS", "ByDatabase", "ByConfigured"]),
                param(
                    "SqlInstanceName",
                    String,
                    "SQL Server instance to install on; omitted means the default instance.",
                )
                .sets(&["ByCMS", "ByDatabase", "ByConfigured"]),
                param(
                    "Clean",
                    Switch,
                    "Drop and reinstall existing databases; cannot be combined with -Update.",
                ),
                param(
                    "Update",
                    Switch,
                    "Update existing databases in place; not allowed on mirrored databases.",
                ),
                param(
                    "Backup",
                    Switch,
                    "Back up the existing Central Management store database to the instance.",
                )
                .sets(&["ByCMS"]),
                param(
                    "ExcludeCollocatedStores",
                    Switch,
                    "Suppress the warning about collocated stores.",
                )
                .sets(&["ByConfigured"]),
                param("ForDefaultInstance", Switch, "Install only on the default SQL Server instance.")
                    .sets(&["ByConfigured", "ByLocal"]),
                param("ForInstance", String, "Install only on this named SQL Server instance.")
                    .sets(&["ByConfigured", "ByLocal"]),
                param("Report", Path, "Path of a log file."),
            ],
        )
    },
    CmdletSpec {
        description: "Moves the Central Management server and store to the pool of the \
            computer the shell is connected to; run it on a Front End server of the target \
            pool after Install-CsDatabase -CentralManagementDatabase. In a disaster the old \
            store cannot be made read-only, so -Force is needed, and the new store is filled \
            from the files written by Export-CsConfiguration and Export-CsLisConfiguration. \
            On success it lists the servers where Bootstrapper /Setup must run next.",
        changes_state: true,
        examples: &[(
            "Move-CsManagementServer -ConfigurationFileName c:\\CsConfigurationFile.zip -LisConfigurationFileName c:\\CsLisConfigurationFile.zip -Force",
            "Rebuilds the Central Management store on pool2 from the exported files.",
        )],
        ..cmdlet(
            CmdletId::MoveCsManagementServer,
            Capability::CmsFailover,
            "Moves the Central Management server and store to this computer's pool.",
            &[
                param(
                    "ConfigurationFileName",
                    Path,
                    "The ZIP file written by Export-CsConfiguration (disaster recovery only).",
                )
                .aliases(&["CsConfiguration"]),
                param(
                    "LisConfigurationFileName",
                    Path,
                    "The ZIP file written by Export-CsLisConfiguration (disaster recovery only).",
                )
                .aliases(&["CsLisConfiguration"]),
                param("TargetFqdn", Fqdn, "The pool to move to; omitted means this computer's pool."),
                param("Report", Path, "Path of a log file."),
            ],
        )
    },
    CmdletSpec {
        description: "The Deployment Wizard's bootstrapper. With /Setup it installs the \
            Central Management service on the Front End server the shell is connected to; \
            the runbook runs it on every Front End of the new Central Management pool except \
            the one Move-CsManagementServer ran on. Without a switch it installs the services \
            a Front End needs after its pool was paired. Arguments may be written /Setup or \
            -Setup.",
        aliases: &["Bootstrapper.exe"],
        changes_state: true,
        slash_switches: true,
        examples: &[(
            "Bootstrapper /Setup",
            "Installs the Central Management service on this Front End server.",
        )],
        ..cmdlet(
            CmdletId::Bootstrapper,
            Capability::CmsFailover,
            "Installs the server components this Front End needs, such as the Central Management service.",
            &[param("Setup", Switch, "Install the Central Management service on this Front End server.")],
        )
    },
    // ------------------------------------------------------------------------------------
    // Users and the Backup Service
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Enables a user for Skype for Business: gives the account a SIP address \
            and homes it on a Front End pool. The user's data is then synchronised to the \
            pool's backup pool by the Backup Service.",
        changes_state: true,
        examples: &[(
            "Enable-CsUser -Identity Alice -RegistrarPool pool1.contoso.com -SipAddress sip:alice@contoso.com",
            "Homes Alice on pool1.",
        )],
        ..cmdlet(
            CmdletId::EnableCsUser,
            Capability::UsersAndBackup,
            "Enables a user and homes them on a Front End pool.",
            &[
                param("Identity", String, "The user account to enable, for example Alice.")
                    .mandatory()
                    .at(0),
                param("RegistrarPool", Fqdn, "The Front End pool the user is homed on.").mandatory(),
                param("SipAddress", SipUri, "The user's SIP address, for example sip:alice@contoso.com.")
                    .mandatory(),
            ],
        )
    },
    CmdletSpec {
        description: "Lists enabled users, or one user given by account name or SIP address.",
        outputs: &["Identity", "SipAddress", "RegistrarPool", "Enabled"],
        examples: &[
            ("Get-CsUser", "Lists every enabled user."),
            ("Get-CsUser -Identity sip:alice@contoso.com", "Shows Alice's home pool."),
        ],
        ..cmdlet(
            CmdletId::GetCsUser,
            Capability::UsersAndBackup,
            "Returns users enabled for Skype for Business.",
            &[param(
                "Identity",
                String,
                "The user: account name or SIP address; omitted means every user.",
            )
            .at(0)],
        )
    },
    CmdletSpec {
        description: "Disables a user: the user can no longer sign in (403) or be reached. \
            The account, its home pool and its stored data are kept, so Enable-CsUser can \
            enable it again.",
        changes_state: true,
        examples: &[("Disable-CsUser -Identity sip:alice@contoso.com", "Disables Alice.")],
        ..cmdlet(
            CmdletId::DisableCsUser,
            Capability::UsersAndBackup,
            "Disables a user for Skype for Business.",
            &[param("Identity", String, "The user: account name or SIP address.")
                .mandatory()
                .at(0)],
        )
    },
    CmdletSpec {
        description: "Shows where a user is homed, where the user's data is backed up and \
            which pool serves the user now: the backup pool while the home pool is failed \
            over. Mode tells whether the user is served normally, failed over, or in \
            resiliency mode (signed in to the backup pool before failover completed; no \
            persistent changes allowed).",
        outputs: &[
            "PrimaryPoolFqdn",
            "BackupPoolFqdn",
            "ServingPoolFqdn",
            "Mode",
            "PrimaryPoolPrimaryRegistrar",
            "BackupPoolPrimaryRegistrar",
        ],
        examples: &[(
            "Get-CsUserPoolInfo -Identity sip:alice@contoso.com",
            "Shows that Alice is homed on pool1, backed up on pool2, and which serves her now.",
        )],
        ..cmdlet(
            CmdletId::GetCsUserPoolInfo,
            Capability::UsersAndBackup,
            "Returns a user's home pool, backup pool and serving pool.",
            &[
                param("Identity", SipUri, "The user's SIP address.").mandatory().at(0),
                param(
                    "LocalStore",
                    Switch,
                    "Read the topology from the local replica of the Central Management store.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Returns one row per Backup Service module and direction (pool to backup \
            pool and back): ExportStatus (FinalState, SteadyState, NonSteadyState, \
            NotInitialized, ErrorState), ImportStatus (NormalState, ErrorState), and tandem's \
            PendingChanges, LagSeconds, LastSyncTime and EstimatedRpoSeconds. FinalState means \
            nothing is left to copy. On the rows from the backup pool to this one, \
            PendingWhenLastHeard and LastHeard say what the backup pool last reported it had \
            not shipped here: what a disaster failover reports at once if it is lost now. \
            -Category and -BackupModule are both accepted; module names may be long \
            (UserServices.PresenceFocus), short (PresenceFocus) or All.",
        outputs: &[
            "BackupModule",
            "SourcePoolFqdn",
            "TargetPoolFqdn",
            "ExportStatus",
            "ImportStatus",
            "PendingChanges",
            "LagSeconds",
            "LastSyncTime",
            "EstimatedRpoSeconds",
            "PendingWhenLastHeard",
            "LastHeard",
        ],
        examples: &[
            ("Get-CsBackupServiceStatus -PoolFqdn pool1.contoso.com", "Shows how far pool1 and pool2 are in sync."),
            (
                "Get-CsBackupServiceStatus -PoolFqdn pool2.contoso.com -BackupModule ConfServices.DataConf",
                "Shows whether conference content has reached its steady state.",
            ),
        ],
        ..cmdlet(
            CmdletId::GetCsBackupServiceStatus,
            Capability::UsersAndBackup,
            "Returns the Backup Service synchronisation status of a pool.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose backup status is read.").mandatory(),
                param(
                    "Category",
                    Enum(BACKUP_CATEGORIES),
                    "Return only this category of modules; omitted means all.",
                ),
                param(
                    "BackupModule",
                    Enum(BACKUP_MODULES),
                    "Return only this module, long or short name; omitted means all.",
                ),
                param("Force", Switch, "Suppress non-fatal error prompts."),
            ],
        )
    },
    CmdletSpec {
        description: "Runs a Backup Service synchronisation of a pool with its backup pool now \
            instead of waiting for the sync interval; only what is needed to converge is \
            copied. After failback, sync ConfServices.DataConf from the backup pool to copy \
            conference content back home. Module names may be long, short or All.",
        changes_state: true,
        examples: &[(
            "Invoke-CsBackupServiceSync -PoolFqdn pool2.contoso.com -BackupModule ConfServices.DataConf",
            "Copies conference content between pool2 and pool1.",
        )],
        ..cmdlet(
            CmdletId::InvokeCsBackupServiceSync,
            Capability::UsersAndBackup,
            "Synchronises a pool with its backup pool now.",
            &[
                param("PoolFqdn", Fqdn, "The pool to synchronise with its backup pool.").mandatory(),
                param(
                    "BackupModule",
                    Enum(BACKUP_MODULES),
                    "Synchronise only this module, long or short name; omitted means all.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Returns the Backup Service settings. Only one instance exists, global, \
            shared by every pool pair.",
        outputs: &[
            "Identity",
            "SyncInterval",
            "MaxConcurrentCalls",
            "MaxBatchesPerCmsSync",
            "MaxBatchesPerUserStoreSync",
            "MaxDataConfPackageSizeKB",
            "AuthorizedLocalAccounts",
            "AuthorizedUniversalGroups",
        ],
        examples: &[("Get-CsBackupServiceConfiguration", "Shows the global Backup Service settings.")],
        ..cmdlet(
            CmdletId::GetCsBackupServiceConfiguration,
            Capability::UsersAndBackup,
            "Returns the Backup Service configuration.",
            &[
                param("Identity", Identity(IdentityKind::Scope), "The settings to read; only global exists.")
                    .at(0),
                param(
                    "LocalStore",
                    Switch,
                    "Read from the local replica of the Central Management store instead of the store itself.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Changes how often the Backup Service synchronises each pool with its \
            backup pool. SyncInterval accepts hh:mm:ss or a number of seconds, from 5 seconds \
            to 3 hours (default 2 minutes). It drives both the Backup Service load and the \
            recovery point: change it only when needed. A tandem addition: \
            -SynchronousCommit $true makes a pair commit synchronously (all pairs, or the pair \
            of -PoolFqdn): a user's write is acknowledged only once the backup pool has \
            committed it, so a disaster failover loses nothing acknowledged, at the cost of \
            about one round trip between the pools per write. If the backup pool does not \
            commit within -SynchronousCommitTimeout (default 2 seconds) the pool falls back to \
            asynchronous shipping rather than block its users, says so in \
            Get-CsBackupServiceStatus, and returns to synchronous commit once the backup pool \
            has caught up.",
        changes_state: true,
        examples: &[
            (
                "Set-CsBackupServiceConfiguration -Identity global -SyncInterval 00:01:00",
                "Synchronises paired pools every minute.",
            ),
            (
                "Set-CsBackupServiceConfiguration -SynchronousCommit $true -PoolFqdn pool1.contoso.com",
                "pool1 and its backup pool commit every user write in both pools before acknowledging it.",
            ),
        ],
        ..cmdlet(
            CmdletId::SetCsBackupServiceConfiguration,
            Capability::UsersAndBackup,
            "Changes the Backup Service synchronisation interval.",
            &[
                param("Identity", Identity(IdentityKind::Scope), "The settings to change; only global exists.")
                    .at(0),
                param(
                    "SyncInterval",
                    TimeSpan,
                    "Time between synchronisations of a pool to its backup pool (5 seconds to 3 hours).",
                ),
                param(
                    "SynchronousCommit",
                    Boolean,
                    "$true: a user's write is acknowledged only once the backup pool committed it; $false: shipped after it is acknowledged (the default).",
                ),
                param(
                    "SynchronousCommitTimeout",
                    TimeSpan,
                    "How long a synchronous write waits for the backup pool before the pool falls back to asynchronous shipping (0.1 to 60 seconds; default 2 seconds).",
                ),
                param(
                    "PoolFqdn",
                    Fqdn,
                    "With -SynchronousCommit: the pool whose pair changes; omitted means every pair.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Makes the Storage Service on every Front End of a pool write its queued \
            data to the Back End. SteadyState flushes only what can leave the queue without \
            affecting operation; FullFlush flushes everything and is used when failing over, \
            when no new data is expected. Also advised before shutting down several Front End \
            servers at once.",
        changes_state: true,
        examples: &[(
            "Invoke-CsStorageServiceFlush -PoolFqdn pool1.contoso.com -FlushType FullFlush",
            "Writes everything pool1's Storage Service holds to its Back End.",
        )],
        ..cmdlet(
            CmdletId::InvokeCsStorageServiceFlush,
            Capability::UsersAndBackup,
            "Flushes the Storage Service data of every Front End in a pool.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose Storage Service is flushed.").mandatory(),
                param("FlushType", Enum(&["SteadyState", "FullFlush"]), "SteadyState or FullFlush.")
                    .mandatory(),
                param(
                    "WaitTime",
                    TimeSpan,
                    "Longest wait for flushing to begin before moving on, hh:mm:ss or seconds.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Compares the primary copy of a pool's data with the backup copy on its \
            backup pool, module by module, and prints what differs. Read-only. Fails when the \
            pool has no backup pool. Module names may be long, short or All (the default).",
        examples: &[(
            "Debug-CsInterPoolReplication -PoolFqdn pool1.contoso.com -BackupModule PresenceFocus",
            "Checks that pool2 holds the same user data as pool1.",
        )],
        ..cmdlet(
            CmdletId::DebugCsInterPoolReplication,
            Capability::UsersAndBackup,
            "Compares a pool's data with its backup copy.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose data is compared with its backup pool.").mandatory(),
                param(
                    "BackupModule",
                    Enum(BACKUP_MODULES),
                    "Compare only this module, long or short name; omitted means all.",
                ),
                param("Force", Switch, "Suppress non-fatal error prompts."),
            ],
        )
    },
    CmdletSpec {
        description: "Writes the user data of a pool (contact lists, settings, conference \
            directories) to a ZIP file. Read-only for the pool.",
        examples: &[(
            "Export-CsUserData -PoolFqdn pool1.contoso.com -FileName c:\\pool1-users.zip",
            "Saves pool1's user data.",
        )],
        ..cmdlet(
            CmdletId::ExportCsUserData,
            Capability::UsersAndBackup,
            "Exports a pool's user data to a ZIP file.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose user data is exported.").mandatory(),
                param("FileName", Path, "Path of the ZIP file to write.").mandatory(),
            ],
        )
    },
    CmdletSpec {
        description: "Loads user data from a ZIP file written by Export-CsUserData into a \
            pool, replacing the data of the users it contains.",
        changes_state: true,
        examples: &[(
            "Import-CsUserData -PoolFqdn pool1.contoso.com -FileName c:\\pool1-users.zip",
            "Restores pool1's user data from the export.",
        )],
        ..cmdlet(
            CmdletId::ImportCsUserData,
            Capability::UsersAndBackup,
            "Imports user data from a ZIP file into a pool.",
            &[
                param("PoolFqdn", Fqdn, "The pool the user data is imported into.").mandatory(),
                param("FileName", Path, "Path of the ZIP file to import.").mandatory(),
            ],
        )
    },
    // ------------------------------------------------------------------------------------
    // Pool failover and failback
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Lets the users homed on a pool sign in to its backup pool, with full \
            service, until the pool is failed back; users are not rehomed. -PoolFqdn is always \
            the users' home pool. Without -DisasterMode the failover is planned: the pool is \
            made read-only and its data synchronised first. -WaitTime accepts hh:mm:ss or \
            seconds and bounds the wait for the Backup Service to reach its final state; on \
            timeout a planned failover stops with the backlog in the error, unless -Force. \
            -SkipDataVerification skips the data-integrity check. Refused when the pool has no \
            backup pool, is an Edge next hop, or is serving failed-over users itself.",
        changes_state: true,
        examples: &[
            (
                "Invoke-CsPoolFailover -PoolFQDN pool1.contoso.com -DisasterMode -Verbose",
                "Fails the users of pool1 over to pool2 after pool1 was lost.",
            ),
            (
                "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -FlushStorageService -WaitTime 00:05:00",
                "Planned failover of pool1 for maintenance, flushing its Storage Service first.",
            ),
        ],
        ..cmdlet(
            CmdletId::InvokeCsPoolFailOver,
            Capability::PoolFailover,
            "Fails the users homed on a Front End pool over to its backup pool.",
            &[
                param("PoolFqdn", Fqdn, "The pool whose users are failed over: the users' home pool.")
                    .mandatory(),
                param(
                    "DisasterMode",
                    Switch,
                    "The pool is unreachable: fail over without its cooperation; data not yet synchronised is lost.",
                ),
                param(
                    "FlushStorageService",
                    Switch,
                    "Also flush the Storage Service on every Front End of the pool (Invoke-CsStorageServiceFlush).",
                ),
                param(
                    "WaitTime",
                    TimeSpan,
                    "Longest wait for the Backup Service to reach its final state, hh:mm:ss or seconds.",
                ),
                param("DatabaseCommandTimeoutInSeconds", Int32, "Timeout for database commands, in seconds."),
                param("ServicesStopDelayMins", Int32, "Minutes to wait for the pool's services to stop."),
                param(
                    "SkipDataVerification",
                    Switch,
                    "Proceed without verifying data integrity.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Returns the users of a failed-over pool to their home pool once it is \
            back; -PoolFqdn is the same home pool given at failover. Data the users created on \
            the backup pool is copied back first. -WaitTime accepts hh:mm:ss or seconds and \
            bounds the wait for the Backup Service to reach its final state (default 15 \
            seconds); on timeout the failback stops with the backlog in the error, unless \
            -Force. -DisasterMode fails back although the backup pool is unavailable, losing \
            what the users created there. -SkipDataVerification skips the data-integrity \
            check. Takes up to an hour for 20,000 users.",
        changes_state: true,
        examples: &[(
            "Invoke-CsPoolFailback -PoolFQDN pool1.contoso.com -Verbose",
            "Returns pool1's users from pool2 to pool1.",
        )],
        ..cmdlet(
            CmdletId::InvokeCsPoolFailBack,
            Capability::PoolFailover,
            "Fails a pool's users back to it from its backup pool.",
            &[
                param(
                    "PoolFqdn",
                    Fqdn,
                    "The pool being failed back: the users' home pool, as given at failover.",
                )
                .mandatory(),
                param(
                    "DisasterMode",
                    Switch,
                    "Fail back even though the backup pool is unavailable; data created there is lost.",
                ),
                param(
                    "WaitTime",
                    TimeSpan,
                    "Longest wait for the Backup Service to reach its final state, hh:mm:ss or seconds (default 15 seconds).",
                ),
                param("DatabaseCommandTimeoutInSeconds", Int32, "Timeout for database commands, in seconds."),
                param(
                    "SkipDataVerification",
                    Switch,
                    "Proceed without verifying data integrity.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "A tandem addition: shows whether a pool is in normal service, failing \
            over, failed over or failing back, in which mode (planned or disaster), which pool \
            serves its users, since when, and the disaster-recovery operation that put it \
            there.",
        outputs: &["PoolFqdn", "BackupPoolFqdn", "State", "Mode", "ServingPoolFqdn", "Since", "OperationId"],
        examples: &[(
            "Get-CsPoolFailoverState -PoolFqdn pool1.contoso.com",
            "Shows whether pool1's users are served by pool1 or pool2.",
        )],
        ..cmdlet(
            CmdletId::GetCsPoolFailoverState,
            Capability::PoolFailover,
            "Returns the failover state of Front End pools.",
            &[param("PoolFqdn", Fqdn, "The pool to report on; omitted means every Front End pool.").at(0)],
        )
    },
    CmdletSpec {
        description: "A tandem addition: the history of pool failovers and failbacks, with \
            their steps, timings, outcome and what data was lost. An operation interrupted by \
            a crash shows the step it stopped at; Resume-CsDisasterRecoveryOperation carries \
            it on.",
        outputs: &[
            "Identity",
            "Operation",
            "PoolFqdn",
            "Mode",
            "State",
            "CurrentStep",
            "Started",
            "Finished",
            "DataLost",
        ],
        examples: &[
            ("Get-CsDisasterRecoveryOperation", "Lists every failover and failback so far."),
            (
                "Get-CsDisasterRecoveryOperation -Identity 7 | Format-List",
                "Shows every detail of operation 7.",
            ),
        ],
        ..cmdlet(
            CmdletId::GetCsDisasterRecoveryOperation,
            Capability::PoolFailover,
            "Returns pool failover and failback operations, past and in progress.",
            &[param("Identity", String, "The operation to show; omitted means every operation.").at(0)],
        )
    },
    CmdletSpec {
        description: "A tandem addition: carries an interrupted failover or failback on from \
            the step it stopped at. Each step is safe to run again, so resuming after any \
            crash neither repeats work nor loses data.",
        changes_state: true,
        examples: &[(
            "Resume-CsDisasterRecoveryOperation -Identity 7",
            "Finishes operation 7, which stopped when a server restarted.",
        )],
        ..cmdlet(
            CmdletId::ResumeCsDisasterRecoveryOperation,
            Capability::PoolFailover,
            "Resumes an interrupted pool failover or failback.",
            &[param("Identity", String, "The operation to resume, as shown by Get-CsDisasterRecoveryOperation.")
                .mandatory()
                .at(0)],
        )
    },
    CmdletSpec {
        description: "A tandem addition: cancels a stopped failover or failback that has not \
            reached its point of no return (the promotion of the target's copy). The fence \
            that made the users read-only is lifted, the pool goes back to the state it was in \
            before the operation began, and the operation's record lists what was undone. \
            Past the point of no return it refuses, and says to resume the operation and run \
            its opposite instead.",
        changes_state: true,
        examples: &[(
            "Stop-CsDisasterRecoveryOperation -Identity 7",
            "Cancels operation 7, a planned failover stopped at Drain, so pool1's users can write again.",
        )],
        ..cmdlet(
            CmdletId::StopCsDisasterRecoveryOperation,
            Capability::PoolFailover,
            "Cancels a stopped pool failover or failback and undoes what it did.",
            &[param("Identity", String, "The operation to cancel, as shown by Get-CsDisasterRecoveryOperation.")
                .mandatory()
                .at(0)],
        )
    },
    // ------------------------------------------------------------------------------------
    // Services and Edge
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Lists the Skype for Business services of a server and whether they run. \
            Front End services: RTCSRV (Registrar and user services), LYNCBACKUP, MASTER, FTA, \
            REPLICA; Edge services: RTCSRV (Access Edge, federation), RTCXMPPTGWPX (XMPP), \
            REPLICA.",
        outputs: &["Name", "Status", "ComputerName", "DisplayName"],
        examples: &[(
            "Get-CsWindowsService -ComputerName edgeserver2.contoso.com",
            "Shows which services run on edgeserver2.",
        )],
        ..cmdlet(
            CmdletId::GetCsWindowsService,
            Capability::Deployment,
            "Returns the Skype for Business services of a server.",
            &[
                param("Name", String, "The service to show, for example RTCSRV; omitted means every service.")
                    .at(0),
                param(
                    "ComputerName",
                    Fqdn,
                    "The server to ask; omitted means the server the shell is connected to.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Starts one or every Skype for Business service of a server, and the \
            services it depends on. Services already running are left alone. No name means \
            every service of that server.",
        changes_state: true,
        examples: &[
            ("Start-CsWindowsService", "Starts every service of this server."),
            (
                "Start-CsWindowsService -Name RTCXMPPTGWPX -ComputerName edgeserver2.contoso.com",
                "Starts the XMPP proxy on edgeserver2.",
            ),
        ],
        ..cmdlet(
            CmdletId::StartCsWindowsService,
            Capability::Deployment,
            "Starts Skype for Business services on a server.",
            &[
                param("Name", String, "The service to start, for example RTCSRV; omitted means every service.")
                    .at(0),
                param(
                    "ComputerName",
                    Fqdn,
                    "The server to act on; omitted means the server the shell is connected to.",
                ),
                param("NoWait", Switch, "Return at once instead of waiting for the services to start."),
                param("Report", Path, "Path of a log file."),
            ],
        )
    },
    CmdletSpec {
        description: "Stops one or every Skype for Business service of a server, and the \
            services that depend on it. A stopped service really stops listening. No name \
            means every service of that server. -Graceful refuses new requests and stops \
            once the current ones finish.",
        changes_state: true,
        examples: &[
            ("Stop-CsWindowsService", "Stops every service of this server."),
            (
                "Stop-CsWindowsService -ComputerName edgeserver2.contoso.com -Graceful",
                "Drains and stops every service of edgeserver2.",
            ),
        ],
        ..cmdlet(
            CmdletId::StopCsWindowsService,
            Capability::Deployment,
            "Stops Skype for Business services on a server.",
            &[
                param("Name", String, "The service to stop, for example RTCSRV; omitted means every service.")
                    .at(0),
                param(
                    "ComputerName",
                    Fqdn,
                    "The server to act on; omitted means the server the shell is connected to.",
                ),
                param("Graceful", Switch, "Refuse new requests and stop once existing ones finish."),
                param("NoWait", Switch, "Return at once instead of waiting for the services to stop."),
                param("Report", Path, "Path of a log file."),
            ],
        )
    },
    CmdletSpec {
        description: "Stands for the Deployment Wizard's Install or Update > Setup or Remove \
            Components > Run Again on a server: applies the published topology to the server \
            (for an Edge, its federation and XMPP roles) and reports what it applied. Needed \
            on the Edge servers after federation moves to another Edge pool.",
        changes_state: true,
        examples: &[(
            "Invoke-CsServerSetup -ComputerName edgeserver2.contoso.com",
            "Applies the new federation setting to edgeserver2.",
        )],
        ..cmdlet(
            CmdletId::InvokeCsServerSetup,
            Capability::EdgeAndDns,
            "Applies the published topology to a server, as the Deployment Wizard's Run Again does.",
            &[param(
                "ComputerName",
                Fqdn,
                "The server to set up; omitted means the server the shell is connected to.",
            )],
        )
    },
    CmdletSpec {
        description: "Lists the certificates of a server: the one every listener presents \
            (Use Assigned) and those requested and not assigned yet (Use Requested), with \
            their names and expiry. A tandem server has one certificate, of type Default, for \
            every listener (SIP over TLS, user services, the management API, the backup link) \
            and for its calls to other servers.",
        outputs: &[
            "Type",
            "Use",
            "Thumbprint",
            "Subject",
            "AlternativeNames",
            "Issuer",
            "SerialNumber",
            "NotBefore",
            "NotAfter",
            "DaysLeft",
        ],
        examples: &[(
            "Get-CsCertificate -ComputerName pool1-fe1.contoso.com",
            "Shows pool1-fe1's certificate and when it expires.",
        )],
        ..cmdlet(
            CmdletId::GetCsCertificate,
            Capability::Deployment,
            "Returns the certificates of a server.",
            &[
                param("Type", Enum(CERTIFICATE_TYPES), "Return only this type; tandem has Default only."),
                param(
                    "ComputerName",
                    Fqdn,
                    "The server to ask; omitted means the server the shell is connected to.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Makes a new key on the server and has the deployment's CA sign it for \
            the names the server's current certificate holds (its FQDN, its pool's and its \
            address): a renewal. The certificate is kept as Requested until Set-CsCertificate \
            assigns it; the output gives its thumbprint. tandem's CA is the lab's own (its \
            DNS server signs, with the key in the lab folder's pki/), so -CA is not needed.",
        changes_state: true,
        outputs: &["Type", "Use", "Thumbprint", "Subject", "NotAfter"],
        examples: &[(
            "Request-CsCertificate -New -Type Default -ComputerName pool1-fe1.contoso.com",
            "Requests a renewed certificate for pool1-fe1.",
        )],
        ..cmdlet(
            CmdletId::RequestCsCertificate,
            Capability::Deployment,
            "Requests a certificate from the deployment's CA.",
            &[
                param("New", Switch, "Request a new certificate.").mandatory(),
                param("Type", Enum(CERTIFICATE_TYPES), "The certificate's use; tandem has Default only.")
                    .mandatory(),
                param("ValidityDays", Int32, "How long the certificate is valid, in days (default 365, at most 825)."),
                param(
                    "ComputerName",
                    Fqdn,
                    "The server to request for; omitted means the server the shell is connected to.",
                ),
            ],
        )
    },
    CmdletSpec {
        description: "Assigns a requested certificate: every listener presents it from the \
            next handshake on and the server uses it when it calls others, without a restart \
            and without closing a connection.",
        changes_state: true,
        examples: &[(
            "Set-CsCertificate -Type Default -Thumbprint 3F2A… -ComputerName pool1-fe1.contoso.com",
            "Puts pool1-fe1's renewed certificate in use.",
        )],
        ..cmdlet(
            CmdletId::SetCsCertificate,
            Capability::Deployment,
            "Assigns a certificate to a server's services.",
            &[
                param("Type", Enum(CERTIFICATE_TYPES), "The certificate's use; tandem has Default only.")
                    .mandatory(),
                param("Thumbprint", String, "The requested certificate, as Request-CsCertificate or Get-CsCertificate shows it.")
                    .mandatory(),
                param(
                    "ComputerName",
                    Fqdn,
                    "The server to act on; omitted means the server the shell is connected to.",
                ),
            ],
        )
    },
    // ------------------------------------------------------------------------------------
    // Operators, roles and the audit log (role-based access control)
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Creates an operator of the management API with one or more roles (see \
            Get-CsAdminRole) and makes up the operator's token, shown only now: tandem keeps \
            only its SHA-256 hash, in the Central Management store. `tandem shell --lab D` \
            saves it to D/operators/<Identity>.token (readable by its owner only) instead of \
            printing it, and `tandem shell --lab D --operator <Identity>` then acts as that \
            operator. Running it again for an operator that exists is refused: remove it \
            first (which also revokes its token).",
        changes_state: true,
        outputs: &["Identity", "Roles", "Token", "CreatedBy"],
        examples: &[(
            "New-CsAdminOperator -Identity kim -Role CsViewOnlyAdministrator",
            "Creates kim, who may run every read and nothing that changes state.",
        )],
        ..cmdlet(
            CmdletId::NewCsAdminOperator,
            Capability::Deployment,
            "Creates an operator with roles and a token.",
            &[
                param("Identity", String, "The operator's name: 1-64 letters, digits, _ or -.")
                    .mandatory()
                    .at(0),
                param("Role", StringArray, "The roles: CsAdministrator, CsServerAdministrator, CsUserAdministrator, CsLocationAdministrator, CsViewOnlyAdministrator.")
                    .mandatory(),
            ],
        )
    },
    CmdletSpec {
        description: "Removes an operator: its token is refused from the next call on, on \
            every server as soon as its replica has the change. The lab administrator (the \
            deployment's token in lab.json) is not an operator of the store and cannot be \
            removed.",
        changes_state: true,
        examples: &[(
            "Remove-CsAdminOperator -Identity kim",
            "Revokes kim's token.",
        )],
        ..cmdlet(
            CmdletId::RemoveCsAdminOperator,
            Capability::Deployment,
            "Removes an operator and revokes its token.",
            &[param("Identity", String, "The operator's name.").mandatory().at(0)],
        )
    },
    CmdletSpec {
        description: "Lists the operators of the management API with their roles, who created \
            them and when, from this server's replica. The lab administrator (the deployment's \
            token) is listed first. Tokens are never shown.",
        outputs: &["Identity", "Roles", "CreatedBy", "WhenCreated"],
        examples: &[("Get-CsAdminOperator", "Lists every operator and its roles.")],
        ..cmdlet(
            CmdletId::GetCsAdminOperator,
            Capability::Deployment,
            "Returns the operators and their roles.",
            &[param("Identity", String, "Return only this operator.").at(0)],
        )
    },
    CmdletSpec {
        description: "Lists the administrative roles and what each allows. tandem keeps the \
            product's role names and decides per cmdlet by what it does: a read, an operation \
            on servers and pools, a change to users, to the Location Information Service, to \
            the deployment as a whole, or to operators.",
        outputs: &["Identity", "Description", "Cmdlets"],
        examples: &[(
            "Get-CsAdminRole -Identity CsServerAdministrator",
            "Shows what a server administrator may run.",
        )],
        ..cmdlet(
            CmdletId::GetCsAdminRole,
            Capability::Deployment,
            "Returns the administrative roles.",
            &[param("Identity", String, "Return only this role.").at(0)],
        )
    },
    CmdletSpec {
        description: "Returns the audit log: every cmdlet that changes state, run or refused, \
            with the operator who ran it, the server the operator reached, when, the command \
            line and the outcome. Each server records the calls it ran (a call forwarded to \
            the active master is recorded there) in its own log; without -ComputerName the \
            logs of every server that answers are merged, oldest first.",
        outputs: &["When", "Operator", "Cmdlet", "CommandLine", "Outcome", "ComputerName", "ReachedVia"],
        examples: &[(
            "Get-CsAdminAuditLog -Operator kim",
            "Shows every change kim made or tried.",
        )],
        ..cmdlet(
            CmdletId::GetCsAdminAuditLog,
            Capability::Deployment,
            "Returns who changed what, and when.",
            &[
                param("Operator", String, "Return only this operator's calls."),
                param("ComputerName", Fqdn, "Read only this server's log."),
            ],
        )
    },
    CmdletSpec {
        description: "Lists the records of a zone on the lab's DNS server. For SRV records \
            the lowest priority number wins, then the highest weight (RFC 2782); the runbook's \
            \"highest priority\" means the lowest number.",
        outputs: &["HostName", "RecordType", "TimeToLive", "RecordData"],
        examples: &[(
            "Get-DnsServerResourceRecord -ZoneName contoso.com -Name _xmpp-server._tcp -RRType SRV",
            "Shows the XMPP federation SRV records and their priorities.",
        )],
        ..cmdlet(
            CmdletId::GetDnsServerResourceRecord,
            Capability::EdgeAndDns,
            "Returns DNS resource records of a zone.",
            &[
                param("ZoneName", String, "The DNS zone, for example contoso.com.").mandatory().at(0),
                param("Name", String, "The record name relative to the zone, for example xmpp.").at(1),
                param("RRType", Enum(RR_TYPES), "Return only records of this type."),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Adds an A record to a zone on the lab's DNS server.",
        changes_state: true,
        examples: &[(
            "Add-DnsServerResourceRecordA -ZoneName contoso.com -Name xmpp -IPv4Address 203.0.113.2",
            "Points xmpp.contoso.com at edgeserver2's external address.",
        )],
        ..cmdlet(
            CmdletId::AddDnsServerResourceRecordA,
            Capability::EdgeAndDns,
            "Adds a DNS A record.",
            &[
                param("ZoneName", String, "The DNS zone, for example contoso.com.").mandatory(),
                param("Name", String, "The host name relative to the zone, for example xmpp.").mandatory(),
                param("IPv4Address", Ipv4, "The address the name resolves to.").mandatory(),
                param("TimeToLive", TimeSpan, "How long resolvers may cache the record."),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Adds an SRV, A, AAAA, CNAME or TXT record to a zone on the lab's DNS server. The \
            XMPP federation record is _xmpp-server._tcp with port 5269; for SRV records the \
            lowest priority number wins, then the highest weight (RFC 2782).",
        changes_state: true,
        default_set: Some("Srv"),
        examples: &[(
            "Add-DnsServerResourceRecord -Srv -ZoneName contoso.com -Name _xmpp-server._tcp -DomainName edgeserver2.contoso.com -Priority 10 -Weight 0 -Port 5269",
            "Publishes edgeserver2 as the XMPP federation target.",
        )],
        ..cmdlet(
            CmdletId::AddDnsServerResourceRecord,
            Capability::EdgeAndDns,
            "Adds a DNS resource record.",
            &[
                param("Srv", Switch, "Add an SRV record.").mandatory().sets(&["Srv"]),
                param("A", Switch, "Add an A record.").mandatory().sets(&["A"]),
                param("CName", Switch, "Add a CNAME record.").mandatory().sets(&["CName"]),
                param("AAAA", Switch, "Add an AAAA (IPv6 address) record.").mandatory().sets(&["AAAA"]),
                param("Txt", Switch, "Add a TXT record.").mandatory().sets(&["Txt"]),
                param("ZoneName", String, "The DNS zone, for example contoso.com.").mandatory(),
                param("Name", String, "The record name relative to the zone, for example _xmpp-server._tcp.")
                    .mandatory(),
                param("DomainName", Fqdn, "The host the SRV record points to.")
                    .mandatory()
                    .sets(&["Srv"]),
                param("Priority", Int32, "SRV priority; the lowest number is tried first.")
                    .mandatory()
                    .sets(&["Srv"]),
                param("Weight", Int32, "SRV weight among records of equal priority; the highest is preferred.")
                    .mandatory()
                    .sets(&["Srv"]),
                param("Port", UInt16, "The port the SRV record announces, 5269 for XMPP federation.")
                    .mandatory()
                    .sets(&["Srv"]),
                param("IPv4Address", Ipv4, "The address the A record resolves to.")
                    .mandatory()
                    .sets(&["A"]),
                param("HostNameAlias", Fqdn, "The host the CNAME record points to.")
                    .mandatory()
                    .sets(&["CName"]),
                param("IPv6Address", String, "The address the AAAA record resolves to.")
                    .mandatory()
                    .sets(&["AAAA"]),
                param("DescriptiveText", String, "The text of the TXT record.")
                    .mandatory()
                    .sets(&["Txt"]),
                param("TimeToLive", TimeSpan, "How long resolvers may cache the record."),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Changes the data of a record on the lab's DNS server, found by zone, \
            name and type; give only the fields that change. The Windows cmdlet takes record \
            objects from the pipeline; tandem names the record instead. When several records \
            match (for example SRV records for several Edge pools), -RecordData picks the one \
            to change.",
        changes_state: true,
        examples: &[(
            "Set-DnsServerResourceRecord -ZoneName contoso.com -Name xmpp -RRType A -IPv4Address 203.0.113.2",
            "Points the XMPP federation A record at edgeserver2's external address.",
        )],
        ..cmdlet(
            CmdletId::SetDnsServerResourceRecord,
            Capability::EdgeAndDns,
            "Changes a DNS resource record.",
            &[
                param("ZoneName", String, "The DNS zone, for example contoso.com.").mandatory(),
                param("Name", String, "The record name relative to the zone.").mandatory(),
                param("RRType", Enum(RR_TYPES), "The record type.").mandatory(),
                param(
                    "RecordData",
                    String,
                    "The record's current data, to pick one when several records share the name and type.",
                ),
                param("IPv4Address", Ipv4, "New address of an A record."),
                param("DomainName", Fqdn, "New target of an SRV record."),
                param("HostNameAlias", Fqdn, "New target of a CNAME record."),
                param("IPv6Address", String, "New address of an AAAA record."),
                param("DescriptiveText", String, "New text of a TXT record."),
                param("Priority", Int32, "New SRV priority; the lowest number is tried first."),
                param("Weight", Int32, "New SRV weight."),
                param("Port", UInt16, "New SRV port."),
                param("TimeToLive", TimeSpan, "New time resolvers may cache the record."),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Removes records from a zone on the lab's DNS server: every record of \
            that name and type, or only the one whose data is given.",
        changes_state: true,
        examples: &[(
            "Remove-DnsServerResourceRecord -ZoneName contoso.com -Name _xmpp-server._tcp -RRType SRV -RecordData edgeserver1.contoso.com",
            "Removes the XMPP SRV record pointing at edgeserver1.",
        )],
        ..cmdlet(
            CmdletId::RemoveDnsServerResourceRecord,
            Capability::EdgeAndDns,
            "Removes DNS resource records.",
            &[
                param("ZoneName", String, "The DNS zone, for example contoso.com.").mandatory(),
                param("Name", String, "The record name relative to the zone.").mandatory(),
                param("RRType", Enum(RR_TYPES), "The record type.").mandatory(),
                param("RecordData", String, "Remove only the record with this data."),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Adds a primary zone to the lab's DNS server, beside the deployment's: \
            an empty zone whose SOA and NS records name this DNS server, to which \
            Add-DnsServerResourceRecord adds records (for example a partner's domain, in a lab \
            where two deployments federate). The zone is kept in the server's folder \
            (zones.json) and served at once. -ZoneFile and -ReplicationScope are accepted for \
            the Windows cmdlet's sake and ignored: the lab's server keeps every zone in its own \
            file and has no Active Directory to replicate to.",
        changes_state: true,
        outputs: &["ZoneName", "ZoneType", "IsAutoCreated", "MasterServers", "RecordCount"],
        examples: &[(
            "Add-DnsServerPrimaryZone -Name fabrikam.com -ZoneFile fabrikam.com.dns",
            "Serves fabrikam.com from the lab's DNS server.",
        )],
        ..cmdlet(
            CmdletId::AddDnsServerPrimaryZone,
            Capability::EdgeAndDns,
            "Adds a primary DNS zone.",
            &[
                param("Name", String, "The zone, for example fabrikam.com.").mandatory().at(0),
                param("ZoneFile", String, "The zone file of a file-backed zone; accepted and ignored."),
                param(
                    "ReplicationScope",
                    Enum(REPLICATION_SCOPES),
                    "Where an Active Directory-integrated zone replicates; accepted and ignored.",
                ),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Adds a conditional forwarder to the lab's DNS server: a query for a name \
            of the zone (the longest zone that contains the name decides, among primary zones \
            and forwarders) is sent to the master servers in turn, each given 2 seconds, and \
            the first answer goes back to the client (over UDP as the master gave it, a \
            truncated answer too, so the client asks again over TCP; over TCP for a query that \
            came over TCP); SERVFAIL when none answers, or when 256 queries are being \
            forwarded already. A master may carry a port (127.0.9.153:5353, tandem's \
            addition; 53 otherwise); this DNS server's own address is refused, and at most 8 \
            masters are named. -ReplicationScope is accepted and ignored.",
        changes_state: true,
        outputs: &["ZoneName", "ZoneType", "IsAutoCreated", "MasterServers", "RecordCount"],
        examples: &[(
            "Add-DnsServerConditionalForwarderZone -Name fabrikam.com -MasterServers 127.0.9.153",
            "Asks fabrikam.com's own DNS server for its names.",
        )],
        ..cmdlet(
            CmdletId::AddDnsServerConditionalForwarderZone,
            Capability::EdgeAndDns,
            "Adds a conditional forwarder zone.",
            &[
                param("Name", String, "The zone whose names are forwarded, for example fabrikam.com.")
                    .mandatory()
                    .at(0),
                param(
                    "MasterServers",
                    StringArray,
                    "The DNS servers asked, in order: addresses, each optionally with :port.",
                )
                .mandatory()
                .at(1),
                param(
                    "ReplicationScope",
                    Enum(REPLICATION_SCOPES),
                    "Where an Active Directory-integrated zone replicates; accepted and ignored.",
                ),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Lists the zones of the lab's DNS server: the deployment's own zone (built \
            from its topology), the primary zones added, and the conditional forwarders with \
            their master servers.",
        outputs: &["ZoneName", "ZoneType", "IsAutoCreated", "MasterServers", "RecordCount"],
        examples: &[
            ("Get-DnsServerZone", "Lists every zone."),
            ("Get-DnsServerZone -Name fabrikam.com", "Shows one zone."),
        ],
        ..cmdlet(
            CmdletId::GetDnsServerZone,
            Capability::EdgeAndDns,
            "Returns the zones of a DNS server.",
            &[
                param("Name", String, "Return only this zone.").at(0),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Removes a primary zone (with its records) or a conditional forwarder \
            from the lab's DNS server. The deployment's own zone, built from its topology, \
            cannot be removed. -Force is accepted (the shell asks only with -Confirm).",
        changes_state: true,
        examples: &[(
            "Remove-DnsServerZone -Name fabrikam.com -Force",
            "Stops serving (or forwarding) fabrikam.com.",
        )],
        ..cmdlet(
            CmdletId::RemoveDnsServerZone,
            Capability::EdgeAndDns,
            "Removes a DNS zone.",
            &[
                param("Name", String, "The zone.").mandatory().at(0),
                param("ComputerName", String, "The DNS server; omitted means the lab's DNS server."),
            ],
        )
    },
    CmdletSpec {
        description: "Opens a TCP connection to a port and reports whether it succeeded, for \
            example to verify that an Edge pool's XMPP port 5269 is open.",
        outputs: &["ComputerName", "RemoteAddress", "RemotePort", "TcpTestSucceeded"],
        examples: &[(
            "Test-NetConnection -ComputerName edgeserver2.contoso.com -Port 5269",
            "Checks that edgeserver2 accepts XMPP federation connections.",
        )],
        ..cmdlet(
            CmdletId::TestNetConnection,
            Capability::EdgeAndDns,
            "Tests whether a TCP port on a computer is open.",
            &[
                param("ComputerName", Fqdn, "The computer to connect to.").mandatory().at(0),
                param("Port", UInt16, "The TCP port to test.").mandatory(),
            ],
        )
    },
    // ------------------------------------------------------------------------------------
    // Shell
    // ------------------------------------------------------------------------------------
    CmdletSpec {
        description: "Lists the cmdlets this shell accepts, with the part of tandem that \
            carries each out. The name may contain wildcards (* and ?).",
        outputs: &["CommandType", "Name", "Capability", "Synopsis"],
        examples: &[
            ("Get-Command", "Lists every cmdlet."),
            ("Get-Command *-CsPool*", "Lists the pool cmdlets."),
        ],
        ..cmdlet(
            CmdletId::GetCommand,
            Capability::Shell,
            "Lists the cmdlets the shell accepts.",
            &[param("Name", String, "Cmdlet name to look for; wildcards allowed.").at(0)],
        )
    },
    CmdletSpec {
        description: "Shows a cmdlet's synopsis and syntax; -Full adds the description and \
            every parameter, -Examples shows the examples, -Parameter one parameter.",
        examples: &[
            ("Get-Help Invoke-CsPoolFailOver -Full", "Shows everything about Invoke-CsPoolFailOver."),
            (
                "Get-Help Set-CsSite -Parameter XmppExternalFederationRoute",
                "Explains one parameter of Set-CsSite.",
            ),
        ],
        ..cmdlet(
            CmdletId::GetHelp,
            Capability::Shell,
            "Shows help for a cmdlet.",
            &[
                param("Name", String, "The cmdlet to describe.").mandatory().at(0),
                param("Full", Switch, "Show the description and every parameter."),
                param("Examples", Switch, "Show only the examples."),
                param("Parameter", String, "Show only this parameter."),
            ],
        )
    },
    CmdletSpec {
        description: "Prints each object piped to it as a list, one property per line. \
            Without -Property every output field is shown.",
        examples: &[(
            "Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus | Format-List",
            "Shows the store status one field per line.",
        )],
        ..cmdlet(
            CmdletId::FormatList,
            Capability::Shell,
            "Formats piped output as a list of properties.",
            &[param("Property", StringArray, "The properties to show, in this order.").at(0)],
        )
    },
    CmdletSpec {
        description: "Prints the objects piped to it as a table, one row per object. Without \
            -Property every output field is a column.",
        examples: &[(
            "Get-CsManagementStoreReplicationStatus | Format-Table ReplicaFqdn,UpToDate",
            "Shows one line per replica with whether it is up to date.",
        )],
        ..cmdlet(
            CmdletId::FormatTable,
            Capability::Shell,
            "Formats piped output as a table.",
            &[param("Property", StringArray, "The columns to show, in this order.").at(0)],
        )
    },
    CmdletSpec {
        description: "Prints the objects piped to it as JSON, for scripts and tests.",
        examples: &[(
            "Get-CsPoolFailoverState | ConvertTo-Json -Compress",
            "Prints the failover state of every pool as one line of JSON.",
        )],
        ..cmdlet(
            CmdletId::ConvertToJson,
            Capability::Shell,
            "Converts piped output to JSON.",
            &[
                param("Compress", Switch, "Print on one line without indentation."),
            ],
        )
    },
];
