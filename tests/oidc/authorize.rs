//! Basic OP plan, the authorization endpoint: every module that varies the
//! authorization request, plus the RFC 9700 rules enforced there (PKCE S256
//! only, no implicit or hybrid flow, 303 after a credential POST, no CORS,
//! `frame-ancestors 'none'`). Each test checks both sides of its rule.

use serde_json::Value;

use crate::common::*;
use crate::on_both_databases;

async fn get_redirect(browser: &reqwest::Client, url: &str) -> String {
    let r = browser.get(url).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    location(&r)
}

on_both_databases!(
    oidcc_response_type_missing,
    oidcc_ensure_registered_redirect_uri,
    oidcc_ensure_post_request_succeeds,
    oidcc_unsigned_request_object_refused,
    oidcc_request_uri_refused,
    oidcc_ensure_request_object_with_redirect_uri,
    oidcc_prompt_none_not_logged_in,
    oidcc_prompt_none_logged_in,
    oidcc_prompt_login,
    oidcc_max_age_1,
    oidcc_max_age_10000,
    oidcc_id_token_hint,
    oidcc_login_hint,
    oidcc_ui_locales,
    oidcc_claims_locales,
    oidcc_display_page_and_popup,
    oidcc_ensure_request_with_unknown_parameter_succeeds,
    oidcc_ensure_request_with_acr_values_succeeds,
    oidcc_claims_essential,
    oidcc_ensure_request_without_nonce_succeeds_for_code_flow,
    pkce_s256_required_plain_refused,
    no_implicit_hybrid_or_password_grant,
    credential_post_redirects_with_303,
    no_cors_on_authorization_endpoint,
    frame_ancestors_none_on_every_page,
    request_headers_past_16_kib_are_refused,
);

async fn oidcc_response_type_missing(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    // Signed in, so that a provider ignoring the omission would hand out a code.
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let p = Pkce::random();
    let mut params = code_request("platform", &p, "st-missing");
    params.retain(|(k, _)| *k != "response_type");
    let loc = get_redirect(&browser, &authorize_url(&server, &params)).await;
    assert_error_redirect(&loc, &["invalid_request", "unsupported_response_type"], "st-missing", &server.base);
    // The same request with response_type=code gets its code.
    let callback = authorize_silently(&browser, &authorize_url(&server, &code_request("platform", &p, "st"))).await;
    tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
}

async fn oidcc_ensure_registered_redirect_uri(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let p = Pkce::random();
    let suffixed = format!("{REDIRECT}/extra");
    let with_query = format!("{REDIRECT}?x=1");
    let with_fragment = format!("{REDIRECT}#x");
    let upper = REDIRECT.to_uppercase();
    let prefix = &REDIRECT[..REDIRECT.len() - 1];
    for bad in [
        suffixed.as_str(),
        with_query.as_str(),
        with_fragment.as_str(),
        upper.as_str(),
        prefix,
        "https://attacker.example/callback",
    ] {
        let url = authorize_url(&server, &with(code_request("platform", &p, "st"), &[("redirect_uri", bad)]));
        assert_error_page(browser.get(&url).send().await.expect("authorize"), bad).await;
    }
    let mut missing = code_request("platform", &p, "st");
    missing.retain(|(k, _)| *k != "redirect_uri");
    assert_error_page(browser.get(authorize_url(&server, &missing)).send().await.expect("authorize"), "missing").await;
    let unknown = with(code_request("platform", &p, "st"), &[("client_id", "nobody")]);
    assert_error_page(browser.get(authorize_url(&server, &unknown)).send().await.expect("authorize"), "unknown client")
        .await;
    // The exact registered URI works.
    let callback = authorize_silently(&browser, &authorize_url(&server, &code_request("platform", &p, "st"))).await;
    tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
}

