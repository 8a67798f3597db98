//! Annex 1 as a text file (CSV): the encoding and the separator are
//! guessed as French spreadsheets write them, and every field is admitted
//! against the file's [`Budget`] before it is kept.

use std::borrow::Cow;

use super::cell::{Cell, RawRow, RawSheet};
use super::header::{HEADER_SEARCH_ROWS, find_header};
use super::limits::{Budget, MAX_CSV_FIELDS, Place};
use super::parse::{ParseProblem, ParsedAnnex, code, fatal};
use super::row::read_rows;

/// UTF-8 (BOM stripped), UTF-16 with BOM, otherwise Windows-1252.
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest);
    }
    if bytes.starts_with(b"\xFF\xFE") {
        return Cow::Owned(encoding_rs::UTF_16LE.decode_with_bom_removal(bytes).0.into_owned());
    }
    if bytes.starts_with(b"\xFE\xFF") {
        return Cow::Owned(encoding_rs::UTF_16BE.decode_with_bom_removal(bytes).0.into_owned());
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0,
    }
}

/// The separator that occurs most (outside quotes) on one of the first
/// lines: the header wins over a title line. Ties favour `;`, as French
/// Excel writes it.
fn detect_delimiter(text: &str) -> u8 {
    let mut best = (0usize, b';');
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(HEADER_SEARCH_ROWS) {
        let mut counts = [0usize; 3];
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ';' if !quoted => counts[0] += 1,
                ',' if !quoted => counts[1] += 1,
                '\t' if !quoted => counts[2] += 1,
                _ => {}
            }
        }
        for (count, delim) in counts.into_iter().zip([b';', b',', b'\t']) {
            if count > best.0 {
                best = (count, delim);
            }
        }
    }
    best.1
}

/// Line numbers of CSV records. The csv crate's own `Position::line` is
/// where the reader stood before skipping the end of the previous line and
/// blank lines (one too few after a CRLF or a blank line); the byte offset
/// is reliable, so lines are counted here from it.
struct LineCounter<'a> {
    text: &'a [u8],
    /// Bytes before `offset` hold `line - 1` line ends.
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter { text, offset: 0, line: 1 }
    }

    /// The line of the first byte at or after `byte` that is not a line end.
    /// Offsets must not decrease between calls.
    fn line_at(&mut self, byte: u64) -> usize {
        let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        let from = self.offset.min(start);
        for i in from..start {
            match self.text[i] {
                b'\n' => self.line += 1,
                b'\r' if self.text.get(i + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
        }
        self.offset = self.offset.max(start);
        self.line
    }
}

/// The CSV reader holds a whole record, and 8 bytes per field of it: a
/// line of ten million separators would cost hundreds of megabytes before
/// its first value could be refused. Records are counted here first, with
/// the reader's own quoting rules (a quoted field may span lines).
fn check_field_counts(text: &[u8], delimiter: u8) -> Result<(), ParseProblem> {
    let (mut line, mut record_line, mut fields, mut quoted) = (1usize, 1usize, 1usize, false);
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' => {
                line += 1;
                if !quoted {
                    (record_line, fields) = (line, 1);
                }
            }
            b'\r' if text.get(i + 1) != Some(&b'\n') => {
                line += 1;
                if !quoted {
                    (record_line, fields) = (line, 1);
                }
            }
            _ if b == delimiter && !quoted => {
                fields += 1;
                if fields > MAX_CSV_FIELDS {
                    return Err(fatal(
                        record_line,
                        None,
                        code::SHEET_TOO_LARGE,
                        format!(
                            "La ligne {record_line} compte plus de {MAX_CSV_FIELDS} champs, vides ou non : \
                             une annexe 1 en a six."
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn parse_csv(bytes: &[u8]) -> Result<ParsedAnnex, ParseProblem> {
    let text = decode(bytes);
    let delimiter = detect_delimiter(&text);
    check_field_counts(text.as_bytes(), delimiter)?;
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut lines = LineCounter::new(text.as_bytes());
    let mut budget = Budget::default();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
            fatal(line, None, code::UNREADABLE_FILE, format!("Fichier CSV illisible : {e}."))
        })?;
        let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
        // Trailing empty fields (a spreadsheet's formatted columns) are
        // dropped, so only fields with a value count against the budget.
        let used = (0..record.len()).rev().find(|&i| !Cell::is_blank_text(&record[i])).map_or(0, |i| i + 1);
        if used == 0 {
            continue;
        }
        let mut cells = Vec::with_capacity(used);
        for (field, f) in record.iter().take(used).enumerate() {
            if !Cell::is_blank_text(f) {
                budget.admit(Place::Csv { line, field }, f.len())?;
            }
            cells.push(Cell::Text(f.to_string()));
        }
        rows.push(RawRow { line, cells });
    }
    let sheet = RawSheet { name: None, rows };
    let header = find_header(&sheet, true)?;
    let mut out = ParsedAnnex::default();
    read_rows(&sheet, &header, None, &mut out);
    Ok(out)
}
