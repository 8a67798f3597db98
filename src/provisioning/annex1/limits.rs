//! The bounds on an annex-1 file, checked before anything is allocated for
//! it. An annex has six columns and a few thousand rows; these limits leave
//! a wide margin above that and keep the worst crafted file (sparse or huge
//! declared ranges, millions of cells, shared-string and zip bombs) to a
//! bounded amount of memory and CPU. README.md "Input limits" lists them.

use super::parse::{ParseProblem, code};

/// Size of the file as uploaded or read from disk.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Last row (1-based, as the file numbers it) that may hold a value.
pub const MAX_ROWS: usize = 10_000;
/// Last column that may hold a value (64 = column `BL`).
pub const MAX_COLUMNS: usize = 64;
/// Fields on one CSV record, empty or not (trailing separators included).
pub const MAX_CSV_FIELDS: usize = 1_024;
/// Worksheets in a workbook (hidden ones included).
pub const MAX_SHEETS: usize = 32;
/// Cells holding a value, in the whole file.
pub const MAX_CELLS: usize = 200_000;
/// Text of one cell, in bytes (UTF-8).
pub const MAX_CELL_BYTES: usize = 4 * 1024;
/// Text of all cells together, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;
/// Parts (files) inside a workbook's zip archive.
pub const MAX_ARCHIVE_ENTRIES: usize = 1_000;
/// One part of the archive once decompressed (the sheet XML, the shared
/// strings, …).
pub const MAX_PART_BYTES: u64 = 16 * 1024 * 1024;
/// All parts together once decompressed.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 48 * 1024 * 1024;
/// XML elements read in a sheet, values or not (bounds the CPU spent on a
/// sheet of millions of empty cells).
pub const MAX_XML_CELLS: usize = 2_000_000;
/// Annex-1 files parsed at the same time; the others wait their turn.
pub const MAX_CONCURRENT_PARSES: usize = 2;

/// The spreadsheet name of a cell: `A1`, `BL10000`, `XFD1048576`.
/// `row` is 1-based, `col` 0-based.
pub fn cell_name(row: usize, col: usize) -> String {
    let mut letters = Vec::new();
    let mut n = col + 1;
    while n > 0 {
        let rem = (n - 1) % 26;
        letters.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    format!("{}{row}", String::from_utf8_lossy(&letters))
}

/// Where a cell is, for messages: a workbook cell by its name and sheet, a
/// CSV field by its line and position.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    Sheet { name: &'a str, row: usize, col: usize },
    Csv { line: usize, field: usize },
}

impl Place<'_> {
    fn line(&self) -> usize {
        match self {
            Place::Sheet { row, .. } => *row,
            Place::Csv { line, .. } => *line,
        }
    }

    fn sheet(&self) -> Option<String> {
        match self {
            Place::Sheet { name, .. } => Some((*name).to_string()),
            Place::Csv { .. } => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Place::Sheet { name, row, col } => format!("la cellule {} de la feuille « {name} »", cell_name(*row, *col)),
            Place::Csv { line, field } => format!("le champ {} de la ligne {line}", field + 1),
        }
    }
}

/// What the cells of a file have used of the limits so far.
#[derive(Debug, Default)]
pub struct Budget {
    cells: usize,
    text_bytes: usize,
}

