//! Every page template rendered in both themes and both languages with a context like the
//! one its handler passes (and each variant a handler can produce: with an
//! error, each `done`, each review status, each plan action). In the
//! environment's strict mode a text no catalogue has fails the rendering,
//! so a template cannot ask for a key that does not exist.

use std::collections::BTreeSet;

use minijinja::{Value, context};
use serde_json::json;

use super::i18n::{Locale, texts};
use super::pages::{LOGO_PATH, Look, TEMPLATES, environment, html, in_look};
use crate::alerts::AlertView;
use crate::config::Theme;
use crate::provisioning::annex1::parse::ParseProblem;
use crate::provisioning::annex1::plan::{PersonEntry, Plan};
use crate::provisioning::review::{PartnerReview, ReviewStatus};

const LOCALES: [Locale; 2] = [Locale::Fr, Locale::En];

/// Both themes, the neutral one with an operator's name and logo.
fn looks() -> [Look; 2] {
    [
        Look { theme: Theme::Neutral, brand_name: "Caf de la Haute-Garonne".into(), has_logo: true },
        Look { theme: Theme::Dsfr, brand_name: "Coopération".into(), has_logo: false },
    ]
}

/// What `console::render` adds to every console page.
fn console(roles: &[&str], extra: Value) -> Value {
    context! {
        csrf => "c".repeat(43),
        admin_email => "admin@caf.fr",
        roles => roles,
        is_security => roles.contains(&"caf_security"),
        is_caf_habilitation => roles.contains(&"caf_habilitation"),
        is_habilitation => roles.contains(&"caf_habilitation") || roles.contains(&"partner_habilitation"),
        ..extra
    }
}

const CAF: &[&str] = &["caf_habilitation", "caf_security"];
const PARTNER: &[&str] = &["partner_habilitation"];

fn record(email: Option<&str>) -> serde_json::Value {
    json!({
        "seq": 7, "time": "2025-01-02T03:04:05.678Z", "kind": "signin", "outcome": "success",
        "email": email, "account_id": null, "partner_id": email.map(|_| "cc-girou"), "client_id": null,
        "ip": email.map(|_| "203.0.113.1"), "user_agent": null, "actor": "agent@cc-girou.fr",
        "details": {}, "details_text": "{}",
    })
}

fn person(line: usize, sheet: Option<&str>) -> PersonEntry {
    PersonEntry {
        line,
        sheet: sheet.map(str::to_string),
        email: "agent@cc-girou.fr".into(),
        family_name: "Martin".into(),
        given_name: "Anne".into(),
        function: "Instructrice".into(),
        account_id: None,
        closure_date: None,
    }
}

fn problem(email: Option<&str>) -> ParseProblem {
    ParseProblem {
        line: 3,
        sheet: email.map(|_| "Feuil1".to_string()),
        email: email.map(str::to_string),
        code: "bad_email",
        message: "Adresse invalide".into(),
    }
}

fn plan(with_errors: bool) -> Plan {
    let mut plan = Plan::default();
    plan.open.push(person(2, None));
    plan.reopen.push(person(3, Some("Feuil1")));
    plan.update.push(person(4, None));
    plan.close.push(person(5, None));
    plan.unchanged.push(person(6, None));
    plan.warnings.push(problem(None));
    if with_errors {
        plan.errors.push(problem(Some("x@y.fr")));
    }
    plan
}

fn plan_page(roles: &[&str], plan: &Plan, handle: Option<&str>, applied: bool) -> Value {
    console(
        roles,
        context! {
            partner_id => "cc-girou", partner_name => "CC du Girou", plan => Value::from_serialize(plan),
            changes => plan.changes(), handle => handle, applied => applied,
        },
    )
}

fn partner_summary(with_annexes: bool) -> serde_json::Value {
    json!({
        "id": "cc-girou", "name": "CC du Girou", "email_domains": ["cc-girou.fr"],
        "convention": {"signed_on": "2024-01-01", "non_renewal_notified_on": null,
                       "status": {"state": "in_force", "term": "2027-01-01"}},
        "annex1": with_annexes.then(|| json!({"transmitted_on": "2025-01-01", "checksum": "ab", "applied_at": "2025-01-01T00:00:00.000Z", "operator": "cli"})),
        "annex2": with_annexes.then(|| json!({"partner_id": "cc-girou", "habilitation_manager_name": "A B",
            "habilitation_manager_email": "a@cc-girou.fr", "security_officer_name": "C D",
            "security_officer_email": "c@cc-girou.fr", "transmitted_on": "2025-01-01"})),
    })
}

