//! Annex 1 as a workbook (XLSX/XLSM through calamine's streaming cell
//! reader, ODS through calamine after a count of its repeats).
//!
//! Nothing is allocated from what a file declares: the archive is measured
//! first (parts, decompressed sizes, by reading them, not by trusting their
//! headers), an XLSX sheet is read cell by cell without building its
//! declared range, an ODS sheet's repeated rows and cells are counted
//! before calamine expands them, and every value is admitted against the
//! file's [`Budget`] before it is copied. See [`super::limits`].

use std::collections::BTreeMap;
use std::io::{BufReader, Cursor, Read};

use calamine::{Data, DataRef, ExcelDateTime, Ods, Reader, SheetType, SheetVisible, Xlsx};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::QName;

use super::cell::{Cell, RawRow, RawSheet, fold};
use super::header::{find_header, find_header_scored};
use super::limits::{
    Budget, MAX_ARCHIVE_ENTRIES, MAX_COLUMNS, MAX_PART_BYTES, MAX_ROWS, MAX_SHEETS, MAX_UNCOMPRESSED_BYTES,
    MAX_XML_CELLS, Place,
};
use super::parse::{ParseProblem, ParsedAnnex, code, fatal};
use super::row::{ListKind, read_rows};

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// Compound files: Excel 97-2003, and password-protected XLSX.
const CFB_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

pub(super) fn parse_xlsx(bytes: &[u8]) -> Result<ParsedAnnex, ParseProblem> {
    check_archive(bytes, "XLSX")?;
    assemble(guarded("XLSX", || read_xlsx(bytes))?)
}

pub(super) fn parse_ods(bytes: &[u8]) -> Result<ParsedAnnex, ParseProblem> {
    check_archive(bytes, "ODS")?;
    check_ods_repeats(bytes)?;
    assemble(guarded("ODS", || read_ods(bytes))?)
}

// ---------------------------------------------------------------------------
// The archive

