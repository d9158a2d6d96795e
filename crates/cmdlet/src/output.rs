//! What cmdlets return, and how it prints.
//!
//! A cmdlet returns records: ordered fields, as a PowerShell object has properties. They
//! print as PowerShell's list format by default (`Name : value`), as a table on request,
//! or as JSON for scripts. Field order is the cmdlet's, so the output reads like the
//! documentation.

use serde::{Deserialize, Serialize};
use unicode_width::UnicodeWidthStr;

/// How many columns of a terminal `text` takes (a CJK character two, a combining mark
/// none): what lines a list or a table up, not its count of `char`s.
fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// A field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Field {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Field>),
}

impl Field {
    /// As PowerShell shows it in list and table formats.
    pub fn display(&self) -> String {
        match self {
            Field::Null => String::new(),
            Field::Bool(true) => "True".into(),
            Field::Bool(false) => "False".into(),
            Field::Int(i) => i.to_string(),
            Field::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{f:.0}")
                } else {
                    format!("{f:.3}")
                }
            }
            Field::Text(s) => s.clone(),
            Field::List(items) => format!(
                "{{{}}}",
                items
                    .iter()
                    .map(Field::display)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Field::Null => serde_json::Value::Null,
            Field::Bool(b) => (*b).into(),
            Field::Int(i) => (*i).into(),
            Field::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Field::Text(s) => s.clone().into(),
            Field::List(items) => items.iter().map(Field::to_json).collect(),
        }
    }
}

impl From<&str> for Field {
    fn from(s: &str) -> Self {
        Field::Text(s.to_string())
    }
}

impl From<String> for Field {
    fn from(s: String) -> Self {
        Field::Text(s)
    }
}

impl From<bool> for Field {
    fn from(b: bool) -> Self {
        Field::Bool(b)
    }
}

impl From<i64> for Field {
    fn from(i: i64) -> Self {
        Field::Int(i)
    }
}

impl<T: Into<Field>> From<Option<T>> for Field {
    fn from(v: Option<T>) -> Self {
        v.map_or(Field::Null, Into::into)
    }
}

/// One object: named fields in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Record {
    pub fields: Vec<(String, Field)>,
}

impl Record {
    pub fn new() -> Self {
        Record::default()
    }

    /// Adds a field (builder style).
    pub fn with(mut self, name: &str, value: impl Into<Field>) -> Self {
        self.fields.push((name.to_string(), value.into()));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Only the named fields, in the order given; unknown names are left out.
    fn select(&self, properties: &[String]) -> Record {
        Record {
            fields: properties
                .iter()
                .filter_map(|p| {
                    self.fields
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(p))
                        .cloned()
                })
                .collect(),
        }
    }
}

/// How records print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OutputFormat {
    #[default]
    List,
    Table,
    Json,
}

/// What a cmdlet produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// Objects, formatted by the pipeline's formatter or the session's default.
    Records(Vec<Record>),
    /// Text meant to be read as it is (help pages).
    Text(String),
    /// Nothing (most cmdlets that change something, as in the reference).
    None,
}

/// Renders records. `properties` limits and orders the fields (`-Property`).
pub fn render(
    records: &[Record],
    format: OutputFormat,
    properties: Option<&[String]>,
    compress_json: bool,
) -> String {
    let selected: Vec<Record>;
    let records = match properties {
        Some(props) if !props.is_empty() => {
            selected = records.iter().map(|r| r.select(props)).collect();
            &selected[..]
        }
        _ => records,
    };
    match format {
        OutputFormat::List => render_list(records),
        OutputFormat::Table => render_table(records),
        OutputFormat::Json => render_json(records, compress_json),
    }
}

fn render_list(records: &[Record]) -> String {
    let mut out = String::new();
    for record in records {
        let widest = record
            .fields
            .iter()
            .map(|(n, _)| width(n))
            .max()
            .unwrap_or(0);
        out.push('\n');
        for (name, value) in &record.fields {
            let value = value.display();
            let pad = widest - width(name);
            // Continuation lines of multi-line values line up under the value column.
            let indent = " ".repeat(widest + 3);
            let value = value.replace('\n', &format!("\n{indent}"));
            out.push_str(&format!("{name}{} : {value}", " ".repeat(pad)));
            out.push('\n');
        }
    }
    if !records.is_empty() {
        out.push('\n');
    }
    out
}

