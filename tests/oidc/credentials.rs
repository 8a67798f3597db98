//! The credential life cycle (R1–R6, R25; issue 3): activation by emailed
//! link, password policy on the pages, lost password, failed sign-in
//! restriction, and email delivery (file outbox and a real SMTP
//! conversation, including a mail server that is down at first).

use std::time::Duration;

use coop_idp::provisioning::invite::{Invitation, invite};
use coop_idp::provisioning::{NewPartner, add_partner};
use coop_idp::web::i18n::{Locale, text};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, TokenResponse};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::net::TcpListener;

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    activation_by_email_then_the_relying_party_signs_in,
    activation_link_is_single_use_superseded_and_expires,
    every_credential_form_requires_its_csrf_token,
    lost_password_answers_alike_and_mails_only_active_accounts,
    reset_link_is_single_use_superseded_and_expires,
    reset_enforces_the_policy_and_revokes_everything,
    failed_sign_ins_are_delayed_then_the_delay_expires,
    unknown_address_is_delayed_alike,
    reset_link_works_during_a_delay,
    source_address_budget_spans_accounts,
    smtp_delivery_is_auto_submitted,
    smtp_server_down_at_first_the_message_still_arrives,
    a_password_set_with_compatibility_characters_signs_in_typed_alike,
    invisible_characters_are_refused_and_never_the_special_one,
    a_code_obtained_before_a_reset_is_refused_after_it,
);

const PARTNER: &str = "cc-girou";
/// Compliant: every convention rule, no personal data, not common.
const NEW_PASSWORD: &str = "Tuile-Verte-7-Basalte";
const OTHER_PASSWORD: &str = "Brique-Rouge-4-Granit";

// ---------------------------------------------------------------------------
// Helpers

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn page(r: reqwest::Response) -> Page {
    let status = r.status();
    let headers = r.headers().clone();
    let html = r.text().await.expect("page body");
    Page { status, headers, html }
}

async fn get(browser: &reqwest::Client, url: &str) -> Page {
    page(browser.get(url).send().await.expect("GET")).await
}

