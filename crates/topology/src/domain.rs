//! Domain names as federation compares them: one spelling for each name, whatever a peer
//! writes (`Contoso.COM`, `contoso.com.`, `ｃｏｎｔｏｓｏ.com`, `xn--…`), so that a check that
//! refuses our own domain or admits an allowed partner cannot be passed by spelling it
//! differently (an attack sent `From: <sip:user@contoso.com.>` past a plain comparison).

/// The one spelling of `name`: IDNA (UTS #46) mapped to ASCII — case folded, full-width
/// and other compatibility forms mapped, Unicode labels in punycode — with trailing dots
/// removed. `None` when it is not a domain name.
pub fn normalize(name: &str) -> Option<String> {
    let trimmed = name.trim().trim_end_matches('.');
    if trimmed.is_empty() || trimmed.len() > 253 {
        return None;
    }
    let ascii = idna::domain_to_ascii(trimmed).ok()?;
    let ascii = ascii.trim_end_matches('.').to_string();
    if ascii.is_empty()
        || ascii.split('.').any(|label| {
            label.is_empty()
                || label.len() > 63
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        return None;
    }
    Some(ascii)
}

/// Whether `name` is `domain` or a name below it, in any spelling.
pub fn within(name: &str, domain: &str) -> bool {
    match (normalize(name), normalize(domain)) {
        (Some(name), Some(domain)) => name == domain || name.ends_with(&format!(".{domain}")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_domain_is_one_name() {
        for spelling in [
            "contoso.com",
            "CONTOSO.com",
            "contoso.com.",
            "contoso.com..",
            " contoso.com ",
            "ｃｏｎｔｏｓｏ．ｃｏｍ",
            "contoso。com",
        ] {
            assert_eq!(
                normalize(spelling).as_deref(),
                Some("contoso.com"),
                "{spelling:?}"
            );
            assert!(within(spelling, "contoso.com"), "{spelling:?}");
        }
        assert!(within("sip.Contoso.com.", "contoso.com"));
        assert!(!within("notcontoso.com", "contoso.com"));
        assert!(!within("contoso.com.evil.org", "contoso.com"));
        assert_eq!(
            normalize("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert!(within("xn--bcher-kva.example", "bücher.example"));
        for bad in ["", ".", "a..b", "a b.com", "x".repeat(64).as_str()] {
            assert!(normalize(bad).is_none(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn normalizing_never_panics_and_is_idempotent(name in "\\PC{0,80}") {
            if let Some(n) = normalize(&name) {
                proptest::prop_assert_eq!(normalize(&n), Some(n.clone()));
            }
        }
    }
}
