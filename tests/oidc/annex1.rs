//! Annex-1 provisioning (R7–R12; issue 4): files as partners write them
//! (Windows-1252 and UTF-8 CSV, XLSX, varied headers), the dry run, the
//! all-or-nothing apply, closures that end sessions and tokens at once and
//! tell the relying party, idempotent re-imports, every validation error
//! with its line, convention rules, and the `annex1 import` command line.

use std::time::Duration;

use coop_idp::oidc::clients::AuthMethod;
use coop_idp::provisioning::annex1::apply::{Import, ImportOutcome, import, import_with_fault};
use coop_idp::provisioning::annex1::fixture::{Cell::S, xlsx};
use coop_idp::provisioning::annex1::plan::{PersonEntry, Plan};
use coop_idp::provisioning::{NewPartner, add_partner, set_non_renewal, sign_convention, terminate_convention};
use openidconnect::{OAuth2TokenResponse, TokenResponse};
use serde_json::Value;
use time::Date;

use crate::backchannel::{Receiver, verify_logout_token};
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    annex1_files_in_every_format_give_the_same_people,
    annex1_dry_run_changes_nothing_then_apply_opens_the_accesses,
    annex1_closure_revokes_tokens_and_tells_the_relying_party,
    annex1_reopen_sends_a_fresh_activation_link,
    annex1_each_validation_error_blocks_apply_with_its_line,
    annex1_interrupted_apply_leaves_nothing,
    annex1_terminated_convention_closes_everything_and_blocks_openings,
    annex1_ended_convention_blocks_openings_but_closures_apply,
    annex1_unsigned_convention_blocks_openings,
    annex1_new_annex_replaces_the_previous_one,
);

const PARTNER: &str = "cc-girou";
const MARIE: &str = "marie.dupont@cc-girou.fr";
const ELOISE: &str = "eloise.ndiaye@cc-girou.fr";
const PAUL: &str = "paul.martin@cc-girou.fr";
const HEADER: &str =
    "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation";

// ---------------------------------------------------------------------------
// Helpers

pub(crate) async fn setup_partner(server: &TestServer, signed: Option<&str>) {
    add_partner(
        &server.app,
        NewPartner {
            id: PARTNER,
            name: "CC du Girou",
            convention_signed: signed,
            email_domains: &["cc-girou.fr".to_string()],
        },
    )
    .await
    .expect("partner");
}

/// A UTF-8 CSV, one string per line, CRLF as Excel writes it.
fn csv(lines: &[&str]) -> Vec<u8> {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text.into_bytes()
}

/// The canonical layout with `rows` under the canonical header.
fn annex(rows: &[&str]) -> Vec<u8> {
    let mut lines = vec![HEADER];
    lines.extend_from_slice(rows);
    csv(&lines)
}

async fn run(server: &TestServer, bytes: &[u8], apply: bool, transmitted: Option<Date>) -> ImportOutcome {
    import(
        &server.app,
        Import { partner_id: PARTNER, file_name: "annexe1.csv", bytes, transmitted, apply, operator: "test" },
    )
    .await
    .expect("import")
}

async fn apply(server: &TestServer, bytes: &[u8]) -> Plan {
    let outcome = run(server, bytes, true, None).await;
    assert!(outcome.applied, "applied: {:?}", outcome.plan.errors);
    outcome.plan
}

fn people(entries: &[PersonEntry]) -> Vec<(usize, &str)> {
    entries.iter().map(|e| (e.line, e.email.as_str())).collect()
}

fn codes(plan: &Plan) -> Vec<(&'static str, usize)> {
    plan.errors.iter().map(|e| (e.code, e.line)).collect()
}

fn today_of(server: &TestServer) -> Date {
    server.app.clock.today()
}

fn ymd(d: Date) -> String {
    coop_idp::dates::format_iso(d)
}

async fn mail_rows(server: &TestServer) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM mail_outbox").fetch_one(server.app.store.pool()).await.expect("count");
    n
}

async fn state_of(server: &TestServer, email: &str) -> Option<String> {
    server.app.store.account_by_email(email).await.expect("account").map(|a| a.state)
}

