//! The second sign-in step of the tests: enrolment on the TOTP page, or a
//! code computed from the secret the test enrolled with. Shared by the
//! integration and browser test binaries (through `common::submit_sign_in`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use coop_idp::auth::totp;

use crate::common::*;

pub(crate) const ENROL: &str = "/signin/otp/enrol";
pub(crate) const VERIFY: &str = "/signin/otp";

/// The TOTP secret each (server, email) enrolled with in these tests.
pub(crate) fn secrets() -> &'static Mutex<HashMap<String, String>> {
    static S: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

pub(crate) fn remember(server: &TestServer, email: &str, secret: &str) {
    secrets().lock().expect("lock").insert(format!("{}|{email}", server.base), secret.to_string());
}

pub(crate) fn secret_of(server: &TestServer, email: &str) -> String {
    secrets().lock().expect("lock").get(&format!("{}|{email}", server.base)).cloned().expect("enrolled in this test")
}

/// The text between `start` and `end` after `start`.
pub(crate) fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let to = html[from..].find(end)?;
    Some(&html[from..from + to])
}

/// The manual key shown on the enrolment page, without its spaces.
pub(crate) fn key_on_page(html: &str) -> String {
    between(html, "class=\"totp-key\" translate=\"no\">", "</code>").expect("manual key").replace(' ', "")
}

/// The recovery codes shown once after enrolment.
pub(crate) fn codes_on_page(html: &str) -> Vec<String> {
    html.split("<li><code>").skip(1).filter_map(|s| s.split("</code>").next()).map(str::to_string).collect()
}

/// A code the server has not yet accepted: the current step's, or the next
/// one when the current was used (moving the clock on if need be).
pub(crate) async fn fresh_code(server: &TestServer, email: &str) -> String {
    let secret = secret_of(server, email);
    let account = server.app.store.account_by_email(email).await.expect("read").expect("account");
    let last = server.app.store.totp(&account.id).await.expect("read").expect("enrolled").last_step;
    let mut now = totp::step_at(server.clock.now_ms());
    if last >= now + totp::DRIFT_STEPS {
        server.clock.advance_secs(totp::STEP_SECS);
        now = totp::step_at(server.clock.now_ms());
    }
    let step = now.max(last + 1);
    totp::hotp(&totp::base32_decode(&secret).expect("base32"), step)
}

pub(crate) async fn post_code(server: &TestServer, b: &reqwest::Client, path: &str, code: &str) -> reqwest::Response {
    submit_form(b, &server.url(path), &server.url(path), &[("code", code)], &[]).await
}

/// Enrols on the enrolment page the browser was sent to: returns the
/// recovery codes and the page's "continue" link.
pub(crate) async fn enrol(server: &TestServer, b: &reqwest::Client, email: &str) -> (Vec<String>, String) {
    let page = b.get(server.url(ENROL)).send().await.expect("enrol page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("<img src=\"data:image"), "a QR code as an image: {html}");
    assert!(html.contains("alt=\""), "the QR code has a text alternative");
    let secret = key_on_page(&html);
    let code = totp::code_at(&secret, server.clock.now_ms()).expect("code");
    let r = post_code(server, b, ENROL, &code).await;
    assert_eq!(r.status(), 200, "enrolment confirmed");
    let html = r.text().await.expect("html");
    let codes = codes_on_page(&html);
    assert_eq!(codes.len(), 10, "{html}");
    assert!(!html.contains(&secret) && !html.contains(&totp::grouped(&secret)), "the key is not shown again");
    remember(server, email, &secret);
    let next = between(&html, "class=\"fr-btn\" href=\"", "\"")
        .expect("continue link")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    (codes, next)
}

/// Completes the second step the password step redirected to.
pub(crate) async fn second_step(
    server: &TestServer,
    b: &reqwest::Client,
    email: &str,
    step: &str,
) -> reqwest::Response {
    match step {
        ENROL => {
            enrol(server, b, email).await;
            b.get(server.url("/account/security")).send().await.expect("security page")
        }
        VERIFY => {
            let code = fresh_code(server, email).await;
            post_code(server, b, VERIFY, &code).await
        }
        other => panic!("not a second step: {other}"),
    }
}
