//! `oidcc-refresh-token` and RFC 9700 §4.14: refresh tokens only with
//! `offline_access`, rotated on every use, a replay revokes the whole family,
//! bound to their client, scope may narrow but not widen, idle and absolute
//! expiry, and a closed account can no longer use them.

use openidconnect::core::CoreTokenResponse;
use openidconnect::{Nonce, OAuth2TokenResponse, RefreshToken, TokenResponse};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    oidcc_refresh_token,
    refresh_token_of_another_client_is_refused,
    refresh_token_rotation_and_reuse_detection,
    refresh_token_only_with_offline_access,
    refresh_scope_may_narrow_but_not_widen,
    refresh_token_idle_and_absolute_expiry,
    closed_account_cannot_refresh_nor_use_its_access_token,
    concurrent_rotations_of_one_refresh_token_succeed_once,
    a_replay_committed_with_other_rotations_fails_alone,
);

fn assert_invalid_grant(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
    assert!(body.get("access_token").is_none(), "{what}: no token on error");
}

fn refresh_of(tokens: &CoreTokenResponse) -> String {
    tokens.refresh_token().expect("refresh_token issued").secret().clone()
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("`{key}` missing in {v}")).to_string()
}

async fn oidcc_refresh_token(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (tokens, nonce) =
        code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["profile", "offline_access"]).await;
    let first_refresh = refresh_of(&tokens);
    let first_id = tokens.id_token().expect("id_token").claims(&rp.id_token_verifier(), &nonce).expect("valid");
    let first_iat = first_id.issue_time();

    // Plain HTTP, to see the headers: a new access and refresh token, no-store.
    server.clock.advance_secs(5);
    let (status, headers, body) = refresh_raw(&server, "platform", &secret, &first_refresh, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|e| e > 0), "{body}");
    let second_refresh = text(&body, "refresh_token");
    let second_access = text(&body, "access_token");
    assert_ne!(second_refresh, first_refresh, "refresh token rotated");
    assert_ne!(&second_access, tokens.access_token().secret(), "new access token");
    assert_eq!(userinfo_status(&server, &second_access).await, 200);

    // Through the RP: the refreshed ID token keeps the identity, with a new iat
    // and without the nonce of the original authentication.
    server.clock.advance_secs(5);
    let refreshed = rp
        .exchange_refresh_token(&RefreshToken::new(second_refresh.clone()))
        .expect("token endpoint")
        .request_async(&http_client())
        .await
        .expect("refresh through the RP");
    let id_token = refreshed.id_token().expect("refreshed id_token");
    let claims = id_token
        .claims(&rp.id_token_verifier(), |n: Option<&Nonce>| match n {
            None => Ok(()),
            Some(_) => Err("a refreshed ID token should not carry a nonce".to_string()),
        })
        .expect("valid refreshed ID token");
    assert_eq!(claims.issuer(), first_id.issuer());
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(claims.subject(), first_id.subject());
    assert_eq!(claims.audiences(), first_id.audiences());
    assert_eq!(claims.auth_time(), first_id.auth_time(), "auth_time is the original authentication");
    assert!(claims.auth_time().is_some());
    assert_eq!(claims.authorized_party().map(|p| p.as_str()), Some("platform"));
    assert_eq!(claims.authorized_party(), first_id.authorized_party());
    assert!(claims.issue_time() > first_iat, "new iat: {:?} after {:?}", claims.issue_time(), first_iat);
    assert!(refreshed.refresh_token().is_some_and(|r| r.secret() != &second_refresh), "rotated again");
}

