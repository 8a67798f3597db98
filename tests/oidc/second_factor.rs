//! The second factor (R18; issue 6 part 1): an administrator cannot reach
//! the admin API before enrolling a TOTP app, nor on a password-only
//! session; enrolment gives 10 recovery codes; a wrong or replayed code is
//! refused; a recovery code works once; the ID token's `amr`/`acr` say how
//! the user signed in; an agent may opt in. Codes are computed in the test
//! with the same RFC 6238 functions, checked on their own against the RFC's
//! vectors in the unit tests.

use coop_idp::store::events::EventFilter;
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, TokenResponse};
use serde_json::Value;

use crate::common::*;
use crate::on_both_databases;
use crate::second_step::*;

on_both_databases!(
    administrator_without_second_factor_cannot_reach_the_admin_api,
    codes_are_checked_used_once_and_recovery_codes_once,
    id_token_amr_and_acr_follow_the_second_factor,
    an_agent_may_opt_in,
    totp_secrets_are_sealed_at_rest,
    the_totp_key_rotates_and_every_secret_follows,
);

const ADMIN: &str = "rssi@caf.fr";
const AGENT: &str = "marie.dupont@cc-girou.fr";
/// Posts the password; returns the response (a redirect to a second step,
/// or the signed-in page).
async fn password_step(
    server: &TestServer,
    b: &reqwest::Client,
    email: &str,
    request: Option<&str>,
) -> reqwest::Response {
    let page = match request {
        Some(r) => format!("/signin?request={r}"),
        None => "/signin".to_string(),
    };
    SignIn::new(email, PASSWORD).on(&page).post(b, &server.base).await
}

async fn me(server: &TestServer, b: &reqwest::Client) -> (u16, Value) {
    let r = b.get(server.url("/admin/api/me")).send().await.expect("me");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn count(server: &TestServer, kind: &str) -> usize {
    server
        .app
        .store
        .query_events(&EventFilter { kind: Some(kind.into()), limit: 100, ..Default::default() })
        .await
        .expect("events")
        .len()
}

async fn administrator_without_second_factor_cannot_reach_the_admin_api(db: Db) {
    let server = TestServer::start(db).await;
    let admin = server.add_account(ADMIN, None).await;
    server.grant_role(&admin, "caf_security").await;

    // The password alone opens no session: enrolment comes first.
    let b = browser();
    let r = password_step(&server, &b, ADMIN, None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), ENROL);
    assert_eq!(me(&server, &b).await.0, 401, "no session before the second factor");
    // The code page sends an account that has not enrolled to enrolment.
    let r = b.get(server.url(VERIFY)).send().await.expect("verify page");
    assert_eq!((r.status().as_u16(), location(&r)), (303, ENROL.to_string()));
    // Without the pending state, the second step is refused.
    let r = browser().get(server.url(ENROL)).send().await.expect("no state");
    assert_eq!(r.status(), 400);

    // A session opened on a password before the role was granted is refused
    // with a clear error, by every endpoint.
    let agent = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let (pwd_only, _) = signed_in(&server, AGENT).await;
    server.grant_role(&agent, "caf_security").await;
    let (status, body) = me(&server, &pwd_only).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "second_factor_required", "{body}");
    let r = pwd_only.get(server.url("/admin/api/logs")).send().await.expect("logs");
    assert_eq!(r.status(), 403);

    // Other side: after enrolment the same administrator gets in.
    enrol(&server, &b, ADMIN).await;
    let (status, body) = me(&server, &b).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], ADMIN);
    assert_eq!(count(&server, "totp_enrolled").await, 1);

    // A lost phone: the operator removes the factor; the sessions end and
    // the next sign-in enrols again.
    assert!(coop_idp::admin::reset_second_factor(&server.app, ADMIN, "cli").await.expect("reset"));
    assert!(!coop_idp::admin::reset_second_factor(&server.app, ADMIN, "cli").await.expect("reset"));
    assert_eq!(me(&server, &b).await.0, 401, "sessions ended");
    let c = browser();
    assert_eq!(location(&password_step(&server, &c, ADMIN, None).await), ENROL);
    assert_eq!(count(&server, "second_factor_reset").await, 1);
}

