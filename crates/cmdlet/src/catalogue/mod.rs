//! The cmdlet catalogue: every cmdlet the shell accepts, as data.
//!
//! `Get-Command`, `Get-Help`, the binder and tab completion all read this one table, so
//! they cannot disagree. The table itself is in `table.rs`; the common parameters that
//! PowerShell adds to every cmdlet are added here, so the table lists only what is specific.

pub mod spec;
mod table;

use std::sync::LazyLock;

use spec::{CmdletSpec, ParamSpec, ParamType, param};

/// Parameters every cmdlet accepts.
pub static COMMON_PARAMS: &[ParamSpec] = &[
    param("Verbose", ParamType::Switch, "Prints each step with its duration.").aliases(&["vb"]),
    param("Debug", ParamType::Switch, "Prints the requests the shell sends, for troubleshooting.")
        .aliases(&["db"]),
    param(
        "ErrorAction",
        ParamType::Enum(&["Stop", "Continue", "SilentlyContinue", "Ignore"]),
        "What a runbook does when this line fails: Stop (the default) ends the runbook; Continue and SilentlyContinue go on to the next line.",
    )
    .aliases(&["ea"]),
    param(
        "WarningAction",
        ParamType::Enum(&["Continue", "SilentlyContinue", "Stop"]),
        "Whether warnings print (Continue), are hidden (SilentlyContinue) or fail the line (Stop).",
    )
    .aliases(&["wa"]),
];

/// Parameters every cmdlet that changes something accepts.
pub static STATE_CHANGE_PARAMS: &[ParamSpec] = &[
    param(
        "WhatIf",
        ParamType::Switch,
        "Describes what would happen if you executed the command, without executing it.",
    )
    .aliases(&["wi"]),
    param(
        "Confirm",
        ParamType::Switch,
        "Prompts for confirmation before executing the command; -Confirm:$false does not ask.",
    )
    .aliases(&["cf"]),
    param(
        "Force",
        ParamType::Switch,
        "Suppresses prompts and proceeds past non-fatal warnings.",
    ),
];

/// The catalogue, with each cmdlet's full parameter list resolved once.
#[derive(Debug)]
pub struct Catalogue {
    entries: Vec<Entry>,
}

/// A cmdlet and all the parameters it accepts, its own first, then the common ones.
#[derive(Debug)]
pub struct Entry {
    pub spec: &'static CmdletSpec,
    pub params: Vec<&'static ParamSpec>,
}

impl Entry {
    /// The cmdlet's own parameters and the common parameters, told apart.
    pub fn is_common(&self, param: &ParamSpec) -> bool {
        !self.spec.params.iter().any(|p| std::ptr::eq(p, param))
    }

    /// The parameter sets, in the order they first appear; a cmdlet without named sets has
    /// one, called `__AllParameterSets` as in PowerShell.
    pub fn parameter_sets(&self) -> Vec<&'static str> {
        let mut sets: Vec<&'static str> = Vec::new();
        if let Some(default) = self.spec.default_set {
            sets.push(default);
        }
        for p in &self.params {
            for s in p.sets {
                if !sets.contains(s) {
                    sets.push(s);
                }
            }
        }
        if sets.is_empty() {
            sets.push(ALL_SETS);
        }
        sets
    }

    /// The parameters that belong to a set.
    pub fn params_in<'a>(&'a self, set: &'a str) -> impl Iterator<Item = &'static ParamSpec> + 'a {
        self.params
            .iter()
            .copied()
            .filter(move |p| set == ALL_SETS || p.sets.is_empty() || p.sets.contains(&set))
    }

    /// Finds a parameter by its exact name or alias, case-insensitively.
    pub fn param_exact(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().copied().find(|p| {
            p.name.eq_ignore_ascii_case(name)
                || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }
}

/// The name PowerShell gives the single set of a cmdlet without named sets.
pub const ALL_SETS: &str = "__AllParameterSets";

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| Catalogue::new(table::CMDLETS));

/// The catalogue of this build.
pub fn catalogue() -> &'static Catalogue {
    &CATALOGUE
}