async fn post(browser: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Page {
    page(browser.post(url).form(form).send().await.expect("POST")).await
}

/// A message as the pages show it (minijinja escapes HTML).
fn shown(key: &str) -> String {
    text(Locale::Fr, key)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

/// The inner HTML of the element opened by `open` (up to `close`), if any.
fn section<'a>(html: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = html.find(open)? + open.len();
    let end = html[start..].find(close)?;
    Some(&html[start..start + end])
}

async fn setup_partner(server: &TestServer) {
    add_partner(
        &server.app,
        NewPartner { id: PARTNER, name: "CC du Girou", convention_signed: Some("2026-01-01"), email_domains: &[] },
    )
    .await
    .expect("partner");
}

async fn open_access(server: &TestServer, email: &str) {
    invite(
        &server.app,
        Invitation {
            partner_id: PARTNER,
            email,
            given_name: "Marie",
            family_name: "Dupont",
            function: "Coordinatrice CTG",
        },
    )
    .await
    .expect("invitation");
}

/// Messages queued for `recipient` whose subject contains `subject`.
async fn queued(server: &TestServer, recipient: &str, subject: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mail_outbox WHERE recipient = $1 AND subject LIKE $2")
        .bind(recipient)
        .bind(format!("%{subject}%"))
        .fetch_one(server.app.store.pool())
        .await
        .expect("count mail");
    n
}

const RESET_SUBJECT: &str = "renouvelez";
const ACTIVATION_SUBJECT: &str = "créez";

/// The password form behind a link: its hidden `csrf` and `token`.
async fn open_form(browser: &reqwest::Client, link: &str) -> (String, String) {
    let form = Form::of(browser, link).await;
    (form.csrf().to_string(), form.field("token").expect("token field").to_string())
}

/// Submits a password through a link page, as a browser does.
async fn submit_password(
    server: &TestServer,
    browser: &reqwest::Client,
    link: &str,
    path: &str,
    password: &str,
    confirmation: &str,
) -> Page {
    let form = Form::of(browser, link).await;
    page(form.submit(browser, &server.url(path), &[("password", password), ("confirmation", confirmation)], &[]).await)
        .await
}

/// A sign-in on the page alone (no authorization request): 200 when
/// signed in, 401 when refused, 429 when delayed.
async fn try_sign_in(server: &TestServer, browser: &reqwest::Client, email: &str, password: &str) -> Page {
    page(SignIn::new(email, password).post(browser, &server.base).await).await
}

async fn lost_password(server: &TestServer, browser: &reqwest::Client, email: &str) -> Page {
    let forgot = server.url("/password/forgot");
    page(submit_form(browser, &forgot, &forgot, &[("email", email)], &[]).await).await
}

/// The violation messages shown next to the password field.
fn password_errors(html: &str) -> String {
    section(html, "id=\"password-error\">", "</div>").unwrap_or_default().to_string()
}

const RULES: [&str; 8] = [
    "pw_too_short",
    "pw_too_long",
    "pw_no_uppercase",
    "pw_no_lowercase",
    "pw_no_digit",
    "pw_no_special",
    "pw_personal",
    "pw_common",
];

// ---------------------------------------------------------------------------
// Activation (R2, R3)

async fn activation_by_email_then_the_relying_party_signs_in(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server).await;
    let email = "marie.dupont@cc-girou.fr";
    open_access(&server, email).await;

    let mail = wait_for_mails(&server, email, "/activate?token=", 1).await.remove(0);
    assert!(mail.contains("Auto-Submitted: auto-generated"), "{mail}");
    assert_eq!(
        mail.matches("Content-Transfer-Encoding: 8bit").count(),
        2,
        "the text and HTML parts are readable as is in the folder: {mail}"
    );
    assert!(!mail.contains("quoted-printable"), "{mail}");
    assert!(mail.contains("créez votre mot de passe"), "{mail}");
    let link = link_in(&mail, &format!("{}?token=", server.url("/activate")));
    assert!(link.starts_with(&server.base), "links are built from the issuer: {link}");
    let token = query(&link).get("token").cloned().expect("token");
    assert!(coop_idp::crypto::b64url_decode(&token).is_some_and(|t| t.len() >= 32), "256-bit token");

    // The page lists the rules before the user types, and does not leak the link.
    let browser = browser();
    let p = get(&browser, &link).await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert_eq!(p.header("cache-control"), Some("no-store"));
    assert_eq!(p.header("referrer-policy"), Some("no-referrer"));
    for rule in [
        "pw_rule_length",
        "pw_rule_upper",
        "pw_rule_lower",
        "pw_rule_digit",
        "pw_rule_special",
        "pw_rule_personal",
        "pw_rule_common",
    ] {
        assert!(p.html.contains(&shown(rule)), "rule {rule} listed on the page");
    }
    assert!(p.html.contains("au moins 8 caractères"), "French first");
    assert!(p.html.contains(email), "the page names the account");
    assert_eq!(hidden(&p.html, "token").as_deref(), Some(token.as_str()));
    assert!(p.html.contains("name=\"password\"") && p.html.contains("name=\"confirmation\""));
    assert!(!p.html.contains("password-error"), "no error before typing");

    // Each rule broken alone: 422, its own message next to the field, no other.
    let long = format!("A{}", "b1-".repeat(90));
    let cases: [(&str, &str); 8] = [
        ("Tv-7ba!", "pw_too_short"),
        (&long, "pw_too_long"),
        ("tuile-verte-7-basalte", "pw_no_uppercase"),
        ("TUILE-VERTE-7-BASALTE", "pw_no_lowercase"),
        ("Tuile-Verte-sept-Basalte", "pw_no_digit"),
        ("TuileVerte7Basalte", "pw_no_special"),
        ("Dupont-Tuile-7-Verte", "pw_personal"),
        ("Password1!", "pw_common"),
    ];
    for (password, rule) in cases {
        let p = submit_password(&server, &browser, &link, "/activate", password, password).await;
        assert_eq!(p.status, 422, "{rule}: {}", p.html);
        let next_to_field = password_errors(&p.html);
        assert!(next_to_field.contains(&shown(rule)), "{rule} shown next to the field: {}", p.html);
        for other in RULES.iter().filter(|r| **r != rule) {
            assert!(!next_to_field.contains(&shown(other)), "{rule} alone, not {other}");
        }
        assert!(p.html.contains("aria-invalid=\"true\""));
        assert!(p.html.contains(&shown("pw_rule_upper")), "the rules stay listed");
        assert_eq!(hidden(&p.html, "token").as_deref(), Some(token.as_str()), "the form keeps its link");
    }
    // The confirmation must match: shown next to the confirmation field.
    let p = submit_password(&server, &browser, &link, "/activate", NEW_PASSWORD, OTHER_PASSWORD).await;
    assert_eq!(p.status, 422);
    assert!(
        section(&p.html, "id=\"confirmation-error\">", "</p>").is_some_and(|s| s.contains(&shown("pw_mismatch"))),
        "{}",
        p.html
    );
    assert!(password_errors(&p.html).is_empty(), "the password itself was fine");

    // Still pending: no password works yet, not even the refused ones.
    for password in [NEW_PASSWORD, "Password1!"] {
        let p = try_sign_in(&server, &browser, email, password).await;
        assert_eq!(p.status, 401, "a pending account cannot sign in");
    }
    let state = server.app.store.account_by_email(email).await.expect("db").expect("account");
    assert_eq!(state.state, "pending");
    assert!(state.password_hash.is_none());

    // A compliant password is accepted; the account becomes active.
    let p = submit_password(&server, &browser, &link, "/activate", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(p.html.contains(&shown("activated_title")), "{}", p.html);
    assert!(p.html.contains(&format!("href=\"&#x2f;signin\">{}</a>", shown("to_signin"))), "links onwards: {}", p.html);
    let row = server.app.store.account_by_email(email).await.expect("db").expect("account");
    assert_eq!(row.state, "active");
    assert!(row.password_hash.as_deref().is_some_and(|h| h.starts_with("$argon2id$")), "Argon2id");

    // The relying party signs that user in.
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let (tokens, nonce) =
        code_flow_as(&server, &rp, &crate::common::browser(), (email, NEW_PASSWORD), &["profile", "email", "coop"])
            .await;
    let claims = tokens.id_token().expect("id_token").claims(&rp.id_token_verifier(), &nonce).expect("valid");
    assert_eq!(claims.subject().as_str(), row.id);
    assert_eq!(claims.email().map(|e| e.as_str()), Some(email));
    let info = userinfo(&server, tokens.access_token().secret()).await;
    assert_eq!(info["partner_id"], PARTNER);
    assert_eq!(info["given_name"], "Marie");
    assert_eq!(info["function"], "Coordinatrice CTG");
}

async fn activation_link_is_single_use_superseded_and_expires(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server).await;
    let browser = browser();

    // Used twice: the second time explains.
    let used = "used@cc-girou.fr";
    open_access(&server, used).await;
    let link = mailed_link(&server, used, "/activate", 1).await;
    let (csrf, token) = open_form(&browser, &link).await;
    let form = [("csrf", csrf.as_str()), ("token", &token), ("password", NEW_PASSWORD), ("confirmation", NEW_PASSWORD)];
    let p = post(&browser, &server.url("/activate"), &form).await;
    assert_eq!(p.status, 200, "{}", p.html);
    let p = get(&browser, &link).await;
    assert_eq!(p.status, 410);
    assert!(p.html.contains(&shown("link_used")) && p.html.contains(&shown("link_help_activation")), "{}", p.html);
    let form =
        [("csrf", csrf.as_str()), ("token", &token), ("password", OTHER_PASSWORD), ("confirmation", OTHER_PASSWORD)];
    let p = post(&browser, &server.url("/activate"), &form).await;
    assert_eq!(p.status, 410, "a used link cannot set another password");
    assert_eq!(try_sign_in(&server, &browser, used, OTHER_PASSWORD).await.status, 401);
    assert_eq!(try_sign_in(&server, &browser, used, NEW_PASSWORD).await.status, 200);

    // A re-invitation supersedes the older link.
    let again = "again@cc-girou.fr";
    open_access(&server, again).await;
    let first = mailed_link(&server, again, "/activate", 1).await;
    open_access(&server, again).await;
    let second = mailed_link(&server, again, "/activate", 2).await;
    assert_ne!(first, second);
    let p = get(&browser, &first).await;
    assert_eq!(p.status, 410);
    assert!(p.html.contains(&shown("link_superseded")), "{}", p.html);
    let p = submit_password_raw(&server, &browser, &first, "/activate", NEW_PASSWORD).await;
    assert_eq!(p.status, 410, "the older link cannot set a password");
    assert_eq!(get(&browser, &second).await.status, 200, "the newest link works");

    // Unknown or missing token.
    let p = get(&browser, &server.url("/activate?token=nope")).await;
    assert_eq!(p.status, 410);
    assert!(p.html.contains(&shown("link_unknown")));
    assert_eq!(get(&browser, &server.url("/activate")).await.status, 410);
    // A reset token does not open the activation page, nor the other way round.
    assert_eq!(get(&browser, &second.replace("/activate?", "/password/reset?")).await.status, 410);

    // Expiry: valid until 72 hours, then explained.
    server.clock.advance_secs(72 * 3600 - 60);
    assert_eq!(get(&browser, &second).await.status, 200, "still valid just before 72 h");
    server.clock.advance_secs(61);
    let p = get(&browser, &second).await;
    assert_eq!(p.status, 410);
    assert!(p.html.contains(&shown("link_expired")) && p.html.contains(&shown("link_help_activation")));
    let p = submit_password_raw(&server, &browser, &second, "/activate", NEW_PASSWORD).await;
    assert_eq!(p.status, 410, "an expired link cannot set a password");
    let row = server.app.store.account_by_email(again).await.expect("db").expect("account");
    assert_eq!(row.state, "pending");
    assert_eq!(try_sign_in(&server, &browser, again, NEW_PASSWORD).await.status, 401);
}