async fn codes_are_checked_used_once_and_recovery_codes_once(db: Db) {
    let server = TestServer::start(db).await;
    let admin = server.add_account(ADMIN, None).await;
    server.grant_role(&admin, "caf_habilitation").await;

    // Enrolment refuses a wrong first code, linked to its field.
    let b = browser();
    assert_eq!(location(&password_step(&server, &b, ADMIN, None).await), ENROL);
    let r = post_code(&server, &b, ENROL, "000000").await;
    assert_eq!(r.status(), 401);
    let html = r.text().await.expect("html");
    assert!(html.contains("aria-invalid=\"true\"") && html.contains("aria-describedby=\"code-hint code-error\""));
    let (recovery, next) = enrol(&server, &b, ADMIN).await;
    assert_eq!(next, "/account/security");
    assert_eq!(me(&server, &b).await.0, 200);

    // Next sign-in: the code is asked; a wrong one is refused.
    let b = browser();
    let r = password_step(&server, &b, ADMIN, None).await;
    assert_eq!(location(&r), VERIFY);
    assert_eq!(me(&server, &b).await.0, 401);
    let r = post_code(&server, &b, VERIFY, "123 456").await;
    assert_eq!(r.status(), 401);
    assert_eq!(me(&server, &b).await.0, 401);
    let code = fresh_code(&server, ADMIN).await;
    let r = post_code(&server, &b, VERIFY, &code).await;
    assert_eq!(r.status(), 200);
    assert_eq!(me(&server, &b).await.0, 200);

    // The same code again, in another browser: refused (replay).
    let c = browser();
    assert_eq!(location(&password_step(&server, &c, ADMIN, None).await), VERIFY);
    let r = post_code(&server, &c, VERIFY, &code).await;
    assert_eq!(r.status(), 401, "a code is accepted once");
    assert_eq!(me(&server, &c).await.0, 401);

    // A recovery code works, typed loosely, once.
    let typed = recovery[3].to_uppercase().replace('-', " ");
    let r = post_code(&server, &c, VERIFY, &typed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(me(&server, &c).await.0, 200);
    let d = browser();
    assert_eq!(location(&password_step(&server, &d, ADMIN, None).await), VERIFY);
    let r = post_code(&server, &d, VERIFY, &recovery[3]).await;
    assert_eq!(r.status(), 401, "a recovery code is spent");
    let html = b.get(server.url("/account/security")).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("<strong>9</strong>"), "{html}");

    assert_eq!(count(&server, "recovery_code_used").await, 1);
    assert_eq!(count(&server, "second_factor").await, 2);
    assert_eq!(count(&server, "second_factor_failed").await, 4);
    let signins = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("signin".into()), limit: 10, ..Default::default() })
        .await
        .expect("events");
    assert_eq!(signins.len(), 3, "a session only after the second factor");
    assert!(signins.iter().all(|e| e.details.contains("\"otp\"")));
    let all = server.app.store.query_events(&EventFilter { limit: 1000, ..Default::default() }).await.expect("events");
    let secret = secret_of(&server, ADMIN);
    assert!(all.iter().all(|e| !e.details.contains(&secret) && !e.details.contains(&code)), "no secret logged");
}

/// The claims of an ID token (its signature is checked by the client in the
/// other tests; here only the content matters).
fn claims(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&coop_idp::crypto::b64url_decode(payload).expect("base64")).expect("json")
}

/// A code flow in a fresh browser; `second` completes the second step.
async fn id_token_of(server: &TestServer, rp: &Rp, email: &str, second: bool) -> Value {
    let b = browser();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _state, _nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let r = b.get(url.as_str()).send().await.expect("authorize");
    let signin = location(&r);
    let request = query(&server.url(&signin)).get("request").cloned().expect("parked request");
    let r = password_step(server, &b, email, Some(&request)).await;
    assert_eq!(r.status(), 303);
    let callback = if second {
        assert_eq!(location(&r), VERIFY);
        let r = second_step(server, &b, email, VERIFY).await;
        assert_eq!(r.status(), 303);
        location(&r)
    } else {
        location(&r)
    };
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let code = query(&callback).get("code").cloned().expect("code");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http_client())
        .await
        .expect("tokens");
    claims(&tokens.id_token().expect("id token").to_string())
}