/// Everything an import may change, to compare before and after.
pub(crate) async fn snapshot(server: &TestServer) -> Vec<String> {
    let pool = server.app.store.pool();
    let mut out = Vec::new();
    type AccountState = (String, String, String, String, String, String, Option<String>, Option<String>);
    let accounts: Vec<AccountState> = sqlx::query_as(
        "SELECT id, email, state, given_name, family_name, function, closure_requested_on, password_hash \
             FROM accounts ORDER BY email_normalized",
    )
    .fetch_all(pool)
    .await
    .expect("accounts");
    out.extend(accounts.iter().map(|a| format!("account {a:?}")));
    let mails: Vec<(String, String)> =
        sqlx::query_as("SELECT id, recipient FROM mail_outbox ORDER BY id").fetch_all(pool).await.expect("mails");
    out.extend(mails.iter().map(|m| format!("mail {m:?}")));
    let links: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT token_hash, account_id, used_at, superseded_at FROM credential_links ORDER BY token_hash",
    )
    .fetch_all(pool)
    .await
    .expect("links");
    out.extend(links.iter().map(|l| format!("link {l:?}")));
    let sessions: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT id_hash, ended_at FROM sessions ORDER BY id_hash")
            .fetch_all(pool)
            .await
            .expect("sessions");
    out.extend(sessions.iter().map(|s| format!("session {s:?}")));
    let families: Vec<(String, Option<i64>)> = sqlx::query_as("SELECT id, revoked_at FROM token_families ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("families");
    out.extend(families.iter().map(|f| format!("family {f:?}")));
    let (notices,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM backchannel_outbox").fetch_one(pool).await.expect("backchannel");
    out.push(format!("backchannel notices {notices}"));
    let annex = server.app.store.current_annex1(PARTNER).await.expect("annex");
    out.push(format!("annex {:?}", annex.map(|a| (a.transmitted_on, a.checksum, a.rows, a.applied_at))));
    out
}

/// Creates the password through the activation page, as the person does.
async fn activate(server: &TestServer, link: &str) {
    let fields = [("password", PASSWORD), ("confirmation", PASSWORD)];
    let r = submit_form(&browser(), link, &server.url("/activate"), &fields, &[]).await;
    assert_eq!(r.status(), 200, "password created");
}

async fn link_status(link: &str) -> u16 {
    browser().get(link).send().await.expect("link").status().as_u16()
}

/// Registers the platform with a back-channel receiver; returns it and the secret.
async fn platform(server: &TestServer) -> (Receiver, String) {
    let (receiver, uri) = Receiver::start().await;
    let secret = server
        .add_client_with("platform", AuthMethod::ClientSecretBasic, |r| r.backchannel_logout_uri = Some(uri))
        .await
        .expect("secret");
    (receiver, secret)
}

/// An activated person signed in at the platform with `offline_access`:
/// (ID token, access token, refresh token).
async fn signed_in(server: &TestServer, secret: &str, email: &str) -> (String, String, String) {
    activate(server, &mailed_link(server, email, "/activate", 1).await).await;
    let rp = server.rp("platform", Some(secret)).await;
    let (tokens, _) = code_flow(server, &rp, &browser(), email, &["offline_access"]).await;
    let id_token = tokens.id_token().expect("id_token").to_string();
    let refresh = tokens.refresh_token().expect("refresh_token").secret().clone();
    let access = tokens.access_token().secret().clone();
    assert_eq!(userinfo_status(server, &access).await, 200);
    (id_token, access, refresh)
}

async fn assert_revoked(server: &TestServer, secret: &str, access: &str, refresh: &str) {
    let (status, _, body) = refresh_raw(server, "platform", secret, refresh, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(userinfo_status(server, access).await, 401, "the access token stops working at once");
}

// ---------------------------------------------------------------------------
// Fixture files

/// Semicolons, Windows-1252 as French Excel writes it, headers in capitals
/// and with spaces, list values in other words.
fn windows_1252_file() -> Vec<u8> {
    let text = "LISTE;NOM;Prénom(s);Courriel;Qualité / fonction;Date de clôture\r\n\
                Ouverture;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;\r\n\
                accès ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;\r\n";
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable);
    assert!(std::str::from_utf8(&bytes).is_err(), "really Windows-1252, not UTF-8");
    bytes.into_owned()
}

/// Commas, UTF-8 with BOM, quoted cells, other header spellings.
fn utf8_bom_file() -> Vec<u8> {
    let text = "\u{feff}Statut,Nom de famille,Prénoms,Adresse électronique professionnelle,QUALITÉ,Date de fin d'habilitation\r\n\
                ouvert,\"N'Diaye\",Éloïse,eloise.ndiaye@cc-girou.fr,\"Chargée de mission\",\r\n\
                Demandé,Dupont,Marie,marie.dupont@cc-girou.fr,Coordinatrice CTG,\r\n";
    text.as_bytes().to_vec()
}

/// One sheet per list, a title row above the header, yet other spellings.
fn xlsx_file() -> Vec<u8> {
    xlsx(&[
        (
            "Accès ouverts",
            vec![
                (1, vec![S("Annexe 1 – accès ouverts")]),
                (3, vec![S("Nom"), S("Prénom"), S("E-mail"), S("Fonction")]),
                (4, vec![S("N'Diaye"), S("Éloïse"), S("eloise.ndiaye@cc-girou.fr"), S("Chargée de mission")]),
                (5, vec![S("Dupont"), S("Marie"), S("marie.dupont@cc-girou.fr"), S("Coordinatrice CTG")]),
            ],
        ),
        (
            "Accès clôturés",
            vec![
                (1, vec![S("Nom"), S("Prénom(s)"), S("Mail"), S("Qualité"), S("Date de clôture")]),
                (2, vec![S("Martin"), S("Paul"), S(PAUL), S("Agent d'accueil"), S("2026-01-10")]),
            ],
        ),
    ])
    .expect("a small workbook")
}

// ---------------------------------------------------------------------------
// Tests

async fn annex1_files_in_every_format_give_the_same_people(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    let who = |p: &Plan| -> Vec<(String, String, String, String)> {
        p.open
            .iter()
            .chain(&p.unchanged)
            .filter(|e| e.email != PAUL)
            .map(|e| (e.email.clone(), e.family_name.clone(), e.given_name.clone(), e.function.clone()))
            .collect()
    };
    let expected = vec![
        (ELOISE.to_string(), "N'Diaye".to_string(), "Éloïse".to_string(), "Chargée de mission".to_string()),
        (MARIE.to_string(), "Dupont".to_string(), "Marie".to_string(), "Coordinatrice CTG".to_string()),
    ];

    // Windows-1252, dry run then apply.
    let w = run(&server, &windows_1252_file(), false, None).await.plan;
    assert!(w.errors.is_empty() && w.warnings.is_empty(), "{:?} {:?}", w.errors, w.warnings);
    assert_eq!(people(&w.open), [(2, ELOISE), (3, MARIE)]);
    assert_eq!(who(&w), expected);
    apply(&server, &windows_1252_file()).await;
    let eloise = server.app.store.account_by_email(ELOISE).await.expect("db").expect("account");
    assert_eq!((eloise.given_name.as_str(), eloise.family_name.as_str()), ("Éloïse", "N'Diaye"));
    assert_eq!(eloise.function, "Chargée de mission");

    // The same people in UTF-8 with BOM and commas: read alike, nothing to change.
    let u = run(&server, &utf8_bom_file(), false, None).await.plan;
    assert!(u.errors.is_empty(), "{:?}", u.errors);
    assert_eq!(u.changes(), 0, "same names once decoded: {u:?}");
    assert_eq!(people(&u.unchanged), [(2, ELOISE), (3, MARIE)]);
    assert_eq!(who(&u), expected);

    // XLSX with one sheet per list: rows numbered in their sheet, with the sheet.
    let book = import(
        &server.app,
        Import {
            partner_id: PARTNER,
            file_name: "Annexe 1.xlsx",
            bytes: &xlsx_file(),
            transmitted: None,
            apply: false,
            operator: "test",
        },
    )
    .await
    .expect("import")
    .plan;
    assert!(book.errors.is_empty(), "{:?}", book.errors);
    assert_eq!(book.changes(), 0, "{book:?}");
    assert_eq!(who(&book), expected);
    let seen: Vec<(Option<&str>, usize, &str)> =
        book.unchanged.iter().map(|e| (e.sheet.as_deref(), e.line, e.email.as_str())).collect();
    assert_eq!(
        seen,
        [(Some("Accès ouverts"), 4, ELOISE), (Some("Accès ouverts"), 5, MARIE), (Some("Accès clôturés"), 2, PAUL),]
    );
    let json = serde_json::to_value(&book).expect("JSON");
    assert_eq!(json["unchanged"][0]["sheet"], "Accès ouverts", "{json}");
    // Paul never had an access: a warning with its sheet and row, not an error.
    let warned: Vec<(&str, Option<&str>, usize)> =
        book.warnings.iter().map(|w| (w.code, w.sheet.as_deref(), w.line)).collect();
    assert_eq!(warned, [("closed_unknown", Some("Accès clôturés"), 2)]);
}

async fn annex1_dry_run_changes_nothing_then_apply_opens_the_accesses(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    let file = windows_1252_file();
    let before = snapshot(&server).await;

    // Dry run: the plan, and nothing else.
    let outcome = run(&server, &file, false, None).await;
    assert!(!outcome.applied);
    assert_eq!(people(&outcome.plan.open), [(2, ELOISE), (3, MARIE)]);
    tokio::time::sleep(Duration::from_millis(2500)).await; // one mail-job period
    assert_eq!(snapshot(&server).await, before, "a dry run changes nothing");
    assert_eq!(state_of(&server, MARIE).await, None, "no account");
    assert_eq!(mail_rows(&server).await, 0, "no mail queued");
    assert!(outbox(&server).is_empty(), "no mail sent");
    assert!(server.app.store.current_annex1(PARTNER).await.expect("annex").is_none());

    // Apply: pending accounts, activation emails, the plan as PRODUCT.md shapes it.
    let outcome = run(&server, &file, true, None).await;
    assert!(outcome.applied);
    for email in [ELOISE, MARIE] {
        assert_eq!(state_of(&server, email).await.as_deref(), Some("pending"), "{email}");
        let link = mailed_link(&server, email, "/activate", 1).await;
        assert!(link.starts_with(&server.base), "{link}");
    }
    let mails = outbox(&server);
    assert_eq!(mails.len(), 2, "one activation email each");
    assert!(mails.iter().any(|m| is_to(m, ELOISE)) && mails.iter().any(|m| is_to(m, MARIE)));

    let json = serde_json::to_value(&outcome.plan).expect("JSON");
    let mut keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["close", "errors", "open", "partner_id", "reopen", "transmitted", "unchanged", "update", "warnings"]
    );
    assert_eq!(json["partner_id"], PARTNER);
    assert_eq!(json["transmitted"], ymd(today_of(&server)));
    let first = &json["open"][0];
    assert_eq!(first["line"], 2, "header = line 1: {json}");
    assert_eq!(first["email"], ELOISE);
    assert_eq!(first["family_name"], "N'Diaye");
    assert_eq!(first["given_name"], "Éloïse");
    assert_eq!(first["function"], "Chargée de mission");
    assert_eq!(json["open"][1]["line"], 3);
    assert!(first.get("sheet").is_none(), "no sheet for a CSV: {first}");
    for list in ["reopen", "update", "close", "unchanged", "errors", "warnings"] {
        assert_eq!(json[list], serde_json::json!([]), "{list}");
    }

    // Re-importing the same file changes nothing: all unchanged, no new mail.
    let after_apply = snapshot(&server).await;
    let again = run(&server, &file, false, None).await.plan;
    assert_eq!(again.changes(), 0, "{again:?}");
    assert!(again.errors.is_empty());
    assert_eq!(people(&again.unchanged), [(2, ELOISE), (3, MARIE)]);
    let again = run(&server, &file, true, None).await;
    assert!(again.applied);
    assert_eq!(again.plan.changes(), 0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(mail_rows(&server).await, 2, "no new mail");
    assert_eq!(outbox(&server).len(), 2, "no new mail");
    let now = snapshot(&server).await;
    let without_annex = |s: &[String]| s.iter().filter(|l| !l.starts_with("annex ")).cloned().collect::<Vec<_>>();
    assert_eq!(without_annex(&now), without_annex(&after_apply), "accounts, links and mails as they were");
    let annex = server.app.store.current_annex1(PARTNER).await.expect("annex").expect("current annex");
    assert_eq!(annex.checksum, hex::encode(coop_idp::crypto::sha256(&file)));
}

async fn annex1_closure_revokes_tokens_and_tells_the_relying_party(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    let (receiver, secret) = platform(&server).await;
    apply(
        &server,
        &annex(&[
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        ]),
    )
    .await;
    let (id_token, access, refresh) = signed_in(&server, &secret, MARIE).await;
    let marie = server.app.store.account_by_email(MARIE).await.expect("db").expect("account");
    assert_eq!(marie.state, "active");

    // A second annex lists Marie as closed; the dry run shows it and changes nothing.
    let second = annex(&[
        "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        "clôturé;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
    ]);
    let dry = run(&server, &second, false, None).await;
    assert_eq!(people(&dry.plan.close), [(3, MARIE)]);
    assert_eq!(people(&dry.plan.unchanged), [(2, ELOISE)]);
    assert_eq!(userinfo_status(&server, &access).await, 200, "a dry run closes nothing");

    let plan = apply(&server, &second).await;
    assert_eq!(people(&plan.close), [(3, MARIE)]);
    assert_revoked(&server, &secret, &access, &refresh).await;
    let (state, requested): (String, Option<String>) =
        sqlx::query_as("SELECT state, closure_requested_on FROM accounts WHERE id = $1")
            .bind(&marie.id)
            .fetch_one(server.app.store.pool())
            .await
            .expect("account");
    assert_eq!(state, "closed");
    assert_eq!(requested, Some(ymd(today_of(&server))), "closure request date recorded (default: transmission)");

    let (_, token) = receiver.wait_for_token(Duration::from_secs(15)).await.expect("logout token delivered");
    let claims = verify_logout_token(&server, &token, "platform", &id_token).await;
    assert_eq!(claims["sub"], marie.id.as_str());

    // The same annex again: nothing to do, nobody told twice.
    let again = apply(&server, &second).await;
    assert_eq!(again.changes(), 0, "{again:?}");
    assert_eq!(people(&again.unchanged), [(2, ELOISE), (3, MARIE)]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.tokens().await.len(), 1, "one logout token");
    // Left out of the next annex less than 2 years after her closure: a warning only.
    let without =
        run(&server, &annex(&["ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;"]), false, None)
            .await
            .plan;
    assert!(without.errors.is_empty(), "{:?}", without.errors);
    let warned: Vec<(&str, usize, Option<&str>)> =
        without.warnings.iter().map(|w| (w.code, w.line, w.email.as_deref())).collect();
    assert_eq!(warned, [("closed_missing", 0, Some(MARIE))]);
    // The person can no longer sign in.
    assert_eq!(attempt_at(&server.base, MARIE, PASSWORD).await, 401, "a closed account cannot sign in");
}

async fn annex1_reopen_sends_a_fresh_activation_link(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    let open = annex(&["ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;"]);
    apply(&server, &open).await;
    let first = mailed_link(&server, MARIE, "/activate", 1).await;
    activate(&server, &first).await;
    apply(&server, &annex(&["clôture demandée;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;"])).await;
    assert_eq!(state_of(&server, MARIE).await.as_deref(), Some("closed"));

    // Back in the open list: reopened, pending, and a new link.
    let plan = apply(&server, &annex(&["ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Directrice;"])).await;
    assert_eq!(people(&plan.reopen), [(2, MARIE)]);
    assert!(plan.open.is_empty());
    let marie = server.app.store.account_by_email(MARIE).await.expect("db").expect("account");
    assert_eq!((marie.state.as_str(), marie.function.as_str()), ("pending", "Directrice"));
    assert!(marie.password_hash.is_none(), "the old password is gone");
    let second = mailed_link(&server, MARIE, "/activate", 2).await;
    assert_ne!(first, second);
    assert_eq!(link_status(&first).await, 410, "the first link is spent");
    activate(&server, &second).await;
    assert_eq!(state_of(&server, MARIE).await.as_deref(), Some("active"));
}

async fn annex1_each_validation_error_blocks_apply_with_its_line(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    const KEEP: &str = "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;";
    const NEW: &str = "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;";
    let today = today_of(&server);
    // Transmitted before every annex below: an older annex than the current one is refused.
    let first = run(&server, &annex(&[KEEP]), true, Some(today - time::Duration::days(62))).await;
    assert!(first.applied, "{:?}", first.plan.errors);
    wait_for_mails(&server, MARIE, "/activate?token=", 1).await;
    let transmitted = today - time::Duration::days(30);
    let too_old = ymd(transmitted.replace_year(transmitted.year() - 2).expect("date") - time::Duration::days(1));
    let old_closure = format!("clôturé;Martin;Paul;paul.martin@cc-girou.fr;Agent;{too_old}");

    /// (what, rows, transmitted, expected (code, line), email of the problem)
    type Case<'a> = (&'a str, Vec<String>, Option<Date>, (&'a str, usize), Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "invalid email",
            vec![KEEP.into(), "ouvert;Martin;Paul;paul.martin@@cc-girou;Agent;".into(), NEW.into()],
            None,
            ("invalid_email", 3),
            Some("paul.martin@@cc-girou"),
        ),
        (
            "outside the domains",
            vec![KEEP.into(), NEW.into(), "ouvert;Martin;Paul;paul.martin@ailleurs.fr;Agent;".into()],
            None,
            ("outside_domains", 4),
            Some("paul.martin@ailleurs.fr"),
        ),
        (
            "duplicate",
            vec![KEEP.into(), NEW.into(), "ouvert;Dupont;Marie;Marie.Dupont@cc-girou.fr;Coordinatrice CTG;".into()],
            None,
            ("duplicate_person", 4),
            Some("Marie.Dupont@cc-girou.fr"),
        ),
        (
            "in both lists",
            vec![
                NEW.into(),
                KEEP.into(),
                "clôturé;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;".into(),
            ],
            None,
            ("in_both_lists", 4),
            Some(ELOISE),
        ),
        ("open access in neither list", vec![NEW.into()], None, ("missing_open_access", 0), Some(MARIE)),
        (
            "closure older than 2 years",
            vec![KEEP.into(), NEW.into(), old_closure.clone()],
            Some(transmitted),
            ("closure_too_old", 4),
            Some(PAUL),
        ),
    ];
    for (what, rows, transmitted, expected, email) in cases {
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let before = snapshot(&server).await;
        let outcome = run(&server, &annex(&rows), true, transmitted).await;
        assert!(!outcome.applied, "{what}: refused");
        assert_eq!(codes(&outcome.plan), [expected], "{what}: {:?}", outcome.plan.errors);
        let problem = &outcome.plan.errors[0];
        assert_eq!(problem.email.as_deref(), email, "{what}");
        assert!(!problem.message.is_empty(), "{what}");
        assert_eq!(snapshot(&server).await, before, "{what}: nothing changed");
        assert_eq!(state_of(&server, ELOISE).await, None, "{what}: the valid opening is not done either");
    }
    // The limit is relative to the transmission date: transmitted a month
    // earlier, the same closure is recent enough.
    let earlier = transmitted - time::Duration::days(31);
    let ok = run(&server, &annex(&[KEEP, NEW, &old_closure]), false, Some(earlier)).await.plan;
    assert!(ok.errors.is_empty(), "{:?}", ok.errors);
    assert_eq!(ok.transmitted, ymd(earlier));
    assert_eq!(mail_rows(&server).await, 1, "only the first annex's activation email");

    // Without domains, public webmail addresses are refused.
    add_partner(
        &server.app,
        NewPartner { id: "mairie", name: "Mairie", convention_signed: Some("2026-01-01"), email_domains: &[] },
    )
    .await
    .expect("partner");
    let webmail = annex(&["ouvert;Martin;Paul;paul.martin@gmail.com;Agent;"]);
    let outcome = import(&server.app, Import { partner_id: "mairie", bytes: &webmail, ..base_import(true) })
        .await
        .expect("import");
    assert!(!outcome.applied);
    assert_eq!(codes(&outcome.plan), [("public_webmail", 2)]);
    assert_eq!(state_of(&server, "paul.martin@gmail.com").await, None);

    // An address is one account: Paul, opened by the mairie, cannot be
    // opened again by the partner. The dry run already says so, by line.
    let at_mairie = annex(&["ouvert;Martin;Paul;paul.martin@cc-girou.fr;Agent;"]);
    let mairie = Import { partner_id: "mairie", bytes: &at_mairie, ..base_import(true) };
    assert!(import(&server.app, mairie).await.expect("import").applied, "the mairie opens Paul");
    let paul_again = annex(&[KEEP, NEW, "ouvert;Martin;Paul;Paul.Martin@cc-girou.fr;Agent;"]);
    for apply in [false, true] {
        let before = snapshot(&server).await;
        let outcome = run(&server, &paul_again, apply, None).await;
        assert!(!outcome.applied);
        assert_eq!(codes(&outcome.plan), [("email_taken", 4)], "apply: {apply}");
        assert_eq!(outcome.plan.errors[0].email.as_deref(), Some("Paul.Martin@cc-girou.fr"));
        assert_eq!(snapshot(&server).await, before, "nothing changed");
        assert_eq!(state_of(&server, ELOISE).await, None);
    }
    // Without Paul, the same annex applies.
    apply(&server, &annex(&[KEEP, NEW])).await;
    assert_eq!(state_of(&server, ELOISE).await.as_deref(), Some("pending"));
}