async fn oidcc_ensure_post_request_succeeds(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let p = Pkce::random();
    let r = browser
        .post(server.url("/authorize"))
        .form(&code_request("platform", &p, "st-post"))
        .send()
        .await
        .expect("authorize POST");
    assert_eq!(r.status(), 303, "a POSTed request is redirected with 303");
    let signin = location(&r);
    assert!(signin.starts_with("/signin?request="), "{signin}");
    let callback = submit_sign_in(&server, &browser, &signin, EMAIL, PASSWORD).await;
    assert_eq!(query(&callback).get("state").map(String::as_str), Some("st-post"));
    let t = tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
    assert_eq!(jwt_part(&id_token_of(&t), 1)["sub"], sub.as_str());
    // With the session: a code straight away, also by POST.
    let p = Pkce::random();
    let r = browser
        .post(server.url("/authorize"))
        .form(&code_request("platform", &p, "st-post-2"))
        .send()
        .await
        .expect("authorize POST");
    assert_eq!(r.status(), 303);
    let code = code_of(&location(&r));
    tokens(&server, "platform", Some(&secret), &code, &p.verifier).await;
    // A POSTed request with an unregistered redirect URI: an error page.
    let bad = format!("{REDIRECT}x");
    let r = browser
        .post(server.url("/authorize"))
        .form(&with(code_request("platform", &p, "st"), &[("redirect_uri", bad.as_str())]))
        .send()
        .await
        .expect("authorize POST");
    assert_error_page(r, "POST with unregistered redirect_uri").await;
}