impl Budget {
    /// Admits a cell holding `text_len` bytes of text at `place`, or says
    /// which limit it breaks. Cells without a value are not admitted (they
    /// are skipped wherever they are).
    pub fn admit(&mut self, place: Place<'_>, text_len: usize) -> Result<(), ParseProblem> {
        let too_large = |code: &'static str, why: String| ParseProblem {
            line: place.line(),
            sheet: place.sheet(),
            email: None,
            code,
            message: format!("{} {why}", capitalised(&place.describe())),
        };
        if place.line() > MAX_ROWS {
            return Err(too_large(
                code::SHEET_TOO_LARGE,
                format!(
                    "contient une valeur au-delà de la ligne {MAX_ROWS}, la dernière qu'une annexe 1 peut occuper."
                ),
            ));
        }
        let col = match place {
            Place::Sheet { col, .. } => col,
            Place::Csv { field, .. } => field,
        };
        if col >= MAX_COLUMNS {
            return Err(too_large(
                code::SHEET_TOO_LARGE,
                format!(
                    "contient une valeur au-delà de la colonne {} ({MAX_COLUMNS} colonnes au plus).",
                    cell_name(1, MAX_COLUMNS - 1).trim_end_matches('1')
                ),
            ));
        }
        if text_len > MAX_CELL_BYTES {
            return Err(too_large(
                code::CELL_TOO_LONG,
                format!("contient {text_len} octets de texte ({MAX_CELL_BYTES} au plus par cellule)."),
            ));
        }
        self.cells += 1;
        self.text_bytes += text_len;
        if self.cells > MAX_CELLS {
            return Err(too_large(
                code::SHEET_TOO_LARGE,
                format!("dépasse le nombre de cellules remplies qu'une annexe 1 peut compter ({MAX_CELLS})."),
            ));
        }
        if self.text_bytes > MAX_TEXT_BYTES {
            return Err(too_large(
                code::SHEET_TOO_LARGE,
                format!("dépasse le volume de texte qu'une annexe 1 peut contenir ({} Mo).", MAX_TEXT_BYTES >> 20),
            ));
        }
        Ok(())
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The whole file is over [`MAX_FILE_BYTES`].
pub fn check_file_size(len: usize) -> Result<(), ParseProblem> {
    if len > MAX_FILE_BYTES {
        return Err(ParseProblem {
            line: 0,
            sheet: None,
            email: None,
            code: code::FILE_TOO_LARGE,
            message: format!(
                "Le fichier pèse {} octets : une annexe 1 ne peut dépasser {} Mo.",
                len,
                MAX_FILE_BYTES >> 20
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_names() {
        assert_eq!(cell_name(1, 0), "A1");
        assert_eq!(cell_name(7, 25), "Z7");
        assert_eq!(cell_name(7, 26), "AA7");
        assert_eq!(cell_name(10_000, 63), "BL10000");
        assert_eq!(cell_name(1_048_576, 16_383), "XFD1048576");
    }

    #[test]
    fn budget_admits_up_to_each_limit_and_not_past_it() {
        let at = |row, col| Place::Sheet { name: "Feuil1", row, col };
        let mut b = Budget::default();
        b.admit(at(MAX_ROWS, MAX_COLUMNS - 1), MAX_CELL_BYTES).expect("the last cell, full");
        let e = b.admit(at(MAX_ROWS + 1, 0), 1).expect_err("one row too far");
        assert_eq!((e.code, e.line), (code::SHEET_TOO_LARGE, MAX_ROWS + 1));
        assert!(e.message.contains("A10001"), "{}", e.message);
        let e = b.admit(at(2, MAX_COLUMNS), 1).expect_err("one column too far");
        assert!(e.message.contains("BM2") && e.message.contains("BL"), "{}", e.message);
        let e = b.admit(Place::Csv { line: 3, field: 1 }, MAX_CELL_BYTES + 1).expect_err("too long");
        assert_eq!(e.code, code::CELL_TOO_LONG);
        assert!(e.message.starts_with("Le champ 2 de la ligne 3"), "{}", e.message);

        let mut b = Budget::default();
        for _ in 0..MAX_CELLS {
            b.admit(at(1, 0), 0).expect("within the cell count");
        }
        assert_eq!(b.admit(at(1, 0), 0).expect_err("one cell too many").code, code::SHEET_TOO_LARGE);

        let mut b = Budget::default();
        for _ in 0..MAX_TEXT_BYTES / MAX_CELL_BYTES {
            b.admit(at(1, 0), MAX_CELL_BYTES).expect("within the text volume");
        }
        assert_eq!(b.admit(at(1, 0), 1).expect_err("one byte too many").code, code::SHEET_TOO_LARGE);
    }

    #[test]
    fn file_size() {
        assert!(check_file_size(MAX_FILE_BYTES).is_ok());
        assert_eq!(check_file_size(MAX_FILE_BYTES + 1).expect_err("too big").code, code::FILE_TOO_LARGE);
    }
}