fn base_import(apply: bool) -> Import<'static> {
    Import { partner_id: PARTNER, file_name: "annexe1.csv", bytes: b"", transmitted: None, apply, operator: "test" }
}

async fn annex1_interrupted_apply_leaves_nothing(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    apply(
        &server,
        &annex(&[
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "ouvert;Martin;Paul;paul.martin@cc-girou.fr;Agent;",
            "ouvert;Petit;Léa;lea.petit@cc-girou.fr;Référente;",
        ]),
    )
    .await;
    for email in [MARIE, PAUL, "lea.petit@cc-girou.fr"] {
        wait_for_mails(&server, email, "/activate?token=", 1).await;
    }
    let mails_before = outbox(&server).len();
    // Two openings, an update and a closure.
    let second = annex(&[
        "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Directrice;",
        "ouvert;Martin;Paul;paul.martin@cc-girou.fr;Agent;",
        "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        "ouvert;Roux;Jean;jean.roux@cc-girou.fr;Agent;",
        "clôturé;Petit;Léa;lea.petit@cc-girou.fr;Référente;",
    ]);
    let dry = run(&server, &second, false, None).await.plan;
    assert!(dry.errors.is_empty(), "{:?}", dry.errors);
    assert_eq!(dry.changes(), 4);
    let before = snapshot(&server).await;

    for fail_after in [1, 3] {
        let result = import_with_fault(
            &server.app,
            Import {
                partner_id: PARTNER,
                file_name: "annexe1.csv",
                bytes: &second,
                transmitted: None,
                apply: true,
                operator: "test",
            },
            Some(fail_after),
        )
        .await;
        assert!(result.is_err(), "the injected failure after {fail_after} change(s) surfaces");
        assert_eq!(snapshot(&server).await, before, "nothing half done after {fail_after} change(s)");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await; // one mail-job period
    assert_eq!(outbox(&server).len(), mails_before, "no mail went out");
    assert_eq!(state_of(&server, ELOISE).await, None);

    // The same annex, uninterrupted, applies whole.
    let plan = apply(&server, &second).await;
    assert_eq!(plan.changes(), 4);
    assert_eq!(state_of(&server, ELOISE).await.as_deref(), Some("pending"));
    assert_eq!(state_of(&server, "lea.petit@cc-girou.fr").await.as_deref(), Some("closed"));
    let marie = server.app.store.account_by_email(MARIE).await.expect("db").expect("account");
    assert_eq!(marie.function, "Directrice");
    wait_for_mails(&server, "jean.roux@cc-girou.fr", "/activate?token=", 1).await;
}

async fn annex1_terminated_convention_closes_everything_and_blocks_openings(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    let (receiver, secret) = platform(&server).await;
    apply(
        &server,
        &annex(&[
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        ]),
    )
    .await;
    let (id_token, access, refresh) = signed_in(&server, &secret, MARIE).await;

    let today = ymd(today_of(&server));
    let closed = terminate_convention(&server.app, PARTNER, &today, "Résiliation à la demande du partenaire")
        .await
        .expect("terminate");
    assert_eq!(closed, 2, "the active and the pending access");
    for email in [MARIE, ELOISE] {
        assert_eq!(state_of(&server, email).await.as_deref(), Some("closed"), "{email}");
    }
    assert_revoked(&server, &secret, &access, &refresh).await;
    let (_, token) = receiver.wait_for_token(Duration::from_secs(15)).await.expect("logout token delivered");
    verify_logout_token(&server, &token, "platform", &id_token).await;
    let eloise_link = mailed_link(&server, ELOISE, "/activate", 1).await;
    assert_eq!(link_status(&eloise_link).await, 410, "a pending access's link is withdrawn");

    // Openings are refused, the annex as a whole with them.
    let before = snapshot(&server).await;
    let outcome = run(
        &server,
        &annex(&[
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "clôturé;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
            "ouvert;Martin;Paul;paul.martin@cc-girou.fr;Agent;",
        ]),
        true,
        None,
    )
    .await;
    assert!(!outcome.applied);
    assert_eq!(codes(&outcome.plan), [("convention_not_in_force", 0)]);
    assert_eq!(snapshot(&server).await, before);

    // An annex of closures only still applies.
    let outcome = run(
        &server,
        &annex(&[
            "clôturé;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "clôturé;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        ]),
        true,
        None,
    )
    .await;
    assert!(outcome.applied, "{:?}", outcome.plan.errors);
    assert_eq!(people(&outcome.plan.unchanged), [(2, MARIE), (3, ELOISE)], "already closed by the termination");
}

async fn annex1_ended_convention_blocks_openings_but_closures_apply(db: Db) {
    let server = TestServer::start(db).await;
    // Signed long ago; a notice of non-renewal ended it at a past term.
    let signed = today_of(&server) - time::Duration::days(800);
    setup_partner(&server, Some(&ymd(signed))).await;
    apply(
        &server,
        &annex(&[
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        ]),
    )
    .await;
    let ends = set_non_renewal(&server.app, PARTNER, Some(&ymd(signed + time::Duration::days(30))))
        .await
        .expect("non-renewal")
        .expect("end date");
    assert!(ends < ymd(today_of(&server)), "ended on {ends}");

    // A closure applies; an opening is refused.
    let closing = annex(&[
        "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
        "clôturé;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
    ]);
    // The server's housekeeping closes the accesses of ended conventions at
    // start and every minute. Under load its first pass can come after the
    // non-renewal above and close Marie first: her "ouvert" line is then a
    // reopening, refused, and she is listed as closed instead.
    let outcome = run(&server, &closing, true, None).await;
    let closed_by_the_job = !outcome.applied;
    let plan = if closed_by_the_job {
        assert_eq!(codes(&outcome.plan), [("convention_not_in_force", 0)], "Marie's line reopens her");
        assert_eq!(state_of(&server, MARIE).await.as_deref(), Some("closed"));
        let both_closed = annex(&[
            "clôturé;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "clôturé;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        ]);
        apply(&server, &both_closed).await
    } else {
        outcome.plan
    };
    assert_eq!(people(&plan.close), [(3, ELOISE)]);
    assert_eq!(state_of(&server, ELOISE).await.as_deref(), Some("closed"));
    let outcome = run(
        &server,
        &annex(&[
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
        ]),
        true,
        None,
    )
    .await;
    assert!(!outcome.applied);
    assert_eq!(codes(&outcome.plan), [("convention_not_in_force", 0)], "a reopening is an opening");

    // The ended convention's remaining accesses are closed by the job.
    let n = coop_idp::provisioning::close_ended_conventions(&server.app).await.expect("close ended");
    // Marie, the one still open, unless the server's own pass closed her
    // first (the same function).
    assert!(n <= usize::from(!closed_by_the_job), "only Marie was left open: {n}");
    assert_eq!(state_of(&server, MARIE).await.as_deref(), Some("closed"));
}

async fn annex1_unsigned_convention_blocks_openings(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, None).await;
    let file = annex(&["ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;"]);
    let before = snapshot(&server).await;
    let outcome = run(&server, &file, true, None).await;
    assert!(!outcome.applied);
    assert_eq!(codes(&outcome.plan), [("convention_not_in_force", 0)]);
    assert_eq!(people(&outcome.plan.open), [(2, MARIE)], "the plan still shows what would be opened");
    assert_eq!(snapshot(&server).await, before);

    // Signed with a date still to come: not yet.
    let tomorrow = today_of(&server) + time::Duration::days(1);
    sign_convention(&server.app, PARTNER, &ymd(tomorrow)).await.expect("sign");
    assert_eq!(codes(&run(&server, &file, true, None).await.plan), [("convention_not_in_force", 0)]);
    assert_eq!(state_of(&server, MARIE).await, None);

    sign_convention(&server.app, PARTNER, &ymd(today_of(&server))).await.expect("sign");
    apply(&server, &file).await;
    assert_eq!(state_of(&server, MARIE).await.as_deref(), Some("pending"));
    mailed_link(&server, MARIE, "/activate", 1).await;
}

