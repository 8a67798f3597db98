//! Reading an annex-1 spreadsheet (PRODUCT.md "Annex 1 files") into rows.
//!
//! Pure and synchronous: bytes in, rows and problems out. Only the structure
//! is checked here (columns, list values, dates, empty fields, control
//! characters); email validity, duplicates and business rules belong to the
//! planner.
//!
//! Formats: CSV (`text.rs`: `;`, `,` or tab, detected from the first lines;
//! UTF-8 with or without BOM, UTF-16 with BOM, otherwise Windows-1252),
//! XLSX/XLSM and ODS (`workbook.rs`, through `calamine`), each within the
//! bounds of `limits.rs`. Line numbers are those of the file (header row = 1
//! in the canonical layout); for workbooks, the row number in its sheet.

use std::borrow::Cow;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

use super::limits::{self, MAX_CONCURRENT_PARSES};
use super::{text, workbook};

/// Which list of annex 1 a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    Open,
    Closed,
}

/// One person of annex 1, as written in the file (values trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnexRow {
    /// Line in the file, header row = 1; for workbooks the row number in its sheet.
    pub line: usize,
    /// Workbooks only.
    pub sheet: Option<String>,
    pub list: ListKind,
    /// Inner whitespace collapsed.
    pub family_name: String,
    /// Inner whitespace collapsed.
    pub given_name: String,
    /// Trimmed, as written (not validated).
    pub email: String,
    /// The "qualité/fonction"; inner whitespace collapsed.
    pub function: String,
    /// Normalised `YYYY-MM-DD`.
    pub closure_date: Option<String>,
}

/// A problem found while reading the file. Row-level problems (the row is
/// skipped) are in [`ParsedAnnex::problems`]; a fatal one is the `Err` of
/// [`parse_annex1`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParseProblem {
    /// Line of the row (0: the file as a whole).
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Stable snake_case identifier, see the `code` module.
    pub code: &'static str,
    /// French.
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedAnnex {
    pub rows: Vec<AnnexRow>,
    /// Row-level: the row is skipped and the problem reported.
    pub problems: Vec<ParseProblem>,
}

/// The problem codes produced by this module.
pub mod code {
    // Fatal (returned as `Err`).
    /// The extension is not one of the supported formats.
    pub const UNKNOWN_FORMAT: &str = "unknown_format";
    /// The bytes cannot be read in the format of the extension.
    pub const UNREADABLE_FILE: &str = "unreadable_file";
    /// No row at all.
    pub const EMPTY_FILE: &str = "empty_file";
    /// A required column is missing (the message names it).
    pub const MISSING_COLUMN: &str = "missing_column";
    /// Two columns of the header mean the same thing.
    pub const DUPLICATE_COLUMN: &str = "duplicate_column";
    /// A workbook with no sheet holding the lists.
    pub const NO_LIST_SHEET: &str = "no_list_sheet";
    /// The file is over the size limit (`limits::MAX_FILE_BYTES`).
    pub const FILE_TOO_LARGE: &str = "file_too_large";
    /// A workbook's archive has too many parts or decompresses to too much.
    pub const ARCHIVE_TOO_LARGE: &str = "archive_too_large";
    /// A value past the last row or column an annex may use, too many
    /// sheets, cells or too much text (the message names the cell).
    pub const SHEET_TOO_LARGE: &str = "sheet_too_large";
    /// One cell holds more text than `limits::MAX_CELL_BYTES`.
    pub const CELL_TOO_LONG: &str = "cell_too_long";
    // Row-level.
    /// A required cell is empty (the message names it).
    pub const MISSING_FIELD: &str = "missing_field";
    /// The list value is none of the accepted ones.
    pub const UNKNOWN_LIST: &str = "unknown_list";
    /// The closure date is not a date.
    pub const BAD_DATE: &str = "bad_date";
    /// In a workbook with one sheet per list, the list column names the other list.
    pub const LIST_MISMATCH: &str = "list_mismatch";
    /// A name, first name, email or function holds a control or invisible
    /// formatting character (NUL, line break, right-to-left override, …).
    pub const CONTROL_CHARACTER: &str = "control_character";
}

/// Reads annex 1. `file_name` decides the format by its extension: `.csv`
/// (also `.tsv`, `.txt`), `.xlsx`/`.xlsm`, `.ods`. A fatal problem
/// (unreadable file, unknown format, a file over the limits of
/// [`limits`], missing required column, no sheet holding the lists) is
/// returned as `Err` with line 0, the header line or the line of the cell.
///
/// Synchronous and CPU-bound: the server calls [`parse_annex1_off_runtime`].
pub fn parse_annex1(file_name: &str, bytes: &[u8]) -> Result<ParsedAnnex, ParseProblem> {
    limits::check_file_size(bytes.len())?;
    let ext = file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => text::parse_csv(bytes),
        "xlsx" | "xlsm" => workbook::parse_xlsx(bytes),
        "ods" => workbook::parse_ods(bytes),
        "xls" => Err(fatal(
            0,
            None,
            code::UNKNOWN_FORMAT,
            "Le format Excel 97-2003 (.xls) n'est pas accepté : enregistrez l'annexe 1 au format .xlsx, .ods ou .csv."
                .into(),
        )),
        _ => Err(fatal(
            0,
            None,
            code::UNKNOWN_FORMAT,
            format!(
                "Format de fichier non reconnu (« {} ») : l'annexe 1 doit être un fichier .csv, .xlsx ou .ods.",
                file_name
            ),
        )),
    }
}

/// At most [`MAX_CONCURRENT_PARSES`] files are parsed at once, each on a
/// blocking thread, so that uploads never hold the async runtime (and the
/// sign-ins it serves) however many arrive together.
static PARSE_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_PARSES);

