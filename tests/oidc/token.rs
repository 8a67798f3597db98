//! Basic OP plan, the token and userinfo endpoints, and the RFC 9700 rules on
//! codes (single use, 60 s, bound to client, redirect URI and PKCE), client
//! authentication (client_secret_post, none, private_key_jwt), per-client ID
//! token algorithms, introspection and revocation. Refresh tokens, logout and
//! key rotation are tested elsewhere. Each test checks both sides of its rule.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use coop_idp::oidc::clients::AuthMethod;
use openidconnect::core::{CoreAuthenticationFlow, CoreIdToken, CoreJwsSigningAlgorithm, CoreUserInfoClaims};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthType, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, Scope, TokenResponse,
};
use serde_json::{Value, json};

use crate::common::*;
use crate::on_both_databases;

const OTHER_REDIRECT: &str = "http://127.0.0.1:9/other-callback";

/// A token-endpoint request with HTTP Basic and the form as given.
async fn token_request(server: &TestServer, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> reqwest::Response {
    let request = http_client().post(server.url("/token"));
    let request = match basic {
        Some((id, secret)) => request.basic_auth(id, Some(secret)),
        None => request,
    };
    request.form(form).send().await.expect("token request")
}

/// A code for `client_id` through `browser` (signing in when needed), with
/// its PKCE verifier.
async fn fresh_code(server: &TestServer, browser: &reqwest::Client, client_id: &str) -> (String, String) {
    let p = Pkce::random();
    let url = authorize_url(server, &code_request(client_id, &p, "st"));
    let r = browser.get(&url).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    let loc = location(&r);
    let callback =
        if loc.starts_with("/signin") { submit_sign_in(server, browser, &loc, EMAIL, PASSWORD).await } else { loc };
    (code_of(&callback), p.verifier)
}

async fn introspect(server: &TestServer, basic: (&str, &str), token: &str) -> Value {
    let r = http_client()
        .post(server.url("/introspect"))
        .basic_auth(basic.0, Some(basic.1))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspection");
    assert_eq!(r.status(), 200);
    r.json().await.expect("introspection JSON")
}

fn access_token(tokens: &Value) -> String {
    tokens["access_token"].as_str().expect("access_token").to_string()
}

on_both_databases!(
    replayed_code_revokes_issued_tokens,
    concurrent_exchanges_of_one_code_succeed_once,
    oidcc_codereuse_30seconds,
    code_expires_after_60_seconds,
    oidcc_server_client_secret_post,
    code_bound_to_client,
    code_bound_to_redirect_uri,
    code_bound_to_pkce_verifier,
    oidcc_userinfo_get,
    oidcc_userinfo_post_header,
    oidcc_userinfo_post_body,
    oidcc_idtoken_signature,
    oidcc_idtoken_unsigned,
    oidcc_scope_profile,
    oidcc_scope_email,
    oidcc_scope_coop,
    oidcc_scope_all,
    oidcc_alternate_happy_flow,
    id_token_alg_es256_per_client,
    id_token_alg_eddsa_per_client,
    public_client_auth_method_none,
    private_key_jwt_client_authentication,
    introspection_hides_other_clients_tokens,
    revocation_basics,
    form_content_type_is_parsed_not_prefix_matched,
);

async fn code_reuse(db: Db, wait_secs: i64) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    let t = tokens(&server, "platform", Some(&secret), &code, &verifier).await;
    let at = access_token(&t);
    assert_eq!(userinfo_status(&server, &at).await, 200);
    server.clock.advance_secs(wait_secs);
    let replay = exchange(&server, "platform", Some(&secret), &code, &verifier).await;
    assert_eq!(token_error(replay).await, (400, "invalid_grant".to_string()));
    // The tokens the code gave are revoked.
    assert_eq!(userinfo_status(&server, &at).await, 401);
    assert_eq!(introspect(&server, ("platform", &secret), &at).await["active"], false);
    // A new code from the same session still works.
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    let t = tokens(&server, "platform", Some(&secret), &code, &verifier).await;
    assert_eq!(userinfo_status(&server, &access_token(&t)).await, 200);
}

/// `oidcc-codereuse`.
async fn replayed_code_revokes_issued_tokens(db: Db) {
    code_reuse(db, 0).await;
}

