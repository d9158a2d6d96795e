//! Backup modules, by the names the documentation and the seeds use.

/// One Backup Service module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    /// Users' contact lists, meetings and settings.
    PresenceFocus,
    /// Meeting content (uploaded files).
    DataConf,
    /// The Central Management store, active master to standby.
    CmsMaster,
}

impl Module {
    pub const ALL: [Module; 3] = [Module::PresenceFocus, Module::DataConf, Module::CmsMaster];

    /// The documented long name, as `Get-CsBackupServiceStatus` prints it.
    pub fn long_name(self) -> &'static str {
        match self {
            Module::PresenceFocus => "UserServices.PresenceFocus",
            Module::DataConf => "ConfServices.DataConf",
            Module::CmsMaster => "CentralMgmt.CMSMaster",
        }
    }

    /// The short name, also the value stored in the change log's `module` column.
    pub fn short_name(self) -> &'static str {
        match self {
            Module::PresenceFocus => "PresenceFocus",
            Module::DataConf => "DataConf",
            Module::CmsMaster => "CMSMaster",
        }
    }

    /// `UserData` or `CMS`, the values of `-Category`.
    pub fn category(self) -> &'static str {
        match self {
            Module::PresenceFocus | Module::DataConf => "UserData",
            Module::CmsMaster => "CMS",
        }
    }

    /// The module a user-data key belongs to.
    pub fn of_key(key: &str) -> Module {
        if key.starts_with("content/") {
            Module::DataConf
        } else {
            Module::PresenceFocus
        }
    }

    pub fn from_short(name: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.short_name() == name)
    }

    /// The modules a `-BackupModule` value names: long, short or `All` (None = all).
    pub fn select(name: Option<&str>) -> Vec<Module> {
        let Some(name) = name else {
            return Module::ALL.to_vec();
        };
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "all" => Module::ALL.to_vec(),
            "userservices.presencefocus" | "presencefocus" => vec![Module::PresenceFocus],
            "confservices.dataconf" | "dataconf" => vec![Module::DataConf],
            "centralmgmt.cmsmaster" | "cmsmaster" | "centralmgmt" => vec![Module::CmsMaster],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_selects_its_module() {
        assert_eq!(
            Module::select(Some("PresenceFocus")),
            vec![Module::PresenceFocus]
        );
        assert_eq!(
            Module::select(Some("UserServices.PresenceFocus")),
            vec![Module::PresenceFocus]
        );
        assert_eq!(Module::select(Some("centralmgmt")), vec![Module::CmsMaster]);
        assert_eq!(Module::select(Some("All")).len(), 3);
        assert_eq!(Module::select(None).len(), 3);
        assert!(Module::select(Some("RGS")).is_empty());
        assert_eq!(Module::of_key("content/m1/deck.pptx"), Module::DataConf);
        assert_eq!(
            Module::of_key("contacts/sip:bob@contoso.com"),
            Module::PresenceFocus
        );
    }
}
