//! What CSV and workbooks both give: sheets of numbered rows of cells, read
//! the same way afterwards (header, then people), and how a cell's text is
//! cleaned and compared.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

use crate::dates;

#[derive(Debug, Clone)]
pub(super) enum Cell {
    Text(String),
    Number(f64),
    Date { serial: f64, is_1904: bool },
}

impl Cell {
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            Cell::Text(s) => Cow::Borrowed(s),
            Cell::Number(n) => Cow::Owned(format_number(*n)),
            Cell::Date { serial, is_1904 } => Cow::Owned(
                dates::from_excel_serial(*serial, *is_1904)
                    .map(dates::format_iso)
                    .unwrap_or_else(|| format_number(*serial)),
            ),
        }
    }

    pub(super) fn is_blank(&self) -> bool {
        match self {
            Cell::Text(s) => Cell::is_blank_text(s),
            _ => false,
        }
    }

    pub(super) fn is_blank_text(s: &str) -> bool {
        s.chars().all(is_blank_char)
    }

    /// The date the cell holds, as `YYYY-MM-DD`.
    pub(super) fn date(&self) -> Option<String> {
        let date = match self {
            Cell::Text(s) => dates::parse_written(s.trim_matches(is_blank_char)),
            Cell::Number(n) => dates::from_excel_serial(*n, false),
            Cell::Date { serial, is_1904 } => dates::from_excel_serial(*serial, *is_1904),
        };
        date.map(dates::format_iso)
    }
}

/// Whitespace, and the zero-width characters spreadsheets leave behind.
pub(super) fn is_blank_char(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{2060}')
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

/// The first character of `s` that has no place in a name, an address or
/// a function: a control character (NUL, escape, …; a line break or tab is
/// only a space there) or an invisible formatting one (soft hyphen,
/// right-to-left override, joiners, tags), which would make two names look
/// alike or a log line read backwards. Zero-width spaces are blanks, see
/// [`is_blank_char`].
pub(super) fn hidden_char(s: &str) -> Option<char> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    s.chars().find(|&c| match c.general_category() {
        GeneralCategory::Control => !matches!(c, '\t' | '\n' | '\r'),
        GeneralCategory::Format => !is_blank_char(c),
        _ => false,
    })
}

pub(super) fn clean(s: &str) -> String {
    s.trim_matches(is_blank_char).to_string()
}

pub(super) fn collapse(s: &str) -> String {
    s.split(is_blank_char).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
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
