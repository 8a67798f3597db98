//! Basic OP plan: `oidcc-server` and the checks made on every sign-in.

use openidconnect::core::{CoreAuthenticationFlow, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, Scope, TokenResponse,
};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(oidcc_server);

async fn oidcc_server(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account("marie.dupont@cc-girou.fr", Some(("cc-girou", "CC du Girou"))).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("coop".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = browser();
    let callback = sign_in(&server, &browser, url.as_str(), "Marie.Dupont@cc-girou.fr").await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let q = query(&callback);
    assert_eq!(q.get("state"), Some(state.secret()));
    assert_eq!(q.get("iss"), Some(&server.base));
    let code = q.get("code").expect("code");
    assert!(coop_idp::crypto::b64url_decode(code).is_some_and(|c| c.len() >= 16), "code has 128+ bits");

    let http = http_client();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token response");
    assert_eq!(tokens.token_type().as_ref().to_ascii_lowercase(), "bearer");
    assert!(tokens.expires_in().is_some());
    let id_token = tokens.id_token().expect("id_token");
    let claims = id_token.claims(&rp.id_token_verifier(), &nonce).expect("valid id token");
    assert_eq!(claims.subject().as_str(), sub);
    assert_ne!(claims.subject().as_str(), "marie.dupont@cc-girou.fr", "sub is never the email");
    assert_eq!(claims.issuer().as_str(), server.base);
    assert!(claims.auth_time().is_some());
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&rp.id_token_verifier()).expect("key"),
    )
    .expect("at_hash");
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    assert_eq!(claims.email().map(|e| e.as_str()), Some("marie.dupont@cc-girou.fr"));

    let info: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), sub);

    // The platform's own claims, in the ID token and in userinfo.
    let raw_payload = id_token.to_string();
    let payload: serde_json::Value = serde_json::from_slice(
        &coop_idp::crypto::b64url_decode(raw_payload.split('.').nth(1).expect("payload")).expect("b64"),
    )
    .expect("json");
    assert_eq!(payload["partner_id"], "cc-girou");
    assert_eq!(payload["partner_name"], "CC du Girou");
    assert_eq!(payload["function"], "Coordinatrice CTG");
    assert_eq!(payload["roles"], serde_json::json!([]));
    assert_eq!(payload["azp"], "platform");
    assert!(payload["sid"].is_string());
    assert_eq!(payload["amr"], serde_json::json!(["pwd"]));
    let info_raw = userinfo(&server, tokens.access_token().secret()).await;
    assert_eq!(info_raw["partner_id"], "cc-girou");
    assert_eq!(info_raw["family_name"], "Dupont");
}
