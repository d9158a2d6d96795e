//! Properties of the parser and binder over arbitrary input.

use cmdlet::{parse_and_bind, parse_script};
use proptest::prelude::*;

/// Fragments that make interesting command lines: real names, quotes, escapes, operators.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Invoke-CsPoolFailOver".to_string()),
        Just("Get-CsUser".to_string()),
        Just("Bootstrapper".to_string()),
        Just("-PoolFqdn".to_string()),
        Just("-Confirm:".to_string()),
        Just("$false".to_string()),
        Just("$x".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("`".to_string()),
        Just("`\n".to_string()),
        Just(",".to_string()),
        Just("|".to_string()),
        Just(";".to_string()),
        Just("#".to_string()),
        Just("<#".to_string()),
        Just("#>".to_string()),
        Just("<Pool1 FQDN>".to_string()),
        Just("/Setup".to_string()),
        Just("\u{2013}".to_string()),
        Just("\u{201C}".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        "[a-zA-Z0-9.:-]{1,12}",
        "\\PC{1,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(text in "\\PC{0,120}") {
        let _ = parse_script(&text);
        let _ = parse_and_bind(&text);
    }

    #[test]
    fn the_parser_never_panics_on_shell_like_text(parts in prop::collection::vec(fragment(), 0..16)) {
        let text = parts.join(" ");
        let _ = parse_and_bind(&text);
        let text = parts.concat();
        let _ = parse_and_bind(&text);
    }

    #[test]
    fn error_spans_lie_inside_the_text(parts in prop::collection::vec(fragment(), 0..16)) {
        let text = parts.join(" ");
        if let Err(errors) = parse_and_bind(&text) {
            for e in errors {
                prop_assert!(e.span.start <= e.span.end && e.span.end <= text.len(), "{e:?} in {text:?}");
                prop_assert!(text.is_char_boundary(e.span.start) && text.is_char_boundary(e.span.end));
            }
        }
    }

    /// A single-quoted string gives back exactly what was quoted.
    #[test]
    fn single_quoted_values_round_trip(value in "\\PC{0,30}") {
        let quoted = format!("'{}'", value.replace('\'', "''").replace('\u{2018}', "\u{2018}\u{2018}").replace('\u{2019}', "\u{2019}\u{2019}").replace('\u{201A}', "\u{201A}\u{201A}").replace('\u{201B}', "\u{201B}\u{201B}"));
        let line = format!("Get-Help -Name {quoted}");
        let script = parse_script(&line).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let cmdlet::syntax::Element::Parameter { .. } = &script.statements[0].pipeline[0].elements[0] else {
            return Err(TestCaseError::fail("expected a parameter"));
        };
        match &script.statements[0].pipeline[0].elements[1] {
            cmdlet::syntax::Element::Argument(v) => match &v.node {
                cmdlet::syntax::Value::Text { text, quoted: true } => prop_assert_eq!(text, &value),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            },
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }
}
