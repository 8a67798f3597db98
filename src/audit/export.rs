//! Rendering connection-log records as a table, CSV or JSON.
//!
//! CSV goes two ways. The console and the admin API write it for a French
//! spreadsheet: UTF-8 with a byte-order mark (without it Excel reads
//! Windows-1252 and garbles accents), `;` between cells (a French Excel
//! splits on `;`, not `,`) and headers in the reader's language. The
//! command line writes the contract of PRODUCT.md for scripts: the field
//! names as headers, `,` unless asked otherwise.
//!
//! Whichever separator is written, the file may be opened by a program that
//! splits on the other one, or that ignores quotes: every cell is written
//! so that no way of cutting it (on `;`, `,` or a line break, inside quotes
//! or not) yields a piece that a spreadsheet would run as a formula.

use serde_json::Value;

use super::public_record;
use crate::clock::rfc3339_ms;
use crate::store::events::EventRow;

pub const CSV_COLUMNS: [&str; 12] = [
    "seq",
    "time",
    "kind",
    "outcome",
    "email",
    "account_id",
    "partner_id",
    "client_id",
    "ip",
    "user_agent",
    "actor",
    "details",
];

/// Characters that start a formula in a spreadsheet cell (OWASP "CSV
/// injection"); tab and CR because some spreadsheets drop them and read on.
pub const FORMULA_STARTERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Where a spreadsheet may start a new cell: either separator, and a line
/// break (a bare CR ends a record for many readers).
const CELL_BREAKS: [char; 4] = [';', ',', '\n', '\r'];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    Comma,
    Semicolon,
}

impl Separator {
    pub fn as_char(self) -> char {
        match self {
            Separator::Comma => ',',
            Separator::Semicolon => ';',
        }
    }
}

/// How a CSV file is laid out.
#[derive(Debug, Clone, Copy)]
pub struct CsvLayout<'a> {
    pub separator: Separator,
    /// A UTF-8 byte-order mark first, for spreadsheets.
    pub bom: bool,
    /// One header per column of [`CSV_COLUMNS`], in that order.
    pub headers: &'a [&'a str; 12],
}

impl CsvLayout<'static> {
    /// The command line's default (PRODUCT.md): field names, commas, no BOM.
    pub const FIELDS: CsvLayout<'static> = CsvLayout { separator: Separator::Comma, bom: false, headers: &CSV_COLUMNS };
}

/// Whether a cell starting at `rest` could be read as a formula: a reader
/// may skip an opening quote (or an empty quoted string, `""`) and spaces
/// before it looks. Inside a value, after a break, the end of the value
/// counts too: what follows it in the file is a closing quote and the CRLF
/// ending the line, so a reader that opens a quote there starts a cell with
/// CR.
fn starts_formula(rest: &str, after_break: bool) -> bool {
    let rest = rest.trim_start_matches(['"', ' ']);
    rest.starts_with(FORMULA_STARTERS) || (after_break && rest.is_empty())
}

/// `value` with a `'` in front of every place where a cell could begin on a
/// formula: its start, and after each `;`, `,`, LF or CR inside it. The
/// quote goes right after the break, before any quote or space, so the
/// piece a reader cuts there starts with `'` (which a spreadsheet takes as
/// "text follows" at the start of a cell).
pub fn neutralise(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 1);
    let mut cell_start = true;
    let mut after_break = false;
    for (i, c) in value.char_indices() {
        if cell_start && starts_formula(&value[i..], after_break) {
            out.push('\'');
        }
        out.push(c);
        cell_start = CELL_BREAKS.contains(&c);
        after_break = cell_start;
    }
    if after_break {
        out.push('\'');
    }
    out
}

/// One CSV cell, for either separator: neutralised, then quoted (quotes
/// doubled) when it holds a separator of either kind, a quote, a line
/// break, or spaces at either end.
pub fn csv_cell(value: &str) -> String {
    let neutralised = neutralise(value);
    if neutralised.contains([',', ';', '"', '\n', '\r']) || neutralised != neutralised.trim() {
        format!("\"{}\"", neutralised.replace('"', "\"\""))
    } else {
        neutralised
    }
}

/// Cells joined into one CSV line (CRLF, RFC 4180).
pub fn csv_line<S: AsRef<str>>(cells: impl IntoIterator<Item = S>, separator: Separator) -> String {
    let mut line = String::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            line.push(separator.as_char());
        }
        line.push_str(&csv_cell(cell.as_ref()));
    }
    line.push_str("\r\n");
    line
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn to_csv(rows: &[EventRow], layout: &CsvLayout<'_>) -> String {
    let mut out = String::new();
    if layout.bom {
        out.push('\u{feff}');
    }
    out.push_str(&csv_line(layout.headers.iter(), layout.separator));
    for row in rows {
        let record = public_record(row);
        out.push_str(&csv_line(CSV_COLUMNS.iter().map(|c| text(&record[*c])), layout.separator));
    }
    out
}

