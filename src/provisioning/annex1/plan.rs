//! The plan of an annex-1 import (R8–R11): what it would open, reopen,
//! update, close and leave alone, and every problem, by file line. Pure:
//! the caller reads the partner's accounts and applies the plan.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use time::Date;

use super::parse::{ParseProblem, ParsedAnnex};
use super::row::{AnnexRow, ListKind};
use crate::accounts::ProfessionalEmail;
use crate::dates::{format_iso, parse_iso};
use crate::provisioning::convention::ConventionState;
use crate::provisioning::webmail::is_public_webmail;
use crate::store::accounts::PartnerAccountRow;

/// One person of the plan (PRODUCT.md "Annex-1 plan").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonEntry {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub email: String,
    pub family_name: String,
    pub given_name: String,
    pub function: String,
    /// The existing account concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// For closures: when the closure was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closure_date: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub partner_id: String,
    pub transmitted: String,
    pub open: Vec<PersonEntry>,
    pub reopen: Vec<PersonEntry>,
    pub update: Vec<PersonEntry>,
    pub close: Vec<PersonEntry>,
    pub unchanged: Vec<PersonEntry>,
    pub errors: Vec<ParseProblem>,
    pub warnings: Vec<ParseProblem>,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.open.len() + self.reopen.len() + self.update.len() + self.close.len()
    }

    /// The addresses of the accesses to open, normalised.
    pub fn opened_emails(&self) -> Vec<String> {
        self.open.iter().map(|e| email_key(&e.email)).collect()
    }

    /// An address is one account: a person to open whose address already
    /// belongs to an account outside the partner is an error of their line,
    /// found by the dry run, rather than a failure of the apply.
    pub fn refuse_taken(&mut self, taken: &HashSet<String>) {
        let (refused, kept) =
            std::mem::take(&mut self.open).into_iter().partition(|e| taken.contains(&email_key(&e.email)));
        self.open = kept;
        let refused: Vec<PersonEntry> = refused;
        for e in refused {
            let message = format!("{} est déjà l'adresse d'un compte hors de ce partenaire.", e.email);
            self.errors.push(ParseProblem {
                line: e.line,
                sheet: e.sheet,
                email: Some(e.email),
                code: "email_taken",
                message,
            });
        }
    }
}

pub struct PartnerView<'a> {
    pub id: &'a str,
    pub email_domains: &'a [String],
    pub convention: ConventionState,
}

fn problem(row: &AnnexRow, code: &'static str, message: String) -> ParseProblem {
    ParseProblem { line: row.line, sheet: row.sheet.clone(), email: Some(row.email.clone()), code, message }
}

/// About an existing access rather than a line of the file.
fn account_problem(a: &PartnerAccountRow, code: &'static str, message: String) -> ParseProblem {
    ParseProblem { line: 0, sheet: None, email: Some(a.email.clone()), code, message }
}

fn entry(row: &AnnexRow, account_id: Option<&str>, closure_date: Option<String>) -> PersonEntry {
    PersonEntry {
        line: row.line,
        sheet: row.sheet.clone(),
        email: row.email.clone(),
        family_name: row.family_name.clone(),
        given_name: row.given_name.clone(),
        function: row.function.clone(),
        account_id: account_id.map(str::to_string),
        closure_date,
    }
}

/// The key an email is compared by: its normalised form when it is an
/// address, else as written, trimmed and in lower case.
fn email_key(written: &str) -> String {
    ProfessionalEmail::parse(written)
        .map(|e| e.normalized().to_string())
        .unwrap_or_else(|_| written.trim().to_lowercase())
}

/// Two years before `day` (R9: closures older than that must have left the annex).
fn two_years_before(day: Date) -> Date {
    day.replace_year(day.year() - 2).unwrap_or_else(|_| day.saturating_sub(time::Duration::days(730)))
}

