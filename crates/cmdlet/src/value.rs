//! Typed parameter values, and the conversions from what an operator typed.
//!
//! Conversions are strict where a mistake would be costly (an FQDN with a typo fails the
//! wrong pool over) and lenient where the documentation itself is (a `TimeSpan` may be
//! `hh:mm:ss` or a number of seconds; an identity's `EdgeServer:` prefix is optional).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalogue::spec::{IdentityKind, ParamType};
use crate::syntax::Value;

/// A parameter value after binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum BoundValue {
    Switch(bool),
    Bool(bool),
    Int(i64),
    Text(String),
    /// Lower-cased, without a trailing dot.
    Fqdn(String),
    /// Always with the `sip:` scheme, domain lower-cased.
    SipUri(String),
    TimeSpan(#[serde(with = "duration_secs")] Duration),
    Ipv4(Ipv4Addr),
    /// `EdgeServer:<fqdn>` or `Registrar:<fqdn>`: the kind's prefix and the FQDN.
    Identity {
        prefix: String,
        fqdn: String,
    },
    /// The canonical spelling from the parameter's list.
    Enum(String),
    Array(Vec<BoundValue>),
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl BoundValue {
    /// The value as text, as an operator would write it back.
    pub fn to_text(&self) -> String {
        match self {
            BoundValue::Switch(b) | BoundValue::Bool(b) => {
                if *b {
                    "$true".into()
                } else {
                    "$false".into()
                }
            }
            BoundValue::Int(i) => i.to_string(),
            BoundValue::Text(s)
            | BoundValue::Fqdn(s)
            | BoundValue::SipUri(s)
            | BoundValue::Enum(s) => s.clone(),
            BoundValue::TimeSpan(d) => format_timespan(*d),
            BoundValue::Ipv4(a) => a.to_string(),
            BoundValue::Identity { prefix, fqdn } => format!("{prefix}:{fqdn}"),
            BoundValue::Array(items) => items
                .iter()
                .map(BoundValue::to_text)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// `hh:mm:ss`, with days and fractions when present, as PowerShell prints a TimeSpan.
pub fn format_timespan(d: Duration) -> String {
    let total = d.as_secs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        (total / 3600) % 24,
        (total / 60) % 60,
        total % 60,
    );
    let mut out = if days > 0 {
        format!("{days}.{hours:02}:{minutes:02}:{seconds:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    };
    let millis = d.subsec_millis();
    if millis > 0 {
        out.push_str(&format!(".{millis:03}"));
    }
    out
}

/// Why a value does not fit a type; the binder adds the parameter name and the span.
pub type ConversionError = String;

/// Converts a typed value to the parameter's type.
pub fn convert(value: &Value, ty: ParamType) -> Result<BoundValue, ConversionError> {
    if let Value::Array(items) = value {
        return match ty {
            ParamType::StringArray => items
                .iter()
                .map(|item| convert(&item.node, ParamType::String))
                .collect::<Result<Vec<_>, _>>()
                .map(BoundValue::Array),
            _ => Err(format!(
                "takes a single {} value, not a list",
                type_name(ty)
            )),
        };
    }
    match ty {
        ParamType::Switch | ParamType::Boolean => {
            let b = match value {
                Value::Bool(b) => *b,
                Value::Text { text, .. } => parse_bool(text)
                    .ok_or_else(|| format!("expects $true or $false, not '{text}'"))?,
                Value::Null => return Err("expects $true or $false, not $null".into()),
                Value::Array(_) => unreachable!("arrays handled above"),
            };
            Ok(if ty == ParamType::Switch {
                BoundValue::Switch(b)
            } else {
                BoundValue::Bool(b)
            })
        }
        _ => {
            let text = match value {
                Value::Text { text, .. } => text.as_str(),
                Value::Bool(true) => "True",
                Value::Bool(false) => "False",
                Value::Null => return Err(format!("needs a {} value, not $null", type_name(ty))),
                Value::Array(_) => unreachable!("arrays handled above"),
            };
            convert_text(text, ty)
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "$true" | "true" | "1" => Some(true),
        "$false" | "false" | "0" => Some(false),
        _ => None,
    }
}

fn convert_text(text: &str, ty: ParamType) -> Result<BoundValue, ConversionError> {
    match ty {
        ParamType::Switch | ParamType::Boolean => unreachable!("handled by convert"),
        ParamType::String => Ok(BoundValue::Text(text.to_string())),
        ParamType::StringArray => Ok(BoundValue::Array(vec![BoundValue::Text(text.to_string())])),
        ParamType::Path => {
            if text.trim().is_empty() {
                Err("needs a file name".into())
            } else {
                Ok(BoundValue::Text(text.to_string()))
            }
        }
        ParamType::Fqdn => parse_fqdn(text).map(BoundValue::Fqdn),
        ParamType::Int32 => text
            .parse::<i32>()
            .map(|i| BoundValue::Int(i.into()))
            .map_err(|_| format!("expects a whole number (Int32), not '{text}'")),
        ParamType::UInt16 => match text.parse::<u16>() {
            Ok(p) if p > 0 => Ok(BoundValue::Int(p.into())),
            _ => Err(format!(
                "expects a port number from 1 to 65535, not '{text}'"
            )),
        },
        ParamType::TimeSpan => parse_timespan(text).map(BoundValue::TimeSpan),
        ParamType::SipUri => parse_sip_uri(text).map(BoundValue::SipUri),
        ParamType::Ipv4 => text
            .parse::<Ipv4Addr>()
            .map(BoundValue::Ipv4)
            .map_err(|_| format!("expects an IPv4 address such as 127.0.1.11, not '{text}'")),
        ParamType::Identity(kind) => parse_identity(text, kind),
        ParamType::Enum(values) => values
            .iter()
            .find(|v| v.eq_ignore_ascii_case(text))
            .map(|v| BoundValue::Enum((*v).to_string()))
            .ok_or_else(|| {
                let hint = crate::diagnostic::suggest(text, values.iter().copied());
                let mut msg = format!(
                    "does not accept '{text}'; valid values: {}",
                    values.join(", ")
                );
                if let Some(best) = hint.first() {
                    msg.push_str(&format!(" (did you mean {best}?)"));
                }
                msg
            }),
    }
}

/// A readable name for a type, as `Get-Help` prints it.
pub fn type_name(ty: ParamType) -> &'static str {
    match ty {
        ParamType::Switch => "SwitchParameter",
        ParamType::Boolean => "Boolean",
        ParamType::String => "String",
        ParamType::StringArray => "String[]",
        ParamType::Fqdn => "Fqdn",
        ParamType::Int32 => "Int32",
        ParamType::UInt16 => "UInt16",
        ParamType::TimeSpan => "TimeSpan",
        ParamType::SipUri => "UserIdParameter",
        ParamType::Path => "String",
        ParamType::Ipv4 => "IPAddress",
        ParamType::Identity(IdentityKind::Scope) => "XdsIdentity",
        ParamType::Identity(_) => "XdsGlobalRelativeIdentity",
        ParamType::Enum(_) => "String",
    }
}

/// Checks and normalises a fully qualified domain name: dot-separated labels of letters,
/// digits and hyphens, at least two labels, 253 characters at most.
pub fn parse_fqdn(text: &str) -> Result<String, ConversionError> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err(format!(
            "needs a fully qualified domain name such as {}",
            crate::examples::examples().pool
        ));
    }
    if name.len() > 253 {
        return Err(format!(
            "'{text}' is longer than the 253 characters a domain name may have"
        ));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!(
                "'{text}' is not a valid domain name: each dot-separated part needs 1 to 63 letters, digits or inner hyphens"
            ));
        }
    }
    if !name.contains('.') {
        return Err(format!(
            "'{text}' is not fully qualified: give the whole name, such as {text}.{}",
            crate::examples::examples().sip_domain
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// `hh:mm:ss`, `hh:mm`, `d.hh:mm:ss`, each with optional `.fraction` seconds, or a plain
/// number of seconds.
pub fn parse_timespan(text: &str) -> Result<Duration, ConversionError> {
    let bad = || {
        format!(
            "expects a duration as hh:mm:ss (such as 00:01:30) or a number of seconds, not '{text}'"
        )
    };
    let t = text.trim();
    if !t.contains(':') {
        let secs: f64 = t.parse().map_err(|_| bad())?;
        if !secs.is_finite() || secs < 0.0 {
            return Err(bad());
        }
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let (days, clock) = match t.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => {
            (d.parse::<u64>().map_err(|_| bad())?, rest)
        }
        _ => (0, t),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, *s),
        _ => return Err(bad()),
    };
    let h: u64 = h.parse().map_err(|_| bad())?;
    let m: u64 = m.parse().map_err(|_| bad())?;
    let s: f64 = s.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 || !(0.0..60.0).contains(&s) || s.is_nan() {
        return Err(format!(
            "'{text}' is out of range: hours 0-23, minutes and seconds 0-59"
        ));
    }
    let whole = days * 86_400 + h * 3600 + m * 60;
    Ok(Duration::from_secs(whole) + Duration::from_secs_f64(s))
}

/// `sip:user@domain`; a bare `user@domain` gets the scheme.
pub fn parse_sip_uri(text: &str) -> Result<String, ConversionError> {
    let rest = if text.len() >= 4 && text[..4].eq_ignore_ascii_case("sip:") {
        &text[4..]
    } else {
        text
    };
    let Some((user, domain)) = rest.split_once('@') else {
        return Err(format!(
            "expects a SIP address such as sip:alice@{}, not '{text}'",
            crate::examples::examples().sip_domain
        ));
    };
    if user.is_empty()
        || user
            .chars()
            .any(|c| c.is_whitespace() || c == '@' || c == ':')
    {
        return Err(format!("'{text}' has no valid user part before the @"));
    }
    let domain = parse_fqdn(domain)?;
    Ok(format!("sip:{user}@{domain}"))
}

fn parse_identity(text: &str, kind: IdentityKind) -> Result<BoundValue, ConversionError> {
    if kind == IdentityKind::Scope {
        if text.trim().is_empty() {
            return Err("needs an identity such as global or a site name".into());
        }
        return Ok(BoundValue::Text(text.to_string()));
    }
    let prefix = kind.prefix();
    let fqdn_text = match text.split_once(':') {
        Some((p, rest)) if p.eq_ignore_ascii_case(prefix) => rest,
        Some((p, _)) => {
            return Err(format!(
                "expects {prefix}:<fqdn>, but '{text}' names a {p} identity"
            ));
        }
        None => text,
    };
    let fqdn = parse_fqdn(fqdn_text)?;
    Ok(BoundValue::Identity {
        prefix: prefix.to_string(),
        fqdn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text {
            text: s.into(),
            quoted: false,
        }
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("00:01:30").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timespan("15").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_timespan("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_timespan("1.02:00:00").unwrap(),
            Duration::from_secs(93_600)
        );
        assert_eq!(parse_timespan("00:05").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_timespan("00:00:01.250").unwrap(),
            Duration::from_millis(1250)
        );
        for bad in ["", "abc", "25:00:00", "00:61:00", "-5", "1:2:3:4", "NaN"] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
        assert_eq!(format_timespan(Duration::from_secs(93_600)), "1.02:00:00");
        assert_eq!(format_timespan(Duration::from_secs(90)), "00:01:30");
    }

    #[test]
    fn fqdns_are_normalised_and_checked() {
        assert_eq!(
            parse_fqdn("EdgeServer2.contoso.com.").unwrap(),
            "edgeserver2.contoso.com"
        );
        assert!(
            parse_fqdn("pool1")
                .unwrap_err()
                .contains("not fully qualified")
        );
        assert!(parse_fqdn("pool_1.contoso.com").is_err());
        assert!(parse_fqdn("-pool.contoso.com").is_err());
        assert!(parse_fqdn("a..b").is_err());
    }

    #[test]
    fn identities_take_an_optional_prefix() {
        let v = convert(
            &text("edgeserver:EdgePool1.contoso.com"),
            ParamType::Identity(IdentityKind::EdgeServer),
        )
        .unwrap();
        assert_eq!(v.to_text(), "EdgeServer:edgepool1.contoso.com");
        let v = convert(
            &text("edgeserver2.contoso.com"),
            ParamType::Identity(IdentityKind::EdgeServer),
        )
        .unwrap();
        assert_eq!(v.to_text(), "EdgeServer:edgeserver2.contoso.com");
        let err = convert(
            &text("Registrar:pool1.contoso.com"),
            ParamType::Identity(IdentityKind::EdgeServer),
        )
        .unwrap_err();
        assert!(err.contains("Registrar"), "{err}");
    }

    #[test]
    fn booleans_switches_and_numbers() {
        assert_eq!(
            convert(&Value::Bool(false), ParamType::Switch).unwrap(),
            BoundValue::Switch(false)
        );
        assert_eq!(
            convert(&text("1"), ParamType::Boolean).unwrap(),
            BoundValue::Bool(true)
        );
        assert!(convert(&text("yes"), ParamType::Boolean).is_err());
        assert_eq!(
            convert(&text("42"), ParamType::Int32).unwrap(),
            BoundValue::Int(42)
        );
        assert!(convert(&text("4.2"), ParamType::Int32).is_err());
        assert!(convert(&text("0"), ParamType::UInt16).is_err());
        assert!(convert(&Value::Null, ParamType::Fqdn).is_err());
    }

    #[test]
    fn enums_match_case_insensitively_and_suggest() {
        let ty = ParamType::Enum(&["SteadyState", "FullFlush"]);
        assert_eq!(
            convert(&text("fullflush"), ty).unwrap(),
            BoundValue::Enum("FullFlush".into())
        );
        let err = convert(&text("FulFlush"), ty).unwrap_err();
        assert!(err.contains("did you mean FullFlush"), "{err}");
    }

    #[test]
    fn sip_uris_get_their_scheme() {
        assert_eq!(
            parse_sip_uri("alice@Contoso.com").unwrap(),
            "sip:alice@contoso.com"
        );
        assert_eq!(
            parse_sip_uri("SIP:bob@contoso.com").unwrap(),
            "sip:bob@contoso.com"
        );
        assert!(parse_sip_uri("alice").is_err());
        assert!(parse_sip_uri("@contoso.com").is_err());
    }

    #[test]
    fn bound_values_round_trip_through_json() {
        let v = BoundValue::Array(vec![
            BoundValue::TimeSpan(Duration::from_millis(1500)),
            BoundValue::Identity {
                prefix: "EdgeServer".into(),
                fqdn: "e.contoso.com".into(),
            },
        ]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<BoundValue>(&json).unwrap(), v);
    }
}