fn account(state: &str, last_signin: Option<&str>) -> serde_json::Value {
    json!({
        "account_id": "acc1", "email": "agent@cc-girou.fr", "given_name": "Anne", "family_name": "Martin",
        "function": "Instructrice", "state": state, "closure_requested_on": null, "last_signin": last_signin,
    })
}

fn review(status: ReviewStatus) -> PartnerReview {
    PartnerReview {
        partner_id: "cc-girou".into(),
        partner_name: "CC du Girou".into(),
        last_annex1: None,
        deadline: "2026-01-01".into(),
        status,
    }
}

fn alert() -> AlertView {
    AlertView {
        seq: 9,
        time: "2025-01-02T03:04:05.678Z".into(),
        detector: "password_spray".into(),
        subject: "203.0.113.1".into(),
        cause: "many".into(),
        message: "Beaucoup d'échecs".into(),
        email: None,
        partner_id: None,
        event_seqs: json!([1, 2]),
        notified: json!([]),
    }
}

/// The log search's filters as the page passes them.
fn filters(email: Option<&str>) -> Value {
    context! {
        email => email, partner => None::<String>, event => None::<String>, outcome => email.map(|_| "failure"),
        ip => None::<String>, since => None::<String>, until => None::<String>,
    }
}

fn logs_page(searched: bool, error: Option<Value>) -> Value {
    let base = context! {
        f => filters(Some("agent@cc-girou.fr")),
        kinds => crate::audit::kind::ALL,
        export_href => "/admin/logs/export?lang=fr",
        searched => searched,
        error => error,
    };
    if !searched {
        return console(CAF, base);
    }
    let records = [record(Some("agent@cc-girou.fr")), record(None)];
    console(
        CAF,
        context! {
            records => Value::from_serialize(records), first => 51, last => 52, page_number => 2,
            prev_href => "/admin/logs?offset=0", next_href => None::<String>, ..base
        },
    )
}

