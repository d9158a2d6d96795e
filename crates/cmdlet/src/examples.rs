//! The names the binder's hints use in their examples (`for example: -PoolFqdn …`,
//! "such as pool1.contoso.com"): a process-wide setting, because a hint is made deep in
//! the binder and the value parsers, which know no deployment.

/// The names a hint's example uses: the deployment's own, once the process knows them
/// ([`set_examples`]: the shell from its lab, a server from its topology), so that an
/// operator of any deployment is shown a line that would work there; the documentation's
/// until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Examples {
    /// A Front End pool, `pool1.contoso.com`.
    pub pool: String,
    /// An Edge pool, `edgepool1.contoso.com`.
    pub edge_pool: String,
    /// The SIP domain, `contoso.com`.
    pub sip_domain: String,
    /// A server's address, `127.0.1.21`.
    pub address: String,
}

impl Default for Examples {
    fn default() -> Examples {
        Examples {
            pool: "pool1.contoso.com".into(),
            edge_pool: "edgepool1.contoso.com".into(),
            sip_domain: "contoso.com".into(),
            address: "127.0.1.21".into(),
        }
    }
}

static EXAMPLES: std::sync::RwLock<Option<Examples>> = std::sync::RwLock::new(None);

/// The names this process's hints use from now on.
pub fn set_examples(examples: Examples) {
    *EXAMPLES.write().unwrap_or_else(|e| e.into_inner()) = Some(examples);
}

/// The names hints use now.
pub fn examples() -> Examples {
    EXAMPLES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}