impl Catalogue {
    fn new(specs: &'static [CmdletSpec]) -> Self {
        let entries = specs
            .iter()
            .map(|spec| {
                let mut params: Vec<&'static ParamSpec> = spec.params.iter().collect();
                let mut add = |extra: &'static [ParamSpec]| {
                    for p in extra {
                        if !params.iter().any(|q| q.name.eq_ignore_ascii_case(p.name)) {
                            params.push(p);
                        }
                    }
                };
                if spec.changes_state {
                    add(STATE_CHANGE_PARAMS);
                }
                add(COMMON_PARAMS);
                Entry { spec, params }
            })
            .collect();
        Catalogue { entries }
    }

    /// Every cmdlet, in catalogue order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Finds a cmdlet by name or alias, case-insensitively; dashes of any kind match.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.spec.name.eq_ignore_ascii_case(name)
                || e.spec.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }

    /// Cmdlet names close to a misspelt one.
    pub fn suggest(&self, name: &str) -> Vec<&'static str> {
        crate::diagnostic::suggest(name, self.entries.iter().map(|e| e.spec.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_cmdlet_id_has_exactly_one_entry_with_its_name() {
        let entries = catalogue().entries();
        assert_eq!(entries.len(), spec::CmdletId::ALL.len());
        for id in spec::CmdletId::ALL {
            let matching: Vec<_> = entries.iter().filter(|e| e.spec.id == *id).collect();
            assert_eq!(matching.len(), 1, "{id:?}");
            assert_eq!(matching[0].spec.name, id.name());
        }
    }

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = HashSet::new();
        for e in catalogue().entries() {
            for n in std::iter::once(e.spec.name).chain(e.spec.aliases.iter().copied()) {
                assert!(
                    seen.insert(n.to_ascii_lowercase()),
                    "duplicate cmdlet name {n}"
                );
            }
            let mut params = HashSet::new();
            for p in &e.params {
                for n in std::iter::once(p.name).chain(p.aliases.iter().copied()) {
                    assert!(
                        params.insert(n.to_ascii_lowercase()),
                        "{}: duplicate parameter {n}",
                        e.spec.name
                    );
                }
            }
        }
    }

    #[test]
    fn positions_are_unique_within_each_set() {
        for e in catalogue().entries() {
            for set in e.parameter_sets() {
                let mut positions = HashSet::new();
                for p in e.params_in(set) {
                    if let Some(pos) = p.position {
                        assert!(
                            positions.insert(pos),
                            "{} set {set}: position {pos} twice",
                            e.spec.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn default_sets_exist() {
        for e in catalogue().entries() {
            if let Some(d) = e.spec.default_set {
                assert!(
                    e.params.iter().any(|p| p.sets.contains(&d))
                        || e.params.iter().all(|p| p.sets.is_empty()),
                    "{}: default set {d} is used by no parameter",
                    e.spec.name
                );
            }
        }
    }

    #[test]
    fn every_cmdlet_has_a_synopsis_and_help_for_each_parameter() {
        for e in catalogue().entries() {
            assert!(!e.spec.synopsis.is_empty(), "{}", e.spec.name);
            for p in &e.params {
                assert!(!p.help.is_empty(), "{} -{}", e.spec.name, p.name);
            }
        }
    }

    #[test]
    fn every_cmdlet_of_the_cmdlets_page_is_in_the_catalogue() {
        // The names CMDLETS.md lists, kept here so the test runs without ../shared.
        for name in crate::catalogue::tests_support::CMDLETS_MD_NAMES {
            assert!(
                catalogue().find(name).is_some(),
                "{name} is missing from the catalogue"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Every cmdlet name in `shared/CMDLETS.md` (and the seeds), as of this build.
    pub(crate) const CMDLETS_MD_NAMES: &[&str] = &[
        "Get-CsTopology",
        "Publish-CsTopology",
        "Enable-CsTopology",
        "Test-CsTopology",
        "Export-CsConfiguration",
        "Import-CsConfiguration",
        "Export-CsLisConfiguration",
        "Import-CsLisConfiguration",
        "Get-CsService",
        "Get-CsPoolBackupRelationship",
        "Set-CsRegistrar",
        "Set-CsEdgeServer",
        "Set-CsSite",
        "Get-CsManagementStoreReplicationStatus",
        "Invoke-CsManagementStoreReplication",
        "Invoke-CsManagementServerFailover",
        "Get-CsDatabaseMirrorState",
        "Install-CsDatabase",
        "Move-CsManagementServer",
        "Bootstrapper",
        "Bootstrapper.exe",
        "Enable-CsUser",
        "Get-CsUser",
        "Disable-CsUser",
        "Get-CsUserPoolInfo",
        "Get-CsBackupServiceStatus",
        "Invoke-CsBackupServiceSync",
        "Get-CsBackupServiceConfiguration",
        "Set-CsBackupServiceConfiguration",
        "Invoke-CsStorageServiceFlush",
        "Debug-CsInterPoolReplication",
        "Export-CsUserData",
        "Import-CsUserData",
        "Invoke-CsPoolFailOver",
        "Invoke-CsPoolFailBack",
        "Get-CsPoolFailoverState",
        "Get-CsDisasterRecoveryOperation",
        "Resume-CsDisasterRecoveryOperation",
        "Stop-CsDisasterRecoveryOperation",
        "Get-CsWindowsService",
        "Start-CsWindowsService",
        "Stop-CsWindowsService",
        "Invoke-CsServerSetup",
        "Get-DnsServerResourceRecord",
        "Add-DnsServerResourceRecordA",
        "Add-DnsServerResourceRecord",
        "Set-DnsServerResourceRecord",
        "Remove-DnsServerResourceRecord",
        "Add-DnsServerPrimaryZone",
        "Get-DnsServerZone",
        "Remove-DnsServerZone",
        "Test-NetConnection",
        "Get-Command",
        "Get-Help",
        "Format-List",
        "Format-Table",
        "ConvertTo-Json",
        "Set-CsEdgePoolNextHop",
        "Enable-CsEdgePoolFederation",
        "Disable-CsEdgePoolFederation",
        "Set-CsPoolEdgeAssociation",
        "Set-CsPoolBackupRelationship",
        "New-CsXmppAllowedPartner",
        "Get-CsXmppAllowedPartner",
        "Set-CsXmppAllowedPartner",
        "Remove-CsXmppAllowedPartner",
        "New-CsAllowedDomain",
        "Get-CsAllowedDomain",
        "Remove-CsAllowedDomain",
    ];
}
