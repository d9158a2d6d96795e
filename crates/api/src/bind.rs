//! A call's JSON, read as the shell would read the same command line: the API accepts
//! exactly what the shell accepts and refuses the rest with the same messages.

use axum::http::StatusCode;
use cmdlet::Invocation;
use serde_json::Value;

use crate::{ApiError, InvokeRequest};

/// The one cmdlet a call carries, parsed and bound.
pub fn bind_one(request: &InvokeRequest) -> Result<Invocation, ApiError> {
    let line = request_line(request)?;
    let mut statements = cmdlet::parse_and_bind(&line).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} (the call was understood as: {line})", text.join("; ")),
        )
    })?;
    if statements.len() != 1 {
        return Err(bad_request("one call runs one cmdlet"));
    }
    Ok(statements.remove(0).invocation)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The call as a shell line, so that the shell's binder checks it. Values are quoted, so
/// nothing in them can be read as syntax.
pub fn request_line(request: &InvokeRequest) -> Result<String, ApiError> {
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !word(&request.cmdlet) {
        return Err(bad_request(format!(
            "'{}' is not a cmdlet name; GET /openapi.json describes the call and Get-Command lists the cmdlets",
            request.cmdlet
        )));
    }
    let mut line = request.cmdlet.clone();
    for (name, value) in &request.parameters {
        if !word(name) || name.starts_with('-') {
            return Err(bad_request(format!("'{name}' is not a parameter name")));
        }
        match value {
            Value::Bool(b) => line.push_str(&format!(" -{name}:${b}")),
            Value::Array(items) => {
                let parts = items
                    .iter()
                    .map(|v| scalar(name, v))
                    .collect::<Result<Vec<_>, _>>()?;
                line.push_str(&format!(" -{name} {}", parts.join(",")));
            }
            other => line.push_str(&format!(" -{name} {}", scalar(name, other)?)),
        }
    }
    Ok(line)
}

fn scalar(name: &str, value: &Value) -> Result<String, ApiError> {
    let wrong = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "parameter {name}: expected a string, a number, true/false or an array of those"
            ),
        )
    };
    match value {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => {
            if s.chars().any(|c| {
                c.is_control() || matches!(c, '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}')
            }) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "parameter {name}: control characters and typographic quotes are not allowed in values"
                    ),
                ));
            }
            Ok(format!("'{}'", s.replace('\'', "''")))
        }
        Value::Bool(b) => Ok(format!("${b}")),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> InvokeRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn request_lines_quote_every_value() {
        let line = request_line(&request(serde_json::json!({
            "cmdlet": "Set-CsSite",
            "parameters": {"Identity": "Site1", "Description": "it's; Remove-Everything", "Force": true}
        })))
        .unwrap();
        assert_eq!(
            line,
            "Set-CsSite -Identity 'Site1' -Description 'it''s; Remove-Everything' -Force:$true"
        );
        let bound = cmdlet::parse_and_bind(&line).unwrap();
        assert_eq!(bound.len(), 1);
    }

    #[test]
    fn request_lines_refuse_what_is_not_a_value() {
        for bad in [
            serde_json::json!({"cmdlet": "Get-CsTopology; rm", "parameters": {}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Identity": {"a": 1}}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Identity": null}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Iden tity": "x"}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Identity": "a\nb"}}),
        ] {
            assert!(request_line(&request(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_parameters_bind_from_json() {
        let line = request_line(&request(serde_json::json!({
            "cmdlet": "Set-CsRegistrar",
            "parameters": {"Identity": "Registrar:pool1.contoso.com", "FailureDetectionInterval": 60, "EnableAutomaticFailover": false}
        })))
        .unwrap();
        let bound = cmdlet::parse_and_bind(&line).unwrap();
        assert_eq!(bound[0].invocation.cmdlet.name, "Set-CsRegistrar");
    }
}