fn render_table(records: &[Record]) -> String {
    // Columns: the union of field names, in first-seen order.
    let mut columns: Vec<&str> = Vec::new();
    for r in records {
        for (n, _) in &r.fields {
            if !columns.iter().any(|c| c.eq_ignore_ascii_case(n)) {
                columns.push(n);
            }
        }
    }
    if columns.is_empty() {
        return String::new();
    }
    let cells: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    r.get(c)
                        .map(Field::display)
                        .unwrap_or_default()
                        .replace('\n', " ")
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| width(&row[i]))
                .chain(std::iter::once(width(c)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |items: Vec<String>| -> String {
        let mut s = String::new();
        for (i, item) in items.iter().enumerate() {
            if i + 1 == items.len() {
                s.push_str(item);
            } else {
                s.push_str(item);
                s.push_str(&" ".repeat(widths[i] - width(item) + 1));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::from("\n");
    out.push_str(&line(columns.iter().map(|c| c.to_string()).collect()));
    out.push('\n');
    out.push_str(&line(
        columns.iter().map(|c| "-".repeat(width(c))).collect(),
    ));
    out.push('\n');
    for row in cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push('\n');
    out
}

fn render_json(records: &[Record], compress: bool) -> String {
    let to_obj = |r: &Record| {
        serde_json::Value::Object(
            r.fields
                .iter()
                .map(|(n, v)| (n.clone(), v.to_json()))
                .collect(),
        )
    };
    let value = if records.len() == 1 {
        to_obj(&records[0])
    } else {
        serde_json::Value::Array(records.iter().map(to_obj).collect())
    };
    let mut text = if compress {
        serde_json::to_string(&value)
    } else {
        serde_json::to_string_pretty(&value)
    }
    .expect("JSON values always serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::new()
                .with("PoolFqdn", "pool1.contoso.com")
                .with("BackupPoolFqdn", "pool2.contoso.com")
                .with("UpToDate", true),
            Record::new()
                .with("PoolFqdn", "pool2.contoso.com")
                .with("BackupPoolFqdn", Field::Null)
                .with("UpToDate", false),
        ]
    }

    #[test]
    fn list_format_aligns_colons() {
        let out = render(&sample()[..1], OutputFormat::List, None, false);
        assert_eq!(
            out,
            "\nPoolFqdn       : pool1.contoso.com\nBackupPoolFqdn : pool2.contoso.com\nUpToDate       : True\n\n"
        );
    }

    #[test]
    fn table_format_has_header_and_dashes() {
        let out = render(&sample(), OutputFormat::Table, None, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "PoolFqdn          BackupPoolFqdn    UpToDate");
        assert_eq!(lines[2], "--------          --------------    --------");
        assert_eq!(lines[3], "pool1.contoso.com pool2.contoso.com True");
        assert_eq!(lines[4], "pool2.contoso.com                   False");
    }

    #[test]
    fn json_is_an_object_for_one_record_and_an_array_for_many() {
        let one = render(&sample()[..1], OutputFormat::Json, None, true);
        assert_eq!(
            one.trim(),
            r#"{"PoolFqdn":"pool1.contoso.com","BackupPoolFqdn":"pool2.contoso.com","UpToDate":true}"#
        );
        let many: serde_json::Value =
            serde_json::from_str(&render(&sample(), OutputFormat::Json, None, false)).unwrap();
        assert_eq!(many.as_array().unwrap().len(), 2);
        assert!(many[1]["BackupPoolFqdn"].is_null());
    }

    #[test]
    fn property_selection_orders_fields() {
        let out = render(
            &sample()[..1],
            OutputFormat::List,
            Some(&["uptodate".into(), "PoolFqdn".into()]),
            false,
        );
        assert_eq!(out, "\nUpToDate : True\nPoolFqdn : pool1.contoso.com\n\n");
    }

    #[test]
    fn lists_print_in_braces() {
        let f = Field::List(vec!["a".into(), "b".into()]);
        assert_eq!(f.display(), "{a, b}");
    }

    #[test]
    fn a_table_lines_up_in_display_columns_not_chars() {
        let record = |name: &str, pool: &str| Record {
            fields: vec![
                ("Name".into(), Field::Text(name.into())),
                ("Pool".into(), Field::Text(pool.into())),
            ],
        };
        let text = render(
            &[
                record("東京", "fe1.example.jp"),
                record("ab", "fe2.example.jp"),
            ],
            OutputFormat::Table,
            None,
            false,
        );
        let at = |line: &str| {
            let byte = line.find("fe").unwrap();
            UnicodeWidthStr::width(&line[..byte])
        };
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("fe")).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert_eq!(at(rows[0]), at(rows[1]), "{text}");
    }
}