/// Posts a password for a link without opening its page (the page of a dead
/// link has no form); the CSRF token comes from the sign-in page.
async fn submit_password_raw(
    server: &TestServer,
    browser: &reqwest::Client,
    link: &str,
    path: &str,
    password: &str,
) -> Page {
    let p = get(browser, &server.url("/signin")).await;
    let csrf = hidden(&p.html, "csrf").expect("csrf field");
    let token = query(link).get("token").cloned().expect("token");
    post(
        browser,
        &server.url(path),
        &[("csrf", &csrf), ("token", &token), ("password", password), ("confirmation", password)],
    )
    .await
}

// ---------------------------------------------------------------------------
// CSRF

async fn every_credential_form_requires_its_csrf_token(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server).await;
    let browser = browser();
    let wrong = coop_idp::crypto::random_token();

    // Activation.
    let pending = "pending@cc-girou.fr";
    open_access(&server, pending).await;
    let link = mailed_link(&server, pending, "/activate", 1).await;
    let (_, token) = open_form(&browser, &link).await;
    for csrf in [None, Some(wrong.as_str()), Some("")] {
        let mut form = vec![("token", token.as_str()), ("password", NEW_PASSWORD), ("confirmation", NEW_PASSWORD)];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let p = post(&browser, &server.url("/activate"), &form).await;
        assert_eq!(p.status, 403, "activation with csrf {csrf:?}");
        assert!(p.html.contains(&shown("err_csrf")));
    }
    // A token valid in another browser is not valid in this one.
    let other = crate::common::browser();
    let (other_csrf, _) = open_form(&other, &link).await;
    let form =
        [("csrf", other_csrf.as_str()), ("token", &token), ("password", NEW_PASSWORD), ("confirmation", NEW_PASSWORD)];
    assert_eq!(post(&browser, &server.url("/activate"), &form).await.status, 403);
    // Nothing changed: still pending, the link still works.
    let row = server.app.store.account_by_email(pending).await.expect("db").expect("account");
    assert_eq!(row.state, "pending");
    assert!(row.password_hash.is_none());
    assert_eq!(try_sign_in(&server, &browser, pending, NEW_PASSWORD).await.status, 401);
    assert_eq!(get(&browser, &link).await.status, 200, "the link was not used");

    // Lost password.
    let active = "active@cc-girou.fr";
    server.add_account(active, None).await;
    for csrf in [None, Some(wrong.as_str())] {
        let mut form = vec![("email", active)];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let p = post(&browser, &server.url("/password/forgot"), &form).await;
        assert_eq!(p.status, 403, "lost password with csrf {csrf:?}");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(queued(&server, active, RESET_SUBJECT).await, 0, "no reset email without a valid form");

    // Reset.
    assert_eq!(lost_password(&server, &browser, active).await.status, 200);
    let link = mailed_link(&server, active, "/password/reset", 1).await;
    let (_, token) = open_form(&browser, &link).await;
    for csrf in [None, Some(wrong.as_str())] {
        let mut form = vec![("token", token.as_str()), ("password", NEW_PASSWORD), ("confirmation", NEW_PASSWORD)];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let p = post(&browser, &server.url("/password/reset"), &form).await;
        assert_eq!(p.status, 403, "reset with csrf {csrf:?}");
    }
    assert_eq!(try_sign_in(&server, &browser, active, PASSWORD).await.status, 200, "the old password still works");
    assert_eq!(try_sign_in(&server, &browser, active, NEW_PASSWORD).await.status, 401);
    assert_eq!(get(&browser, &link).await.status, 200, "the reset link was not used");
    assert_eq!(queued(&server, active, "modifié").await, 0, "no confirmation email");
}