/// [`parse_annex1`] off the async runtime, behind a concurrency bound.
pub async fn parse_annex1_off_runtime(file_name: &str, bytes: Arc<[u8]>) -> Result<ParsedAnnex, ParseProblem> {
    let internal = || fatal(0, None, code::UNREADABLE_FILE, "Le fichier n'a pas pu être lu (erreur interne).".into());
    let Ok(_slot) = PARSE_SLOTS.acquire().await else { return Err(internal()) };
    let name = file_name.to_string();
    tokio::task::spawn_blocking(move || parse_annex1(&name, &bytes)).await.unwrap_or_else(|_| Err(internal()))
}

// ---------------------------------------------------------------------------
// Columns and values

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    List,
    FamilyName,
    GivenName,
    Email,
    Function,
    ClosureDate,
}

const FIELDS: [Field; 6] =
    [Field::List, Field::FamilyName, Field::GivenName, Field::Email, Field::Function, Field::ClosureDate];

impl Field {
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Field::List => "liste",
            Field::FamilyName => "nom",
            Field::GivenName => "prénom(s)",
            Field::Email => "adresse électronique professionnelle",
            Field::Function => "qualité/fonction",
            Field::ClosureDate => "date de fin d'habilitation",
        }
    }

    /// Recognises a header, already passed through [`fold`].
    fn from_header(h: &str) -> Option<Field> {
        const LIST: &[&str] = &[
            "liste",
            "listes",
            "statut",
            "acces",
            "typedeliste",
            "typeliste",
            "listeacces",
            "statutacces",
            "statutdelacces",
            "statutdacces",
            "ouverturecloture",
            "ouvertureoucloture",
            "ouvertureetcloture",
        ];
        const FAMILY: &[&str] =
            &["nom", "noms", "nomdefamille", "nomfamille", "nomdusage", "nomusage", "nomusuel", "nomdenaissance"];
        const GIVEN: &[&str] = &["prenom", "prenoms", "prenomusuel", "prenomusage", "prenomdusage"];
        const EMAIL: &[&str] = &[
            "adresseelectronique",
            "courriel",
            "email",
            "emails",
            "mail",
            "mel",
            "adressemail",
            "adressemel",
            "adresseemail",
            "adressecourriel",
            "adressedecourriel",
            "adressemessagerie",
            "messagerie",
        ];
        const FUNCTION: &[&str] = &[
            "qualitefonction",
            "fonctionqualite",
            "qualiteoufonction",
            "qualiteetfonction",
            "qualite",
            "fonction",
            "fonctions",
            "poste",
            "fonctionoccupee",
            "posteoccupe",
        ];
        const CLOSURE: &[&str] = &[
            "datedefindhabilitation",
            "datedefinhabilitation",
            "datefindhabilitation",
            "datefinhabilitation",
            "datedecloture",
            "datecloture",
            "datedefin",
            "datefin",
            "datedefermeture",
            "datefermeture",
            "datedeclotureduncompte",
            "datedeclotureducompte",
            "datedeclotureacces",
            "datedeclotureduneacces",
            "datedelademandedecloture",
            "datedemandedecloture",
        ];
        // "Adresse électronique professionnelle", "Email pro", "Courriel professionnel".
        let email_core = ["professionnelle", "professionnel", "pro"]
            .iter()
            .find_map(|s| h.strip_suffix(s).filter(|c| !c.is_empty()))
            .unwrap_or(h);
        if LIST.contains(&h) {
            Some(Field::List)
        } else if FAMILY.contains(&h) {
            Some(Field::FamilyName)
        } else if GIVEN.contains(&h) {
            Some(Field::GivenName)
        } else if EMAIL.contains(&h) || EMAIL.contains(&email_core) {
            Some(Field::Email)
        } else if FUNCTION.contains(&h) {
            Some(Field::Function)
        } else if CLOSURE.contains(&h) {
            Some(Field::ClosureDate)
        } else {
            None
        }
    }
}

/// Lower case, accents removed, only letters and digits kept.
pub(super) fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'œ' => "oe".to_string(),
            'æ' => "ae".to_string(),
            c => c.to_string(),
        })
        .filter(|s| s.chars().all(char::is_alphanumeric))
        .collect()
}

fn parse_list(value: &str) -> Option<ListKind> {
    const OPEN: &[&str] = &[
        "ouvert",
        "ouverte",
        "ouverts",
        "ouvertes",
        "ouverture",
        "demande",
        "demandee",
        "nouvelacces",
        "accesouvert",
        "accesouverts",
    ];
    const CLOSED: &[&str] = &[
        "cloture",
        "clotures",
        "cloturee",
        "cloturees",
        "cloturedemandee",
        "ferme",
        "fermee",
        "fermes",
        "fermees",
        "fermeture",
        "accescloture",
        "accesferme",
    ];
    let v = fold(value);
    if OPEN.contains(&v.as_str()) {
        Some(ListKind::Open)
    } else if CLOSED.contains(&v.as_str()) {
        Some(ListKind::Closed)
    } else {
        None
    }
}

fn is_blank_char(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{2060}')
}

/// The first character of `s` that has no place in a name, an address or
/// a function: a control character (NUL, escape, …; a line break or tab is
/// only a space there) or an invisible formatting one (soft hyphen,
/// right-to-left override, joiners, tags), which would make two names look
/// alike or a log line read backwards. Zero-width spaces are blanks, see
/// [`is_blank_char`].
fn hidden_char(s: &str) -> Option<char> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    s.chars().find(|&c| match c.general_category() {
        GeneralCategory::Control => !matches!(c, '\t' | '\n' | '\r'),
        GeneralCategory::Format => !is_blank_char(c),
        _ => false,
    })
}

fn clean(s: &str) -> String {
    s.trim_matches(is_blank_char).to_string()
}