/// An unsigned request object (`alg: none`) carrying the whole request.
fn unsigned_request_object(client_id: &str, p: &Pkce) -> String {
    let header = coop_idp::crypto::b64url(br#"{"alg":"none"}"#);
    let claims = serde_json::json!({
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
        "state": "st-ro", "code_challenge": p.challenge, "code_challenge_method": "S256",
    });
    format!("{header}.{}.", coop_idp::crypto::b64url(claims.to_string().as_bytes()))
}

async fn discovery_flag(server: &TestServer, name: &str) -> Value {
    discovery(&server.base).await[name].clone()
}

async fn oidcc_unsigned_request_object_refused(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let p = Pkce::random();
    let object = unsigned_request_object("platform", &p);
    let url = authorize_url(&server, &with(code_request("platform", &p, "st-ro"), &[("request", object.as_str())]));
    assert_error_redirect(&get_redirect(&browser, &url).await, &["request_not_supported"], "st-ro", &server.base);
    assert_eq!(discovery_flag(&server, "request_parameter_supported").await, false);
    // Without the request object the same request gets its code.
    let callback = authorize_silently(&browser, &authorize_url(&server, &code_request("platform", &p, "st"))).await;
    tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
}

async fn oidcc_request_uri_refused(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let p = Pkce::random();
    let url = authorize_url(
        &server,
        &with(code_request("platform", &p, "st-ru"), &[("request_uri", "https://rp.example.fr/request.jwt")]),
    );
    assert_error_redirect(&get_redirect(&browser, &url).await, &["request_uri_not_supported"], "st-ru", &server.base);
    assert_eq!(discovery_flag(&server, "request_uri_parameter_supported").await, false);
    let callback = authorize_silently(&browser, &authorize_url(&server, &code_request("platform", &p, "st"))).await;
    tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
}

async fn oidcc_ensure_request_object_with_redirect_uri(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let p = Pkce::random();
    let object = unsigned_request_object("platform", &p);
    // The outer redirect_uri is checked first: unregistered means a page.
    let bad = format!("{REDIRECT}/elsewhere");
    let url = authorize_url(
        &server,
        &with(code_request("platform", &p, "st-ro"), &[("redirect_uri", bad.as_str()), ("request", object.as_str())]),
    );
    assert_error_page(browser.get(&url).send().await.expect("authorize"), "request object, bad outer redirect").await;
    // With the registered one, the refusal goes back to the client.
    let url = authorize_url(&server, &with(code_request("platform", &p, "st-ro"), &[("request", object.as_str())]));
    assert_error_redirect(&get_redirect(&browser, &url).await, &["request_not_supported"], "st-ro", &server.base);
}

async fn oidcc_prompt_none_not_logged_in(db: Db) {
    let (server, _, _) = platform_server(db).await;
    let browser = browser();
    let p = Pkce::random();
    let long_state: String = "s".repeat(64) + &"S".repeat(64);
    assert_eq!(long_state.len(), 128);
    let url = authorize_url(&server, &with(code_request("platform", &p, &long_state), &[("prompt", "none")]));
    let loc = get_redirect(&browser, &url).await;
    assert_error_redirect(&loc, &["login_required"], &long_state, &server.base);
    // Without prompt=none the same browser is asked to sign in.
    expect_sign_in_page(&browser, &authorize_url(&server, &code_request("platform", &p, &long_state))).await;
}

async fn oidcc_prompt_none_logged_in(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let first = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let first = jwt_part(&id_token_of(&first), 1);
    let again = silent_tokens(&server, &browser, "platform", Some(&secret), &[("prompt", "none")]).await;
    let again = jwt_part(&id_token_of(&again), 1);
    assert_eq!(again["sub"], sub.as_str());
    assert_eq!(again["auth_time"], first["auth_time"]);
    // Another browser, not signed in: login_required.
    let p = Pkce::random();
    let url = authorize_url(&server, &with(code_request("platform", &p, "st-none"), &[("prompt", "none")]));
    assert_error_redirect(&get_redirect(&http_client(), &url).await, &["login_required"], "st-none", &server.base);
}

async fn oidcc_prompt_login(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let first = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let first_auth = jwt_part(&id_token_of(&first), 1)["auth_time"].as_i64().expect("auth_time");
    server.clock.advance_secs(2);
    // prompt=login: the sign-in page again despite the live session.
    let p = Pkce::random();
    let url = authorize_url(&server, &with(code_request("platform", &p, "st"), &[("prompt", "login")]));
    let signin = expect_sign_in_page(&browser, &url).await;
    let callback = submit_sign_in(&server, &browser, &signin, EMAIL, PASSWORD).await;
    let second = tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
    let second = jwt_part(&id_token_of(&second), 1);
    assert_eq!(second["sub"], sub.as_str());
    let second_auth = second["auth_time"].as_i64().expect("auth_time");
    assert!(second_auth > first_auth, "auth_time {second_auth} should be later than {first_auth}");
    // Without prompt=login the session is used as it is.
    let third = silent_tokens(&server, &browser, "platform", Some(&secret), &[]).await;
    assert_eq!(jwt_part(&id_token_of(&third), 1)["auth_time"], second_auth);
}

async fn oidcc_max_age_1(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let first = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let first_auth = jwt_part(&id_token_of(&first), 1)["auth_time"].as_i64().expect("auth_time");
    // Within a generous max_age the session is still good.
    silent_tokens(&server, &browser, "platform", Some(&secret), &[("max_age", "30")]).await;
    server.clock.advance_secs(2);
    let p = Pkce::random();
    let url = authorize_url(&server, &with(code_request("platform", &p, "st"), &[("max_age", "1")]));
    let signin = expect_sign_in_page(&browser, &url).await;
    let callback = submit_sign_in(&server, &browser, &signin, EMAIL, PASSWORD).await;
    let second = tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
    let second = jwt_part(&id_token_of(&second), 1);
    assert_eq!(second["sub"], sub.as_str());
    let second_auth = second["auth_time"].as_i64().expect("auth_time present with max_age");
    assert!(second_auth > first_auth, "auth_time {second_auth} should be later than {first_auth}");
}

async fn oidcc_max_age_10000(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let first = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let first = jwt_part(&id_token_of(&first), 1);
    server.clock.advance_secs(120);
    let again = silent_tokens(&server, &browser, "platform", Some(&secret), &[("max_age", "10000")]).await;
    let again = jwt_part(&id_token_of(&again), 1);
    assert_eq!(again["sub"], sub.as_str());
    assert_eq!(again["auth_time"], first["auth_time"]);
    // A max_age shorter than the session's age asks again.
    let p = Pkce::random();
    let url = authorize_url(&server, &with(code_request("platform", &p, "st"), &[("max_age", "60")]));
    expect_sign_in_page(&browser, &url).await;
}

async fn oidcc_id_token_hint(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let other_email = "jean.martin@cc-girou.fr";
    server.add_account(other_email, None).await;
    let browser = browser();
    let first = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let hint = id_token_of(&first);
    let first = jwt_part(&hint, 1);
    let again =
        silent_tokens(&server, &browser, "platform", Some(&secret), &[("prompt", "none"), ("id_token_hint", &hint)])
            .await;
    let again = jwt_part(&id_token_of(&again), 1);
    assert_eq!(again["sub"], sub.as_str());
    assert_eq!(again["auth_time"], first["auth_time"]);

    // A hint whose payload was altered: refused.
    let mut parts: Vec<String> = hint.split('.').map(str::to_string).collect();
    let mut payload = first.clone();
    payload["sub"] = Value::from("someone-else");
    parts[1] = coop_idp::crypto::b64url(payload.to_string().as_bytes());
    let forged = parts.join(".");
    let p = Pkce::random();
    let url = authorize_url(
        &server,
        &with(code_request("platform", &p, "st-h"), &[("prompt", "none"), ("id_token_hint", &forged)]),
    );
    assert_error_redirect(&get_redirect(&browser, &url).await, &["invalid_request"], "st-h", &server.base);

    // A hint naming another user than the session's: no silent code.
    let other_browser = crate::common::browser();
    let other = sign_in_for_tokens(&server, &other_browser, "platform", Some(&secret), &[], other_email).await;
    let other_hint = id_token_of(&other);
    let url = authorize_url(
        &server,
        &with(code_request("platform", &p, "st-h2"), &[("prompt", "none"), ("id_token_hint", &other_hint)]),
    );
    assert_error_redirect(&get_redirect(&browser, &url).await, &["login_required"], "st-h2", &server.base);
    let url = authorize_url(&server, &with(code_request("platform", &p, "st-h3"), &[("id_token_hint", &other_hint)]));
    expect_sign_in_page(&browser, &url).await;
}

async fn oidcc_login_hint(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let p = Pkce::random();
    let url = authorize_url(&server, &with(code_request("platform", &p, "st"), &[("login_hint", EMAIL)]));
    let signin = expect_sign_in_page(&browser, &url).await;
    let html = browser.get(server.url(&signin)).send().await.expect("page").text().await.expect("html");
    assert!(html.contains(&format!("value=\"{EMAIL}\"")), "login_hint prefills the email");
    let callback = submit_sign_in(&server, &browser, &signin, EMAIL, PASSWORD).await;
    let t = tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
    assert_eq!(jwt_part(&id_token_of(&t), 1)["sub"], sub.as_str());
    // Without a hint the field is empty; a hostile hint is escaped.
    let url = authorize_url(&server, &code_request("platform", &p, "st"));
    let signin = expect_sign_in_page(&crate::common::browser(), &url).await;
    let html = browser.get(server.url(&signin)).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("name=\"email\"") && !html.contains(EMAIL));
    let hostile = "\"><script>alert(1)</script>";
    let url = authorize_url(&server, &with(code_request("platform", &p, "st"), &[("login_hint", hostile)]));
    let signin = expect_sign_in_page(&crate::common::browser(), &url).await;
    let html = browser.get(server.url(&signin)).send().await.expect("page").text().await.expect("html");
    assert!(!html.contains("<script>alert(1)"), "login_hint must be escaped");
}

