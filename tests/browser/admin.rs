//! The Caf administrator's journey (issue 6, "done when"): the first
//! administrator made by the bootstrap command, the password created from
//! the emailed link, the second factor enrolled in the browser, then the
//! console: partners, an annex 1 uploaded, its plan, "Appliquer", the
//! accounts opened, the connection log searched and exported as CSV, the
//! security officer's other pages, and a later sign-in with a TOTP code.
//! Every console page is scanned by axe-core and photographed, in both
//! themes.

use std::time::Instant;

use coop_idp::admin::{StaffMember, bootstrap};
use coop_idp::auth::totp;
use coop_idp::provisioning::{NewPartner, add_partner};
use fantoccini::Locator;

use crate::common::{Db, TestServer};
use crate::driver::Theme;
use crate::{driver, mailed_link, second_step};

const ADMIN: &str = "habilitations@caf.fr";
const ADMIN_PASSWORD: &str = "Ardoise-Bleue-9-Schiste";
const PARTNER: &str = "cc-girou";
const PARTNER_NAME: &str = "CC du Girou";
const NEW_AGENT: &str = "je.ndiaye@cc-girou.fr";
/// The operator of the neutral run, and its logo (a plain SVG).
const BRAND: &str = "Caf du Girou";
const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48"><rect width="48" height="48" rx="8" fill="#1f4e79"/><path d="M12 34V14h10a7 7 0 0 1 0 14h-4v6z" fill="#fff"/></svg>"##;

/// A canonical annex 1 (PRODUCT.md), `;`-separated UTF-8 as French Excel
/// exports it.
const ANNEX: &str = "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\r\n\
ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG\r\n\
ouvert;N'Diaye;Jean-Éric;je.ndiaye@cc-girou.fr;Responsable petite enfance\r\n";

fn staff() -> StaffMember<'static> {
    StaffMember {
        email: ADMIN,
        given_name: "Claire",
        family_name: "Habil",
        function: "Responsable des habilitations",
        roles: &[],
    }
}