pub fn build_plan(
    partner: &PartnerView,
    transmitted: Date,
    parsed: ParsedAnnex,
    existing: &[PartnerAccountRow],
) -> Plan {
    let mut plan = Plan {
        partner_id: partner.id.to_string(),
        transmitted: format_iso(transmitted),
        errors: parsed.problems,
        ..Default::default()
    };
    let by_email: HashMap<&str, &PartnerAccountRow> =
        existing.iter().map(|a| (a.email_normalized.as_str(), a)).collect();
    let mut seen: HashMap<String, (usize, ListKind)> = HashMap::new();
    // People whose row has an error of its own (a bad cell, a bad date…):
    // that error is theirs; they are not also "in no list" below.
    let mut refused: HashSet<String> = plan.errors.iter().filter_map(|p| p.email.as_deref()).map(email_key).collect();
    let limit = two_years_before(transmitted);

    for row in &parsed.rows {
        let email = match ProfessionalEmail::parse(&row.email) {
            Ok(e) => e,
            Err(_) => {
                plan.errors.push(problem(
                    row,
                    "invalid_email",
                    format!("Adresse électronique mal formée : « {} ».", row.email),
                ));
                continue;
            }
        };
        if partner.email_domains.is_empty() {
            if is_public_webmail(email.domain()) {
                plan.errors.push(problem(
                    row,
                    "public_webmail",
                    format!("{email} n'est pas une adresse professionnelle (messagerie grand public)."),
                ));
                continue;
            }
        } else if !partner.email_domains.iter().any(|d| d.eq_ignore_ascii_case(email.domain())) {
            plan.errors.push(problem(
                row,
                "outside_domains",
                format!("{email} n'appartient pas aux domaines du partenaire ({}).", partner.email_domains.join(", ")),
            ));
            refused.insert(email_key(&row.email));
            continue;
        }
        if let Some((first_line, first_list)) = seen.get(email.normalized()) {
            let (code, message) = if *first_list == row.list {
                ("duplicate_person", format!("{email} figure deux fois (déjà ligne {first_line})."))
            } else {
                ("in_both_lists", format!("{email} figure dans les deux listes (aussi ligne {first_line})."))
            };
            plan.errors.push(problem(row, code, message));
            continue;
        }
        seen.insert(email.normalized().to_string(), (row.line, row.list));
        let account = by_email.get(email.normalized()).copied();
        match row.list {
            ListKind::Open => match account {
                None => plan.open.push(entry(row, None, None)),
                Some(a) if a.state == "closed" => plan.reopen.push(entry(row, Some(&a.id), None)),
                Some(a) => {
                    let same = a.family_name == row.family_name
                        && a.given_name == row.given_name
                        && a.function == row.function;
                    if same {
                        plan.unchanged.push(entry(row, Some(&a.id), None));
                    } else {
                        plan.update.push(entry(row, Some(&a.id), None));
                    }
                }
            },
            ListKind::Closed => {
                let requested = match &row.closure_date {
                    Some(d) => match parse_iso(d) {
                        Some(date) => date,
                        None => {
                            plan.errors.push(problem(row, "bad_date", format!("Date de clôture illisible : « {d} ».")));
                            refused.insert(email_key(&row.email));
                            continue;
                        }
                    },
                    None => transmitted,
                };
                if requested < limit {
                    plan.errors.push(problem(
                        row,
                        "closure_too_old",
                        format!(
                            "La clôture de {email} date du {} : plus de 2 ans avant la transmission, elle ne doit plus figurer dans l'annexe.",
                            format_iso(requested)
                        ),
                    ));
                    refused.insert(email_key(&row.email));
                    continue;
                }
                let date = Some(format_iso(requested));
                match account {
                    Some(a) if a.state != "closed" => plan.close.push(entry(row, Some(&a.id), date)),
                    Some(a) => plan.unchanged.push(entry(row, Some(&a.id), date)),
                    None => {
                        plan.warnings.push(problem(
                            row,
                            "closed_unknown",
                            format!("{email} figure dans la liste des clôtures mais n'a jamais eu d'accès."),
                        ));
                        plan.unchanged.push(entry(row, None, date));
                    }
                }
            }
        }
    }

    // R11: every open access must be listed; recent closures should be.
    for a in existing {
        if seen.contains_key(&a.email_normalized) || refused.contains(&a.email_normalized) {
            continue;
        }
        if a.state != "closed" {
            plan.errors.push(account_problem(
                a,
                "missing_open_access",
                format!(
                    "{} a un accès ouvert mais ne figure dans aucune liste : l'annexe doit lister tous les accès ouverts.",
                    a.email
                ),
            ));
        } else if a.closure_requested_on.as_deref().and_then(parse_iso).is_some_and(|d| d >= limit) {
            plan.warnings.push(account_problem(
                a,
                "closed_missing",
                format!(
                    "{} a été clôturé il y a moins de 2 ans et devrait figurer dans la liste des clôtures.",
                    a.email
                ),
            ));
        }
    }

    let opens_something = !plan.open.is_empty() || !plan.reopen.is_empty();
    if opens_something && !partner.convention.allows_openings() {
        plan.errors.push(ParseProblem {
            line: 0,
            sheet: None,
            email: None,
            code: "convention_not_in_force",
            message: format!(
                "La convention du partenaire {} n'est pas en vigueur : aucun accès ne peut être ouvert.",
                partner.id
            ),
        });
    }
    plan
}