async fn sign_in_page_html(server: &TestServer, extra: &[(&str, &str)]) -> String {
    let browser = browser();
    let p = Pkce::random();
    let url = authorize_url(server, &with(code_request("platform", &p, "st"), extra));
    let signin = expect_sign_in_page(&browser, &url).await;
    let r = browser.get(server.url(&signin)).send().await.expect("page");
    assert_eq!(r.status(), 200);
    r.text().await.expect("html")
}

async fn oidcc_ui_locales(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let en = sign_in_page_html(&server, &[("ui_locales", "en-GB fr")]).await;
    assert!(en.contains("<html lang=\"en\">"), "ui_locales=en-GB gives English");
    assert!(en.contains("Sign in"));
    let fr = sign_in_page_html(&server, &[("ui_locales", "de fr")]).await;
    assert!(fr.contains("<html lang=\"fr\">"), "first supported of ui_locales");
    let default = sign_in_page_html(&server, &[("ui_locales", "de")]).await;
    assert!(default.contains("<html lang=\"fr\">"), "unsupported only: French");
    // The flow completes with ui_locales.
    let browser = browser();
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[("ui_locales", "en")], EMAIL).await;
}

async fn oidcc_claims_locales(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let t = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[("claims_locales", "fr-FR en")], EMAIL)
        .await;
    assert_eq!(jwt_part(&id_token_of(&t), 1)["sub"], sub.as_str());
    let d = discovery_flag(&server, "claims_locales_supported").await;
    assert_eq!(d, serde_json::json!(["fr"]));
    // A language we do not have is no error either.
    silent_tokens(&server, &browser, "platform", Some(&secret), &[("claims_locales", "ja")]).await;
}