async fn rows(b: &driver::Browser, css: &str) -> usize {
    b.client.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caf_administrator_journey_in_a_real_browser_neutral_theme() {
    caf_administrator_journey(Theme::Neutral).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caf_administrator_journey_in_a_real_browser_dsfr_theme() {
    caf_administrator_journey(Theme::Dsfr).await;
}

async fn caf_administrator_journey(theme: Theme) {
    let started = Instant::now();
    let test = format!("a_caf_administrator_journey_in_a_real_browser ({})", theme.code());
    let Some(mut b) = driver::start(&test, theme).await else { return };
    // In the neutral theme, an operator's name and logo in the header.
    let logo_dir = tempfile::tempdir().expect("tempdir");
    let logo = logo_dir.path().join("logo.svg");
    std::fs::write(&logo, LOGO).expect("logo file");
    let logo = logo.display().to_string();
    let settings: &[(&str, &str)] = match theme {
        Theme::Neutral => &[("theme", "neutral"), ("brand_name", BRAND), ("brand_logo", &logo)],
        Theme::Dsfr => &[("theme", "dsfr")],
    };
    let server = TestServer::start_with(Db::Sqlite, settings).await;

    // The bootstrap of README ("Administration"): the first administrator,
    // both Caf roles, an activation link; refused once someone holds a role.
    let done = bootstrap(&server.app, staff()).await.expect("bootstrap");
    assert!(done.created && done.activation_sent, "{done:?}");
    assert_eq!(done.roles, ["caf_habilitation", "caf_security"]);
    assert!(bootstrap(&server.app, staff()).await.is_err(), "a second bootstrap is refused");
    add_partner(
        &server.app,
        NewPartner { id: PARTNER, name: PARTNER_NAME, convention_signed: Some("2026-01-05"), email_domains: &[] },
    )
    .await
    .expect("partner with a signed convention");

    // The administrator creates the password, as every user does (R1).
    let link = mailed_link(&server, ADMIN, &format!("{}?token=", server.url("/activate")), 1).await;
    b.goto(&link).await;
    b.wait_title("Créer votre mot de passe").await;
    b.fill("password", ADMIN_PASSWORD).await;
    b.fill("confirmation", ADMIN_PASSWORD).await;
    b.submit("Votre mot de passe est créé").await;

    // The console without a session leads to the sign-in page; a correct
    // password leads to the enrolment of the second factor, not to a session.
    b.goto(&server.url("/admin")).await;
    b.wait_title("Se connecter").await;
    assert_eq!(b.url().await.path(), "/signin");
    b.fill("email", ADMIN).await;
    b.fill("password", ADMIN_PASSWORD).await;
    b.submit("Activer la validation en deux étapes").await;
    assert_eq!(b.url().await.path(), "/signin/otp/enrol");
    assert!(b.exists("main img[src^='data:image/'][alt]").await, "the QR code, with a text alternative");
    b.check_page("totp-enrol", "fr").await;
    let key = b.client.find(Locator::Css("code.totp-key")).await.expect("manual key");
    let key = key.text().await.expect("key text").replace(' ', "");
    assert!(totp::base32_decode(&key).is_some_and(|k| k.len() >= 20), "a 160-bit key: {key}");

    // A wrong code is refused and announced; the app's code is accepted.
    let now = totp::step_at(server.clock.now_ms());
    let secret = totp::base32_decode(&key).expect("base32");
    let wrong = totp::hotp(&secret, now + 1000);
    assert!(totp::verify(&key, &wrong, server.clock.now_ms(), i64::MIN).is_none());
    b.fill("code", &wrong).await;
    b.submit("Erreur : Activer la validation en deux étapes").await;
    assert_eq!(b.attr("#code", "aria-invalid").await.as_deref(), Some("true"));
    assert!(b.exists("[role=alert] a[href='#code']").await, "the summary links to the field");
    b.check_page("totp-enrol-error", "fr").await;
    let code = totp::code_at(&key, server.clock.now_ms()).expect("code");
    b.fill("code", &code).await;
    b.submit("Vos codes de secours").await;
    assert_eq!(rows(&b, "ol.recovery-codes li").await, 10, "10 recovery codes shown once");
    assert!(!b.main_text().await.contains(&key), "the key is not shown again");
    b.check_page("totp-recovery-codes", "fr").await;
    second_step::remember(&server, ADMIN, &key);

    // The console's home: the pages of both Caf roles.
    b.goto(&server.url("/admin")).await;
    b.wait_title("Accueil — Console d'administration").await;
    for href in
        ["/admin/logs", "/admin/alerts", "/admin/integrity", "/admin/purges", "/admin/partners", "/admin/review"]
    {
        assert!(b.exists(&format!("main ul a[href='{href}']")).await, "home links to {href}");
    }
    b.check_page("console", "fr").await;
    let header = b.client.find(Locator::Css("header")).await.expect("header").text().await.expect("header text");
    // The DSFR writes its block in capitals, which the rendered text follows.
    let state_block = header.to_lowercase().contains("république");
    if theme == Theme::Neutral {
        assert!(header.contains(BRAND) && !state_block, "{header}");
        let shown = b.client.execute("return document.querySelector('header img').naturalWidth;", vec![]).await;
        assert_eq!(shown.ok(), Some(serde_json::json!(48)), "the logo, loaded from /static/logo");
    } else {
        assert!(header.contains("Coopération") && state_block, "{header}");
    }

    // Partners → the partner → annex 1 upload → the dry-run plan.
    b.follow("main ul a[href='/admin/partners']", "Partenaires — Console").await;
    assert!(b.main_text().await.contains(PARTNER_NAME));
    b.check_page("console-partners", "fr").await;
    b.follow(&format!("main table a[href='/admin/partners/{PARTNER}']"), &format!("{PARTNER_NAME} — Partenaires"))
        .await;
    b.check_page("console-partner", "fr").await;
    b.follow(&format!("main a[href='/admin/partners/{PARTNER}/annex1']"), "Annexe 1 — CC du Girou").await;
    b.check_page("console-annex1", "fr").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("annexe1.csv");
    std::fs::write(&file, ANNEX).expect("annex file");
    b.choose_file("file", &file).await;
    b.submit("Plan de l'annexe 1").await;
    let plan = b.main_text().await;
    assert!(plan.contains("marie.dupont@cc-girou.fr") && plan.contains(NEW_AGENT), "{plan}");
    assert_eq!(rows(&b, "main table tbody tr").await, 2, "two openings in the plan");
    assert!(server.app.store.account_by_email(NEW_AGENT).await.expect("read").is_none(), "a dry run changes nothing");
    b.check_page("console-plan", "fr").await;

    // "Appliquer": the accesses open, the partner's page lists them.
    b.submit("Changements appliqués").await;
    assert!(b.exists("main .fr-alert--success").await);
    b.check_page("console-applied", "fr").await;
    let opened = server.app.store.account_by_email(NEW_AGENT).await.expect("read").expect("account opened");
    assert_eq!(opened.state, "pending", "waiting for its activation");
    b.follow(&format!("main a[href='/admin/partners/{PARTNER}']"), &format!("{PARTNER_NAME} — Partenaires")).await;
    let accounts = b.main_text().await;
    assert!(accounts.contains(NEW_AGENT) && accounts.contains("marie.dupont@cc-girou.fr"), "{accounts}");
    assert_eq!(rows(&b, "main table tbody tr").await, 2);
    b.check_page("console-accounts", "fr").await;

    // The connection log, filtered by event kind and partner.
    b.goto(&server.url("/admin/logs")).await;
    b.wait_title("Journal des connexions").await;
    b.check_page("console-logs", "fr").await;
    b.fill("f-event", "access_opened").await;
    b.fill("f-partner", PARTNER).await;
    b.submit("Journal des connexions").await;
    let url = b.url().await;
    assert!(url.query().is_some_and(|q| q.contains("event=access_opened")), "{url}");
    assert_eq!(rows(&b, "main table tbody tr").await, 2, "the two openings, nothing else");
    let found = b.main_text().await;
    assert!(found.contains(NEW_AGENT) && !found.contains("annex1_applied"), "{found}");
    b.check_page("console-logs-results", "fr").await;

    // The CSV export of the same filters, as the browser would download it.
    let href = b.attr("main a[download]", "href").await.expect("export link");
    assert!(href.starts_with("/admin/logs/export?") && href.contains("event=access_opened"), "{href}");
    let r = crate::common::http_client()
        .get(server.url(&href))
        .header("cookie", b.cookie_header().await)
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("text/csv"), "{ct}");
    let csv = r.text().await.expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    // For a French spreadsheet: BOM, `;`, the page's language in the headers.
    assert!(lines[0].starts_with("\u{feff}N°;Date (UTC);Type d'événement;Résultat;"), "header row: {}", lines[0]);
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1..].iter().all(|l| l.contains(";access_opened;success;")), "{csv}");
    assert!(lines[1..].iter().any(|l| l.contains(NEW_AGENT)), "{csv}");
    // Without this browser's session, no export.
    let anonymous = crate::common::http_client().get(server.url(&href)).send().await.expect("export");
    assert_eq!(anonymous.status(), 303, "the export needs a session");

    // A mistyped kind: the form again, with the error and what was typed.
    b.fill("f-event", "access_open").await;
    b.submit("Erreur : Journal des connexions").await;
    let error = b.main_text().await;
    assert!(error.contains("Type d'événement inconnu") && error.contains("access_opened"), "{error}");
    assert_eq!(b.attr("#f-event", "value").await.as_deref(), Some("access_open"), "kept as typed");
    b.check_page("console-logs-error", "fr").await;

    // The security officer's other pages, and the yearly review.
    for (path, title, name) in [
        ("/admin/alerts", "Alertes de sécurité", "console-alerts"),
        ("/admin/integrity", "Intégrité du journal", "console-integrity"),
        ("/admin/purges", "Purges et attestations", "console-purges"),
        ("/admin/review", "Revue annuelle des habilitations", "console-review"),
    ] {
        b.goto(&server.url(path)).await;
        b.wait_title(title).await;
        b.check_page(name, "fr").await;
    }
    b.goto(&server.url("/admin/integrity")).await;
    b.wait_title("Intégrité du journal").await;
    assert!(b.main_text().await.contains("intacte"), "the chain is intact");

    // The accessibility statement, from the footer of a console page.
    b.follow("footer a[href='/accessibilite']", "Déclaration d'accessibilité").await;
    assert!(b.main_text().await.contains("Défenseur des droits"));
    b.check_page("accessibility", "fr").await;
    b.goto(&server.url("/accessibilite?lang=en")).await;
    b.wait_title("Accessibility statement").await;
    b.check_page("accessibility-en", "en").await;
    b.goto(&server.url("/accessibilite?lang=fr")).await;
    b.wait_title("Déclaration d'accessibilité").await;

    // A later sign-in: the password, then the app's code.
    b.client.delete_all_cookies().await.expect("sign out by forgetting cookies");
    b.goto(&server.url("/admin")).await;
    b.wait_title("Se connecter").await;
    b.fill("email", ADMIN).await;
    b.fill("password", ADMIN_PASSWORD).await;
    b.submit("Code de vérification").await;
    assert_eq!(b.url().await.path(), "/signin/otp");
    b.check_page("totp-verify", "fr").await;
    let code = second_step::fresh_code(&server, ADMIN).await;
    b.fill("code", &code).await;
    b.submit("").await;
    b.goto(&server.url("/admin")).await;
    b.wait_title("Accueil — Console d'administration").await;

    let pages = b.finish().await;
    assert_eq!(pages.len(), 20, "pages scanned: {pages:?}");
    eprintln!("admin journey ({}): {} pages in {:.1} s", theme.code(), pages.len(), started.elapsed().as_secs_f64());
}