async fn refresh_token_of_another_client_is_refused(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret1 = server.add_client("client1").await;
    let secret2 = server.add_client("client2").await;
    let rp2 = server.rp("client2", Some(&secret2)).await;
    let browser = browser();
    let (tokens2, _) = code_flow(&server, &rp2, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;
    let refresh2 = refresh_of(&tokens2);

    let (status, _, body) = refresh_raw(&server, "client1", &secret1, &refresh2, None).await;
    assert_invalid_grant(status, &body, "client 2's refresh token used by client 1");

    // The attempt neither used nor revoked it: client 2 still refreshes.
    let (status, _, body) = refresh_raw(&server, "client2", &secret2, &refresh2, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string());
}

async fn refresh_token_rotation_and_reuse_detection(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (tokens, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;
    let r0 = refresh_of(&tokens);

    let (status, _, body) = refresh_raw(&server, "platform", &secret, &r0, None).await;
    assert_eq!(status, 200, "{body}");
    let (r1, a1) = (text(&body, "refresh_token"), text(&body, "access_token"));
    assert_eq!(userinfo_status(&server, &a1).await, 200, "the new access token works");
    assert_eq!(introspect(&server, &secret, &r1).await["active"], true, "the new refresh token is live");

    // R0 presented again: refused, and everything of the family goes.
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &r0, None).await;
    assert_invalid_grant(status, &body, "replayed refresh token");
    assert_eq!(userinfo_status(&server, &a1).await, 401, "access token of the family revoked");
    assert_eq!(userinfo_status(&server, tokens.access_token().secret()).await, 401, "first access token revoked");
    assert_eq!(introspect(&server, &secret, &r1).await["active"], false);
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &r1, None).await;
    assert_invalid_grant(status, &body, "newest refresh token of a revoked family");

    // Another family of the same user and client is not touched.
    let (other, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;
    assert_eq!(userinfo_status(&server, other.access_token().secret()).await, 200);
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &refresh_of(&other), None).await;
    assert_eq!(status, 200, "{body}");
}

async fn introspect(server: &TestServer, secret: &str, token: &str) -> Value {
    http_client()
        .post(server.url("/introspect"))
        .basic_auth("platform", Some(secret))
        .form(&[("token", token), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("JSON")
}

async fn refresh_token_only_with_offline_access(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (without, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["profile"]).await;
    assert!(without.refresh_token().is_none(), "no refresh token without offline_access");
    let (with, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["profile", "offline_access"]).await;
    assert!(with.refresh_token().is_some(), "a refresh token with offline_access");
}

async fn refresh_scope_may_narrow_but_not_widen(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (tokens, _) =
        code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["profile", "email", "offline_access"]).await;
    let r0 = refresh_of(&tokens);

    // Widening: refused, and the refresh token is not spent by the refusal.
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &r0, Some("openid profile email coop")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope", "{body}");

    // Narrowing: allowed; the response and the ID token follow the new scope.
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &r0, Some("openid profile")).await;
    assert_eq!(status, 200, "{body}");
    let mut scope: Vec<&str> = body["scope"].as_str().expect("scope").split(' ').collect();
    scope.sort();
    assert_eq!(scope, ["openid", "profile"]);
    let id = jwt_part(&text(&body, "id_token"), 1);
    assert_eq!(id["family_name"], "Dupont", "profile kept");
    assert!(id.get("email").is_none(), "email dropped: {id}");
    let narrowed_access = text(&body, "access_token");
    let info = userinfo(&server, &narrowed_access).await;
    assert_eq!(info["family_name"], "Dupont", "{info}");
    assert!(info.get("email").is_none(), "the narrowed access token does not reach email: {info}");

    // Without `scope`, the next refresh gets the original grant back (RFC 6749 §6).
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &text(&body, "refresh_token"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["scope"].as_str().is_some_and(|s| s.split(' ').any(|x| x == "email")), "{body}");
}

async fn refresh_token_idle_and_absolute_expiry(db: Db) {
    let server =
        TestServer::start_with(db, &[("refresh_idle_ttl_secs", "120"), ("refresh_absolute_ttl_secs", "400")]).await;
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (tokens, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;

    // Used within its idle window: works, and the new one has a window of its own.
    server.clock.advance_secs(100);
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &refresh_of(&tokens), None).await;
    assert_eq!(status, 200, "{body}");
    server.clock.advance_secs(100);
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &text(&body, "refresh_token"), None).await;
    assert_eq!(status, 200, "200 s after sign-in, within the new token's idle window: {body}");
    let idle = text(&body, "refresh_token");

    // Left unused past the idle window: refused.
    server.clock.advance_secs(121);
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &idle, None).await;
    assert_invalid_grant(status, &body, "idle refresh token");

    // Absolute lifetime: refused past it, even when used often.
    let (tokens, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;
    let mut current = refresh_of(&tokens);
    for _ in 0..3 {
        server.clock.advance_secs(110);
        let (status, _, body) = refresh_raw(&server, "platform", &secret, &current, None).await;
        assert_eq!(status, 200, "within the absolute lifetime: {body}");
        current = text(&body, "refresh_token");
    }
    server.clock.advance_secs(100);
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &current, None).await;
    assert_invalid_grant(status, &body, "refresh token past the family's absolute lifetime");
}