async fn annex1_new_annex_replaces_the_previous_one(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    let first = annex(&["ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;"]);
    let transmitted = today_of(&server) - time::Duration::days(3);
    assert!(run(&server, &first, true, Some(transmitted)).await.applied);
    let current = server.app.store.current_annex1(PARTNER).await.expect("db").expect("annex");
    assert_eq!(current.checksum, hex::encode(coop_idp::crypto::sha256(&first)));
    assert_eq!(current.transmitted_on, ymd(transmitted));
    assert_eq!(current.operator, "test");

    let second = annex(&[
        "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
        "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
    ]);
    // A dry run does not replace it.
    run(&server, &second, false, None).await;
    let still = server.app.store.current_annex1(PARTNER).await.expect("db").expect("annex");
    assert_eq!(still.checksum, current.checksum);

    apply(&server, &second).await;
    let replaced = server.app.store.current_annex1(PARTNER).await.expect("db").expect("annex");
    assert_eq!(replaced.checksum, hex::encode(coop_idp::crypto::sha256(&second)));
    assert_ne!(replaced.checksum, current.checksum);
    assert_eq!(replaced.transmitted_on, ymd(today_of(&server)));
    let rows: Value = serde_json::from_str(&replaced.rows).expect("rows as JSON");
    let emails: Vec<&str> = rows.as_array().expect("array").iter().filter_map(|r| r["email"].as_str()).collect();
    assert_eq!(emails, [MARIE, ELOISE], "the rows of the new annex only");
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM annex1_current WHERE partner_id = $1")
        .bind(PARTNER)
        .fetch_one(server.app.store.pool())
        .await
        .expect("count");
    assert_eq!(count, 1, "only the current annex is kept");
}