/// The plan as the dry run prints it for a person.
pub fn render_text(plan: &Plan, applied: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Annexe 1 du partenaire {} transmise le {} : {}",
        plan.partner_id,
        plan.transmitted,
        if applied {
            "appliquée"
        } else if plan.errors.is_empty() {
            "simulation, applicable"
        } else {
            "simulation, NON applicable"
        }
    );
    for (title, list) in [
        ("Accès à ouvrir", &plan.open),
        ("Accès à rouvrir", &plan.reopen),
        ("Fiches à mettre à jour", &plan.update),
        ("Accès à clôturer", &plan.close),
        ("Sans changement", &plan.unchanged),
    ] {
        let _ = writeln!(out, "\n{title} ({})", list.len());
        for e in list {
            let _ = writeln!(
                out,
                "  ligne {:>4}  {:<40} {} {} — {}{}",
                e.line,
                e.email,
                e.given_name,
                e.family_name,
                e.function,
                e.closure_date.as_deref().map(|d| format!(" (clôture demandée le {d})")).unwrap_or_default()
            );
        }
    }
    for (title, list) in [("Erreurs", &plan.errors), ("Avertissements", &plan.warnings)] {
        let _ = writeln!(out, "\n{title} ({})", list.len());
        for p in list {
            let place = if p.line == 0 { "fichier".to_string() } else { format!("ligne {}", p.line) };
            let sheet = p.sheet.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
            let _ = writeln!(out, "  {place}{sheet}  {}  {}", p.code, p.message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn row(line: usize, list: ListKind, email: &str, closure: Option<&str>) -> AnnexRow {
        AnnexRow {
            line,
            sheet: None,
            list,
            family_name: "Dupont".into(),
            given_name: "Marie".into(),
            email: email.into(),
            function: "Agent".into(),
            closure_date: closure.map(str::to_string),
        }
    }

    fn account(email: &str, state: &str, closed_on: Option<&str>) -> PartnerAccountRow {
        PartnerAccountRow {
            id: format!("id-{email}"),
            email: email.into(),
            email_normalized: email.to_lowercase(),
            given_name: "Marie".into(),
            family_name: "Dupont".into(),
            function: "Agent".into(),
            state: state.into(),
            closure_requested_on: closed_on.map(str::to_string),
            closed_at: None,
        }
    }

    const IN_FORCE: ConventionState = ConventionState::InForce { term: date!(2027 - 01 - 01) };

    fn plan(rows: Vec<AnnexRow>, existing: &[PartnerAccountRow], domains: &[String], c: ConventionState) -> Plan {
        let partner = PartnerView { id: "p", email_domains: domains, convention: c };
        build_plan(&partner, date!(2026 - 06 - 01), ParsedAnnex { rows, problems: vec![] }, existing)
    }

    fn codes(p: &Plan) -> Vec<(&'static str, usize)> {
        p.errors.iter().map(|e| (e.code, e.line)).collect()
    }

    #[test]
    fn sorts_people_into_the_five_lists() {
        let existing = [
            account("keep@x.fr", "active", None),
            account("rename@x.fr", "active", None),
            account("back@x.fr", "closed", Some("2026-01-01")),
            account("leave@x.fr", "pending", None),
        ];
        let mut renamed = row(3, ListKind::Open, "Rename@x.fr", None);
        renamed.function = "Directrice".into();
        let p = plan(
            vec![
                row(2, ListKind::Open, "keep@x.fr", None),
                renamed,
                row(4, ListKind::Open, "back@x.fr", None),
                row(5, ListKind::Open, "new@x.fr", None),
                row(6, ListKind::Closed, "leave@x.fr", Some("2026-05-20")),
            ],
            &existing,
            &[],
            IN_FORCE,
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.unchanged.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2]);
        assert_eq!(p.update.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3]);
        assert_eq!(p.reopen.iter().map(|e| e.line).collect::<Vec<_>>(), vec![4]);
        assert_eq!(p.open.iter().map(|e| e.line).collect::<Vec<_>>(), vec![5]);
        assert_eq!(p.close[0].closure_date.as_deref(), Some("2026-05-20"));
    }

    #[test]
    fn each_error_alone_with_its_line() {
        type Case = (Vec<AnnexRow>, Vec<PartnerAccountRow>, Vec<String>, ConventionState, (&'static str, usize));
        let cases: Vec<Case> = vec![
            (vec![row(2, ListKind::Open, "not-an-address", None)], vec![], vec![], IN_FORCE, ("invalid_email", 2)),
            (vec![row(3, ListKind::Open, "a@gmail.com", None)], vec![], vec![], IN_FORCE, ("public_webmail", 3)),
            (
                vec![row(2, ListKind::Open, "a@other.fr", None)],
                vec![],
                vec!["x.fr".into()],
                IN_FORCE,
                ("outside_domains", 2),
            ),
            (
                vec![row(2, ListKind::Open, "a@x.fr", None), row(3, ListKind::Open, "A@x.fr", None)],
                vec![],
                vec![],
                IN_FORCE,
                ("duplicate_person", 3),
            ),
            (
                vec![row(2, ListKind::Open, "a@x.fr", None), row(4, ListKind::Closed, "a@x.fr", None)],
                vec![],
                vec![],
                IN_FORCE,
                ("in_both_lists", 4),
            ),
            (vec![], vec![account("o@x.fr", "active", None)], vec![], IN_FORCE, ("missing_open_access", 0)),
            (
                vec![row(5, ListKind::Closed, "old@x.fr", Some("2024-05-31"))],
                vec![],
                vec![],
                IN_FORCE,
                ("closure_too_old", 5),
            ),
            (
                vec![row(2, ListKind::Open, "n@x.fr", None)],
                vec![],
                vec![],
                ConventionState::NotSigned,
                ("convention_not_in_force", 0),
            ),
        ];
        for (rows, existing, domains, convention, expected) in cases {
            let p = plan(rows, &existing, &domains, convention);
            assert_eq!(codes(&p), vec![expected]);
        }
    }

    #[test]
    fn the_other_side_of_each_rule_passes() {
        // Inside the partner's domains; a closure of exactly two years; a closed
        // person within two years listed as closed; no openings without convention.
        let p = plan(
            vec![row(2, ListKind::Open, "a@x.fr", None), row(3, ListKind::Closed, "b@x.fr", Some("2024-06-01"))],
            &[account("b@x.fr", "closed", Some("2024-06-01"))],
            &["x.fr".into()],
            IN_FORCE,
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let closing_only = plan(
            vec![row(2, ListKind::Closed, "c@x.fr", None)],
            &[account("c@x.fr", "active", None)],
            &[],
            ConventionState::Terminated { on: date!(2026 - 01 - 01) },
        );
        assert!(closing_only.errors.is_empty());
        assert_eq!(closing_only.close.len(), 1);
    }

    #[test]
    fn a_person_whose_row_is_refused_has_that_one_error() {
        let existing = [account("o@x.fr", "active", None), account("c@x.fr", "active", None)];
        // A bad cell: the parser skipped the row and said why, with the email.
        let bad_cell = ParseProblem {
            line: 2,
            sheet: None,
            email: Some("O@X.fr ".into()),
            code: "missing_field",
            message: "Champ obligatoire vide : « Nom ».".into(),
        };
        let partner = PartnerView { id: "p", email_domains: &[], convention: IN_FORCE };
        // A closure date the planner cannot read, for the other person.
        let parsed = ParsedAnnex {
            rows: vec![row(3, ListKind::Closed, "c@x.fr", Some("2026-13-45"))],
            problems: vec![bad_cell],
        };
        let p = build_plan(&partner, date!(2026 - 06 - 01), parsed, &existing);
        assert_eq!(codes(&p), vec![("missing_field", 2), ("bad_date", 3)]);
        // The other side: a listed access whose row is fine but whose email
        // is elsewhere is still missing.
        let p = plan(vec![row(2, ListKind::Open, "n@x.fr", None)], &existing[..1], &[], IN_FORCE);
        assert_eq!(codes(&p), vec![("missing_open_access", 0)]);
    }

    #[test]
    fn the_text_plan_is_french_to_its_last_line() {
        let p = plan(vec![row(2, ListKind::Open, "n@x.fr", None)], &[], &[], IN_FORCE);
        let text = render_text(&p, false);
        assert!(
            text.starts_with("Annexe 1 du partenaire p transmise le 2026-06-01 : simulation, applicable\n"),
            "{text}"
        );
        assert!(!text.contains("--apply"), "the CLI gives its own flags: {text}");
        assert!(text.trim_end().ends_with("Avertissements (0)"), "{text}");
        assert!(render_text(&p, true).contains(": appliquée\n"));
    }

    #[test]
    fn recent_closure_missing_is_a_warning() {
        let p = plan(vec![], &[account("gone@x.fr", "closed", Some("2026-01-01"))], &[], IN_FORCE);
        assert!(p.errors.is_empty());
        assert_eq!(p.warnings[0].code, "closed_missing");
        let old = plan(vec![], &[account("gone@x.fr", "closed", Some("2023-01-01"))], &[], IN_FORCE);
        assert!(old.warnings.is_empty());
    }
}
