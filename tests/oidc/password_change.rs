//! Password change by a signed-in user (issue 3 §5): current password
//! required, the policy applies, then every session and token ends and a
//! confirmation email goes out.

use serde_json::Value;

use crate::authorize::{sign_in_for_tokens, silent_tokens};
use crate::common::*;
use crate::on_both_databases;
use crate::refresh::{refresh_raw, userinfo_status};

const EMAIL: &str = "paul.martin@cc-girou.fr";
const NEW_PASSWORD: &str = "Basalte-Ocre-4-Tuile";

on_both_databases!(password_change_needs_current_password_and_policy_then_revokes_everything);

async fn change_form(server: &TestServer, browser: &reqwest::Client) -> String {
    let r = browser.get(server.url("/password/change")).send().await.expect("change page");
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    hidden(&html, "csrf").expect("csrf")
}

async fn submit(server: &TestServer, browser: &reqwest::Client, csrf: &str, current: &str, new: &str) -> (u16, String) {
    let r = browser
        .post(server.url("/password/change"))
        .form(&[("csrf", csrf), ("current", current), ("password", new), ("confirmation", new)])
        .send()
        .await
        .expect("submit");
    (r.status().as_u16(), r.text().await.expect("html"))
}

async fn mails_to(server: &TestServer) -> Vec<String> {
    let dir = server.app.config.data_dir.join("outbox");
    let mut found = Vec::new();
    for _ in 0..50 {
        coop_idp::mail::send_due(&server.app).await.expect("send");
        found = std::fs::read_dir(&dir)
            .map(|d| d.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect())
            .unwrap_or_default();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    found
}

async fn password_change_needs_current_password_and_policy_then_revokes_everything(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account(EMAIL, None).await;
    let secret = server.add_client("platform").await;
    let browser = browser();
    let tokens: Value =
        sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[("scope", "openid offline_access")], EMAIL)
            .await;
    let access = tokens["access_token"].as_str().expect("access").to_string();
    let refresh = tokens["refresh_token"].as_str().expect("refresh").to_string();

    // Not signed in: no form.
    assert_eq!(browser_status(&server, "/password/change").await, 401);

    let csrf = change_form(&server, &browser).await;
    // Wrong current password: refused, nothing changes.
    let (status, html) = submit(&server, &browser, &csrf, "Not-The-Password-1", NEW_PASSWORD).await;
    assert_eq!(status, 422);
    assert!(html.contains("Le mot de passe actuel est incorrect"), "{html}");
    // Right current password but a new one breaking the policy: refused with its rule.
    let (status, html) = submit(&server, &browser, &csrf, PASSWORD, "sans-majuscule-7").await;
    assert_eq!(status, 422);
    assert!(html.contains("au moins une lettre majuscule"), "{html}");
    assert_eq!(userinfo_status(&server, &access).await, 200, "nothing revoked by refused attempts");
    // Wrong CSRF: refused.
    let (status, _) = submit(&server, &browser, "forged-token-forged-token-forged-token", PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 403);

    let (status, _) = submit(&server, &browser, &csrf, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 200);
    // Every token and session of the account ended.
    assert_eq!(userinfo_status(&server, &access).await, 401);
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &refresh, None).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
    // The browser session is gone: a silent authorization needs a sign-in again.
    let r = browser
        .get(crate::authorize::authorize_url(
            &server,
            &crate::authorize::with(
                crate::authorize::code_request("platform", &crate::authorize::pkce(), "st"),
                &[("prompt", "none")],
            ),
        ))
        .send()
        .await
        .expect("authorize");
    assert!(location(&r).contains("error=login_required"), "{}", location(&r));
    // The old password no longer works; the new one does.
    assert_eq!(plain_sign_in(&server, EMAIL, PASSWORD).await, 401);
    assert_eq!(plain_sign_in(&server, EMAIL, NEW_PASSWORD).await, 200);
    let fresh = crate::common::browser();
    let p = crate::authorize::pkce();
    let url = crate::authorize::authorize_url(&server, &crate::authorize::code_request("platform", &p, "st"));
    let r = fresh.get(url).send().await.expect("authorize");
    let callback = submit_sign_in(&server, &fresh, &location(&r), EMAIL, NEW_PASSWORD).await;
    assert!(callback.contains("code="), "{callback}");
    let _ = silent_tokens(&server, &fresh, "platform", Some(&secret), &[]).await;
    let mails = mails_to(&server).await;
    assert!(mails.iter().any(|m| m.contains("vient d'être modifié")), "confirmation email");
    assert!(mails.iter().all(|m| !m.contains("token=")), "no secret in the confirmation");
}

/// A sign-in without an authorization request; returns the status.
async fn plain_sign_in(server: &TestServer, email: &str, password: &str) -> u16 {
    let b = browser();
    let page = b.get(server.url("/signin")).send().await.expect("page").text().await.expect("html");
    let csrf = hidden(&page, "csrf").expect("csrf");
    b.post(server.url("/signin"))
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password)])
        .send()
        .await
        .expect("submit")
        .status()
        .as_u16()
}

async fn browser_status(server: &TestServer, path: &str) -> u16 {
    browser().get(server.url(path)).send().await.expect("get").status().as_u16()
}