/// Each template with the contexts its handlers give it.
fn cases() -> Vec<(&'static str, Value)> {
    let mut cases = vec![
        ("base.html", context! {}),
        ("accessibility.html", context! { contact => "accessibilite@caf.fr" }),
        ("home.html", context! {}),
        (
            "signin.html",
            context! { csrf => "c", request => None::<String>, next => None::<String>, email => "", error => None::<String>, client_name => None::<String> },
        ),
        (
            "signin.html",
            context! { csrf => "c", request => "r", next => "/admin", email => "a@b.fr", error => "Incorrect", client_name => "Coopération" },
        ),
        ("message.html", context! { title => "T", message => "M", hint => None::<String>, is_error => false }),
        (
            "message.html",
            context! { title => "T", message => "M", hint => "H", link_href => "/signin", link_text => "L", is_error => true },
        ),
        (
            "logout_confirm.html",
            context! { csrf => "c", client_id => None::<String>, post_logout_redirect_uri => None::<String>, state => None::<String> },
        ),
        (
            "logout_confirm.html",
            context! { csrf => "c", client_id => "app", post_logout_redirect_uri => "https://app/out", state => "s" },
        ),
        (
            "password_form.html",
            context! {
                heading => "H", action => "/activate", csrf => "c", token => "tok", email => "a@b.fr",
                errors => Vec::<Value>::new(), password_errors => Vec::<String>::new(), confirmation_error => None::<String>,
            },
        ),
        (
            "password_form.html",
            context! {
                heading => "H", action => "/password/change", csrf => "c", email => "a@b.fr", ask_current => true,
                current_error => "wrong",
                errors => vec![context! { field => "current", message => "wrong" }, context! { field => "password", message => "short" }],
                password_errors => vec!["short"], confirmation_error => "differ",
            },
        ),
        ("forgot.html", context! { csrf => "c", sent => false }),
        ("forgot.html", context! { csrf => "c", sent => true }),
        ("second_factor.html", context! { csrf => "c", error => None::<String> }),
        ("second_factor.html", context! { csrf => "c", error => "wrong" }),
        (
            "second_factor_enrol.html",
            context! { csrf => "c", error => "wrong", qr => "data:image/png;base64,AA", key => "ABCD EFGH", email => "a@b.fr" },
        ),
        ("second_factor_codes.html", context! { codes => vec!["aaaa-bbbb"], next => "/admin" }),
        (
            "account_security.html",
            context! { csrf => "c", enrolled => false, enrolled_at => None::<String>, codes_left => 0, session_mfa => false },
        ),
        (
            "account_security.html",
            context! { csrf => "c", enrolled => true, enrolled_at => "2025-01-02T03:04:05.678Z", codes_left => 9, session_mfa => true },
        ),
        // Passkeys (issue 17): the forms' macros, the security page's part,
        // and the pages that offer a passkey.
        ("_passkey_forms.html", context! {}),
        (
            "admin/account_passkeys.html",
            console(
                CAF,
                context! {
                    account_id => "a1", email => "a@b.fr", name => "A B", partner_id => "p", removed => true,
                    passkeys => vec![context! { id => "k1", name => "Clé", created_at => "2026-01-02T03:04:05.678Z", last_used_at => None::<String> }],
                },
            ),
        ),
        (
            "admin/account_passkeys.html",
            console(
                CAF,
                context! { account_id => "a1", email => "a@b.fr", name => "A B", partner_id => None::<String>, removed => false, passkeys => Vec::<Value>::new() },
            ),
        ),
        ("_passkey_security.html", passkey_security(true, true, Some("passkey_notice_added"))),
        ("_passkey_security.html", passkey_security(false, true, Some("passkey_notice_refused"))),
        ("_passkey_security.html", passkey_security(true, false, None)),
        ("account_security.html", passkey_security(true, true, None)),
        ("second_factor.html", context! { csrf => "c", error => None::<String>, totp => true, passkey => true }),
        ("second_factor.html", context! { csrf => "c", error => "wrong", totp => false, passkey => true }),
        (
            "signin.html",
            context! { csrf => "c", request => "r", next => None::<String>, email => "", error => "x", client_name => "C" },
        ),
        ("admin/_nav.html", console(CAF, context! { nav => "home" })),
        ("admin/home.html", console(CAF, context! {})),
        ("admin/home.html", console(PARTNER, context! {})),
        ("admin/logs.html", logs_page(false, None)),
        ("admin/logs.html", logs_page(true, None)),
        (
            "admin/logs.html",
            logs_page(
                false,
                Some(
                    context! { field => "event", message => "Unknown", value => "signin_fail", valid => vec!["signin"] },
                ),
            ),
        ),
        (
            "admin/logs.html",
            logs_page(
                false,
                Some(
                    context! { field => "until", message => "Empty", value => None::<String>, valid => None::<Vec<String>> },
                ),
            ),
        ),
        ("admin/alerts.html", console(CAF, context! { alerts => Value::from_serialize([alert()]) })),
        ("admin/alerts.html", console(CAF, context! { alerts => Vec::<Value>::new() })),
        (
            "admin/purges.html",
            console(
                CAF,
                context! {
                    runs => Value::from_serialize([record(None)]),
                    partners => Value::from_serialize([json!({"id": "cc-girou", "name": "CC du Girou", "destructions": 2})]),
                },
            ),
        ),
        (
            "admin/partners.html",
            console(
                CAF,
                context! { partners => Value::from_serialize([partner_summary(true), partner_summary(false)]) },
            ),
        ),
        (
            "admin/annex1.html",
            console(CAF, context! { partner_id => "cc-girou", partner_name => "CC du Girou", error => None::<String> }),
        ),
        (
            "admin/annex1.html",
            console(PARTNER, context! { partner_id => "cc-girou", partner_name => "CC du Girou", error => "Bad" }),
        ),
        ("admin/annex1_plan.html", plan_page(CAF, &plan(false), Some("h"), false)),
        ("admin/annex1_plan.html", plan_page(CAF, &plan(false), None, true)),
        ("admin/annex1_plan.html", plan_page(CAF, &plan(true), None, true)),
        ("admin/annex1_plan.html", plan_page(PARTNER, &plan(false), None, false)),
        ("admin/annex1_plan.html", plan_page(PARTNER, &Plan::default(), None, false)),
        (
            "admin/close_confirm.html",
            console(
                CAF,
                context! { account_id => "acc1", email => "a@b.fr", name => "Anne Martin", partner_id => "cc-girou" },
            ),
        ),
        (
            "admin/close_confirm.html",
            console(
                CAF,
                context! { account_id => "acc1", email => "a@b.fr", name => "Anne Martin", partner_id => None::<String> },
            ),
        ),
    ];
    for done in [None, Some("activation_sent"), Some("closed")] {
        for roles in [CAF, PARTNER] {
            let accounts = [
                account("pending", None),
                account("active", Some("2025-01-01T00:00:00.000Z")),
                account("closed", None),
            ];
            let ctx = context! {
                partner => Value::from_serialize(partner_summary(true)),
                accounts => Value::from_serialize(accounts),
                done => done,
            };
            cases.push(("admin/partner.html", console(roles, ctx)));
        }
    }
    let reviews = [review(ReviewStatus::UpToDate), review(ReviewStatus::DueSoon), review(ReviewStatus::Overdue)];
    cases.push(("admin/review.html", console(CAF, context! { partners => Value::from_serialize(reviews) })));
    for (intact, latest) in [(true, Some(3)), (false, None)] {
        let ctx = context! {
            verified_at => "2025-01-02T03:04:05.678Z", intact => intact, records => 12,
            broken_seq => (!intact).then_some(4), broken_reason => (!intact).then_some("hash"),
            checkpoints => 1, latest_seq => latest, latest_time => latest.map(|_| "2025-01-01T00:00:00.000Z"),
            purge_up_to => latest, purge_time => latest.map(|_| "2025-01-01T00:00:00.000Z"),
        };
        cases.push(("admin/integrity.html", console(CAF, ctx)));
    }
    cases
}