/// The same code exchanged twice at once: one exchange gets tokens, the
/// other is a replay, which revokes them.
async fn concurrent_exchanges_of_one_code_succeed_once(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    for _ in 0..3 {
        let (code, verifier) = fresh_code(&server, &browser, "platform").await;
        let (a, b) = tokio::join!(
            exchange(&server, "platform", Some(&secret), &code, &verifier),
            exchange(&server, "platform", Some(&secret), &code, &verifier)
        );
        let (a, b) = ((a.status().as_u16(), a.text().await), (b.status().as_u16(), b.text().await));
        assert_eq!([a.0, b.0].iter().filter(|s| **s == 200).count(), 1, "{a:?} / {b:?}");
        let (winner, loser) = if a.0 == 200 { (a, b) } else { (b, a) };
        assert_eq!(loser.0, 400, "{loser:?}");
        assert!(loser.1.as_deref().unwrap_or("").contains("invalid_grant"), "{loser:?}");
        let tokens: Value = serde_json::from_str(winner.1.as_deref().expect("body")).expect("JSON");
        assert_eq!(userinfo_status(&server, &access_token(&tokens)).await, 401, "revoked by the replay");
    }
}

async fn oidcc_codereuse_30seconds(db: Db) {
    code_reuse(db, 30).await;
}

async fn code_expires_after_60_seconds(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    // 55 s old: still good.
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    server.clock.advance_secs(55);
    tokens(&server, "platform", Some(&secret), &code, &verifier).await;
    // 61 s old: expired.
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    server.clock.advance_secs(61);
    let r = exchange(&server, "platform", Some(&secret), &code, &verifier).await;
    assert_eq!(token_error(r).await, (400, "invalid_grant".to_string()));
}

async fn oidcc_server_client_secret_post(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account(EMAIL, None).await;
    let secret = server
        .add_client_with("poster", AuthMethod::ClientSecretPost, |_| {})
        .await
        .expect("client_secret_post secret");
    let methods = discovery(&server.base).await["token_endpoint_auth_methods_supported"].clone();
    assert!(methods.as_array().expect("methods").iter().any(|m| m == "client_secret_post"), "{methods}");

    let rp = server.rp("poster", Some(&secret)).await.set_auth_type(AuthType::RequestBody);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _state, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let browser = browser();
    let code = code_of(&sign_in(&server, &browser, url.as_str(), EMAIL).await);
    // A wrong secret in the body: 401 invalid_client, and the code is untouched.
    let r = token_request(
        &server,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.secret()),
            ("client_id", "poster"),
            ("client_secret", "not-the-secret"),
        ],
    )
    .await;
    assert_eq!(token_error(r).await, (401, "invalid_client".to_string()));
    let r = token_request(
        &server,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.secret()),
            ("client_id", "poster"),
        ],
    )
    .await;
    assert_eq!(token_error(r).await, (401, "invalid_client".to_string()), "no secret at all");
    // The RP library sending client_secret_post: accepted.
    let http = http_client();
    let t = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token response");
    let claims = t.id_token().expect("id_token").claims(&rp.id_token_verifier(), &nonce).expect("valid ID token");
    assert_eq!(claims.subject().as_str(), sub);
}

async fn code_bound_to_client(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let other_secret = server.add_client("other").await;
    let browser = browser();
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    let r = exchange(&server, "other", Some(&other_secret), &code, &verifier).await;
    assert_eq!(token_error(r).await, (400, "invalid_grant".to_string()));
    tokens(&server, "platform", Some(&secret), &code, &verifier).await;
}

async fn code_bound_to_redirect_uri(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account(EMAIL, None).await;
    let secret = server
        .add_client_with("platform", AuthMethod::ClientSecretBasic, |r| r.redirect_uris.push(OTHER_REDIRECT.into()))
        .await
        .expect("secret");
    let browser = browser();
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    let form = |redirect: Option<&'static str>| {
        let mut f = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("code_verifier", verifier.clone()),
        ];
        if let Some(r) = redirect {
            f.push(("redirect_uri", r.to_string()));
        }
        f
    };
    let send = |f: Vec<(&'static str, String)>| {
        http_client().post(server.url("/token")).basic_auth("platform", Some(&secret)).form(&f).send()
    };
    // Another URI registered for the same client: refused.
    let r = send(form(Some(OTHER_REDIRECT))).await.expect("token request");
    assert_eq!(token_error(r).await, (400, "invalid_grant".to_string()));
    let r = send(form(Some("http://127.0.0.1:9/callback/"))).await.expect("token request");
    assert_eq!(token_error(r).await, (400, "invalid_grant".to_string()));
    let r = send(form(None)).await.expect("token request");
    assert_eq!(token_error(r).await, (400, "invalid_request".to_string()));
    // The one of the authorization request: accepted.
    token_json(send(form(Some(REDIRECT))).await.expect("token request")).await;
}