fn check_archive(bytes: &[u8], format: &str) -> Result<(), ParseProblem> {
    if bytes.starts_with(CFB_MAGIC) {
        return Err(unreadable_because(format!(
            "Le fichier n'est pas un classeur {format} : c'est un classeur protégé par mot de passe ou au format \
             Excel 97-2003. Enregistrez-le sans mot de passe au format .xlsx, .ods ou .csv."
        )));
    }
    if !bytes.starts_with(ZIP_MAGIC) {
        let head = &bytes[..bytes.len().min(4096)];
        let texty = !head.is_empty() && !head.contains(&0) && std::str::from_utf8(head).is_ok();
        let hint = if texty {
            " Il ressemble à un fichier texte (CSV ?) : renommez-le en .csv ou enregistrez-le au format classeur."
        } else {
            ""
        };
        return Err(unreadable_because(format!(
            "Le fichier n'est pas un classeur {format} (pas une archive zip).{hint}"
        )));
    }
    let damaged = |e: &dyn std::fmt::Display| unreadable(format, format!("archive incomplète ou endommagée : {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| damaged(&e))?;
    if archive.len() > MAX_ARCHIVE_ENTRIES {
        return Err(archive_too_large(format!(
            "L'archive du classeur compte {} parties ({MAX_ARCHIVE_ENTRIES} au plus).",
            archive.len()
        )));
    }
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut part = archive.by_index(i).map_err(|e| damaged(&e))?;
        let name: String = part.name().chars().take(100).collect();
        let too_big = || {
            archive_too_large(format!(
                "La partie « {name} » du classeur dépasse {} Mo une fois décompressée.",
                MAX_PART_BYTES >> 20
            ))
        };
        if part.size() > MAX_PART_BYTES {
            return Err(too_big());
        }
        // The header's size may lie: what the readers will get is measured.
        let read = std::io::copy(&mut (&mut part).take(MAX_PART_BYTES + 1), &mut std::io::sink())
            .map_err(|e| damaged(&format!("{name} : {e}")))?;
        if read > MAX_PART_BYTES {
            return Err(too_big());
        }
        total += read;
        if total > MAX_UNCOMPRESSED_BYTES {
            return Err(archive_too_large(format!(
                "Le classeur dépasse {} Mo une fois décompressé.",
                MAX_UNCOMPRESSED_BYTES >> 20
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// ODS: the repeats, counted before calamine expands them

/// calamine builds each ODS sheet as one rectangle from its first to its
/// last value, repeating rows and cells as `number-rows-repeated` and
/// `number-columns-repeated` say. A few bytes can repeat a row a million
/// times, so the extent of every sheet is counted here first: the last row
/// and column holding anything, and the markup that repeats would copy.
fn check_ods_repeats(bytes: &[u8]) -> Result<(), ParseProblem> {
    let bad = |e: &dyn std::fmt::Display| unreadable("ODS", format!("content.xml : {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let content = archive.by_name("content.xml").map_err(|e| bad(&e))?;
    let mut xml = quick_xml::Reader::from_reader(BufReader::new(content.take(MAX_PART_BYTES)));
    let (mut buf, mut skipped) = (Vec::new(), Vec::new());
    let mut scan = OdsScan::default();
    loop {
        let (start, is_empty) = match xml.read_event_into(&mut buf).map_err(|e| bad(&e))? {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(e) => {
                match e.name().as_ref() {
                    b"table:table-row" => scan.end_row()?,
                    b"table:table" => scan.end_table(),
                    _ => {}
                }
                buf.clear();
                continue;
            }
            Event::Eof => return Ok(()),
            _ => {
                buf.clear();
                continue;
            }
        };
        match start.name().as_ref() {
            b"table:table" => scan.start_table(&start)?,
            b"table:table-row" => {
                let repeats = repeats(&start, b"table:number-rows-repeated").map_err(|e| bad(&e))?;
                scan.start_row(repeats);
                if is_empty {
                    scan.end_row()?;
                }
            }
            b"table:table-cell" | b"table:covered-table-cell" if scan.in_row => {
                let col_repeats = repeats(&start, b"table:number-columns-repeated").map_err(|e| bad(&e))?;
                let mut markup = start.len() as u64;
                let mut has_value = start.attributes().flatten().any(|a| {
                    !matches!(
                        a.key.as_ref(),
                        b"table:style-name"
                            | b"table:number-columns-repeated"
                            | b"table:number-columns-spanned"
                            | b"table:number-rows-spanned"
                    )
                });
                if !is_empty {
                    // Anything inside a cell (a paragraph, a note, a
                    // sub-table) may be a value: the span is counted whole.
                    let name = start.name().as_ref().to_vec();
                    let span = xml.read_to_end_into(QName(&name), &mut skipped).map_err(|e| bad(&e))?;
                    markup += span.end.saturating_sub(span.start);
                    has_value = true;
                }
                scan.cell(col_repeats, has_value, markup);
            }
            _ => {}
        }
        buf.clear();
    }
}

fn repeats(start: &BytesStart<'_>, attr: &[u8]) -> Result<u64, String> {
    match start.try_get_attribute(attr).map_err(|e| e.to_string())? {
        None => Ok(1),
        Some(a) => std::str::from_utf8(&a.value)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{} : nombre de répétitions invalide", String::from_utf8_lossy(attr))),
    }
}

#[derive(Default)]
struct OdsScan {
    sheets: usize,
    sheet: String,
    /// Rows of the current sheet before the current one (repeats counted).
    row_pos: u64,
    row_repeats: u64,
    in_row: bool,
    /// Columns of the current row so far, and up to its last value.
    col_pos: u64,
    last_value_col: u64,
    /// Markup of the current row's values, repeats counted.
    row_markup: u64,
    /// Markup of every value of the workbook as calamine would copy it.
    expanded_markup: u64,
}

impl OdsScan {
    fn start_table(&mut self, start: &BytesStart<'_>) -> Result<(), ParseProblem> {
        self.sheets += 1;
        if self.sheets > MAX_SHEETS {
            return Err(too_many_sheets());
        }
        self.sheet = start
            .try_get_attribute(b"table:name")
            .ok()
            .flatten()
            .map(|a| String::from_utf8_lossy(&a.value).chars().take(100).collect())
            .unwrap_or_default();
        self.row_pos = 0;
        Ok(())
    }

    fn end_table(&mut self) {
        self.in_row = false;
    }

    fn start_row(&mut self, repeats: u64) {
        (self.in_row, self.row_repeats, self.col_pos, self.last_value_col, self.row_markup) = (true, repeats, 0, 0, 0);
    }

    fn cell(&mut self, repeats: u64, has_value: bool, markup: u64) {
        self.col_pos = self.col_pos.saturating_add(repeats);
        if has_value {
            self.last_value_col = self.col_pos;
            self.row_markup = self.row_markup.saturating_add(markup.saturating_mul(repeats));
        }
    }

    fn end_row(&mut self) -> Result<(), ParseProblem> {
        self.in_row = false;
        let first_row = self.row_pos.saturating_add(1);
        self.row_pos = self.row_pos.saturating_add(self.row_repeats);
        if self.last_value_col == 0 {
            return Ok(());
        }
        let place = |row: u64, col: u64| Place::Sheet {
            name: &self.sheet,
            row: to_usize(row),
            col: to_usize(col.saturating_sub(1)),
        };
        let mut budget = Budget::default();
        if self.row_pos > MAX_ROWS as u64 {
            // The message names the first repeated row past the limit.
            budget.admit(place(first_row.max(MAX_ROWS as u64 + 1), self.last_value_col), 0)?;
        }
        if self.last_value_col > MAX_COLUMNS as u64 {
            budget.admit(place(first_row, self.last_value_col), 0)?;
        }
        self.expanded_markup = self.expanded_markup.saturating_add(self.row_markup.saturating_mul(self.row_repeats));
        if self.expanded_markup > MAX_UNCOMPRESSED_BYTES {
            return Err(ParseProblem {
                line: to_usize(first_row),
                sheet: Some(self.sheet.clone()),
                email: None,
                code: code::SHEET_TOO_LARGE,
                message: format!(
                    "La ligne {first_row} de la feuille « {} » est répétée au-delà du volume qu'une annexe 1 peut \
                     contenir ({} Mo une fois les répétitions déployées).",
                    self.sheet,
                    MAX_UNCOMPRESSED_BYTES >> 20
                ),
            });
        }
        Ok(())
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------
// Reading the sheets

/// A cell's value as the reader gives it, before anything is copied.
enum Value<'a> {
    Text(&'a str),
    Number(f64),
    Date(&'a ExcelDateTime),
    Bool(bool),
    Error(String),
}

impl<'a> Value<'a> {
    fn of_data(d: &'a Data) -> Option<Value<'a>> {
        Some(match d {
            Data::Empty => return None,
            Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Value::Text(s),
            Data::Int(i) => Value::Number(*i as f64),
            Data::Float(f) => Value::Number(*f),
            Data::Bool(b) => Value::Bool(*b),
            Data::Error(e) => Value::Error(e.to_string()),
            Data::DateTime(dt) => Value::Date(dt),
        })
    }

    fn of_data_ref(d: &'a DataRef<'_>) -> Option<Value<'a>> {
        Some(match d {
            DataRef::Empty => return None,
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Value::Text(s),
            DataRef::SharedString(s) => Value::Text(s),
            DataRef::Int(i) => Value::Number(*i as f64),
            DataRef::Float(f) => Value::Number(*f),
            DataRef::Bool(b) => Value::Bool(*b),
            DataRef::Error(e) => Value::Error(e.to_string()),
            DataRef::DateTime(dt) => Value::Date(dt),
        })
    }

    fn text_len(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Error(s) => s.len(),
            _ => 0,
        }
    }

    fn is_blank(&self) -> bool {
        matches!(self, Value::Text(s) if Cell::is_blank_text(s))
    }

    fn into_cell(self) -> Cell {
        match self {
            Value::Text(s) => Cell::Text(s.to_string()),
            Value::Number(n) => Cell::Number(n),
            Value::Bool(b) => Cell::Text(if b { "VRAI" } else { "FAUX" }.into()),
            Value::Error(e) => Cell::Text(e),
            Value::Date(dt) => {
                // Without calamine's `dates` feature the 1904 flag and the
                // kind (date or duration) are private; their Debug form
                // shows them.
                let debug = format!("{dt:?}");
                if debug.contains("TimeDelta") {
                    Cell::Number(dt.as_f64())
                } else {
                    Cell::Date { serial: dt.as_f64(), is_1904: debug.contains("is_1904: true") }
                }
            }
        }
    }
}

/// The rows of one sheet as its values arrive, in any order.
struct SheetRows<'a> {
    name: &'a str,
    rows: BTreeMap<usize, Vec<Cell>>,
}

impl<'a> SheetRows<'a> {
    fn new(name: &'a str) -> Self {
        SheetRows { name, rows: BTreeMap::new() }
    }

    /// `row` and `col` 0-based, as the readers give them.
    fn push(&mut self, budget: &mut Budget, row: u32, col: u32, value: Option<Value<'_>>) -> Result<(), ParseProblem> {
        let Some(value) = value.filter(|v| !v.is_blank()) else { return Ok(()) };
        let (row, col) = (row as usize + 1, col as usize);
        budget.admit(Place::Sheet { name: self.name, row, col }, value.text_len())?;
        let cells = self.rows.entry(row).or_default();
        if cells.len() <= col {
            cells.resize_with(col + 1, || Cell::Text(String::new()));
        }
        cells[col] = value.into_cell();
        Ok(())
    }

    fn finish(self) -> RawSheet {
        let rows = self.rows.into_iter().map(|(line, cells)| RawRow { line, cells }).collect();
        RawSheet { name: Some(self.name.to_string()), rows }
    }
}

/// The visible worksheets, in order; over [`MAX_SHEETS`] sheets of any
/// kind, an error.
fn worksheets<R: Read + std::io::Seek, W: Reader<R>>(book: &W) -> Result<Vec<String>, ParseProblem> {
    let all = book.sheets_metadata();
    if all.len() > MAX_SHEETS {
        return Err(too_many_sheets());
    }
    Ok(all
        .iter()
        .filter(|s| s.typ == SheetType::WorkSheet && s.visible == SheetVisible::Visible)
        .map(|s| s.name.clone())
        .collect())
}

/// The visible worksheets of `book`, filled by `read_cells` under one budget.
fn read_sheets<R: Read + std::io::Seek, W: Reader<R>>(
    mut book: W,
    mut read_cells: impl FnMut(&mut W, &str, &mut SheetRows<'_>, &mut Budget) -> Result<(), ParseProblem>,
) -> Result<Vec<RawSheet>, ParseProblem> {
    let mut budget = Budget::default();
    let mut sheets = Vec::new();
    for name in worksheets(&book)? {
        let mut rows = SheetRows::new(&name);
        read_cells(&mut book, &name, &mut rows, &mut budget)?;
        sheets.push(rows.finish());
    }
    Ok(sheets)
}

fn read_xlsx(bytes: &[u8]) -> Result<Vec<RawSheet>, ParseProblem> {
    let failed = |e: calamine::XlsxError| unreadable("XLSX", format!("{e}"));
    let book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(failed)?;
    read_sheets(book, |book, name, rows, budget| {
        let mut cells = book.worksheet_cells_reader(name).map_err(failed)?;
        let mut seen = 0usize;
        while let Some(cell) = cells.next_cell().map_err(failed)? {
            seen += 1;
            if seen > MAX_XML_CELLS {
                let message = format!(
                    "La feuille « {name} » compte plus de {MAX_XML_CELLS} cellules, vides ou non : \
                     une annexe 1 en compte quelques milliers."
                );
                return Err(fatal(0, Some(name.to_string()), code::SHEET_TOO_LARGE, message));
            }
            let (row, col) = cell.get_position();
            rows.push(budget, row, col, Value::of_data_ref(cell.get_value()))?;
        }
        Ok(())
    })
}

fn read_ods(bytes: &[u8]) -> Result<Vec<RawSheet>, ParseProblem> {
    let failed = |e: calamine::OdsError| unreadable("ODS", format!("{e}"));
    let book: Ods<_> = Ods::new(Cursor::new(bytes)).map_err(failed)?;
    read_sheets(book, |book, name, rows, budget| {
        let range = book.worksheet_range(name).map_err(failed)?;
        let (first_row, first_col) = range.start().unwrap_or((0, 0));
        for (r, c, data) in range.used_cells() {
            let (row, col) = (first_row.saturating_add(r as u32), first_col.saturating_add(c as u32));
            rows.push(budget, row, col, Value::of_data(data))?;
        }
        Ok(())
    })
}

/// A damaged file must give an error, not bring the program down, even if
/// the spreadsheet reader trips over it.
fn guarded<T>(format: &str, read: impl FnOnce() -> Result<T, ParseProblem>) -> Result<T, ParseProblem> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
        .map_err(|_| unreadable(format, "erreur interne du lecteur".into()))?
}

// ---------------------------------------------------------------------------
// The lists

/// The list a sheet holds in a workbook with one sheet per list, from its name.
fn sheet_list(name: &str) -> Option<ListKind> {
    let n = fold(name);
    match (n.contains("ouvert"), n.contains("clotur")) {
        (true, false) => Some(ListKind::Open),
        (false, true) => Some(ListKind::Closed),
        _ => None,
    }
}

fn assemble(sheets: Vec<RawSheet>) -> Result<ParsedAnnex, ParseProblem> {
    let mut out = ParsedAnnex::default();

    let per_list: Vec<(&RawSheet, ListKind)> =
        sheets.iter().filter_map(|s| Some((s, sheet_list(s.name.as_deref()?)?))).collect();
    if !per_list.is_empty() {
        for (sheet, kind) in per_list {
            if sheet.rows.is_empty() {
                continue; // an empty list
            }
            let header = find_header(sheet, false)?;
            read_rows(sheet, &header, Some(kind), &mut out);
        }
        return Ok(out);
    }

    // One sheet (or several) with a list column; sheets without an
    // annex-1 header (instructions, value lists) are ignored.
    // Without any, the error is that of the sheet that looked most like one.
    let mut closest: Option<(ParseProblem, usize)> = None;
    let mut found = false;
    for sheet in &sheets {
        match find_header_scored(sheet, true) {
            Ok(header) => {
                found = true;
                read_rows(sheet, &header, None, &mut out);
            }
            Err((e, recognised)) => {
                if recognised > 0 && closest.as_ref().is_none_or(|(_, r)| recognised > *r) {
                    closest = Some((e, recognised));
                }
            }
        }
    }
    if found {
        return Ok(out);
    }
    Err(closest.map(|(e, _)| e).unwrap_or_else(|| {
        fatal(
            0,
            None,
            code::NO_LIST_SHEET,
            "Aucune feuille du classeur ne contient l'annexe 1 : une feuille avec une colonne « liste », \
             ou une feuille par liste dont le nom contient « ouvert » ou « clôtur »."
                .into(),
        )
    }))
}

// ---------------------------------------------------------------------------
// Problems

fn unreadable(format: &str, detail: String) -> ParseProblem {
    let mut detail = detail;
    if detail.len() > 200 {
        let mut cut = 200;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    unreadable_because(format!("Le fichier n'est pas un classeur {format} lisible ({detail})."))
}

fn unreadable_because(message: String) -> ParseProblem {
    fatal(0, None, code::UNREADABLE_FILE, message)
}

fn archive_too_large(message: String) -> ParseProblem {
    fatal(0, None, code::ARCHIVE_TOO_LARGE, message)
}

fn too_many_sheets() -> ParseProblem {
    fatal(
        0,
        None,
        code::SHEET_TOO_LARGE,
        format!("Le classeur compte plus de {MAX_SHEETS} feuilles : une annexe 1 en a une ou deux."),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::fixture::hostile::{self, ods, ods_header_and_person};
    use super::super::fixture::{self, Cell::S, sheet_data, xlsx_parts};
    use super::super::limits::{MAX_CELL_BYTES, MAX_COLUMNS, MAX_ROWS, cell_name};
    use super::super::parse::{ParseProblem, ParsedAnnex, code, parse_annex1};

    fn refused(name: &str, bytes: &[u8]) -> ParseProblem {
        parse_annex1(name, bytes).expect_err("refused")
    }

    /// Refused with `code`, the message naming `mention`.
    fn refused_naming(name: &str, bytes: &[u8], code: &str, mention: &str) {
        let e = refused(name, bytes);
        assert_eq!(e.code, code);
        assert!(e.message.contains(mention), "{}", e.message);
    }

    fn accepted(name: &str, bytes: &[u8]) -> ParsedAnnex {
        parse_annex1(name, bytes).unwrap_or_else(|p| panic!("accepted, got {p:?}"))
    }

    /// The person of the fixtures and `extra` XML after it.
    fn book_with(extra: &str) -> Vec<u8> {
        let rows = vec![
            (1, vec![S("Liste"), S("Nom"), S("Prénom(s)"), S("Email"), S("Fonction")]),
            (2, vec![S("ouvert"), S("Dupont"), S("Marie"), S("marie.dupont@cc-girou.fr"), S("CTG")]),
        ];
        let xml = sheet_data(&rows) + extra;
        fixture::zip(&xlsx_parts(&[("Annexe 1", xml)], None), true).expect("a workbook")
    }

    fn value_at(row: usize, col: usize) -> String {
        format!("<row r=\"{row}\"><c r=\"{}\" t=\"inlineStr\"><is><t>x</t></is></c></row>", cell_name(row, col))
    }

    #[test]
    fn a_value_far_away_is_refused_by_name_without_allocating_its_range() {
        let e = refused("a.xlsx", &hostile::sparse_xlsx());
        assert_eq!((e.code, e.line, e.sheet.as_deref()), (code::SHEET_TOO_LARGE, 1_048_576, Some("Annexe 1")));
        assert!(e.message.contains("XFD1048576"), "{}", e.message);
        // The last row and column an annex may use are read.
        let parsed = accepted("a.xlsx", &book_with(&value_at(MAX_ROWS, MAX_COLUMNS - 1)));
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(refused("a.xlsx", &book_with(&value_at(MAX_ROWS + 1, 0))).code, code::SHEET_TOO_LARGE);
        assert_eq!(refused("a.xlsx", &book_with(&value_at(3, MAX_COLUMNS))).code, code::SHEET_TOO_LARGE);
    }

    #[test]
    fn empty_cells_anywhere_are_skipped() {
        let far_empty = "<row r=\"1048576\"><c r=\"XFD1048576\" s=\"1\"/></row>";
        assert_eq!(accepted("a.xlsx", &book_with(far_empty)).rows.len(), 1);
    }

    #[test]
    fn too_many_cells() {
        assert_eq!(refused("a.xlsx", &hostile::dense_xlsx(3_200, MAX_COLUMNS)).code, code::SHEET_TOO_LARGE);
        assert_eq!(accepted("a.xlsx", &hostile::dense_xlsx(1_000, 6)).rows.len(), 1);
    }

    #[test]
    fn long_and_expanding_shared_strings() {
        refused_naming(
            "a.xlsx",
            &hostile::shared_string_bomb_xlsx(20 << 20),
            code::ARCHIVE_TOO_LARGE,
            "sharedStrings.xml",
        );
        let e = refused("a.xlsx", &hostile::shared_string_bomb_xlsx(MAX_CELL_BYTES + 1));
        assert_eq!((e.code, e.line), (code::CELL_TOO_LONG, 3));
        assert!(e.message.contains("A3"), "{}", e.message);
        // At the limit the cell is read (and the row refused for its list).
        let parsed = accepted("a.xlsx", &hostile::shared_string_bomb_xlsx(MAX_CELL_BYTES));
        assert!(parsed.problems.iter().any(|p| p.code == code::UNKNOWN_LIST), "{:?}", parsed.problems);
        // One string used by many cells: the text volume counts each use.
        assert_eq!(refused("a.xlsx", &hostile::shared_string_fanout_xlsx(4096, 4_200)).code, code::SHEET_TOO_LARGE);
        assert_eq!(accepted("a.xlsx", &hostile::shared_string_fanout_xlsx(4096, 4_000)).rows.len(), 1);
    }

    #[test]
    fn zip_bombs_are_measured_not_trusted() {
        refused_naming("a.xlsx", &hostile::zip_bomb_xlsx(17 << 20), code::ARCHIVE_TOO_LARGE, "padding.bin");
        assert_eq!(accepted("a.xlsx", &hostile::zip_bomb_xlsx(8 << 20)).rows.len(), 1);
        let e = refused("a.xlsx", &hostile::lying_sizes_xlsx(17 << 20));
        assert!([code::ARCHIVE_TOO_LARGE, code::UNREADABLE_FILE].contains(&e.code), "{e:?}");
    }

    #[test]
    fn not_a_workbook() {
        refused_naming("annexe1.xlsx", &hostile::csv_as_xlsx(), code::UNREADABLE_FILE, "CSV");
        refused_naming("annexe1.xlsx", &hostile::truncated_xlsx(), code::UNREADABLE_FILE, "endommagée");
        let e = refused("annexe1.ods", &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0]);
        assert!(e.message.contains("mot de passe"), "{}", e.message);
        assert_eq!(refused("annexe1.xls", b"anything").code, code::UNKNOWN_FORMAT);
    }

    #[test]
    fn ods_reads_and_its_repeats_are_counted_first() {
        let parsed = accepted("a.ods", &ods(&ods_header_and_person()));
        assert_eq!(parsed.rows[0].email, "marie.dupont@cc-girou.fr");
        let e = refused("a.ods", &hostile::ods_repeated_rows(1_048_576));
        assert_eq!((e.code, e.line), (code::SHEET_TOO_LARGE, MAX_ROWS + 1));
        assert_eq!(accepted("a.ods", &hostile::ods_repeated_rows(100)).rows.len(), 1);
        let e = refused("a.ods", &hostile::ods_repeated_cells(16_384));
        assert_eq!((e.code, e.line), (code::SHEET_TOO_LARGE, 3));
        assert!(e.message.contains("XFD3"), "{}", e.message);
        assert_eq!(accepted("a.ods", &hostile::ods_repeated_cells(MAX_COLUMNS as u64)).rows.len(), 1);
        // Empty rows and cells may repeat to the end of the sheet, as
        // spreadsheets write them.
        let tail = "<table:table-row table:number-rows-repeated=\"1048000\"><table:table-cell \
                    table:number-columns-repeated=\"16384\"/></table:table-row>";
        assert_eq!(accepted("a.ods", &ods(&(ods_header_and_person() + tail))).rows.len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Values anywhere, of any length: refused with a limit's code or
        /// read within the limits, never a panic nor an allocation of the
        /// declared range.
        #[test]
        fn crafted_xlsx_stays_within_limits(cells in proptest::collection::vec(
            (1usize..2_000_000, 0usize..20_000, 0usize..6_000), 0..40)) {
            let mut xml = String::new();
            for (row, col, len) in &cells {
                xml.push_str(&format!(
                    "<row r=\"{row}\"><c r=\"{}\" t=\"inlineStr\"><is><t>{}</t></is></c></row>",
                    cell_name(*row, *col), "v".repeat(*len)));
            }
            match parse_annex1("f.xlsx", &book_with(&xml)) {
                Ok(parsed) => prop_assert!(parsed.rows.iter().all(|r| r.line <= MAX_ROWS)),
                Err(e) => prop_assert!([code::SHEET_TOO_LARGE, code::CELL_TOO_LONG].contains(&e.code), "{:?}", e),
            }
        }

        #[test]
        fn crafted_ods_stays_within_limits(rows in proptest::collection::vec(
            (1u64..3_000_000, 1u64..40_000, any::<bool>()), 0..20)) {
            let mut table = ods_header_and_person();
            for (row_repeats, col_repeats, value) in &rows {
                let cell = if *value {
                    format!("<table:table-cell table:number-columns-repeated=\"{col_repeats}\" \
                             office:value-type=\"string\"><text:p>v</text:p></table:table-cell>")
                } else {
                    format!("<table:table-cell table:number-columns-repeated=\"{col_repeats}\"/>")
                };
                table.push_str(&format!("<table:table-row table:number-rows-repeated=\"{row_repeats}\">{cell}</table:table-row>"));
            }
            match parse_annex1("f.ods", &ods(&table)) {
                Ok(parsed) => prop_assert!(parsed.rows.iter().all(|r| r.line <= MAX_ROWS)),
                Err(e) => prop_assert_eq!(e.code, code::SHEET_TOO_LARGE, "{:?}", e),
            }
        }
    }
}