// ---------------------------------------------------------------------------
// Lost password (R4)

async fn lost_password_answers_alike_and_mails_only_active_accounts(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server).await;
    let active = "active@cc-girou.fr";
    let pending = "pending@cc-girou.fr";
    let unknown = "nobody@cc-girou.fr";
    server.add_account(active, None).await;
    open_access(&server, pending).await;

    // The sign-in page links to the lost-password page.
    let signin = get(&browser(), &server.url("/signin")).await;
    assert!(signin.html.contains("href=\"/password/forgot\""), "the sign-in page links to it");
    let form = get(&browser(), &server.url("/password/forgot")).await;
    assert_eq!(form.status, 200);
    assert!(form.html.contains("name=\"email\""));

    let mut answers = Vec::new();
    for email in [unknown, pending, active, "not an address"] {
        let p = lost_password(&server, &browser(), email).await;
        assert!(p.html.contains(&shown("forgot_sent")), "{}", p.html);
        answers.push((p.status, p.html));
    }
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, &answers[0], "answer {i} differs: the page must not tell which addresses exist");
    }
    assert_eq!(answers[0].0, 200);

    // Only the active account gets a reset email.
    let mails = wait_for_mails(&server, active, "/password/reset?token=", 1).await;
    assert!(mails[0].contains("Auto-Submitted: auto-generated"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(queued(&server, active, RESET_SUBJECT).await, 1);
    assert_eq!(queued(&server, pending, RESET_SUBJECT).await, 0, "a pending account gets no reset link");
    assert_eq!(queued(&server, pending, ACTIVATION_SUBJECT).await, 1, "only its activation email");
    assert_eq!(queued(&server, unknown, "").await, 0, "an unknown address gets nothing");
    assert!(outbox(&server).iter().all(|m| !is_to(m, unknown)));

    // A second request within a minute sends no second email (same answer).
    let p = lost_password(&server, &browser(), active).await;
    assert_eq!((p.status, p.html), answers[0].clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(queued(&server, active, RESET_SUBJECT).await, 1, "no second email within a minute");
    // After a minute, a new one.
    server.clock.advance_secs(61);
    // Typed in another case, the address still designates the account.
    lost_password(&server, &browser(), &active.to_uppercase()).await;
    wait_for_mails(&server, active, "/password/reset?token=", 2).await;
    assert_eq!(queued(&server, active, RESET_SUBJECT).await, 2);
}

async fn reset_link_is_single_use_superseded_and_expires(db: Db) {
    let server = TestServer::start(db).await;
    let email = "marie.dupont@cc-girou.fr";
    server.add_account(email, None).await;
    let browser = browser();

    // Superseded by a newer request.
    lost_password(&server, &browser, email).await;
    let first = mailed_link(&server, email, "/password/reset", 1).await;
    server.clock.advance_secs(61);
    lost_password(&server, &browser, email).await;
    let second = mailed_link(&server, email, "/password/reset", 2).await;
    assert_ne!(first, second);
    let p = get(&browser, &first).await;
    assert_eq!(p.status, 410);
    assert!(p.html.contains(&shown("link_superseded")) && p.html.contains(&shown("link_help_reset")), "{}", p.html);
    assert_eq!(submit_password_raw(&server, &browser, &first, "/password/reset", NEW_PASSWORD).await.status, 410);
    assert_eq!(try_sign_in(&server, &browser, email, PASSWORD).await.status, 200, "nothing changed");

    // Expires after 30 minutes.
    let p = get(&browser, &second).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.header("cache-control"), Some("no-store"));
    assert_eq!(p.header("referrer-policy"), Some("no-referrer"));
    server.clock.advance_secs(30 * 60 - 60);
    assert_eq!(get(&browser, &second).await.status, 200, "still valid just before 30 min");
    server.clock.advance_secs(61);
    let p = get(&browser, &second).await;
    assert_eq!(p.status, 410);
    assert!(p.html.contains(&shown("link_expired")), "{}", p.html);
    assert_eq!(submit_password_raw(&server, &browser, &second, "/password/reset", NEW_PASSWORD).await.status, 410);
    assert_eq!(try_sign_in(&server, &browser, email, NEW_PASSWORD).await.status, 401);

    // Single use.
    lost_password(&server, &browser, email).await;
    let third = mailed_link(&server, email, "/password/reset", 3).await;
    let p = submit_password(&server, &browser, &third, "/password/reset", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(p.status, 200, "{}", p.html);
    let p = get(&browser, &third).await;
    assert_eq!(p.status, 410);
    assert!(p.html.contains(&shown("link_used")));
    assert_eq!(submit_password_raw(&server, &browser, &third, "/password/reset", OTHER_PASSWORD).await.status, 410);
    assert_eq!(try_sign_in(&server, &browser, email, OTHER_PASSWORD).await.status, 401);
    assert_eq!(try_sign_in(&server, &browser, email, NEW_PASSWORD).await.status, 200);
}

async fn reset_enforces_the_policy_and_revokes_everything(db: Db) {
    let server = TestServer::start(db).await;
    let email = "marie.dupont@cc-girou.fr";
    server.add_account(email, None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;

    // Signed in at the platform, with a refresh token.
    let session_browser = browser();
    let (tokens, _) = code_flow(&server, &rp, &session_browser, email, &["offline_access"]).await;
    let access = tokens.access_token().secret().clone();
    let refresh = tokens.refresh_token().expect("refresh token").secret().clone();
    assert_eq!(userinfo_status(&server, &access).await, 200);

    // The lost-password path, from another browser (the mail client's).
    let mailbox = browser();
    lost_password(&server, &mailbox, email).await;
    let link = mailed_link(&server, email, "/password/reset", 1).await;
    let p = get(&mailbox, &link).await;
    assert_eq!(p.status, 200);
    assert!(p.html.contains(&shown("pw_rule_special")), "the rules are listed");

    // Policy enforced, link kept; the current password is no new one.
    for (password, rule) in [
        ("Tv-7ba!", "pw_too_short"),
        ("TuileVerte7Basalte", "pw_no_special"),
        ("Marie-Tuile-7!", "pw_personal"),
        (PASSWORD, "pw_same_as_current"),
    ] {
        let p = submit_password(&server, &mailbox, &link, "/password/reset", password, password).await;
        assert_eq!(p.status, 422, "{rule}");
        assert!(password_errors(&p.html).contains(&shown(rule)), "{rule}: {}", p.html);
    }
    assert_eq!(try_sign_in(&server, &browser(), email, PASSWORD).await.status, 200, "refused: nothing changed");
    assert_eq!(userinfo_status(&server, &access).await, 200, "refused: tokens untouched");

    let p = submit_password(&server, &mailbox, &link, "/password/reset", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(p.html.contains(&shown("reset_done_title")));
    assert!(p.html.contains(&format!("href=\"&#x2f;signin\">{}</a>", shown("to_signin"))), "links onwards: {}", p.html);

    // Old password dead, new one works.
    assert_eq!(try_sign_in(&server, &browser(), email, PASSWORD).await.status, 401);
    assert_eq!(try_sign_in(&server, &browser(), email, NEW_PASSWORD).await.status, 200);

    // Tokens issued before are dead.
    assert_eq!(userinfo_status(&server, &access).await, 401, "access token revoked");
    let r = http_client()
        .post(server.url("/token"))
        .basic_auth("platform", Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // The browser session opened before is over: the platform must sign in again.
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
        .url();
    let r = session_browser.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/signin?request="), "session ended: {}", location(&r));

    // A confirmation without any secret.
    let mails = wait_for_mails(&server, email, "modifi", 1).await;
    let confirmation = mails.last().expect("confirmation");
    assert!(confirmation.contains("Auto-Submitted: auto-generated"));
    assert!(!confirmation.contains("token="), "{confirmation}");
    assert!(!confirmation.contains(NEW_PASSWORD));
    assert!(confirmation.contains(&server.base), "points to the sign-in page");
    assert_eq!(queued(&server, email, "modifié").await, 1);
}

// ---------------------------------------------------------------------------
// Failed sign-in restriction (R6)

async fn fail_times(server: &TestServer, browser: &reqwest::Client, email: &str, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for i in 0..n {
        statuses.push(try_sign_in(server, browser, email, &format!("Wrong-Guess-{i}!")).await.status);
    }
    statuses
}

fn retry_after(p: &Page) -> i64 {
    p.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("Retry-After on {}", p.status))
}

async fn failed_sign_ins_are_delayed_then_the_delay_expires(db: Db) {
    let server = TestServer::start(db).await;
    let email = "marie.dupont@cc-girou.fr";
    server.add_account(email, None).await;
    let browser = browser();

    assert_eq!(fail_times(&server, &browser, email, 5).await, vec![StatusCode::UNAUTHORIZED; 5], "5 free failures");
    // Even the right password is refused during the delay.
    let p = try_sign_in(&server, &browser, email, PASSWORD).await;
    assert_eq!(p.status, 429);
    let wait = retry_after(&p);
    assert!((1..=60).contains(&wait), "a first delay of one minute: {wait}");
    assert!(p.html.contains(&shown("signin_throttled")), "{}", p.html);
    assert!(!p.html.contains(&shown("signin_failed")), "the delay does not say whether the password was right");

    // The delay ends on its own; one more failure doubles it.
    server.clock.advance_secs(61);
    assert_eq!(try_sign_in(&server, &browser, email, "Wrong-Again-1!").await.status, 401);
    let p = try_sign_in(&server, &browser, email, PASSWORD).await;
    assert_eq!(p.status, 429);
    let wait = retry_after(&p);
    assert!((61..=120).contains(&wait), "the delay doubles: {wait}");
    server.clock.advance_secs(wait + 1);

    // The right password works and resets the counter.
    assert_eq!(try_sign_in(&server, &browser, email, PASSWORD).await.status, 200);
    assert_eq!(fail_times(&server, &browser, email, 4).await, vec![StatusCode::UNAUTHORIZED; 4]);
    assert_eq!(
        try_sign_in(&server, &browser, email, PASSWORD).await.status,
        200,
        "4 failures after a success are free"
    );
    fail_times(&server, &browser, email, 5).await;
    let p = try_sign_in(&server, &browser, email, PASSWORD).await;
    assert_eq!(p.status, 429);
    assert!(retry_after(&p) <= 60, "a fresh count starts again at one minute");
}

async fn unknown_address_is_delayed_alike(db: Db) {
    let server = TestServer::start(db).await;
    let known = "marie.dupont@cc-girou.fr";
    let unknown = "nobody@cc-girou.fr";
    server.add_account(known, None).await;
    let browser = browser();

    let mut seen = Vec::new();
    for email in [known, unknown] {
        let mut statuses = fail_times(&server, &browser, email, 5).await;
        let p = try_sign_in(&server, &browser, email, PASSWORD).await;
        statuses.push(p.status);
        let wait = retry_after(&p);
        assert!((1..=60).contains(&wait), "{email}: {wait}");
        let message_shown = p.html.contains(&shown("signin_throttled"));
        seen.push((statuses, message_shown));
    }
    assert_eq!(seen[0], seen[1], "an unknown address behaves like a known one");
    let mut expected = vec![StatusCode::UNAUTHORIZED; 5];
    expected.push(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(seen[1].0, expected);

    server.clock.advance_secs(61);
    assert_eq!(try_sign_in(&server, &browser, unknown, PASSWORD).await.status, 401);
    assert_eq!(try_sign_in(&server, &browser, known, PASSWORD).await.status, 200);
}

async fn reset_link_works_during_a_delay(db: Db) {
    let server = TestServer::start(db).await;
    let email = "marie.dupont@cc-girou.fr";
    server.add_account(email, None).await;
    let browser = browser();

    fail_times(&server, &browser, email, 5).await;
    assert_eq!(try_sign_in(&server, &browser, email, PASSWORD).await.status, 429);

    // The owner renews the password through the emailed link meanwhile.
    lost_password(&server, &browser, email).await;
    let link = mailed_link(&server, email, "/password/reset", 1).await;
    let p = submit_password(&server, &browser, &link, "/password/reset", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(p.status, 200, "{}", p.html);
    // Having proved control of the mailbox, the owner is not locked out.
    assert_eq!(try_sign_in(&server, &browser, email, NEW_PASSWORD).await.status, 200);
    assert_eq!(try_sign_in(&server, &browser, email, PASSWORD).await.status, 401);
}

async fn source_address_budget_spans_accounts(db: Db) {
    let server = TestServer::start_with(db, &[("throttle_ip_max_failures", "5")]).await;
    let email = "marie.dupont@cc-girou.fr";
    server.add_account(email, None).await;
    let browser = browser();

    // Password spraying: one failure on each of five addresses.
    for i in 0..5 {
        let p = try_sign_in(&server, &browser, &format!("agent{i}@cc-girou.fr"), "Spring2026!").await;
        assert_eq!(p.status, 401, "attempt {i}");
    }
    // The source's budget is spent: refused even for a fresh address and the right password.
    let p = try_sign_in(&server, &browser, email, PASSWORD).await;
    assert_eq!(p.status, 429);
    let wait = retry_after(&p);
    assert!((1..=15 * 60).contains(&wait), "{wait}");
    let p = try_sign_in(&server, &browser, "agent9@cc-girou.fr", "Spring2026!").await;
    assert_eq!(p.status, 429);

    server.clock.advance_secs(wait + 1);
    assert_eq!(try_sign_in(&server, &browser, email, PASSWORD).await.status, 200, "the budget comes back");
}

// ---------------------------------------------------------------------------
// Email over SMTP (R25)

async fn wait_for_smtp(inbox: &Inbox, secs: u64) -> Vec<String> {
    for _ in 0..secs * 10 {
        let got = inbox.lock().expect("inbox").clone();
        if !got.is_empty() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no message reached the SMTP receiver within {secs} s");
}

/// Undoes quoted-printable (soft line breaks and `=XX`).
fn quoted_printable_decode(s: &str) -> String {
    let joined = s.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks an activation message received over SMTP; returns its link.
fn check_activation_message(server: &TestServer, message: &str, recipient: &str) -> String {
    assert!(message.contains("Auto-Submitted: auto-generated"), "{message}");
    assert!(is_to(message, recipient), "{message}");
    assert!(message.is_ascii(), "7-bit clean: the receiver announced no 8BITMIME");
    let decoded = quoted_printable_decode(message);
    assert!(decoded.contains("Bonjour Marie") && decoded.contains("créez votre mot de passe"), "{decoded}");
    link_in(&decoded, &format!("{}?token=", server.url("/activate")))
}

async fn smtp_delivery_is_auto_submitted(db: Db) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
    let port = listener.local_addr().expect("addr").port();
    let (inbox, _) = smtp_receiver(listener, Smtp::Willing);
    let smtp = format!("smtp://127.0.0.1:{port}");
    let server = TestServer::start_with(db, &[("smtp_url", &smtp)]).await;
    setup_partner(&server).await;
    let email = "marie.dupont@cc-girou.fr";
    open_access(&server, email).await;

    let messages = wait_for_smtp(&inbox, 10).await;
    assert_eq!(messages.len(), 1);
    let link = check_activation_message(&server, &messages[0], email);
    assert!(outbox(&server).is_empty(), "SMTP configured: no file outbox");
    // The link from the SMTP message works.
    let p = submit_password(&server, &browser(), &link, "/activate", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(p.status, 200, "{}", p.html);
    // Delivered once, and its body (with the link) no longer kept.
    coop_idp::mail::send_due(&server.app.store, &server.app.clock, &server.app.mail, &server.app.config)
        .await
        .expect("send due");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inbox.lock().expect("inbox").len(), 1, "sent once");
    let (waiting, failed) = server.app.store.mail_counts().await.expect("counts");
    assert_eq!((waiting, failed), (0, 0));
}

async fn smtp_server_down_at_first_the_message_still_arrives(db: Db) {
    // Reserve a port, then free it: nothing listens there for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve").local_addr().expect("addr").port();
    let smtp = format!("smtp://127.0.0.1:{port}");
    let server = TestServer::start_with(db, &[("smtp_url", &smtp)]).await;
    setup_partner(&server).await;
    let email = "marie.dupont@cc-girou.fr";
    open_access(&server, email).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (attempts, last_error): (i64, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM mail_outbox WHERE recipient = $1")
            .bind(email)
            .fetch_one(server.app.store.pool())
            .await
            .expect("queued message");
    assert!(attempts >= 1, "delivery was attempted while the server was down");
    assert!(last_error.is_some());
    assert_eq!(server.app.store.mail_counts().await.expect("counts"), (1, 0), "still waiting, not failed");

    // The mail server comes up; the retry delivers.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the reserved port");
    let (inbox, _) = smtp_receiver(listener, Smtp::Willing);
    let messages = wait_for_smtp(&inbox, 20).await;
    assert_eq!(messages.len(), 1);
    check_activation_message(&server, &messages[0], email);
    for _ in 0..20 {
        if server.app.store.mail_counts().await.expect("counts") == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.app.store.mail_counts().await.expect("counts"), (0, 0), "marked sent");
    let (attempts,): (i64,) = sqlx::query_as("SELECT attempts FROM mail_outbox WHERE recipient = $1")
        .bind(email)
        .fetch_one(server.app.store.pool())
        .await
        .expect("message");
    assert!(attempts >= 2, "delivered by a retry: {attempts}");
}

async fn a_password_set_with_compatibility_characters_signs_in_typed_alike(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server).await;
    let email = "compat@cc-girou.fr";
    open_access(&server, email).await;
    let link = mailed_link(&server, email, "/activate", 1).await;
    let typed = "Zkpq\u{2460}Mwx!";
    let p = submit_password(&server, &browser(), &link, "/activate", typed, typed).await;
    assert_eq!(p.status, 200, "{}", p.html);
    // Typed exactly as set, and in its NFKC form: the same password.
    assert_eq!(try_sign_in(&server, &browser(), email, typed).await.status, 200);
    assert_eq!(try_sign_in(&server, &browser(), email, "Zkpq1Mwx!").await.status, 200);
    assert_eq!(try_sign_in(&server, &browser(), email, "Zkpq2Mwx!").await.status, 401);
}

async fn invisible_characters_are_refused_and_never_the_special_one(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server).await;
    let email = "invisible@cc-girou.fr";
    open_access(&server, email).await;
    let link = mailed_link(&server, email, "/activate", 1).await;
    // Zero-width space, right-to-left override, soft hyphen, private use:
    // refused; variation selector, combining accent alone: not special.
    let cases = [('\u{200B}', true), ('\u{202E}', true), ('\u{00AD}', true), ('\u{E000}', true)];
    let marks = [('\u{FE0F}', false), ('\u{0301}', false)];
    for (c, invisible) in cases.into_iter().chain(marks) {
        let password = format!("TuileVerte7Basalte{c}");
        let p = submit_password(&server, &browser(), &link, "/activate", &password, &password).await;
        let errors = password_errors(&p.html);
        assert!(errors.contains(&shown("pw_no_special")), "U+{:04X}: {}", c as u32, p.html);
        assert_eq!(errors.contains(&shown("pw_invisible")), invisible, "U+{:04X}: {errors}", c as u32);
    }
    // The other side: a visible special character makes the same password pass.
    let p =
        submit_password(&server, &browser(), &link, "/activate", "TuileVerte7Basalte!", "TuileVerte7Basalte!").await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert_eq!(try_sign_in(&server, &browser(), email, "TuileVerte7Basalte!").await.status, 200);
}

/// The other side, a code of a live session exchanged, is in `code_session`.
async fn a_code_obtained_before_a_reset_is_refused_after_it(db: Db) {
    let server = TestServer::start(db).await;
    let email = "marie.dupont@cc-girou.fr";
    server.add_account(email, None).await;
    let secret = server.add_client("platform").await;
    let pkce = Pkce::random();
    let code = code_at(&browser(), &server.url(""), &server.url(""), "platform", email, &pkce).await;
    let mailbox = browser();
    lost_password(&server, &mailbox, email).await;
    let link = mailed_link(&server, email, "/password/reset", 1).await;
    let p = submit_password(&server, &mailbox, &link, "/password/reset", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(p.status, 200, "{}", p.html);
    let (status, body) = exchange_at(&server.url(""), "platform", &secret, &code, &pkce).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}