async fn oidcc_display_page_and_popup(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    for display in ["page", "popup"] {
        let browser = browser();
        let t = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[("display", display)], EMAIL).await;
        assert_eq!(jwt_part(&id_token_of(&t), 1)["sub"], sub.as_str(), "display={display}");
    }
}

async fn oidcc_ensure_request_with_unknown_parameter_succeeds(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let t = sign_in_for_tokens(
        &server,
        &browser,
        "platform",
        Some(&secret),
        &[("extra", "foobar"), ("x-vendor", "1")],
        EMAIL,
    )
    .await;
    assert_eq!(jwt_part(&id_token_of(&t), 1)["sub"], sub.as_str());
    // Parameters are still parsed strictly: a repeated one is refused.
    let p = Pkce::random();
    let mut repeated = code_request("platform", &p, "st");
    repeated.push(("state", "again"));
    assert_error_page(browser.get(authorize_url(&server, &repeated)).send().await.expect("authorize"), "repeated")
        .await;
}

async fn oidcc_ensure_request_with_acr_values_succeeds(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let password_acr = "urn:coop-idp:acr:password";
    let browser = browser();
    let acr_values = format!("urn:example:acr:unknown {password_acr}");
    let t =
        sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[("acr_values", &acr_values)], EMAIL).await;
    assert_eq!(jwt_part(&id_token_of(&t), 1)["acr"], password_acr, "an acr among those requested");
    // Only values we cannot satisfy: still a success.
    let t = silent_tokens(&server, &browser, "platform", Some(&secret), &[("acr_values", "urn:example:acr:mfa")]).await;
    assert!(jwt_part(&id_token_of(&t), 1)["acr"].is_string());
}