// ---------------------------------------------------------------------------
// The command line

#[test]
fn annex1_cli_exit_codes_and_json() {
    let cli = Cli::new();
    let (code, out, err) = cli.run(&[
        "partner",
        "add",
        "--id",
        PARTNER,
        "--name",
        "CC du Girou",
        "--convention-signed",
        "2026-01-01",
        "--email-domain",
        "cc-girou.fr",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let good = cli.file("annexe1.csv", &windows_1252_file());
    let bad = cli.file(
        "annexe1-erreurs.csv",
        &annex(&[
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG;",
            "ouvert;Martin;Paul;paul.martin@ailleurs.fr;Agent;",
        ]),
    );

    // Dry run, clean: 0, the plan printed, nothing done.
    let (code, out, err) = cli.run(&["annex1", "import", "--partner", PARTNER, &good]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains(ELOISE) && out.contains("Éloïse"), "{out}");
    assert_eq!(cli.outbox().len(), 0);
    // A French plan ends in French; the command, not the plan, names its flag.
    assert!(out.contains(": simulation, applicable\n") && !out.contains("(--apply)"), "{out}");
    assert!(out.trim_end().ends_with("relancez la commande avec --apply."), "{out}");

    // A CSV renamed .xlsx: refused (2) with a French sentence, not a dump.
    let renamed = cli.file("annexe1.xlsx", &windows_1252_file());
    let (code, out, err) = cli.run(&["annex1", "import", "--partner", PARTNER, &renamed]);
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("c'est un fichier texte") && err.contains("Renommez-le en .csv"), "{err}");
    assert!(!err.contains("ParseProblem") && !err.contains("code:"), "{err}");

    // Dry run with errors: non-zero, the problem with its line.
    let (code, out, err) = cli.run(&["annex1", "import", "--partner", PARTNER, &bad, "--json"]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    let plan: Value = serde_json::from_str(&out).expect("JSON even when there are errors");
    assert_eq!(plan["errors"][0]["code"], "outside_domains", "{plan}");
    assert_eq!(plan["errors"][0]["line"], 3, "{plan}");
    assert_eq!(plan["errors"][0]["email"], "paul.martin@ailleurs.fr", "{plan}");
    assert!(plan["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));

    // --apply on it: refused, non-zero.
    let (code, out, err) = cli.run(&["annex1", "import", "--partner", PARTNER, &bad, "--apply"]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert_eq!(cli.outbox().len(), 0);
    assert!(err.contains("annexe non appliquée"), "the last word is French too: {err}");

    // --apply on the clean one, with --json and --transmitted: 0, PRODUCT.md keys.
    let transmitted = ymd(time::OffsetDateTime::now_utc().date() - time::Duration::days(1));
    let (code, out, err) =
        cli.run(&["annex1", "import", "--partner", PARTNER, &good, "--apply", "--json", "--transmitted", &transmitted]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let plan: Value = serde_json::from_str(&out).expect("JSON plan");
    for key in ["partner_id", "transmitted", "open", "reopen", "update", "close", "unchanged", "errors", "warnings"] {
        assert!(plan.get(key).is_some(), "{key} in {plan}");
    }
    assert_eq!(plan["partner_id"], PARTNER);
    assert_eq!(plan["transmitted"], transmitted.as_str());
    let opened: Vec<(i64, &str, &str, &str, &str)> = plan["open"]
        .as_array()
        .expect("open")
        .iter()
        .map(|e| {
            (
                e["line"].as_i64().expect("line"),
                e["email"].as_str().expect("email"),
                e["family_name"].as_str().expect("family_name"),
                e["given_name"].as_str().expect("given_name"),
                e["function"].as_str().expect("function"),
            )
        })
        .collect();
    assert_eq!(
        opened,
        [(2, ELOISE, "N'Diaye", "Éloïse", "Chargée de mission"), (3, MARIE, "Dupont", "Marie", "Coordinatrice CTG")]
    );
    assert_eq!(cli.outbox().len(), 2, "activation emails in the outbox");

    // The same file again: nothing to do, still 0.
    let (code, out, err) = cli.run(&["annex1", "import", "--partner", PARTNER, &good, "--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let plan: Value = serde_json::from_str(&out).expect("JSON plan");
    assert_eq!(plan["open"], serde_json::json!([]));
    assert_eq!(plan["unchanged"].as_array().map(Vec::len), Some(2));
    assert_eq!(cli.outbox().len(), 2);

    // One bad cell, one error: Marie's empty function is reported on her
    // line, and she is not also "in no list".
    let one_bad_cell = cli.file(
        "annexe1-cellule.csv",
        &annex(&[
            "ouvert;N'Diaye;Éloïse;eloise.ndiaye@cc-girou.fr;Chargée de mission;",
            "ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;;",
        ]),
    );
    let (code, out, err) = cli.run(&["annex1", "import", "--partner", PARTNER, &one_bad_cell, "--json"]);
    assert_eq!(code, Some(2), "{out}\n{err}");
    let plan: Value = serde_json::from_str(&out).expect("JSON plan");
    let errors: Vec<(&str, i64)> = plan["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["code"].as_str().unwrap_or_default(), e["line"].as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(errors, [("missing_field", 3)], "{plan}");
}
