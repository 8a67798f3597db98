//! One person of annex 1: the row type, and the checks a row passes to
//! become one (list value, required fields, control characters, date).

use super::cell::{Cell, RawRow, RawSheet, clean, collapse, fold, hidden_char};
use super::header::{Columns, FIELDS, Field, HeaderCandidate};
use super::parse::{ParseProblem, ParsedAnnex, code};

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

/// Reads the data rows below `header`. `forced`: the list of the sheet in a
/// workbook with one sheet per list.
pub(super) fn read_rows(sheet: &RawSheet, header: &HeaderCandidate, forced: Option<ListKind>, out: &mut ParsedAnnex) {
    for row in sheet.rows.iter().skip(header.row_index + 1) {
        match AnnexRow::from_cells(sheet, row, &header.columns, forced) {
            Ok(Some(person)) => out.rows.push(person),
            Ok(None) => {}
            Err(problems) => out.problems.extend(problems),
        }
    }
}

impl AnnexRow {
    /// The person on `row`, every value checked: `Ok(None)` for a blank
    /// row, `Err` with every problem of the row (it is then skipped).
    fn from_cells(
        sheet: &RawSheet,
        row: &RawRow,
        cols: &Columns,
        forced: Option<ListKind>,
    ) -> Result<Option<AnnexRow>, Vec<ParseProblem>> {
        let raw = |f: Field| -> Option<&Cell> { cols[f.index()].and_then(|i| row.cells.get(i)) };
        let text = |f: Field| -> String { raw(f).map(|c| clean(&c.text())).unwrap_or_default() };
        // A row is blank when every recognised column is empty (notes in
        // other columns do not make a person).
        if FIELDS.iter().all(|f| raw(*f).is_none_or(Cell::is_blank)) {
            return Ok(None);
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
            Some(list) if problems.is_empty() => Ok(Some(AnnexRow {
                line: row.line,
                sheet: sheet.name.clone(),
                list,
                family_name,
                given_name,
                email,
                function,
                closure_date,
            })),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::ParseProblem;
    use super::super::parse::code;
    use super::super::parse::samples::{HEADER, bad_row_problem, csv_ok};
    use super::*;

    /// The problem of the bad row `row` (line 3), checked to be `code` and
    /// to name `mention`.
    fn problem(row: &str, code: &str, mention: &str) -> ParseProblem {
        let p = bad_row_problem(row);
        assert_eq!((p.line, p.code), (3, code), "{row:?}");
        assert!(p.message.contains(mention), "{row:?}: {}", p.message);
        p
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
    fn control_and_invisible_characters_are_refused_by_line() {
        for (bad, column) in [
            ("ouvert;Du\u{0}pont;Marie;m.dupont@cc-girou.fr;Agent;", "nom"),
            ("ouvert;Dupont;Ma\u{1b}rie;m.dupont@cc-girou.fr;Agent;", "prénom"),
            ("ouvert;Dupont;Marie;m.dupont@cc-girou.fr;Agent \u{202E}CTG;", "qualité/fonction"),
            ("ouvert;Dupont;Marie;m.dupont@cc-girou.fr;Ag\u{AD}ent;", "qualité/fonction"),
            ("ouvert;Dupont;Marie;m.du\u{7}pont@cc-girou.fr;Agent;", "adresse"),
        ] {
            problem(bad, code::CONTROL_CHARACTER, column);
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
    fn missing_field_alone() {
        let p = problem("ouvert;Dupont;;m.dupont@cc-girou.fr;Agent;", "missing_field", "prénom");
        assert_eq!(p.email.as_deref(), Some("m.dupont@cc-girou.fr"));
        let p = problem("ouvert;Dupont;Marie;;Agent;", "missing_field", "adresse électronique");
        assert_eq!(p.email, None);
        problem(";Dupont;Marie;m.dupont@cc-girou.fr;Agent;", "missing_field", "liste");
        // A short row (fewer fields than the header).
        problem("ouvert;Dupont;Marie;m.dupont@cc-girou.fr", "missing_field", "qualité/fonction");
    }

    #[test]
    fn unknown_list_alone() {
        let p = problem("en attente;Dupont;Marie;m.dupont@cc-girou.fr;Agent;", "unknown_list", "en attente");
        assert_eq!(p.email.as_deref(), Some("m.dupont@cc-girou.fr"));
    }

    #[test]
    fn bad_date_alone() {
        for bad in ["31/02/2026", "2026-13-01", "demain", "10/01/26"] {
            problem(&format!("clôturé;Dupont;Marie;m.dupont@cc-girou.fr;Agent;{bad}"), "bad_date", bad);
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
}
