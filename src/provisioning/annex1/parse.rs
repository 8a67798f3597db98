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
//! bounds of `limits.rs`. Both give sheets of cells (`cell.rs`), whose header
//! row is found by `header.rs` and whose people are checked by `row.rs`.
//! Line numbers are those of the file (header row = 1 in the canonical
//! layout); for workbooks, the row number in its sheet.

use std::sync::Arc;

use super::limits::{self, MAX_CONCURRENT_PARSES};
use super::row::AnnexRow;
use super::{text, workbook};

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
    if matches!(ext.as_str(), "xlsx" | "xlsm" | "ods") && looks_like_text(bytes) {
        return Err(fatal(
            0,
            None,
            code::UNREADABLE_FILE,
            format!(
                "Le fichier « {file_name} » porte l'extension .{ext} mais c'est un fichier texte, pas un classeur \
                 (un CSV renommé ?). Renommez-le en .csv, ou ouvrez-le dans votre tableur et enregistrez-le au \
                 format .{ext}."
            ),
        ));
    }
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

/// Text rather than a workbook: not an archive (zip) nor an OLE container,
/// and its first 4 KiB hold no control byte but tab, line breaks and form
/// feed, in UTF-8, Windows-1252 or UTF-16 with a BOM (the CSV encodings).
fn looks_like_text(bytes: &[u8]) -> bool {
    const ZIP: &[u8] = b"PK\x03\x04";
    const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0];
    if bytes.is_empty() || bytes.starts_with(ZIP) || bytes.starts_with(OLE) {
        return false;
    }
    let head = &bytes[..bytes.len().min(4096)];
    let little_endian = match head {
        [0xFF, 0xFE, ..] => Some(true),
        [0xFE, 0xFF, ..] => Some(false),
        _ => None,
    };
    match little_endian {
        Some(le) => head[2..]
            .chunks_exact(2)
            .map(|p| if le { u16::from_le_bytes([p[0], p[1]]) } else { u16::from_be_bytes([p[0], p[1]]) })
            .all(|unit| !is_control(unit)),
        None => head.iter().all(|b| !is_control(u16::from(*b))),
    }
}

/// A control character a CSV does not hold: below space, but tab, line
/// feed, form feed and carriage return.
fn is_control(unit: u16) -> bool {
    unit < 0x20 && !matches!(unit, 0x09 | 0x0A | 0x0C | 0x0D)
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

pub(super) fn fatal(line: usize, sheet: Option<String>, code: &'static str, message: String) -> ParseProblem {
    ParseProblem { line, sheet, email: None, code, message }
}

#[cfg(test)]
pub(super) mod samples {
    //! Small files the tests of the parser share.

    use super::*;

    pub(crate) const CANONICAL: &str =
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation
ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;
ouvert;N'Diaye;Jean-Éric;je.ndiaye@cc-girou.fr;Responsable petite enfance;
clôturé;Martin;Paul;paul.martin@cc-girou.fr;Agent d'accueil;2026-01-10
";

    pub(crate) const HEADER: &str =
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation\n";

    pub(crate) const GOOD: &str = "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;\n";

    pub(crate) fn csv_ok(text: &str) -> ParsedAnnex {
        parse_annex1("annexe1.csv", text.as_bytes()).expect("the file parses")
    }

    pub(crate) fn only_problem(parsed: &ParsedAnnex) -> &ParseProblem {
        assert_eq!(parsed.problems.len(), 1, "{:#?}", parsed.problems);
        &parsed.problems[0]
    }

    /// The one problem of the file with `bad` at line 3, between two good rows.
    pub(crate) fn bad_row_problem(bad: &str) -> ParseProblem {
        let mut parsed = with_bad_row(bad);
        only_problem(&parsed);
        parsed.problems.remove(0)
    }

    /// The file with `bad` at line 3, between two good rows.
    pub(crate) fn with_bad_row(bad: &str) -> ParsedAnnex {
        let parsed = csv_ok(&format!("{HEADER}{GOOD}{bad}\n{GOOD}"));
        assert_eq!(parsed.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4]);
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::super::row::ListKind;
    use super::samples::*;
    use super::*;
    use crate::provisioning::annex1::fixture::{self, xlsx};
    use proptest::prelude::*;

    #[test]
    fn a_csv_named_as_a_workbook_is_told_in_french() {
        let latin1: Vec<u8> = CANONICAL.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect();
        let utf16: Vec<u8> =
            [0xFF, 0xFE].into_iter().chain(CANONICAL.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        for (name, bytes) in [
            ("annexe1.xlsx", CANONICAL.as_bytes().to_vec()),
            ("annexe1.ods", CANONICAL.as_bytes().to_vec()),
            ("annexe1.xlsx", latin1),
            ("annexe1.XLSX", utf16),
        ] {
            let e = parse_annex1(name, &bytes).expect_err(name);
            assert_eq!(e.code, code::UNREADABLE_FILE, "{name}");
            assert!(e.message.contains("c'est un fichier texte") && e.message.contains("Renommez-le en .csv"), "{e:?}");
            assert!(e.message.contains(name), "names the file: {}", e.message);
        }
        // The other side: a real workbook and binary bytes are not taken for text.
        let book = xlsx(&[("Feuil1", vec![(1, vec![fixture::Cell::S("Liste")])])]).expect("a workbook");
        assert!(!looks_like_text(&book));
        assert!(!looks_like_text(&[0x00, 0x01, 0x02, b'a']));
        assert!(!looks_like_text(b""));
        assert!(looks_like_text(CANONICAL.as_bytes()));
    }

    proptest! {
        /// Any text of printable characters, whatever its encoding of the
        /// three a CSV comes in, is recognised as text.
        #[test]
        fn printable_text_is_text(s in "[ -~àéèçÉôœ€\t\r\n]{1,300}") {
            prop_assert!(looks_like_text(s.as_bytes()));
            let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain(s.encode_utf16().flat_map(u16::to_le_bytes)).collect();
            prop_assert!(looks_like_text(&utf16));
        }
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
    fn title_rows_above_header_keep_file_lines() {
        let text = "Annexe 1 : liste des habilitations, CC du Girou\n\n".to_string() + CANONICAL;
        let parsed = csv_ok(&text);
        assert_eq!(parsed.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [4, 5, 6]);
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
    fn other_fatal_problems() {
        let err = parse_annex1("a.csv", b"").expect_err("empty");
        assert_eq!((err.line, err.code), (0, "empty_file"));
        let err = parse_annex1("annexe.pdf", b"%PDF").expect_err("pdf");
        assert_eq!((err.line, err.code), (0, "unknown_format"));
        let err = parse_annex1("annexe", b"x").expect_err("no extension");
        assert_eq!(err.code, "unknown_format");
        let err = parse_annex1("a.xlsx", b"PK\x03\x04 not really a zip").expect_err("garbage");
        assert_eq!((err.line, err.code), (0, "unreadable_file"));
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