async fn closed_account_cannot_refresh_nor_use_its_access_token(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (tokens, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &refresh_of(&tokens), None).await;
    assert_eq!(status, 200, "active account refreshes: {body}");
    let (refresh, access) = (text(&body, "refresh_token"), text(&body, "access_token"));
    assert_eq!(userinfo_status(&server, &access).await, 200);

    server.close_account(&sub).await;
    assert_eq!(userinfo_status(&server, &access).await, 401, "closed account: access token stops working");
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &refresh, None).await;
    assert_invalid_grant(status, &body, "closed account refreshes");
}

/// Two rotations of the same refresh token sent at once (a leaked token used
/// by an attacker while its owner refreshes): exactly one gets tokens, the
/// other is a replay, which revokes the family (RFC 9700 §4.14.2).
async fn concurrent_rotations_of_one_refresh_token_succeed_once(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    for _ in 0..3 {
        let (tokens, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;
        let token = refresh_of(&tokens);
        let (a, b) = tokio::join!(
            refresh_raw(&server, "platform", &secret, &token, None),
            refresh_raw(&server, "platform", &secret, &token, None)
        );
        let statuses = [a.0, b.0];
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}: {} / {}", a.2, b.2);
        let (winner, loser) = if a.0 == 200 { (a, b) } else { (b, a) };
        assert_invalid_grant(loser.0, &loser.2, "the second rotation");
        // The replay revoked the family: the winner's tokens no longer work.
        assert_eq!(userinfo_status(&server, &text(&winner.2, "access_token")).await, 401);
        let (status, _, body) =
            refresh_raw(&server, "platform", &secret, &text(&winner.2, "refresh_token"), None).await;
        assert_invalid_grant(status, &body, "a token of the revoked family");
    }
}

/// Many rotations at once, some of them replays sent in the same instant as
/// their first use: the group writer commits them in batches (on SQLite and
/// on PostgreSQL), where a replay must fail alone. Every other rotation
/// succeeds, each replayed token succeeds exactly once, and the log's chain
/// holds one record per successful rotation.
async fn a_replay_committed_with_other_rotations_fails_alone(db: Db) {
    const CHAINS: usize = 12;
    const REPLAYED: usize = 4;
    let server = TestServer::start(db).await;
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let mut tokens = Vec::new();
    for _ in 0..CHAINS {
        let (issued, _) = code_flow(&server, &rp, &browser, "marie.dupont@cc-girou.fr", &["offline_access"]).await;
        tokens.push(refresh_of(&issued));
    }
    let refreshed_before = refreshed_records(&server).await;
    // Each token once, the first REPLAYED twice, all in flight together.
    let presented: Vec<(usize, String)> =
        tokens.iter().cloned().enumerate().chain(tokens.iter().take(REPLAYED).cloned().enumerate()).collect();
    let answers = futures::future::join_all(presented.iter().map(|(chain, token)| {
        let (server, secret) = (&server, &secret);
        async move { (*chain, refresh_raw(server, "platform", secret, token, None).await) }
    }))
    .await;
    let mut successes = [0usize; CHAINS];
    for (chain, (status, _, body)) in &answers {
        match status.as_u16() {
            200 => successes[*chain] += 1,
            _ => assert_invalid_grant(*status, body, &format!("chain {chain}")),
        }
    }
    assert_eq!(successes, [1; CHAINS], "every chain rotated exactly once: {successes:?}");
    // The replays revoked their families; the others go on.
    for (chain, (status, _, body)) in answers.iter().filter(|(_, (s, _, _))| *s == 200) {
        let (next, _, _) = refresh_raw(&server, "platform", &secret, &text(body, "refresh_token"), None).await;
        let expected = if *chain < REPLAYED { 400 } else { 200 };
        assert_eq!(next.as_u16(), expected, "chain {chain} after the burst ({status})");
    }
    let refreshed = refreshed_records(&server).await - refreshed_before;
    assert_eq!(refreshed, CHAINS as i64 + (CHAINS - REPLAYED) as i64, "one record per successful rotation");
    let verified = coop_idp::audit::verify(&server.app.store, &server.app.keys).await.expect("verify");
    assert!(matches!(verified, coop_idp::audit::Verification::Intact { .. }), "{verified:?}");
}

async fn refreshed_records(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE kind = $1 AND outcome = 'success'")
        .bind(coop_idp::audit::kind::TOKEN_REFRESHED)
        .fetch_one(server.app.store.pool())
        .await
        .expect("count")
}