async fn code_bound_to_pkce_verifier(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    let other = Pkce::random().verifier;
    let r = exchange(&server, "platform", Some(&secret), &code, &other).await;
    assert_eq!(token_error(r).await, (400, "invalid_grant".to_string()), "another verifier");
    // The challenge itself (what a `plain` downgrade would send) is no verifier.
    let r = exchange(&server, "platform", Some(&secret), &code, "short").await;
    assert_eq!(token_error(r).await, (400, "invalid_grant".to_string()), "malformed verifier");
    let r = token_request(
        &server,
        Some(("platform", &secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(token_error(r).await, (400, "invalid_request".to_string()), "no verifier");
    tokens(&server, "platform", Some(&secret), &code, &verifier).await;
}

/// Tokens for Marie with scope openid profile.
async fn profile_tokens(server: &TestServer, secret: &str) -> Value {
    sign_in_for_tokens(server, &browser(), "platform", Some(secret), &[("scope", "openid profile")], EMAIL).await
}

async fn assert_invalid_token(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 401, "{what}");
    let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"), "{what}: {challenge}");
}

async fn assert_userinfo(r: reqwest::Response, sub: &str) -> Value {
    assert_eq!(r.status(), 200);
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    let info: Value = r.json().await.expect("userinfo JSON");
    assert_eq!(info["sub"], sub);
    info
}

async fn oidcc_userinfo_get(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let rp = server.rp("platform", Some(&secret)).await;
    let t = profile_tokens(&server, &secret).await;
    let id_sub = jwt_part(&id_token_of(&t), 1)["sub"].clone();
    assert_eq!(id_sub, sub.as_str());
    let at = access_token(&t);
    let http = http_client();
    let info =
        assert_userinfo(http.get(server.url("/userinfo")).bearer_auth(&at).send().await.expect("GET"), &sub).await;
    assert_eq!(info["family_name"], "Dupont");
    // The RP library agrees.
    let claims: CoreUserInfoClaims = rp
        .user_info(AccessToken::new(at.clone()), None)
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(claims.subject().as_str(), sub);
    // No token, an unknown one, or one in the query string: 401 invalid_token.
    assert_eq!(http.get(server.url("/userinfo")).send().await.expect("GET").status(), 401);
    assert_invalid_token(http.get(server.url("/userinfo")).bearer_auth("nope").send().await.expect("GET"), "unknown")
        .await;
    let in_query = format!("/userinfo?access_token={at}");
    assert_eq!(http.get(server.url(&in_query)).send().await.expect("GET").status(), 401, "token in the query");
}

async fn oidcc_userinfo_post_header(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let t = profile_tokens(&server, &secret).await;
    let http = http_client();
    let r = http.post(server.url("/userinfo")).bearer_auth(access_token(&t)).send().await.expect("POST");
    assert_userinfo(r, &sub).await;
    let r = http.post(server.url("/userinfo")).bearer_auth("nope").send().await.expect("POST");
    assert_invalid_token(r, "unknown token").await;
}

async fn oidcc_userinfo_post_body(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let t = profile_tokens(&server, &secret).await;
    let at = access_token(&t);
    let http = http_client();
    let r = http.post(server.url("/userinfo")).form(&[("access_token", at.as_str())]).send().await.expect("POST");
    assert_userinfo(r, &sub).await;
    let r = http.post(server.url("/userinfo")).form(&[("access_token", "nope")]).send().await.expect("POST");
    assert_invalid_token(r, "unknown token in the body").await;
    // Two ways at once (RFC 6750 §2): invalid_request.
    let r = http
        .post(server.url("/userinfo"))
        .bearer_auth(&at)
        .form(&[("access_token", at.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 400);
}

fn jwk_of<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == kid).expect("the kid is in the JWKS")
}

async fn oidcc_idtoken_signature(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let rp = server.rp("platform", Some(&secret)).await;
    let t = sign_in_for_tokens(&server, &browser(), "platform", Some(&secret), &[("nonce", "n-sig")], EMAIL).await;
    let id_token = id_token_of(&t);
    let header = jwt_part(&id_token, 0);
    assert_eq!(header["alg"], "RS256", "RS256 by default");
    let kid = header["kid"].as_str().expect("kid in the header");
    let jwk = jwk_of(&jwks(&server.base).await, kid).clone();
    assert_eq!(jwk["kty"], "RSA");
    // The RP library's default verifier (RS256 only) accepts it.
    let parsed: CoreIdToken = id_token.parse().expect("ID token");
    let claims = parsed.claims(&rp.id_token_verifier(), &Nonce::new("n-sig".into())).expect("valid signature");
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(claims.issuer().as_str(), server.base);
    assert_eq!(claims.audiences().first().map(|a| a.as_str()), Some("platform"));
    let now = chrono_now();
    assert!((claims.issue_time().timestamp() - now).abs() < 60, "iat recent");
    assert!(claims.expiration().timestamp() > now);
    // The same token with one payload claim changed fails verification.
    let mut parts: Vec<String> = id_token.split('.').map(str::to_string).collect();
    let mut payload = jwt_part(&id_token, 1);
    payload["sub"] = json!("someone-else");
    parts[1] = coop_idp::crypto::b64url(payload.to_string().as_bytes());
    let forged: CoreIdToken = parts.join(".").parse().expect("forged token parses");
    assert!(forged.claims(&rp.id_token_verifier(), &Nonce::new("n-sig".into())).is_err(), "tampered token accepted");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

async fn oidcc_idtoken_unsigned(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let d = discovery(&server.base).await;
    for list in [
        "id_token_signing_alg_values_supported",
        "userinfo_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
    ] {
        let algs = d[list].as_array().expect(list);
        assert!(!algs.iter().any(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case("none"))), "{list}: {algs:?}");
    }
    let browser = browser();
    let t = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let id_token = id_token_of(&t);
    assert_ne!(jwt_part(&id_token, 0)["alg"], "none");
    // The same claims under `alg: none` are not accepted as id_token_hint.
    let payload = id_token.split('.').nth(1).expect("payload");
    let unsigned = format!("{}.{payload}.", coop_idp::crypto::b64url(br#"{"alg":"none","typ":"JWT"}"#));
    let p = Pkce::random();
    let url = authorize_url(
        &server,
        &with(code_request("platform", &p, "st-u"), &[("prompt", "none"), ("id_token_hint", &unsigned)]),
    );
    let r = browser.get(&url).send().await.expect("authorize");
    let loc = location(&r);
    assert_error_redirect(&loc, &["invalid_request"], "st-u", &server.base);
    // The signed one is.
    silent_tokens(&server, &browser, "platform", Some(&secret), &[("prompt", "none"), ("id_token_hint", &id_token)])
        .await;
}

async fn scope_claims(db: Db, scope: &str) -> (TestServer, Value, Value, Value) {
    let (server, _, secret) = platform_server(db).await;
    let t = sign_in_for_tokens(&server, &browser(), "platform", Some(&secret), &[("scope", scope)], EMAIL).await;
    let r = http_client().get(server.url("/userinfo")).bearer_auth(access_token(&t)).send().await.expect("userinfo");
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.expect("json");
    let id = jwt_part(&id_token_of(&t), 1);
    (server, t, info, id)
}

fn has_all(v: &Value, names: &[&str], what: &str) {
    for n in names {
        assert!(v.get(*n).is_some_and(|x| !x.is_null()), "{what}: {n} missing in {v}");
    }
}

fn has_none(v: &Value, names: &[&str], what: &str) {
    for n in names {
        assert!(v.get(*n).is_none(), "{what}: {n} released without its scope: {v}");
    }
}

const PROFILE: [&str; 4] = ["name", "given_name", "family_name", "updated_at"];
const EMAIL_CLAIMS: [&str; 2] = ["email", "email_verified"];
const COOP: [&str; 4] = ["function", "partner_id", "partner_name", "roles"];

async fn oidcc_scope_profile(db: Db) {
    let (_server, _, info, id) = scope_claims(db, "openid profile").await;
    has_all(&info, &PROFILE, "userinfo");
    assert_eq!(info["name"], "Marie Dupont");
    assert_eq!(info["given_name"], "Marie");
    assert!(info["updated_at"].is_i64());
    has_none(&info, &EMAIL_CLAIMS, "userinfo");
    has_none(&info, &COOP, "userinfo");
    has_all(&id, &PROFILE, "ID token");
    has_none(&id, &EMAIL_CLAIMS, "ID token");
}

async fn oidcc_scope_email(db: Db) {
    let (_server, _, info, id) = scope_claims(db, "openid email").await;
    has_all(&info, &EMAIL_CLAIMS, "userinfo");
    assert_eq!(info["email"], EMAIL);
    assert_eq!(info["email_verified"], true);
    has_none(&info, &PROFILE, "userinfo");
    has_none(&info, &COOP, "userinfo");
    has_all(&id, &EMAIL_CLAIMS, "ID token");
    has_none(&id, &PROFILE, "ID token");
}

async fn oidcc_scope_coop(db: Db) {
    let (server, _, info, _) = scope_claims(db, "openid coop").await;
    has_all(&info, &COOP, "userinfo");
    assert_eq!(info["partner_id"], "cc-girou");
    assert_eq!(info["partner_name"], "CC du Girou");
    assert_eq!(info["function"], "Coordinatrice CTG");
    assert_eq!(info["roles"], json!([]));
    has_none(&info, &PROFILE, "userinfo");
    has_none(&info, &EMAIL_CLAIMS, "userinfo");
    // Roles granted show up (the administrator enrols a second factor on
    // the way: `submit_sign_in` does it).
    let sub = info["sub"].as_str().expect("sub").to_string();
    server.grant_role(&sub, "caf_security").await;
    let secret = server.add_client("second").await;
    let t = sign_in_for_tokens(&server, &browser(), "second", Some(&secret), &[("scope", "openid coop")], EMAIL).await;
    assert_eq!(jwt_part(&id_token_of(&t), 1)["roles"], json!(["caf_security"]));
}

async fn oidcc_scope_all(db: Db) {
    let (server, t, info, _) = scope_claims(db, "openid profile email address phone coop").await;
    has_all(&info, &PROFILE, "userinfo");
    has_all(&info, &EMAIL_CLAIMS, "userinfo");
    has_all(&info, &COOP, "userinfo");
    // Scopes we cannot fill are neither advertised nor granted.
    has_none(&info, &["address", "phone_number"], "userinfo");
    let granted: Vec<&str> = t["scope"].as_str().expect("scope").split(' ').collect();
    for s in ["openid", "profile", "email", "coop"] {
        assert!(granted.contains(&s), "{s} granted: {granted:?}");
    }
    assert!(!granted.contains(&"address") && !granted.contains(&"phone"), "{granted:?}");
    let d = discovery(&server.base).await;
    let supported = d["scopes_supported"].as_array().expect("scopes_supported");
    assert!(!supported.iter().any(|s| s == "address" || s == "phone"), "{supported:?}");
}

async fn oidcc_alternate_happy_flow(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let rp = server.rp("platform", Some(&secret)).await;
    let mut results = Vec::new();
    for reordered in [false, true] {
        let browser = browser();
        let p = Pkce::random();
        let state: String = if reordered { "x".repeat(128) } else { "st".into() };
        let params: Vec<(&str, &str)> = if reordered {
            vec![
                ("code_challenge_method", "S256"),
                ("nonce", "n-alt"),
                ("state", &state),
                ("scope", "email  profile openid"),
                ("code_challenge", &p.challenge),
                ("redirect_uri", REDIRECT),
                ("client_id", "platform"),
                ("response_type", "code"),
            ]
        } else {
            with(code_request("platform", &p, &state), &[("scope", "openid profile email"), ("nonce", "n-alt")])
        };
        let callback = sign_in(&server, &browser, &authorize_url(&server, &params), EMAIL).await;
        assert_eq!(query(&callback).get("state"), Some(&state), "state echoed exactly");
        let code = code_of(&callback);
        let form: Vec<(&str, &str)> = if reordered {
            vec![
                ("code_verifier", &p.verifier),
                ("redirect_uri", REDIRECT),
                ("code", &code),
                ("grant_type", "authorization_code"),
            ]
        } else {
            vec![
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &p.verifier),
            ]
        };
        let t = token_json(token_request(&server, Some(("platform", &secret)), &form).await).await;
        let claims = verify_id_token(&rp, &id_token_of(&t), Some("n-alt"));
        assert_eq!(claims.subject().as_str(), sub);
        let mut scope: Vec<String> = t["scope"].as_str().expect("scope").split(' ').map(str::to_string).collect();
        scope.sort();
        let r = http_client().get(server.url("/userinfo")).bearer_auth(access_token(&t)).send().await.expect("ui");
        let mut info: Value = r.json().await.expect("json");
        info.as_object_mut().expect("object").remove("updated_at");
        results.push((scope, info));
    }
    assert_eq!(results[0], results[1], "parameter and scope order change nothing");
    assert_eq!(results[0].0, vec!["email", "openid", "profile"]);
}

/// A client signing its ID tokens with `alg`; checks header, kid, signature
/// (with the RP library) and at_hash; an RS256-only verifier refuses it.
async fn per_client_alg(db: Db, alg: jsonwebtoken::Algorithm, name: &str, kty: &str, rp_alg: CoreJwsSigningAlgorithm) {
    let (server, sub, secret) = platform_server(db).await;
    let client_id = format!("client-{}", name.to_lowercase());
    let alg_secret = server
        .add_client_with(&client_id, AuthMethod::ClientSecretBasic, |r| r.id_token_alg = alg)
        .await
        .expect("secret");
    let rp = server.rp(&client_id, Some(&alg_secret)).await;
    let browser = browser();
    let t = sign_in_for_tokens(&server, &browser, &client_id, Some(&alg_secret), &[("nonce", "n-alg")], EMAIL).await;
    let id_token = id_token_of(&t);
    let header = jwt_part(&id_token, 0);
    assert_eq!(header["alg"], name);
    let jwk = jwk_of(&jwks(&server.base).await, header["kid"].as_str().expect("kid")).clone();
    assert_eq!(jwk["kty"], kty);
    assert_eq!(jwk["alg"], name);
    let parsed: CoreIdToken = id_token.parse().expect("ID token");
    let verifier = rp.id_token_verifier().set_allowed_algs(vec![rp_alg.clone()]);
    let claims = parsed.claims(&verifier, &Nonce::new("n-alg".into())).expect("valid signature");
    assert_eq!(claims.subject().as_str(), sub);
    let expected = AccessTokenHash::from_token(
        &AccessToken::new(access_token(&t)),
        &rp_alg,
        parsed.signing_key(&verifier).expect("signing key"),
    )
    .expect("at_hash");
    assert_eq!(claims.access_token_hash(), Some(&expected), "at_hash with the hash of {name}");
    // An RP that accepts RS256 only refuses it (the library's default when
    // discovery lists no algorithms).
    let rs256_only = rp.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
    assert!(parsed.claims(&rs256_only, &Nonce::new("n-alg".into())).is_err(), "not RS256");
    // The default client of the same server still gets RS256.
    let t = silent_tokens(&server, &browser, "platform", Some(&secret), &[]).await;
    assert_eq!(jwt_part(&id_token_of(&t), 0)["alg"], "RS256");
}

async fn id_token_alg_es256_per_client(db: Db) {
    per_client_alg(db, jsonwebtoken::Algorithm::ES256, "ES256", "EC", CoreJwsSigningAlgorithm::EcdsaP256Sha256).await;
}

async fn id_token_alg_eddsa_per_client(db: Db) {
    per_client_alg(db, jsonwebtoken::Algorithm::EdDSA, "EdDSA", "OKP", CoreJwsSigningAlgorithm::EdDsa).await;
}

async fn public_client_auth_method_none(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    assert_eq!(server.add_client_with("spa", AuthMethod::None, |_| {}).await, None, "no secret for a public client");
    let rp = server.rp("spa", None).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = browser();
    let code = code_of(&sign_in(&server, &browser, url.as_str(), EMAIL).await);
    // A public client presenting a secret is refused; the code survives.
    let r = token_request(
        &server,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.secret()),
            ("client_id", "spa"),
            ("client_secret", "guess"),
        ],
    )
    .await;
    assert_eq!(token_error(r).await, (401, "invalid_client".to_string()));
    let http = http_client();
    let t = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("public client exchange with auth method none");
    let claims = t.id_token().expect("id_token").claims(&rp.id_token_verifier(), &nonce).expect("valid");
    assert_eq!(claims.subject().as_str(), sub);
    // A confidential client cannot fall back to none.
    let (code, verifier) = fresh_code(&server, &browser, "platform").await;
    let r = exchange(&server, "platform", None, &code, &verifier).await;
    assert_eq!(token_error(r).await, (401, "invalid_client".to_string()));
    tokens(&server, "platform", Some(&secret), &code, &verifier).await;
    // Introspection is for authenticated clients; `none` is not advertised there.
    let r = http
        .post(server.url("/introspect"))
        .form(&[("token", t.access_token().secret().as_str()), ("client_id", "spa")])
        .send()
        .await
        .expect("introspection");
    assert_eq!(r.status(), 401, "public client at the introspection endpoint");
}

/// A client key pair for private_key_jwt: its PKCS#8 DER and public JWKS.
fn client_key(kid: &str) -> (Vec<u8>, String) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key");
    let der = pair.to_pkcs8v1().expect("PKCS#8").as_ref().to_vec();
    let point = pair.public_key().as_ref();
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": coop_idp::crypto::b64url(&point[1..33]), "y": coop_idp::crypto::b64url(&point[33..]),
    }]});
    (der, jwks.to_string())
}

