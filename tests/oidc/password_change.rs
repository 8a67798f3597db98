//! Password change by a signed-in user (issue 3 §5): current password
//! required, the policy applies, then every session and token ends and a
//! confirmation email goes out.

use serde_json::Value;

use crate::common::*;
use crate::on_both_databases;

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
        coop_idp::mail::send_due(&server.app.store, &server.app.clock, &server.app.mail, &server.app.config)
            .await
            .expect("send");
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
        .get(authorize_url(&server, &with(code_request("platform", &Pkce::random(), "st"), &[("prompt", "none")])))
        .send()
        .await
        .expect("authorize");
    assert!(location(&r).contains("error=login_required"), "{}", location(&r));
    // The old password no longer works; the new one does.
    assert_eq!(attempt_at(&server.base, EMAIL, PASSWORD).await, 401);
    assert_eq!(attempt_at(&server.base, EMAIL, NEW_PASSWORD).await, 200);
    let fresh = crate::common::browser();
    let p = Pkce::random();
    let url = authorize_url(&server, &code_request("platform", &p, "st"));
    let r = fresh.get(url).send().await.expect("authorize");
    let callback = submit_sign_in(&server, &fresh, &location(&r), EMAIL, NEW_PASSWORD).await;
    assert!(callback.contains("code="), "{callback}");
    let _ = silent_tokens(&server, &fresh, "platform", Some(&secret), &[]).await;
    let mails = mails_to(&server).await;
    assert!(mails.iter().any(|m| m.contains("vient d'être modifié")), "confirmation email");
    assert!(mails.iter().all(|m| !m.contains("token=")), "no secret in the confirmation");
}

async fn browser_status(server: &TestServer, path: &str) -> u16 {
    browser().get(server.url(path)).send().await.expect("get").status().as_u16()
}