/// The security page with its passkeys part.
fn passkey_security(fresh: bool, room: bool, notice: Option<&str>) -> Value {
    let key = context! { id => "k1", name => "Clé <USB>", created_at => "2026-01-02T03:04:05.678Z", last_used_at => None::<String> };
    let used = context! { id => "k2", name => "Téléphone", created_at => "2026-01-02T03:04:05.678Z", last_used_at => "2026-02-02T03:04:05.678Z" };
    context! {
        csrf => "c", enrolled => false, enrolled_at => None::<String>, codes_left => 0, session_mfa => false,
        passkeys => vec![key, used], passkey_fresh => fresh, passkey_room => room, passkey_max => 10,
        passkey_notice => notice, passkey_notice_error => notice == Some("passkey_notice_refused"),
    }
}

#[test]
fn every_template_renders_in_both_themes_and_both_languages() {
    let mut failures = Vec::new();
    let mut rendered = 0;
    for look in looks() {
        let theme = look.theme.code();
        let brand = look.brand_name.clone();
        in_look(look, || {
            for (template, ctx) in cases() {
                for locale in LOCALES {
                    match html(template, locale, "/page", ctx.clone()) {
                        // Each page carries its theme's look (the base's
                        // header); a partial (`admin/_nav.html`,
                        // `_passkey_forms.html`) has none.
                        Ok(page)
                            if page.contains(&format!("<p class=\"fr-header__service-title\">{brand}</p>"))
                                || template.rsplit('/').next().is_some_and(|name| name.starts_with('_')) =>
                        {
                            rendered += 1
                        }
                        Ok(_) => failures.push(format!("{template} ({theme}, {}): no {brand} header", locale.code())),
                        Err(e) => failures.push(format!("{template} ({theme}, {}): {e:#}", locale.code())),
                    }
                }
            }
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(rendered, cases().len() * 4);
}

/// The neutral theme loads nothing of the DSFR and shows no State block;
/// the DSFR theme is today's look, byte for byte in its head and brand.
#[test]
fn each_theme_links_its_own_stylesheet_and_brand() {
    let [neutral, dsfr] = looks();
    let signin = context! { csrf => "c", email => "" };
    let page = in_look(neutral, || html("signin.html", Locale::Fr, "/signin", signin.clone())).expect("neutral");
    assert!(page.contains("<link rel=\"stylesheet\" href=\"/static/neutral.css\">"), "{page}");
    assert!(!page.contains("/static/dsfr/") && !page.contains("/static/style.css"), "no DSFR asset: {page}");
    assert!(!page.contains("République") && !page.contains("fr-logo"), "no State block: {page}");
    assert!(page.contains("<title>Se connecter – Caf de la Haute-Garonne</title>"), "{page}");
    assert!(page.contains(&format!("<img src=\"{LOGO_PATH}\" alt=\"\">")), "the logo, decorative beside the name");
    assert!(page.contains("<p class=\"coop-footer__brand\">Caf de la Haute-Garonne</p>"), "{page}");
    let plain = Look { has_logo: false, ..Look::default() };
    let page = in_look(plain, || html("signin.html", Locale::Fr, "/signin", signin.clone())).expect("no logo");
    assert!(!page.contains("<img") && page.contains("<link rel=\"icon\" href=\"data:,\">"), "{page}");

    let page = in_look(dsfr, || html("signin.html", Locale::Fr, "/signin", signin.clone())).expect("dsfr");
    assert!(page.contains("<link rel=\"stylesheet\" href=\"/static/dsfr/1.15.3/dsfr.min.css\">"), "{page}");
    assert!(page.contains("<link rel=\"stylesheet\" href=\"/static/style.css\">"), "{page}");
    assert!(!page.contains("neutral.css"), "{page}");
    assert_eq!(
        page.matches("<p class=\"fr-logo\" lang=\"fr\">République<br>Française</p>").count(),
        2,
        "header, footer"
    );
    assert!(page.contains("<title>Se connecter – Coopération</title>") && !page.contains("<img"), "{page}");
}

/// A template added to `templates/` must be registered, and must get a case
/// above.
#[test]
fn every_template_file_is_registered_and_rendered() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut on_disk = BTreeSet::new();
    for dir in ["", "admin"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("templates directory") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "html") {
                let name = path.file_name().and_then(|n| n.to_str()).expect("name");
                on_disk.insert(if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") });
            }
        }
    }
    let registered: BTreeSet<String> = TEMPLATES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, registered);
    let rendered: BTreeSet<String> = cases().iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(rendered, registered);
}

