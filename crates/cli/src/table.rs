//! The command line's tables (`lab up`, `lab status`, `lab net status`): comfy-table,
//! without borders, columns as wide as their widest cell in display columns (a name in
//! another script or with wide characters keeps its column straight), numbers on the right.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};

/// A table of `header` and `rows`; the columns whose index is in `right` are aligned right.
pub(crate) fn render(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| Cell::new(*h)));
    for row in rows {
        table.add_row(row.into_iter().enumerate().map(|(i, text)| {
            let cell = Cell::new(text);
            if right.contains(&i) {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    // comfy-table pads each column by one space on either side; the first column's left
    // pad is dropped so the table starts at the margin, as the rest of the output does.
    table
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_in_display_columns() {
        let text = render(
            &["server", "pid"],
            vec![
                vec!["東京-fe1.example.jp".into(), "7".into()],
                vec!["red-a.fabrikam.net".into(), "12345".into()],
            ],
            &[1],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
        // Every line ends at the same display column: the pids are right-aligned.
        assert!(
            lines[1..].iter().all(|l| width(l) == width(lines[1])),
            "{text}"
        );
        assert!(
            lines[1].ends_with(" 7") && lines[2].ends_with("12345"),
            "{text}"
        );
        assert!(lines[0].starts_with("server"), "{text}");
    }
}
