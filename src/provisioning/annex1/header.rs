//! Finding the header row of annex 1: which of the first rows names the
//! columns, and which column holds which field, however it is spelled.

use super::cell::{Cell, RawRow, RawSheet, clean, fold};
use super::parse::{ParseProblem, code, fatal};

// ---------------------------------------------------------------------------
// Columns

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    List,
    FamilyName,
    GivenName,
    Email,
    Function,
    ClosureDate,
}

pub(super) const FIELDS: [Field; 6] =
    [Field::List, Field::FamilyName, Field::GivenName, Field::Email, Field::Function, Field::ClosureDate];

impl Field {
    pub(super) fn index(self) -> usize {
        self as usize
    }

    pub(super) fn label(self) -> &'static str {
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

// ---------------------------------------------------------------------------
// The header row

/// Column index of each [`Field`].
pub(super) type Columns = [Option<usize>; 6];

/// How far down the header row is looked for (title rows above it are allowed).
pub(super) const HEADER_SEARCH_ROWS: usize = 30;

pub(super) struct HeaderCandidate {
    /// Index in the sheet's rows: the people start below it.
    pub(super) row_index: usize,
    line: usize,
    pub(super) columns: Columns,
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

#[cfg(test)]
mod tests {
    use super::super::parse::code;
    use super::super::parse::samples::csv_ok;
    use super::super::parse_annex1;

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
    fn two_columns_for_one_field_are_fatal() {
        let err = parse_annex1("a.csv", "Liste;Nom;Nom de famille;Prénom;Mail;Fonction\n".as_bytes())
            .expect_err("two last-name columns");
        assert_eq!((err.line, err.code), (1, code::DUPLICATE_COLUMN));
    }
}