pub fn to_json(rows: &[EventRow]) -> String {
    serde_json::to_string_pretty(&rows.iter().map(public_record).collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

pub fn to_table(rows: &[EventRow]) -> String {
    let mut out = format!("{:<24} {:<24} {:<8} {:<36} {:<15} {}\n", "time", "kind", "outcome", "email", "ip", "actor");
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:<24} {:<8} {:<36} {:<15} {}\n",
            rfc3339_ms(r.time_ms),
            r.kind,
            r.outcome,
            r.email.as_deref().unwrap_or("-"),
            r.ip.as_deref().unwrap_or("-"),
            r.actor
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn csv_escapes_separators_quotes_newlines_and_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("a;b"), "\"a;b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+33 1"), "'+33 1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        // Inside a value too, after either separator, a quote or spaces.
        assert_eq!(csv_cell("Mozilla/5.0;=1+41;=cmd|' /C calc'!A0"), "\"Mozilla/5.0;'=1+41;'=cmd|' /C calc'!A0\"");
        assert_eq!(csv_cell("a, \"=1\""), "\"a,' \"\"=1\"\"\"");
        assert_eq!(csv_cell("a\n-1"), "\"a\n'-1\"");
        // A break at the end is followed by the line's CRLF in the file.
        assert_eq!(csv_cell("a;"), "\"a;'\"");
        assert_eq!(csv_cell("a, \""), "\"a,' \"\"\"");
        // What needs nothing is left alone.
        assert_eq!(neutralise("Mozilla/5.0 (X11; Linux x86_64)"), "Mozilla/5.0 (X11; Linux x86_64)");
        assert_eq!(neutralise("a-b=c"), "a-b=c");
    }

    #[test]
    fn layouts() {
        let headers = ["N°"; 12];
        let spreadsheet = CsvLayout { separator: Separator::Semicolon, bom: true, headers: &headers };
        let out = to_csv(&[], &spreadsheet);
        assert!(out.starts_with("\u{feff}N°;N°;"), "{out}");
        assert_eq!(to_csv(&[], &CsvLayout::FIELDS), format!("{}\r\n", CSV_COLUMNS.join(",")));
    }

    /// The cells a spreadsheet may see in `text`: split on `sep` ignoring
    /// quotes (line by line), and parsed honouring quotes.
    fn cells_seen(text: &str, sep: u8) -> Vec<String> {
        let mut cells: Vec<String> = text
            .split(['\n', '\r'])
            .flat_map(|line| line.split(sep as char))
            .map(|c| c.trim_start_matches('\u{feff}').to_string())
            .collect();
        for quoting in [true, false] {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(sep)
                .has_headers(false)
                .flexible(true)
                .quoting(quoting)
                .from_reader(text.as_bytes());
            // A reader that gives up on a line shows nothing of it.
            for record in reader.records().flatten() {
                cells.extend(record.iter().map(str::to_string));
            }
        }
        cells
    }

    fn check_no_formula(text: &str) -> Result<(), TestCaseError> {
        for sep in [b';', b','] {
            for cell in cells_seen(text, sep) {
                prop_assert!(
                    !cell.starts_with(FORMULA_STARTERS),
                    "separator {:?}: cell {cell:?} of {text:?}",
                    sep as char
                );
                prop_assert!(
                    !cell.trim_start_matches(['"', ' ']).starts_with(FORMULA_STARTERS),
                    "separator {:?}: cell {cell:?} of {text:?}",
                    sep as char
                );
            }
        }
        Ok(())
    }

    /// Strings rich in the characters that matter, and arbitrary ones.
    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof!["[=+@\\-\t\r\n;,\" 'a1é|!]{0,24}", any::<String>(),]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the values, and whichever separator was written, no
        /// reader that splits on `;` or on `,`, with or without quotes,
        /// sees a cell that starts a formula.
        #[test]
        fn no_cell_starts_a_formula_under_either_separator(
            values in proptest::collection::vec(hostile(), 1..5),
        ) {
            for separator in [Separator::Comma, Separator::Semicolon] {
                let row = |values: Vec<&String>| {
                    csv_line(std::iter::once("1").chain(values.into_iter().map(String::as_str)), separator)
                };
                let mut text = csv_line(["seq", "user_agent"], separator);
                text.push_str(&row(values.iter().collect()));
                text.push_str(&row(values.iter().rev().collect()));
                check_no_formula(&text)?;
                // And a reader honouring quotes with the separator written
                // gets every value back, neutralised in place only.
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(separator.as_char() as u8)
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(text.as_bytes());
                let first = reader.records().next();
                prop_assert!(first.is_some(), "a record");
                if let Some(record) = first {
                    let record = record.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let got: Vec<&str> = record.iter().skip(1).collect();
                    let want: Vec<String> = values.iter().map(|v| neutralise(v)).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