async fn id_token_amr_and_acr_follow_the_second_factor(db: Db) {
    let server = TestServer::start(db).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let admin = server.add_account(ADMIN, None).await;
    server.grant_role(&admin, "caf_security").await;
    server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let b = browser();
    assert_eq!(location(&password_step(&server, &b, ADMIN, None).await), ENROL);
    enrol(&server, &b, ADMIN).await;

    let with = id_token_of(&server, &rp, ADMIN, true).await;
    assert_eq!(with["amr"], serde_json::json!(["pwd", "otp", "mfa"]), "{with}");
    assert_eq!(with["acr"], "urn:coop-idp:acr:mfa");
    let without = id_token_of(&server, &rp, AGENT, false).await;
    assert_eq!(without["amr"], serde_json::json!(["pwd"]), "{without}");
    assert_eq!(without["acr"], "urn:coop-idp:acr:password");

    let discovery = discovery(&server.base).await;
    assert_eq!(
        discovery["acr_values_supported"],
        serde_json::json!(["urn:coop-idp:acr:password", "urn:coop-idp:acr:mfa", "urn:coop-idp:acr:passkey"])
    );
}

async fn an_agent_may_opt_in(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    // Before: the password alone signs in.
    let (b, csrf) = signed_in(&server, AGENT).await;
    let html = b.get(server.url("/account/security")).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("action=\"/account/security/totp\""), "{html}");
    // The opt-in is a state change: CSRF required.
    let r = b.post(server.url("/account/security/totp")).form(&[("csrf", "forged")]).send().await.expect("post");
    assert_eq!(r.status(), 403);
    let r = b.post(server.url("/account/security/totp")).form(&[("csrf", csrf.as_str())]).send().await.expect("post");
    assert_eq!((r.status().as_u16(), location(&r)), (303, ENROL.to_string()));
    enrol(&server, &b, AGENT).await;
    let html = b.get(server.url("/account/security")).send().await.expect("page").text().await.expect("html");
    assert!(!html.contains("action=\"/account/security/totp\"") && html.contains("<strong>10</strong>"), "{html}");
    // After: a code is asked at sign-in.
    let c = browser();
    let r = password_step(&server, &c, AGENT, None).await;
    assert_eq!(location(&r), VERIFY);
    let r = second_step(&server, &c, AGENT, VERIFY).await;
    assert_eq!(r.status(), 200);
    // An agent holds no role: the admin API stays closed (403), second
    // factor or not.
    assert_eq!(me(&server, &c).await.0, 403);
}

/// The TOTP secret is stored sealed under a key of `keys_dir`, not in
/// clear; a secret left in clear by an earlier version still works and is
/// sealed by the start-up step; with another key the second factor fails
/// closed (an error page, no session), never open.
async fn totp_secrets_are_sealed_at_rest(db: Db) {
    use coop_idp::auth::vault;
    let server = TestServer::start(db).await;
    let admin = server.add_account(ADMIN, None).await;
    server.grant_role(&admin, "caf_security").await;
    signed_in(&server, ADMIN).await;
    let secret = secret_of(&server, ADMIN);
    let stored = server.app.store.totp(&admin).await.expect("read").expect("enrolled").secret;
    assert!(vault::is_sealed(&stored), "{stored}");
    assert!(!stored.contains(&secret) && !stored.contains(&secret.to_lowercase()), "the column holds no secret");
    let key_file = server.app.config.keys_dir.join(vault::KEY_FILE);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).expect("key file").permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is private");

    // A secret stored in clear by an earlier version: it works, then the
    // start-up step seals it, and it still works.
    let legacy_email = "ancien@caf.fr";
    let legacy = server.add_account(legacy_email, None).await;
    server.grant_role(&legacy, "caf_security").await;
    let clear = coop_idp::auth::totp::new_secret();
    let mut tx = server.app.store.begin_write().await.expect("tx");
    coop_idp::store::totp::insert(&mut tx, &legacy, &clear, 0, &[], server.clock.now_ms()).await.expect("insert");
    tx.commit().await.expect("commit");
    remember(&server, legacy_email, &clear);
    signed_in(&server, legacy_email).await;
    assert_eq!(vault::seal_clear_secrets(&server.app).await.expect("seal"), 1);
    assert_eq!(vault::seal_clear_secrets(&server.app).await.expect("again"), 0, "nothing left in clear");
    let stored = server.app.store.totp(&legacy).await.expect("read").expect("enrolled").secret;
    assert!(vault::is_sealed(&stored) && !stored.contains(&clear), "{stored}");
    signed_in(&server, legacy_email).await;

    // Another key in keys_dir (not shared between instances, or replaced):
    // the code is not checked against anything, the sign-in fails.
    std::fs::remove_file(&key_file).expect("remove key");
    std::fs::write(&key_file, coop_idp::crypto::random_b64(32)).expect("another key");
    let b = browser();
    let r = password_step(&server, &b, ADMIN, None).await;
    assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, VERIFY));
    let code = fresh_code(&server, ADMIN).await;
    let r = post_code(&server, &b, VERIFY, &code).await;
    assert_eq!(r.status(), 500, "fails closed");
    assert_eq!(me(&server, &b).await.0, 401, "no session");
    let key = vault::load_key(&server.app).expect("key");
    let e = vault::open(&key, &admin, &server.app.store.totp(&admin).await.expect("read").expect("row").secret)
        .expect_err("another key");
    assert!(e.to_string().contains("keys_dir"), "a clear error: {e}");
}