fn assertion(der: &[u8], kid: &str, client_id: &str, aud: &str, jti: &str, lifetime_secs: i64) -> String {
    let now = chrono_now();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let claims =
        json!({"iss": client_id, "sub": client_id, "aud": aud, "jti": jti, "iat": now, "exp": now + lifetime_secs});
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(der)).expect("signed assertion")
}

async fn private_key_jwt_client_authentication(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account(EMAIL, None).await;
    let (der, jwks) = client_key("rp-key-1");
    let registered = server.add_client_with("pkj", AuthMethod::PrivateKeyJwt, |r| r.jwks = Some(jwks.clone())).await;
    assert_eq!(registered, None, "no secret for private_key_jwt");
    let token_endpoint = server.url("/token");
    let browser = browser();
    let exchange_with = |code: String, verifier: String, assertion: String| {
        let server = &server;
        async move {
            token_request(
                server,
                None,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        }
    };
    let (code, verifier) = fresh_code(&server, &browser, "pkj").await;
    // Refused: a key not registered, the wrong audience, alg none, too long a life.
    let (foreign_der, _) = client_key("rp-key-1");
    let refused = [
        ("foreign key", assertion(&foreign_der, "rp-key-1", "pkj", &token_endpoint, "j-1", 60)),
        ("wrong audience", assertion(&der, "rp-key-1", "pkj", "https://other.example/token", "j-2", 60)),
        ("two hours", assertion(&der, "rp-key-1", "pkj", &token_endpoint, "j-3", 7200)),
        ("alg none", {
            let valid = assertion(&der, "rp-key-1", "pkj", &token_endpoint, "j-4", 60);
            let payload = valid.split('.').nth(1).expect("payload").to_string();
            format!("{}.{payload}.", coop_idp::crypto::b64url(br#"{"alg":"none","kid":"rp-key-1"}"#))
        }),
    ];
    for (what, a) in refused {
        let r = exchange_with(code.clone(), verifier.clone(), a).await;
        assert_eq!(token_error(r).await, (401, "invalid_client".to_string()), "{what}");
    }
    // Accepted: signed with the registered key, audience the token endpoint.
    let good = assertion(&der, "rp-key-1", "pkj", &token_endpoint, "j-ok", 60);
    let t = token_json(exchange_with(code, verifier, good.clone()).await).await;
    assert_eq!(jwt_part(&id_token_of(&t), 1)["sub"], sub.as_str());
    // The same assertion again (same jti): refused as a replay.
    let (code, verifier) = fresh_code(&server, &browser, "pkj").await;
    let r = exchange_with(code.clone(), verifier.clone(), good).await;
    assert_eq!(token_error(r).await, (401, "invalid_client".to_string()), "replayed assertion");
    let fresh = assertion(&der, "rp-key-1", "pkj", &token_endpoint, "j-ok-2", 60);
    token_json(exchange_with(code, verifier, fresh).await).await;
}

async fn introspection_hides_other_clients_tokens(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let other_secret = server.add_client("other").await;
    let t = profile_tokens(&server, &secret).await;
    let at = access_token(&t);
    let own = introspect(&server, ("platform", &secret), &at).await;
    assert_eq!(own["active"], true);
    assert_eq!(own["sub"], sub.as_str());
    assert_eq!(own["client_id"], "platform");
    assert_eq!(own["iss"], server.base.as_str());
    assert!(own["exp"].as_i64().is_some_and(|e| e > chrono_now()));
    assert!(own["scope"].as_str().is_some_and(|s| s.contains("profile")));
    let theirs = introspect(&server, ("other", &other_secret), &at).await;
    assert_eq!(theirs, json!({"active": false}), "another client's token reported inactive, nothing else");
    assert_eq!(introspect(&server, ("platform", &secret), "unknown").await, json!({"active": false}));
    // Unauthenticated or wrongly authenticated: 401.
    let r = http_client().post(server.url("/introspect")).form(&[("token", at.as_str())]).send().await.expect("x");
    assert_eq!(r.status(), 401);
    let r = http_client()
        .post(server.url("/introspect"))
        .basic_auth("platform", Some("wrong"))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("x");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some(), "Basic challenge");
    // Expired: inactive.
    server.clock.advance_secs(t["expires_in"].as_i64().expect("expires_in") + 1);
    assert_eq!(introspect(&server, ("platform", &secret), &at).await["active"], false);
}

async fn revoke(server: &TestServer, basic: (&str, &str), token: &str) -> u16 {
    http_client()
        .post(server.url("/revoke"))
        .basic_auth(basic.0, Some(basic.1))
        .form(&[("token", token)])
        .send()
        .await
        .expect("revocation")
        .status()
        .as_u16()
}

async fn revocation_basics(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let other_secret = server.add_client("other").await;
    let t = profile_tokens(&server, &secret).await;
    let at = access_token(&t);
    // Another client "revokes" it: 200, no effect.
    assert_eq!(revoke(&server, ("other", &other_secret), &at).await, 200);
    assert_eq!(userinfo_status(&server, &at).await, 200);
    assert_eq!(introspect(&server, ("platform", &secret), &at).await["active"], true);
    // Unknown token: 200 too; unauthenticated: 401.
    assert_eq!(revoke(&server, ("platform", &secret), "unknown").await, 200);
    let r = http_client().post(server.url("/revoke")).form(&[("token", at.as_str())]).send().await.expect("x");
    assert_eq!(r.status(), 401);
    assert_eq!(userinfo_status(&server, &at).await, 200);
    // Its own client revokes it: gone at once.
    assert_eq!(revoke(&server, ("platform", &secret), &at).await, 200);
    assert_eq!(userinfo_status(&server, &at).await, 401);
    assert_eq!(introspect(&server, ("platform", &secret), &at).await["active"], false);
}

/// The protocol endpoints take `application/x-www-form-urlencoded` and
/// nothing else: a parameter after `;` is fine, a longer subtype or another
/// type is `invalid_request` (and changes nothing: the code still works).
async fn form_content_type_is_parsed_not_prefix_matched(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let (code, verifier) = fresh_code(&server, &browser(), "platform").await;
    let exchange = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", &verifier)
        .finish();
    let post = |path: &str, content_type: &str, body: String| {
        http_client()
            .post(server.url(path))
            .basic_auth("platform", Some(&secret))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    const REFUSED: [&str; 4] = [
        "application/x-www-form-urlencodedX",
        "application/x-www-form-urlencodedX; charset=UTF-8",
        "text/plain",
        "application/x-www-form-urlencoded; charset",
    ];
    for content_type in REFUSED {
        let r = post("/token", content_type, exchange.clone()).await.expect("token request");
        assert_eq!(token_error(r).await, (400, "invalid_request".to_string()), "{content_type}");
    }
    let r = post("/token", "application/x-www-form-urlencoded; charset=UTF-8", exchange).await.expect("token");
    let tokens = token_json(r).await;
    let at = access_token(&tokens);
    let token_form = format!("token={at}");
    for path in ["/introspect", "/revoke"] {
        for content_type in REFUSED {
            let r = post(path, content_type, token_form.clone()).await.expect("request");
            assert_eq!(token_error(r).await, (400, "invalid_request".to_string()), "{path} {content_type}");
        }
    }
    assert_eq!(userinfo_status(&server, &at).await, 200, "a refused revocation revoked nothing");
    let r = post("/introspect", "Application/X-WWW-Form-URLEncoded;charset=utf-8", token_form.clone()).await;
    let r = r.expect("introspection");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["active"], true);
    let r = post("/revoke", "application/x-www-form-urlencoded; charset=UTF-8", token_form).await.expect("revoke");
    assert_eq!(r.status(), 200);
    assert_eq!(userinfo_status(&server, &at).await, 401);
}