/// Every `t.<key>` a template names exists, even where only a branch not
/// rendered above would reach it.
#[test]
fn every_text_a_template_names_exists() {
    let env = environment();
    for (name, _) in TEMPLATES {
        let template = env.get_template(name).expect("template");
        for var in template.undeclared_variables(true) {
            if let Some(key) = var.strip_prefix("t.") {
                for locale in LOCALES {
                    assert!(texts(locale).contains_key(key), "{name} names t.{key}, which no catalogue has");
                }
            }
        }
    }
}

/// The set-password page's error summary agrees in number with its list,
/// and the page lists every rule, each with its state in words.
#[test]
fn the_password_error_summary_counts_its_errors() {
    let page = |locale, n: usize| {
        let errors: Vec<Value> = (0..n).map(|_| context! { field => "password", message => "m" }).collect();
        let ctx = context! {
            heading => "H", action => "/activate", csrf => "c", token => "tok", email => "a@b.fr",
            errors => errors, password_errors => vec!["m"], confirmation_error => None::<String>,
        };
        html("password_form.html", locale, "/activate", ctx).expect("renders")
    };
    assert!(page(Locale::Fr, 1).contains(">Le formulaire contient 1 erreur<"));
    assert!(page(Locale::Fr, 3).contains(">Le formulaire contient 3 erreurs<"));
    assert!(page(Locale::En, 1).contains(">The form has 1 error<"));
    assert!(page(Locale::En, 2).contains(">The form has 2 errors<"));
    let fr = page(Locale::Fr, 0);
    assert!(!fr.contains("Le formulaire contient"), "no summary without errors");
    for rule in ["length", "upper", "lower", "digit", "special"] {
        assert!(fr.contains(&format!("<li data-rule=\"{rule}\">")), "{rule}");
    }
    assert_eq!(fr.matches("class=\"coop-rule-state\"").count(), 7, "every rule has its state");
    assert!(fr.contains("<script src=\"/static/password-rules.js\" defer></script>"));
}

#[test]
fn a_missing_text_fails_the_rendering() {
    let ctx = context! { t => texts(Locale::Fr) };
    assert!(environment().render_str("{{ t.signin_title }}", ctx.clone()).is_ok());
    assert!(environment().render_str("{{ t.no_such_text }}", ctx).is_err());
}

/// The neutral theme styles every DSFR class the templates use, so that a
/// page does not fall back to bare HTML in the default look; the classes
/// listed here only carry structure (or ask for what the sheet does
/// anyway: its button groups are always in a row).
#[test]
fn the_neutral_sheet_styles_every_class_the_templates_use() {
    const STRUCTURE_ONLY: &[&str] = &[
        "fr-header__body",
        "fr-header__brand-top",
        "fr-header__logo",
        "fr-header__operator",
        "fr-header__service",
        "fr-header__tools",
        "fr-logo",
        "fr-responsive-img",
        "fr-footer__brand",
        "fr-footer__content",
        "fr-footer__bottom-item",
        "fr-btns-group--inline-md",
    ];
    let css = include_str!("../../static/neutral.css");
    let mut missing = BTreeSet::new();
    for (name, source) in TEMPLATES {
        for (at, _) in source.match_indices("fr-") {
            let rest = &source[at..];
            let class: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
            // A class starts a word (`data-fr-steps` is an attribute); the
            // structure-only classes need no rule.
            let starts_a_word = source[..at].ends_with([' ', '"']);
            if !starts_a_word || class.len() <= 3 || STRUCTURE_ONLY.contains(&class.as_str()) {
                continue;
            }
            let styled = css.match_indices(&format!(".{class}")).any(|(at, found)| {
                !css[at + found.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            });
            if !styled {
                missing.insert(format!("{class} ({name})"));
            }
        }
    }
    assert!(missing.is_empty(), "static/neutral.css has no rule for: {missing:?}");
}