/// `keys rotate-totp`: a new key seals every stored value again (enrolled
/// secrets and an enrolment in progress), the previous key is removed once
/// nothing needs it, and the second factor goes on working. A value that
/// no key opens is counted and left as it is; the removed key's values, as
/// a copy of the database would hold them, no longer open.
async fn the_totp_key_rotates_and_every_secret_follows(db: Db) {
    use coop_idp::auth::{second_factor as step, vault};
    let server = TestServer::start(db).await;
    let admin = server.add_account(ADMIN, None).await;
    server.grant_role(&admin, "caf_security").await;
    signed_in(&server, ADMIN).await;
    // An enrolment in progress, its candidate secret already shown.
    let agent = server.add_account(AGENT, None).await;
    let cookie = step::begin(&server.app, &agent, None, None).await.expect("begin");
    let pending = step::pending(&server.app, &cookie).await.expect("read").expect("pending");
    let candidate = step::enrolment_secret(&server.app, &pending).await.expect("candidate");
    // A value no key opens (sealed under a key that is not in keys_dir).
    let stray = server.add_account("stray@caf.fr", None).await;
    let foreign = format!("v2:AAAAAAAA:{}", coop_idp::crypto::random_b64(40));
    let mut tx = server.app.store.begin_write().await.expect("tx");
    coop_idp::store::totp::insert(&mut tx, &stray, &foreign, 0, &[], server.clock.now_ms()).await.expect("insert");
    tx.commit().await.expect("commit");

    let before = vault::load_key(&server.app).expect("ring");
    let old_id = before.current_id().to_string();
    let old_value = server.app.store.totp(&admin).await.expect("read").expect("row").secret;
    assert!(old_value.starts_with(&format!("v2:{old_id}:")), "{old_value}");

    let out = cli(&server, &["keys", "rotate-totp"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let new_id = report["totp_key_id"].as_str().expect("new key id").to_string();
    assert_ne!(new_id, old_id);
    assert_eq!(report["resealed"], 2, "the enrolled secret and the candidate: {report}");
    assert_eq!(report["unreadable"], 1, "{report}");
    assert_eq!(report["retired_removed"], serde_json::json!([old_id]), "{report}");
    assert_eq!(report["retired_kept"], serde_json::json!([]), "{report}");

    let ring = vault::load_key(&server.app).expect("ring");
    assert_eq!(ring.current_id(), new_id);
    let value = server.app.store.totp(&admin).await.expect("read").expect("row").secret;
    assert!(value.starts_with(&format!("v2:{new_id}:")), "{value}");
    assert_eq!(vault::open(&ring, &admin, &value).expect("open"), secret_of(&server, ADMIN), "the same secret");
    let pending = step::pending(&server.app, &cookie).await.expect("read").expect("pending");
    let resealed = pending.enrol_secret.clone().expect("candidate kept");
    assert!(resealed.starts_with(&format!("v2:{new_id}:")), "{resealed}");
    assert_eq!(step::enrolment_secret(&server.app, &pending).await.expect("candidate"), candidate);
    let stray_value = server.app.store.totp(&stray).await.expect("read").expect("row").secret;
    assert_eq!(stray_value, foreign, "left as it was");
    let files: Vec<String> = std::fs::read_dir(&server.app.config.keys_dir)
        .expect("keys_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("totp-secrets") || n.starts_with('.'))
        .collect();
    assert_eq!(files, [vault::KEY_FILE], "the previous key is gone");
    assert!(vault::open(&ring, &admin, &old_value).is_err(), "the old value does not open any more");

    // The second factor still works, over HTTP, with the same app.
    signed_in(&server, ADMIN).await;
}