async fn oidcc_claims_essential(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let browser = browser();
    let claims = r#"{"userinfo":{"name":{"essential":true}},"id_token":{"email":null}}"#;
    let t = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[("claims", claims)], EMAIL).await;
    let info = userinfo(&server, t["access_token"].as_str().expect("access_token")).await;
    assert_eq!(info["sub"], sub.as_str());
    assert_eq!(info["name"], "Marie Dupont", "name requested for userinfo");
    assert!(info.get("email").is_none(), "only what was asked: {info}");
    let id = jwt_part(&id_token_of(&t), 1);
    assert_eq!(id["email"], EMAIL, "email requested for the ID token");
    assert!(id.get("name").is_none(), "{id}");
    // Without the claims parameter, scope openid alone releases nothing more.
    let t = silent_tokens(&server, &browser, "platform", Some(&secret), &[]).await;
    let info = userinfo(&server, t["access_token"].as_str().expect("access_token")).await;
    assert!(info.get("name").is_none(), "{info}");
    // A malformed claims parameter is refused with a redirect.
    let p = Pkce::random();
    let url = authorize_url(&server, &with(code_request("platform", &p, "st-c"), &[("claims", r#"{"userinfo":3}"#)]));
    assert_error_redirect(&get_redirect(&browser, &url).await, &["invalid_request"], "st-c", &server.base);
}

async fn oidcc_ensure_request_without_nonce_succeeds_for_code_flow(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let t = sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let claims = verify_id_token(&rp, &id_token_of(&t), None);
    assert_eq!(claims.subject().as_str(), sub);
    assert!(claims.nonce().is_none());
    // With a nonce, it comes back as sent.
    let t = silent_tokens(&server, &browser, "platform", Some(&secret), &[("nonce", "n-0S6_WzA2Mj")]).await;
    let claims = verify_id_token(&rp, &id_token_of(&t), Some("n-0S6_WzA2Mj"));
    assert_eq!(claims.nonce().map(|n| n.secret().as_str()), Some("n-0S6_WzA2Mj"));
}

async fn pkce_s256_required_plain_refused(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let p = Pkce::random();
    let no_pkce: Vec<_> =
        code_request("platform", &p, "st-p").into_iter().filter(|(k, _)| !k.starts_with("code_challenge")).collect();
    let no_method: Vec<_> =
        code_request("platform", &p, "st-p").into_iter().filter(|(k, _)| *k != "code_challenge_method").collect();
    let plain_verifier = "a".repeat(43);
    let plain = with(
        code_request("platform", &p, "st-p"),
        &[("code_challenge", plain_verifier.as_str()), ("code_challenge_method", "plain")],
    );
    let short = with(code_request("platform", &p, "st-p"), &[("code_challenge", "abc")]);
    for (what, params) in [("no PKCE", no_pkce), ("no method (plain)", no_method), ("plain", plain), ("short", short)] {
        let loc = get_redirect(&browser, &authorize_url(&server, &params)).await;
        assert!(query(&loc).contains_key("error"), "{what}: {loc}");
        assert_error_redirect(&loc, &["invalid_request"], "st-p", &server.base);
    }
    let d = discovery_flag(&server, "code_challenge_methods_supported").await;
    assert_eq!(d, serde_json::json!(["S256"]));
    // S256 is accepted (oidcc-ensure-request-with-valid-pkce-succeeds).
    let callback = authorize_silently(&browser, &authorize_url(&server, &code_request("platform", &p, "st"))).await;
    tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
}

async fn password_grant(server: &TestServer, secret: &str) -> (u16, String) {
    let r = http_client()
        .post(server.url("/token"))
        .basic_auth("platform", Some(secret))
        .form(&[("grant_type", "password"), ("username", EMAIL), ("password", PASSWORD), ("scope", "openid")])
        .send()
        .await
        .expect("token request");
    token_error(r).await
}

async fn no_implicit_hybrid_or_password_grant(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let browser = browser();
    sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[], EMAIL).await;
    let p = Pkce::random();
    for rt in ["token", "id_token", "id_token token", "code id_token", "code token", "code id_token token", "none"] {
        let url = authorize_url(
            &server,
            &with(code_request("platform", &p, "st-i"), &[("response_type", rt), ("nonce", "n")]),
        );
        let loc = get_redirect(&browser, &url).await;
        assert_error_redirect(&loc, &["unsupported_response_type"], "st-i", &server.base);
    }
    let url = authorize_url(&server, &with(code_request("platform", &p, "st-m"), &[("response_mode", "fragment")]));
    assert_error_redirect(&get_redirect(&browser, &url).await, &["invalid_request"], "st-m", &server.base);
    assert_eq!(password_grant(&server, &secret).await, (400, "unsupported_grant_type".to_string()));
    assert_eq!(discovery_flag(&server, "response_types_supported").await, serde_json::json!(["code"]));
    let grants = discovery_flag(&server, "grant_types_supported").await;
    for refused in ["password", "implicit", "client_credentials"] {
        assert!(!grants.as_array().expect("grants").iter().any(|g| g == refused), "{refused} advertised");
    }
    // The code flow is the one that works.
    let callback = authorize_silently(&browser, &authorize_url(&server, &code_request("platform", &p, "st"))).await;
    tokens(&server, "platform", Some(&secret), &code_of(&callback), &p.verifier).await;
}

async fn credential_post_redirects_with_303(db: Db) {
    let (server, _, _) = platform_server(db).await;
    let browser = browser();
    let p = Pkce::random();
    let signin = expect_sign_in_page(&browser, &authorize_url(&server, &code_request("platform", &p, "st"))).await;
    let form = Form::of(&browser, &server.url(&signin)).await;
    assert!(form.field("request").is_some(), "the parked request rides along");
    // Wrong password: the page again (401), no redirect.
    let r = SignIn::new(EMAIL, "wrong-password").send(&form, &browser, &server.base).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    // Right password: 303 See Other to the client, never 307/308 (which
    // would replay the credentials to the client).
    let r = SignIn::new(EMAIL, PASSWORD).send(&form, &browser, &server.base).await;
    assert_eq!(r.status(), 303);
    code_of(&location(&r));
}

fn assert_no_cors(r: &reqwest::Response, what: &str) {
    for h in ["access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods"] {
        assert!(r.headers().get(h).is_none(), "{what}: {h} present");
    }
}

async fn no_cors_on_authorization_endpoint(db: Db) {
    let (server, _, _) = platform_server(db).await;
    let browser = browser();
    let p = Pkce::random();
    let url = authorize_url(&server, &code_request("platform", &p, "st"));
    let origin = "https://attacker.example";
    let r = browser.get(&url).header("origin", origin).send().await.expect("GET");
    assert_eq!(r.status(), 303, "the endpoint itself still works");
    assert_no_cors(&r, "GET /authorize");
    let r = browser
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("OPTIONS");
    assert_no_cors(&r, "preflight /authorize");
    assert!(!r.status().is_success(), "no preflight success: {}", r.status());
    let r = browser
        .post(server.url("/authorize"))
        .header("origin", origin)
        .form(&code_request("platform", &p, "st"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 303);
    assert_no_cors(&r, "POST /authorize");
}

fn assert_not_framable(r: &reqwest::Response, what: &str) {
    let csp = r.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp:?}");
    assert_eq!(r.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"), "{what}");
}

async fn frame_ancestors_none_on_every_page(db: Db) {
    let (server, _, _) = platform_server(db).await;
    let browser = browser();
    let p = Pkce::random();
    let r = browser.get(authorize_url(&server, &code_request("platform", &p, "st"))).send().await.expect("authorize");
    assert_not_framable(&r, "authorize redirect");
    let signin = location(&r);
    let r = browser.get(server.url(&signin)).send().await.expect("sign-in page");
    assert_eq!(r.status(), 200);
    assert_not_framable(&r, "sign-in page");
    let bad = with(code_request("platform", &p, "st"), &[("redirect_uri", "https://attacker.example/cb")]);
    let r = browser.get(authorize_url(&server, &bad)).send().await.expect("error page");
    assert_eq!(r.status(), 400);
    assert_not_framable(&r, "error page");
    for path in ["/signin", "/no-such-page", "/logout", "/.well-known/openid-configuration", "/jwks"] {
        let r = browser.get(server.url(path)).send().await.expect(path);
        assert_not_framable(&r, path);
    }
    let r = browser.get(server.url("/signin?request=expired")).send().await.expect("expired request");
    assert_not_framable(&r, "expired request page");
}

/// The sum of header names and values is capped at 16 KiB (README, "Input
/// limits"): past it 431, below it the request is answered.
async fn request_headers_past_16_kib_are_refused(db: Db) {
    let (server, _, _) = platform_server(db).await;
    let browser = browser();
    let r = browser.get(server.url("/jwks")).header("x-padding", "a".repeat(12 * 1024)).send().await.expect("jwks");
    assert_eq!(r.status(), 200, "12 KiB of headers");
    assert_not_framable(&r, "jwks with 12 KiB of headers");
    let r = browser.get(server.url("/jwks")).header("x-padding", "a".repeat(16 * 1024)).send().await.expect("jwks");
    assert_eq!(r.status(), 431, "16 KiB and more of headers");
}
