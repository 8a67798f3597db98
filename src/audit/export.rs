//! Rendering connection-log records as a table, CSV or JSON.

use serde_json::Value;

use super::public_record;
use crate::clock::rfc3339_ms;
use crate::store::EventRow;

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

/// One CSV cell: quoted when needed, and a leading `=`, `+`, `-`, `@` (or
/// tab/CR) neutralised with a quote so that a spreadsheet never runs it as a
/// formula (CSV injection).
pub fn csv_cell(value: &str) -> String {
    let neutralised =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_string() };
    if neutralised.contains([',', '"', '\n', '\r', ';']) || neutralised != neutralised.trim() {
        format!("\"{}\"", neutralised.replace('"', "\"\""))
    } else {
        neutralised
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn to_csv(rows: &[EventRow]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for row in rows {
        let record = public_record(row);
        let cells: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_cell(&text(&record[*c]))).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
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
    }
}