fn collapse(s: &str) -> String {
    s.split(is_blank_char).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------
// Dates

fn ymd(y: i32, m: u8, d: u8) -> Option<String> {
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    Some(format_date(date))
}

fn format_date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `YYYY-MM-DD` or `DD/MM/YYYY` (also `D/M/YYYY`, `DD-MM-YYYY`,
/// `DD.MM.YYYY`), optionally followed by a time that is ignored.
fn parse_date_text(s: &str) -> Option<String> {
    let date_part = s.split([' ', 'T']).next().unwrap_or(s);
    let num = |p: &str, min: usize, max: usize| -> Option<u32> {
        if p.len() < min || p.len() > max || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let parts: Vec<&str> = date_part.split(['-', '/', '.']).collect();
    if parts.len() != 3 {
        return None;
    }
    let sep_count = |c: char| date_part.matches(c).count();
    if sep_count('-') == 2 && parts[0].len() == 4 {
        let (y, m, d) = (num(parts[0], 4, 4)?, num(parts[1], 1, 2)?, num(parts[2], 1, 2)?);
        return ymd(i32::try_from(y).ok()?, u8::try_from(m).ok()?, u8::try_from(d).ok()?);
    }
    if [sep_count('/'), sep_count('-'), sep_count('.')].contains(&2) {
        let (d, m, y) = (num(parts[0], 1, 2)?, num(parts[1], 1, 2)?, num(parts[2], 4, 4)?);
        return ymd(i32::try_from(y).ok()?, u8::try_from(m).ok()?, u8::try_from(d).ok()?);
    }
    None
}

/// An Excel serial day number (the fraction, a time of day, is ignored).
fn excel_serial_to_date(serial: f64, is_1904: bool) -> Option<String> {
    let first = if is_1904 { 0.0 } else { 1.0 };
    if !serial.is_finite() || serial < first || serial > 3_000_000.0 {
        return None;
    }
    let days = serial.floor() as i64;
    let (epoch, days) = if is_1904 {
        (time::Date::from_calendar_date(1904, time::Month::January, 1).ok()?, days)
    } else if days >= 61 {
        (time::Date::from_calendar_date(1899, time::Month::December, 30).ok()?, days)
    } else if days == 60 {
        // 1900-02-29, which Excel believes exists.
        return None;
    } else {
        (time::Date::from_calendar_date(1899, time::Month::December, 31).ok()?, days)
    };
    epoch.checked_add(time::Duration::days(days)).map(format_date)
}

// ---------------------------------------------------------------------------
// Cells and sheets, common to CSV and workbooks

#[derive(Debug, Clone)]
pub(super) enum Cell {
    Text(String),
    Number(f64),
    Date { serial: f64, is_1904: bool },
}

impl Cell {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Cell::Text(s) => Cow::Borrowed(s),
            Cell::Number(n) => Cow::Owned(format_number(*n)),
            Cell::Date { serial, is_1904 } => {
                Cow::Owned(excel_serial_to_date(*serial, *is_1904).unwrap_or_else(|| format_number(*serial)))
            }
        }
    }

    fn is_blank(&self) -> bool {
        match self {
            Cell::Text(s) => Cell::is_blank_text(s),
            _ => false,
        }
    }

    pub(super) fn is_blank_text(s: &str) -> bool {
        s.chars().all(is_blank_char)
    }

    fn date(&self) -> Option<String> {
        match self {
            Cell::Text(s) => parse_date_text(s.trim_matches(is_blank_char)),
            Cell::Number(n) => excel_serial_to_date(*n, false),
            Cell::Date { serial, is_1904 } => excel_serial_to_date(*serial, *is_1904),
        }
    }
}

fn format_number(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

pub(super) struct RawRow {
    pub(super) line: usize,
    pub(super) cells: Vec<Cell>,
}

pub(super) struct RawSheet {
    pub(super) name: Option<String>,
    pub(super) rows: Vec<RawRow>,
}

/// Column index of each [`Field`].
type Columns = [Option<usize>; 6];

/// How far down the header row is looked for (title rows above it are allowed).
pub(super) const HEADER_SEARCH_ROWS: usize = 30;

pub(super) struct HeaderCandidate {
    row_index: usize,
    line: usize,
    columns: Columns,
    duplicate: Option<(Field, String, String)>,
    recognised: usize,
}

fn header_candidate(row_index: usize, row: &RawRow) -> HeaderCandidate {
    let mut columns: Columns = [None; 6];
    let mut duplicate = None;
    let mut recognised = 0;
    for (i, cell) in row.cells.iter().enumerate() {
        let text = cell.text();
        let Some(field) = Field::from_header(&fold(&text)) else { continue };
        match columns[field.index()] {
            None => {
                columns[field.index()] = Some(i);
                recognised += 1;
            }
            Some(first) => {
                if duplicate.is_none() {
                    let first_text = row.cells.get(first).map(|c| clean(&c.text())).unwrap_or_default();
                    duplicate = Some((field, first_text, clean(&text)));
                }
            }
        }
    }
    HeaderCandidate { row_index, line: row.line, columns, duplicate, recognised }
}

fn missing_columns(columns: &Columns, need_list: bool) -> Vec<Field> {
    FIELDS
        .iter()
        .copied()
        .filter(|f| *f != Field::ClosureDate && (need_list || *f != Field::List))
        .filter(|f| columns[f.index()].is_none())
        .collect()
}

/// Finds the header row: the first of the first non-blank rows that has all
/// required columns; otherwise the error names the columns missing from the
/// row that looked most like a header.
pub(super) fn find_header(sheet: &RawSheet, need_list: bool) -> Result<HeaderCandidate, ParseProblem> {
    find_header_scored(sheet, need_list).map_err(|(problem, _)| problem)
}

/// [`find_header`], the error with the number of columns recognised.
pub(super) fn find_header_scored(sheet: &RawSheet, need_list: bool) -> Result<HeaderCandidate, (ParseProblem, usize)> {
    let mut best: Option<HeaderCandidate> = None;
    let non_blank = sheet.rows.iter().enumerate().filter(|(_, r)| !r.cells.iter().all(Cell::is_blank));
    for (i, row) in non_blank.take(HEADER_SEARCH_ROWS) {
        let cand = header_candidate(i, row);
        if missing_columns(&cand.columns, need_list).is_empty() {
            if let Some((field, a, b)) = &cand.duplicate {
                return Err((
                    fatal(
                        cand.line,
                        sheet.name.clone(),
                        code::DUPLICATE_COLUMN,
                        format!(
                            "Les colonnes « {a} » et « {b} » désignent toutes deux la colonne « {} » : n'en gardez qu'une.",
                            field.label()
                        ),
                    ),
                    cand.recognised,
                ));
            }
            return Ok(cand);
        }
        if best.as_ref().is_none_or(|b| cand.recognised > b.recognised) {
            best = Some(cand);
        }
    }
    match best {
        None => Err((
            fatal(
                0,
                sheet.name.clone(),
                code::EMPTY_FILE,
                "Le fichier ne contient aucune ligne : la ligne d'en-tête est attendue en première ligne.".into(),
            ),
            0,
        )),
        Some(b) => {
            let missing = missing_columns(&b.columns, need_list);
            let names = missing.iter().map(|f| format!("« {} »", f.label())).collect::<Vec<_>>().join(", ");
            let mut message = if missing.len() > 1 {
                format!("Colonnes obligatoires absentes de la ligne d'en-tête : {names}.")
            } else {
                format!("Colonne obligatoire absente de la ligne d'en-tête : {names}.")
            };
            if missing.contains(&Field::List) {
                message.push_str(
                    " La colonne « liste » (Liste, Statut ou Accès) n'est facultative que dans un classeur \
                     ayant une feuille par liste (noms contenant « ouvert » et « clôtur »).",
                );
            }
            Err((fatal(b.line, sheet.name.clone(), code::MISSING_COLUMN, message), b.recognised))
        }
    }
}

/// Reads the data rows below `header`. `forced`: the list of the sheet in a
/// workbook with one sheet per list.
pub(super) fn read_rows(sheet: &RawSheet, header: &HeaderCandidate, forced: Option<ListKind>, out: &mut ParsedAnnex) {
    let cols = &header.columns;
    for row in sheet.rows.iter().skip(header.row_index + 1) {
        let raw = |f: Field| -> Option<&Cell> { cols[f.index()].and_then(|i| row.cells.get(i)) };
        let text = |f: Field| -> String { raw(f).map(|c| clean(&c.text())).unwrap_or_default() };
        // A row is blank when every recognised column is empty (notes in
        // other columns do not make a person).
        if FIELDS.iter().all(|f| raw(*f).is_none_or(Cell::is_blank)) {
            continue;
        }
        let family_name = collapse(&text(Field::FamilyName));
        let given_name = collapse(&text(Field::GivenName));
        let email = text(Field::Email);
        let function = collapse(&text(Field::Function));
        let list_text = text(Field::List);
        let problem = |code: &'static str, message: String| ParseProblem {
            line: row.line,
            sheet: sheet.name.clone(),
            email: (!email.is_empty()).then(|| email.clone()),
            code,
            message,
        };
        let mut problems = Vec::new();

        let mut missing = Vec::new();
        let list = match forced {
            Some(kind) => {
                if let Some(written) = parse_list(&list_text).filter(|k| *k != kind) {
                    let (sheet_list, other) = match written {
                        ListKind::Open => ("clôtures", "ouverture"),
                        ListKind::Closed => ("ouvertures", "clôture"),
                    };
                    problems.push(problem(
                        code::LIST_MISMATCH,
                        format!(
                            "La ligne est dans la feuille des {sheet_list} mais sa colonne « liste » indique « {list_text} » ({other})."
                        ),
                    ));
                }
                Some(kind)
            }
            None if list_text.is_empty() => {
                missing.push(Field::List);
                None
            }
            None => {
                let kind = parse_list(&list_text);
                if kind.is_none() {
                    problems.push(problem(
                        code::UNKNOWN_LIST,
                        format!(
                            "Valeur de liste inconnue : « {list_text} ». Valeurs acceptées : « ouvert » (ou ouverture, \
                             demandé, nouvel accès, accès ouvert) et « clôturé » (ou clôture, clôture demandée, fermé)."
                        ),
                    ));
                }
                kind
            }
        };
        for (field, value) in [
            (Field::FamilyName, &family_name),
            (Field::GivenName, &given_name),
            (Field::Email, &email),
            (Field::Function, &function),
        ] {
            if value.is_empty() {
                missing.push(field);
            } else if let Some(c) = hidden_char(value) {
                problems.push(problem(
                    code::CONTROL_CHARACTER,
                    format!(
                        "La colonne « {} » contient un caractère de contrôle ou invisible (U+{:04X}) : \
                         retapez la valeur sans copier-coller.",
                        field.label(),
                        u32::from(c)
                    ),
                ));
            }
        }
        if !missing.is_empty() {
            let names = missing.iter().map(|f| format!("« {} »", f.label())).collect::<Vec<_>>().join(", ");
            let message = if missing.len() > 1 {
                format!("Champs obligatoires vides : {names}.")
            } else {
                format!("Champ obligatoire vide : {names}.")
            };
            problems.insert(0, problem(code::MISSING_FIELD, message));
        }

        let closure_date = match raw(Field::ClosureDate).filter(|c| !c.is_blank()) {
            None => None,
            Some(cell) => {
                let date = cell.date();
                if date.is_none() {
                    problems.push(problem(
                        code::BAD_DATE,
                        format!(
                            "Date de fin d'habilitation invalide : « {} ». Formats acceptés : AAAA-MM-JJ ou JJ/MM/AAAA.",
                            clean(&cell.text())
                        ),
                    ));
                }
                date
            }
        };

        match list {
            Some(list) if problems.is_empty() => out.rows.push(AnnexRow {
                line: row.line,
                sheet: sheet.name.clone(),
                list,
                family_name,
                given_name,
                email,
                function,
                closure_date,
            }),
            _ => out.problems.extend(problems),
        }
    }
}

pub(super) fn fatal(line: usize, sheet: Option<String>, code: &'static str, message: String) -> ParseProblem {
    ParseProblem { line, sheet, email: None, code, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::annex1::fixture::{self, xlsx};
    use proptest::prelude::*;

    const CANONICAL: &str =
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation
ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;
ouvert;N'Diaye;Jean-Éric;je.ndiaye@cc-girou.fr;Responsable petite enfance;
clôturé;Martin;Paul;paul.martin@cc-girou.fr;Agent d'accueil;2026-01-10
";

    fn csv_ok(text: &str) -> ParsedAnnex {
        parse_annex1("annexe1.csv", text.as_bytes()).expect("the file parses")
    }

    fn only_problem(parsed: &ParsedAnnex) -> &ParseProblem {
        assert_eq!(parsed.problems.len(), 1, "{:#?}", parsed.problems);
        &parsed.problems[0]
    }

    #[test]
    fn canonical_example() {
        let parsed = csv_ok(CANONICAL);
        assert!(parsed.problems.is_empty(), "{:#?}", parsed.problems);
        let lines: Vec<usize> = parsed.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert_eq!(
            parsed.rows[0],
            AnnexRow {
                line: 2,
                sheet: None,
                list: ListKind::Open,
                family_name: "Dupont".into(),
                given_name: "Marie".into(),
                email: "marie.dupont@cc-girou.fr".into(),
                function: "Coordinatrice CTG".into(),
                closure_date: None,
            }
        );
        assert_eq!(parsed.rows[1].family_name, "N'Diaye");
        assert_eq!(parsed.rows[1].given_name, "Jean-Éric");
        assert_eq!(parsed.rows[2].list, ListKind::Closed);
        assert_eq!(parsed.rows[2].function, "Agent d'accueil");
        assert_eq!(parsed.rows[2].closure_date.as_deref(), Some("2026-01-10"));
    }

    #[test]
    fn windows_1252_semicolon() {
        let text = "Liste;Nom;Prénom;Courriel;Fonction;Date de clôture\r\n\
                    Ouverture;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;\r\n\
                    Clôturé;Lefèvre;François;f.lefevre@cc-girou.fr;Référent;15/03/2026\r\n";
        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&bytes).is_err(), "the fixture must not be UTF-8");
        let parsed = parse_annex1("Annexe 1.CSV", &bytes).expect("parses");
        assert!(parsed.problems.is_empty(), "{:#?}", parsed.problems);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[0].family_name, "N'Diaye");
        assert_eq!(parsed.rows[0].given_name, "Éloïse");
        assert_eq!(parsed.rows[0].function, "Chargée de mission");
        assert_eq!(parsed.rows[1].list, ListKind::Closed);
        assert_eq!(parsed.rows[1].family_name, "Lefèvre");
        assert_eq!(parsed.rows[1].closure_date.as_deref(), Some("2026-03-15"));
        assert_eq!((parsed.rows[0].line, parsed.rows[1].line), (2, 3));
    }

    #[test]
    fn utf8_bom_comma_quotes_and_blank_lines() {
        let text = "\u{FEFF}Statut,Nom de famille,Prénoms,Email,Qualité,Date de fin d'habilitation\n\
                    \n\
                    accès ouvert,\"Martin, dit Paul\",Paul,paul.martin@cc-girou.fr,\"Agent\nd'accueil\",\n\
                    ,,,,,\n\
                    Nouvel accès,  Le   Goff ,\"  Anne  Marie \",  anne.legoff@cc-girou.fr ,Éducatrice,\n\
                    \n";
        let parsed = csv_ok(text);
        assert!(parsed.problems.is_empty(), "{:#?}", parsed.problems);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[0].line, 3);
        assert_eq!(parsed.rows[0].family_name, "Martin, dit Paul");
        assert_eq!(parsed.rows[0].function, "Agent d'accueil");
        // The quoted newline moves the next rows one line down.
        assert_eq!(parsed.rows[1].line, 6);
        assert_eq!(parsed.rows[1].family_name, "Le Goff");
        assert_eq!(parsed.rows[1].given_name, "Anne Marie");
        assert_eq!(parsed.rows[1].email, "anne.legoff@cc-girou.fr");
    }

    #[test]
    fn header_spellings() {
        let headers = [
            ("LISTE", "NOM", "PRÉNOM", "ADRESSE MAIL", "QUALITÉ / FONCTION", "DATE DE CLÔTURE"),
            (" Accès ", "Nom", "Prénom(s)", "E-mail", "Fonction", "Date de fin d’habilitation"),
            ("statut", "nom_de_famille", "prenoms", "Courriel professionnel", "qualité", "date-de-cloture"),
            ("Liste", "Nom", "Prénom", "Mail", "Qualité/fonction", "Date de fin d'habilitation"),
        ];
        for (l, n, p, e, f, d) in headers {
            // Columns in another order than the canonical one.
            let text = format!("{e};{f};{n};{p};{l};{d}\nx@cc-girou.fr;Agent;Dupont;Marie;ouvert;\n");
            let parsed = csv_ok(&text);
            assert!(parsed.problems.is_empty(), "{text}: {:#?}", parsed.problems);
            assert_eq!(parsed.rows.len(), 1, "{text}");
            assert_eq!(parsed.rows[0].email, "x@cc-girou.fr");
            assert_eq!(parsed.rows[0].family_name, "Dupont");
            assert_eq!(parsed.rows[0].function, "Agent");
        }
    }

    #[test]
    fn list_values() {
        let open = ["ouvert", "OUVERTURE", "demandé", "Demande", "nouvel accès", "Accès ouvert", "Nouvel acces"];
        let closed = ["clôture", "CLÔTURÉ", "clôture demandée", "Cloture demandee", "fermé", "Fermé"];
        for (values, kind) in [(&open[..], ListKind::Open), (&closed[..], ListKind::Closed)] {
            for v in values {
                let text = format!("Liste;Nom;Prénom;Mail;Fonction\n{v};Dupont;Marie;m@cc-girou.fr;Agent\n");
                let parsed = csv_ok(&text);
                assert_eq!(parsed.rows.len(), 1, "{v}: {:#?}", parsed.problems);
                assert_eq!(parsed.rows[0].list, kind, "{v}");
            }
        }
    }

    #[test]
    fn title_rows_above_header_keep_file_lines() {
        let text = "Annexe 1 : liste des habilitations, CC du Girou\n\n".to_string() + CANONICAL;
        let parsed = csv_ok(&text);
        assert_eq!(parsed.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [4, 5, 6]);
    }

    const HEADER: &str =
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation\n";
    const GOOD: &str = "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;\n";

    /// The file with `bad` at line 3, between two good rows.
    fn with_bad_row(bad: &str) -> ParsedAnnex {
        let parsed = csv_ok(&format!("{HEADER}{GOOD}{bad}\n{GOOD}"));
        assert_eq!(parsed.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4]);
        parsed
    }

    #[test]
    fn control_and_invisible_characters_are_refused_by_line() {
        for (bad, column) in [
            ("ouvert;Du\u{0}pont;Marie;m.dupont@cc-girou.fr;Agent;", "nom"),
            ("ouvert;Dupont;Ma\u{1b}rie;m.dupont@cc-girou.fr;Agent;", "prénom"),
            ("ouvert;Dupont;Marie;m.dupont@cc-girou.fr;Agent \u{202E}CTG;", "qualité/fonction"),
            ("ouvert;Dupont;Marie;m.dupont@cc-girou.fr;Ag\u{AD}ent;", "qualité/fonction"),
            ("ouvert;Dupont;Marie;m.du\u{7}pont@cc-girou.fr;Agent;", "adresse"),
        ] {
            let parsed = with_bad_row(bad);
            let p = only_problem(&parsed);
            assert_eq!((p.line, p.code), (3, code::CONTROL_CHARACTER), "{bad:?}");
            assert!(p.message.contains(column), "{bad:?}: {}", p.message);
        }
        // Letters of every kind, a line break typed in a cell and a
        // zero-width space are not control characters.
        let parsed = csv_ok(&format!(
            "{HEADER}ouvert;N'Diaye-Ødegård;Jean-Éric;je.ndiaye@cc-girou.fr;\"Référente\nCTG\";\n\
             ouvert;Dupont\u{200B};Marie;m.dupont@cc-girou.fr;Agent;"
        ));
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.rows[0].function, "Référente CTG");
    }

    #[test]
    fn csv_limits() {
        let e = parse_annex1("a.csv", &fixture::hostile::csv_many_fields(limits::MAX_COLUMNS)).expect_err("too wide");
        assert_eq!((e.code, e.line), (code::SHEET_TOO_LARGE, 2));
        assert!(e.message.contains(&format!("champ {}", limits::MAX_COLUMNS + 1)), "{}", e.message);
        // The last column, and empty fields past it, are fine.
        parse_annex1("a.csv", &fixture::hostile::csv_many_fields(limits::MAX_COLUMNS - 1)).expect("the last column");
        let trailing = format!("{HEADER}{GOOD}{}\n", ";".repeat(limits::MAX_CSV_FIELDS - 1));
        assert_eq!(csv_ok(&trailing).rows.len(), 1);
        let separators = format!("{HEADER}{GOOD}\"a\nb\";{}\n", ";".repeat(limits::MAX_CSV_FIELDS - 1));
        let e = parse_annex1("a.csv", separators.as_bytes()).expect_err("too many fields");
        assert_eq!((e.code, e.line), (code::SHEET_TOO_LARGE, 3));
        let long =
            format!("{HEADER}ouvert;Dupont;Marie;m.dupont@cc-girou.fr;{};\n", "x".repeat(limits::MAX_CELL_BYTES + 1));
        assert_eq!(parse_annex1("a.csv", long.as_bytes()).expect_err("too long").code, code::CELL_TOO_LONG);
        let many = format!("{HEADER}{}", GOOD.repeat(limits::MAX_ROWS));
        assert_eq!(parse_annex1("a.csv", many.as_bytes()).expect_err("past the last row").code, code::SHEET_TOO_LARGE);
        let e = parse_annex1("a.csv", &vec![b' '; limits::MAX_FILE_BYTES + 1]).expect_err("too big");
        assert_eq!(e.code, code::FILE_TOO_LARGE);
    }

    #[test]
    fn missing_field_alone() {
        let parsed = with_bad_row("ouvert;Dupont;;m.dupont@cc-girou.fr;Agent;");
        let p = only_problem(&parsed);
        assert_eq!((p.line, p.code), (3, "missing_field"));
        assert_eq!(p.email.as_deref(), Some("m.dupont@cc-girou.fr"));
        assert!(p.message.contains("prénom"), "{}", p.message);

        let parsed = with_bad_row("ouvert;Dupont;Marie;;Agent;");
        let p = only_problem(&parsed);
        assert_eq!((p.line, p.code, p.email.as_deref()), (3, "missing_field", None));
        assert!(p.message.contains("adresse électronique"), "{}", p.message);

        let parsed = with_bad_row(";Dupont;Marie;m.dupont@cc-girou.fr;Agent;");
        let p = only_problem(&parsed);
        assert_eq!((p.line, p.code), (3, "missing_field"));
        assert!(p.message.contains("liste"), "{}", p.message);

        // A short row (fewer fields than the header).
        let parsed = with_bad_row("ouvert;Dupont;Marie;m.dupont@cc-girou.fr");
        let p = only_problem(&parsed);
        assert_eq!((p.line, p.code), (3, "missing_field"));
        assert!(p.message.contains("qualité/fonction"), "{}", p.message);
    }

    #[test]
    fn unknown_list_alone() {
        let parsed = with_bad_row("en attente;Dupont;Marie;m.dupont@cc-girou.fr;Agent;");
        let p = only_problem(&parsed);
        assert_eq!((p.line, p.code), (3, "unknown_list"));
        assert_eq!(p.email.as_deref(), Some("m.dupont@cc-girou.fr"));
        assert!(p.message.contains("en attente"), "{}", p.message);
    }

    #[test]
    fn bad_date_alone() {
        for bad in ["31/02/2026", "2026-13-01", "demain", "10/01/26"] {
            let parsed = with_bad_row(&format!("clôturé;Dupont;Marie;m.dupont@cc-girou.fr;Agent;{bad}"));
            let p = only_problem(&parsed);
            assert_eq!((p.line, p.code), (3, "bad_date"), "{bad}");
            assert!(p.message.contains(bad), "{}", p.message);
        }
        for (good, norm) in
            [("1/2/2026", "2026-02-01"), ("01.02.2026", "2026-02-01"), ("2026-02-01 00:00:00", "2026-02-01")]
        {
            let parsed = csv_ok(&format!("{HEADER}clôturé;Dupont;Marie;m@cc-girou.fr;Agent;{good}\n"));
            assert_eq!(parsed.rows[0].closure_date.as_deref(), Some(norm), "{good}");
        }
    }

    #[test]
    fn notes_in_other_columns_do_not_make_a_row() {
        let text = "Liste;Nom;Prénom;Mail;Fonction;Observations\n\
                    ouvert;Dupont;Marie;m@cc-girou.fr;Agent;\n\
                    ;;;;;Liste arrêtée au 1er mars\n";
        let parsed = csv_ok(text);
        assert_eq!(parsed.rows.len(), 1);
        assert!(parsed.problems.is_empty(), "{:#?}", parsed.problems);
    }

    #[test]
    fn missing_column_is_fatal() {
        let text = "Liste;Nom;Prénom(s);Qualité/fonction\nouvert;Dupont;Marie;Agent\n";
        let err = parse_annex1("a.csv", text.as_bytes()).expect_err("no email column");
        assert_eq!((err.line, err.code), (1, "missing_column"));
        assert!(err.message.contains("adresse électronique professionnelle"), "{}", err.message);

        let text = "Nom;Prénom;Mail;Fonction\nDupont;Marie;m@cc-girou.fr;Agent\n";
        let err = parse_annex1("a.csv", text.as_bytes()).expect_err("no list column in a CSV");
        assert_eq!((err.line, err.code), (1, "missing_column"));
        assert!(err.message.contains("liste"), "{}", err.message);
    }

    #[test]
    fn other_fatal_problems() {
        let err = parse_annex1("a.csv", b"").expect_err("empty");
        assert_eq!((err.line, err.code), (0, "empty_file"));
        let err = parse_annex1("annexe.pdf", b"%PDF").expect_err("pdf");
        assert_eq!((err.line, err.code), (0, "unknown_format"));
        let err = parse_annex1("annexe", b"x").expect_err("no extension");
        assert_eq!(err.code, "unknown_format");
        let err = parse_annex1("a.csv", "Liste;Nom;Nom de famille;Prénom;Mail;Fonction\n".as_bytes())
            .expect_err("two last-name columns");
        assert_eq!((err.line, err.code), (1, "duplicate_column"));
        let err = parse_annex1("a.xlsx", b"PK\x03\x04 not really a zip").expect_err("garbage");
        assert_eq!((err.line, err.code), (0, "unreadable_file"));
    }

    #[test]
    fn excel_serials() {
        assert_eq!(excel_serial_to_date(46032.0, false).as_deref(), Some("2026-01-10"));
        assert_eq!(excel_serial_to_date(46032.75, false).as_deref(), Some("2026-01-10"));
        assert_eq!(excel_serial_to_date(1.0, false).as_deref(), Some("1900-01-01"));
        assert_eq!(excel_serial_to_date(59.0, false).as_deref(), Some("1900-02-28"));
        assert_eq!(excel_serial_to_date(60.0, false), None);
        assert_eq!(excel_serial_to_date(61.0, false).as_deref(), Some("1900-03-01"));
        assert_eq!(excel_serial_to_date(0.0, true).as_deref(), Some("1904-01-01"));
        assert_eq!(excel_serial_to_date(44570.0, true).as_deref(), Some("2026-01-10"));
        assert_eq!(excel_serial_to_date(f64::NAN, false), None);
        assert_eq!(excel_serial_to_date(-3.0, false), None);
    }

    fn one_sheet_per_list() -> Vec<u8> {
        use fixture::Cell::*;
        xlsx(&[
            ("Notice", vec![(1, vec![S("Remplir une ligne par agent.")])]),
            (
                "Accès ouverts",
                vec![
                    (1, vec![S("Annexe 1 – accès ouverts")]),
                    (3, vec![S("NOM"), S("Prénom(s)"), S("Courriel"), S("Qualité / fonction")]),
                    (4, vec![S("N'Diaye"), S("Éloïse"), S("e.ndiaye@cc-girou.fr"), S("Chargée de mission")]),
                    (5, vec![S("Dupont"), S(""), S("m.dupont@cc-girou.fr"), S("Agent")]),
                    (7, vec![S("Durand"), S("Luc"), S("l.durand@cc-girou.fr"), S("Animateur")]),
                ],
            ),
            (
                "Accès clôturés",
                vec![
                    (
                        1,
                        vec![S("Nom de famille"), S("Prénoms"), S("Adresse mail"), S("Fonction"), S("Date de clôture")],
                    ),
                    (2, vec![S("Martin"), S("Paul"), S("p.martin@cc-girou.fr"), S("Agent d'accueil"), D(46032.0)]),
                    (3, vec![S("Petit"), S("Léa"), S("l.petit@cc-girou.fr"), S("Référente"), S("11/01/2026")]),
                    (4, vec![S("Roux"), S("Jean"), S("j.roux@cc-girou.fr"), S("Agent"), N(46034.0)]),
                    (5, vec![S("Blanc"), S("Eve"), S("e.blanc@cc-girou.fr"), S("Agent"), S("bientôt")]),
                ],
            ),
        ])
        .expect("a small workbook")
    }

    #[test]
    fn xlsx_one_sheet_per_list() {
        let parsed = parse_annex1("annexe1.xlsx", &one_sheet_per_list()).expect("parses");
        let seen: Vec<(Option<&str>, usize, ListKind, &str)> =
            parsed.rows.iter().map(|r| (r.sheet.as_deref(), r.line, r.list, r.email.as_str())).collect();
        assert_eq!(
            seen,
            [
                (Some("Accès ouverts"), 4, ListKind::Open, "e.ndiaye@cc-girou.fr"),
                (Some("Accès ouverts"), 7, ListKind::Open, "l.durand@cc-girou.fr"),
                (Some("Accès clôturés"), 2, ListKind::Closed, "p.martin@cc-girou.fr"),
                (Some("Accès clôturés"), 3, ListKind::Closed, "l.petit@cc-girou.fr"),
                (Some("Accès clôturés"), 4, ListKind::Closed, "j.roux@cc-girou.fr"),
            ]
        );
        assert_eq!(parsed.rows[0].given_name, "Éloïse");
        assert_eq!(parsed.rows[0].family_name, "N'Diaye");
        let dates: Vec<Option<&str>> = parsed.rows[2..].iter().map(|r| r.closure_date.as_deref()).collect();
        assert_eq!(dates, [Some("2026-01-10"), Some("2026-01-11"), Some("2026-01-12")]);

        let problems: Vec<(Option<&str>, usize, &str)> =
            parsed.problems.iter().map(|p| (p.sheet.as_deref(), p.line, p.code)).collect();
        assert_eq!(problems, [(Some("Accès ouverts"), 5, "missing_field"), (Some("Accès clôturés"), 5, "bad_date")]);
    }

    #[test]
    fn xlsx_one_sheet_with_list_column() {
        use fixture::Cell::*;
        let book = xlsx(&[
            (
                "Feuil1",
                vec![
                    (
                        2,
                        vec![
                            S("Liste"),
                            S("Nom"),
                            S("Prénom"),
                            S("Email"),
                            S("Fonction"),
                            S("Date de fin d'habilitation"),
                        ],
                    ),
                    (3, vec![S("Ouvert"), S("Dupont"), S("Marie"), S("m@cc-girou.fr"), S("Agent")]),
                    (
                        4,
                        vec![S("Clôture demandée"), S("Martin"), S("Paul"), S("p@cc-girou.fr"), S("Agent"), D(46032.0)],
                    ),
                    (5, vec![S("peut-être"), S("Roux"), S("Jean"), S("j@cc-girou.fr"), S("Agent")]),
                ],
            ),
            ("Feuil2", vec![]),
        ])
        .expect("a small workbook");
        let parsed = parse_annex1("annexe1.xlsx", &book).expect("parses");
        let seen: Vec<(usize, ListKind)> = parsed.rows.iter().map(|r| (r.line, r.list)).collect();
        assert_eq!(seen, [(3, ListKind::Open), (4, ListKind::Closed)]);
        assert_eq!(parsed.rows[1].closure_date.as_deref(), Some("2026-01-10"));
        assert_eq!(parsed.rows[0].sheet.as_deref(), Some("Feuil1"));
        let p = only_problem(&parsed);
        assert_eq!((p.sheet.as_deref(), p.line, p.code), (Some("Feuil1"), 5, "unknown_list"));
    }

    #[test]
    fn xlsx_fatal_problems() {
        use fixture::Cell::*;
        let book = xlsx(&[("Feuil1", vec![(1, vec![S("Nom"), S("Prénom"), S("Email"), S("Fonction")])])])
            .expect("a small workbook");
        let err = parse_annex1("a.xlsx", &book).expect_err("no list column and no sheet per list");
        assert_eq!((err.sheet.as_deref(), err.line, err.code), (Some("Feuil1"), 1, "missing_column"));

        let book = xlsx(&[("Accès ouverts", vec![(1, vec![S("Nom"), S("Prénom"), S("Fonction")])])])
            .expect("a small workbook");
        let err = parse_annex1("a.xlsx", &book).expect_err("no email column");
        assert_eq!((err.sheet.as_deref(), err.line, err.code), (Some("Accès ouverts"), 1, "missing_column"));

        let book = xlsx(&[("Feuil1", vec![(1, vec![S("Bonjour")])])]).expect("a small workbook");
        let err = parse_annex1("a.xlsx", &book).expect_err("nothing like annex 1");
        assert_eq!((err.line, err.code), (0, "no_list_sheet"));
    }

    fn csvish() -> impl Strategy<Value = String> {
        let header = prop_oneof![
            Just(String::new()),
            Just(HEADER.to_string()),
            Just("Statut,Nom,Prénoms,Email,Fonction,Date de clôture\n".to_string()),
        ];
        (header, "[;,\"\n\r\t a-zA-Zéô0-9/@.:-]{0,300}").prop_map(|(h, body)| h + &body)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                                 ext in prop_oneof![Just("csv"), Just("xlsx"), Just("ods"), Just("xls")]) {
            let _ = parse_annex1(&format!("f.{ext}"), &bytes);
        }

        #[test]
        fn never_panics_on_csvish_text(text in csvish()) {
            if let Ok(parsed) = parse_annex1("f.csv", text.as_bytes()) {
                for row in &parsed.rows {
                    prop_assert!(row.line >= 2);
                    prop_assert!(!row.email.is_empty() && !row.family_name.is_empty());
                }
            }
            let _ = parse_annex1("f.xlsx", text.as_bytes());
        }

        #[test]
        fn never_panics_on_damaged_xlsx(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                        cut in any::<prop::sample::Index>()) {
            let mut book = one_sheet_per_list();
            for (at, byte) in flips {
                let i = at.index(book.len());
                book[i] = byte;
            }
            let _ = parse_annex1("f.xlsx", &book);
            let keep = cut.index(book.len());
            let _ = parse_annex1("f.xlsx", &book[..keep]);
        }
    }
}
