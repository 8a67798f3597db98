//! Issue 13, item 2: the bounds of an authorization request (README "Input
//! limits" → "Authorization requests"), the size of what is parked before
//! sign-in, and the cap on parked requests per source. Each rule is checked
//! on both sides: at its bound and one byte (or value) over.

use coop_idp::oidc::clients::AuthMethod;
use coop_idp::oidc::limits::{CLAIMS_MAX_DEPTH, MAX_REQUEST_BYTES, PARKED_PER_SOURCE, bound_of};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    authorize_limits_each_parameter_both_sides,
    authorize_limits_value_counts_characters_and_depth,
    authorize_limits_whole_request_both_sides,
    authorize_limits_page_while_the_client_is_not_validated,
    authorize_limits_parked_size_at_every_bound,
    authorize_limits_parked_per_source_under_a_burst,
);

fn max(name: &str) -> usize {
    bound_of(name).expect("bounded").max_bytes
}

/// A value of exactly `n` bytes: `prefix`, then `pad` repeated (one byte).
fn sized(prefix: &str, pad: char, n: usize) -> String {
    format!("{prefix}{}", pad.to_string().repeat(n - prefix.len()))
}

/// What the endpoint answered: the sign-in page, or a redirect to the client.
#[derive(Debug)]
enum Answer {
    SignIn(String),
    Client(std::collections::HashMap<String, String>),
}

async fn answer(r: reqwest::Response) -> Answer {
    assert_eq!(r.status(), 303, "expected a redirect");
    let loc = location(&r);
    if loc.starts_with("/signin?request=") {
        return Answer::SignIn(loc);
    }
    assert!(loc.starts_with(REDIRECT), "a redirect to the client or the sign-in page: {loc}");
    let q = query(&loc);
    assert!(!q.contains_key("code"), "{loc}");
    Answer::Client(q)
}

async fn get(server: &TestServer, params: &[(&str, &str)]) -> Answer {
    answer(http_client().get(authorize_url(server, params)).send().await.expect("authorize")).await
}

fn is_bound_error(q: &std::collections::HashMap<String, String>) -> bool {
    let d = q.get("error_description").map(String::as_str).unwrap_or_default();
    ["too long", "too many values", "may not hold", "too large", "nested too deeply"].iter().any(|m| d.contains(m))
}

/// At its bound the value passes the bound (sign-in page, or an error of
/// its own syntax); one byte over, `invalid_request` naming the parameter,
/// with the state sent back unless the state itself is the culprit.
async fn both_sides(server: &TestServer, p: &Pkce, name: &str, at: &str, over: &str) {
    assert_eq!(at.len() + 1, over.len(), "{name}");
    match get(server, &with(code_request("platform", p, "st"), &[(name, at)])).await {
        Answer::SignIn(_) => {}
        Answer::Client(q) => assert!(!is_bound_error(&q), "{name} at its bound refused for its length: {q:?}"),
    }
    match get(server, &with(code_request("platform", p, "st"), &[(name, over)])).await {
        Answer::Client(q) => {
            assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"), "{name}: {q:?}");
            let d = q.get("error_description").cloned().unwrap_or_default();
            assert!(d.starts_with(name) && d.contains("too long"), "{name}: {d}");
            let state = if name == "state" { None } else { Some("st") };
            assert_eq!(q.get("state").map(String::as_str), state, "{name}: state echoed only within bounds");
            assert_eq!(q.get("iss").map(String::as_str), Some(server.base.as_str()));
        }
        Answer::SignIn(l) => panic!("{name} one byte over its bound was parked: {l}"),
    }
}

async fn setup(db: Db) -> TestServer {
    let server = TestServer::start(db).await;
    server.add_client("platform").await;
    server
}

async fn authorize_limits_each_parameter_both_sides(db: Db) {
    let server = setup(db).await;
    let p = Pkce::random();
    let acr = coop_idp::auth::session::ACR_PASSWORD;
    let claims_at = sized(r#"{"userinfo":{"name":null},"pad":""#, 'x', max("claims") - 2) + "\"}";
    let claims_over = sized(r#"{"userinfo":{"name":null},"pad":""#, 'x', max("claims") - 1) + "\"}";
    let vschar: String = (0x20u8..=0x7e).map(char::from).collect();
    let cases: Vec<(&str, String, String)> = vec![
        ("state", sized(&vschar, '~', max("state")), sized(&vschar, '~', max("state") + 1)),
        ("nonce", sized("n-", 'n', max("nonce")), sized("n-", 'n', max("nonce") + 1)),
        ("login_hint", sized("marie@", 'x', max("login_hint")), sized("marie@", 'x', max("login_hint") + 1)),
        ("scope", sized("openid x", 'x', max("scope")), sized("openid x", 'x', max("scope") + 1)),
        ("prompt", sized("login", ' ', max("prompt")), sized("login", ' ', max("prompt") + 1)),
        ("max_age", sized("", '9', max("max_age")), sized("", '9', max("max_age") + 1)),
        ("ui_locales", sized("en-", 'x', max("ui_locales")), sized("en-", 'x', max("ui_locales") + 1)),
        ("claims_locales", sized("fr-", 'x', max("claims_locales")), sized("fr-", 'x', max("claims_locales") + 1)),
        (
            "acr_values",
            sized(&format!("{acr} x"), 'x', max("acr_values")),
            sized(&format!("{acr} x"), 'x', max("acr_values") + 1),
        ),
        ("claims", claims_at, claims_over),
        ("display", sized("page", 'x', max("display")), sized("page", 'x', max("display") + 1)),
        ("response_type", sized("code", ' ', max("response_type")), sized("code", ' ', max("response_type") + 1)),
        ("response_mode", sized("query", 'x', max("response_mode")), sized("query", 'x', max("response_mode") + 1)),
        ("code_challenge", sized("", 'c', max("code_challenge")), sized("", 'c', max("code_challenge") + 1)),
        (
            "code_challenge_method",
            sized("S256", 'x', max("code_challenge_method")),
            sized("S256", 'x', max("code_challenge_method") + 1),
        ),
        ("id_token_hint", sized("", 'h', max("id_token_hint")), sized("", 'h', max("id_token_hint") + 1)),
    ];
    for (name, at, over) in &cases {
        both_sides(&server, &p, name, at, over).await;
    }
    // The values that pass their own checks too get the sign-in page.
    for (name, at, _) in cases.iter().filter(|c| ["state", "nonce", "login_hint", "scope", "prompt"].contains(&c.0)) {
        let a = get(&server, &with(code_request("platform", &p, "st"), &[(name, at.as_str())])).await;
        assert!(matches!(a, Answer::SignIn(_)), "{name} at its bound: {a:?}");
    }
}

async fn authorize_limits_value_counts_characters_and_depth(db: Db) {
    let server = setup(db).await;
    let p = Pkce::random();
    let words = |first: &str, n: usize| {
        std::iter::once(first.to_string()).chain((1..n).map(|i| format!("v{i}"))).collect::<Vec<_>>().join(" ")
    };
    for (name, first) in
        [("scope", "openid"), ("prompt", "login"), ("acr_values", "x"), ("ui_locales", "fr"), ("claims_locales", "fr")]
    {
        let most = bound_of(name).and_then(|b| b.max_values).expect("a list");
        // prompt values must be known ones: repeat `login`.
        let (at, over) = if name == "prompt" {
            (vec!["login"; most].join(" "), vec!["login"; most + 1].join(" "))
        } else {
            (words(first, most), words(first, most + 1))
        };
        match get(&server, &with(code_request("platform", &p, "st"), &[(name, at.as_str())])).await {
            Answer::SignIn(_) => {}
            Answer::Client(q) => panic!("{name} with {most} values: {q:?}"),
        }
        match get(&server, &with(code_request("platform", &p, "st"), &[(name, over.as_str())])).await {
            Answer::Client(q) => {
                assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"));
                let d = q.get("error_description").cloned().unwrap_or_default();
                assert!(d.starts_with(name) && d.contains("too many values"), "{d}");
                assert_eq!(q.get("state").map(String::as_str), Some("st"));
            }
            Answer::SignIn(l) => panic!("{name} with {} values was parked: {l}", most + 1),
        }
    }
    // A state outside RFC 6749's VSCHAR is refused and not sent back.
    for bad in ["café", "a\u{1}b", "tab\there"] {
        match get(&server, &code_request("platform", &p, bad)).await {
            Answer::Client(q) => {
                assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"), "{bad:?}");
                assert!(!q.contains_key("state"), "{bad:?}: {q:?}");
            }
            Answer::SignIn(l) => panic!("state {bad:?} parked: {l}"),
        }
    }
    // A control character in a value kept as sent; accents are fine there.
    for (name, bad) in [("nonce", "n\u{1f}x"), ("login_hint", "marie\u{0}@x")] {
        match get(&server, &with(code_request("platform", &p, "st"), &[(name, bad)])).await {
            Answer::Client(q) => assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"), "{name}"),
            Answer::SignIn(l) => panic!("{name} {bad:?} parked: {l}"),
        }
    }
    let a = get(&server, &with(code_request("platform", &p, "st"), &[("login_hint", "hélène@cc-girou.fr")])).await;
    assert!(matches!(a, Answer::SignIn(_)), "{a:?}");
    // claims nested as deep as allowed, and one level more.
    assert_eq!(CLAIMS_MAX_DEPTH, 4);
    let deep = r#"{"userinfo":{"name":{"values":["a"]}}}"#;
    let deeper = r#"{"userinfo":{"name":{"values":[["a"]]}}}"#;
    assert!(matches!(
        get(&server, &with(code_request("platform", &p, "st"), &[("claims", deep)])).await,
        Answer::SignIn(_)
    ));
    match get(&server, &with(code_request("platform", &p, "st"), &[("claims", deeper)])).await {
        Answer::Client(q) => {
            assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"));
            assert!(q.get("error_description").is_some_and(|d| d.contains("nested too deeply")), "{q:?}");
        }
        Answer::SignIn(l) => panic!("claims five levels deep parked: {l}"),
    }
}

/// A query (or form body) of exactly `n` bytes: the request padded with an
/// unknown parameter.
fn padded(params: &[(&str, &str)], n: usize) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.extend_pairs(params);
    let q = s.finish();
    let pad = n - q.len() - "&pad=".len();
    format!("{q}&pad={}", "p".repeat(pad))
}

async fn authorize_limits_whole_request_both_sides(db: Db) {
    let server = setup(db).await;
    let p = Pkce::random();
    let params = code_request("platform", &p, "st");
    for n in [MAX_REQUEST_BYTES, MAX_REQUEST_BYTES + 1] {
        let q = padded(&params, n);
        assert_eq!(q.len(), n);
        let by_get = http_client().get(format!("{}?{q}", server.url("/authorize"))).send().await.expect("GET");
        let by_post = http_client()
            .post(server.url("/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(q.clone())
            .send()
            .await
            .expect("POST");
        for (how, r) in [("GET", by_get), ("POST", by_post)] {
            match (n, answer(r).await) {
                (n, Answer::SignIn(_)) if n == MAX_REQUEST_BYTES => {}
                (n, Answer::Client(q)) if n > MAX_REQUEST_BYTES => {
                    assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"), "{how}");
                    assert!(q.get("error_description").is_some_and(|d| d.contains("too large")), "{how}: {q:?}");
                    assert_eq!(q.get("state").map(String::as_str), Some("st"), "{how}");
                }
                (n, other) => panic!("{how}, {n} bytes: {other:?}"),
            }
        }
    }
    // Too large and an unregistered redirect URI: a page, never a redirect.
    let bad = with(params.clone(), &[("redirect_uri", "http://127.0.0.1:9/elsewhere")]);
    let q = padded(&bad, MAX_REQUEST_BYTES + 1);
    let r = http_client().get(format!("{}?{q}", server.url("/authorize"))).send().await.expect("GET");
    assert_error_page(r, "too large, unregistered redirect URI").await;
}

async fn authorize_limits_page_while_the_client_is_not_validated(db: Db) {
    let server = setup(db).await;
    let p = Pkce::random();
    // A client id as long as registration allows works; one byte more is a page.
    let long_id = "c".repeat(max("client_id"));
    server.add_client(&long_id).await;
    let a = get(&server, &code_request(&long_id, &p, "st")).await;
    assert!(matches!(a, Answer::SignIn(_)), "{a:?}");
    let longer_id = "c".repeat(max("client_id") + 1);
    let r = http_client().get(authorize_url(&server, &code_request(&longer_id, &p, "st"))).send().await.expect("GET");
    assert_error_page(r, "client_id over its bound").await;
    // The same for a registered redirect URI at the bound, and one over.
    let uri = sized("http://127.0.0.1:9/cb/", 'u', max("redirect_uri"));
    let over = format!("{uri}u");
    let registered = uri.clone();
    server.add_client_with("long-uri", AuthMethod::ClientSecretBasic, |r| r.redirect_uris = vec![registered]).await;
    let at_bound = with(code_request("long-uri", &p, "st"), &[("redirect_uri", uri.as_str())]);
    let a = answer(http_client().get(authorize_url(&server, &at_bound)).send().await.expect("GET")).await;
    assert!(matches!(a, Answer::SignIn(_)), "{a:?}");
    let over_bound = with(code_request("long-uri", &p, "st"), &[("redirect_uri", over.as_str())]);
    let r = http_client().get(authorize_url(&server, &over_bound)).send().await.expect("GET");
    assert_error_page(r, "redirect_uri over its bound").await;
    // Registration refuses what the endpoint would refuse.
    let refused = coop_idp::oidc::clients::register(
        &server.app,
        coop_idp::oidc::clients::Registration {
            id: "too-long-uri".into(),
            name: "x".into(),
            redirect_uris: vec![over.clone()],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            auth_method: AuthMethod::None,
            id_token_alg: jsonwebtoken::Algorithm::RS256,
            jwks: None,
        },
    )
    .await;
    assert!(refused.is_err(), "a redirect URI over the bound is refused at registration");
    // An oversized state with an unknown client: a page, not a redirect.
    let state = "s".repeat(max("state") + 1);
    let r = http_client()
        .get(authorize_url(&server, &with(code_request("nobody", &p, &state), &[])))
        .send()
        .await
        .expect("GET");
    assert_error_page(r, "unknown client, oversized state").await;
}

/// The bytes of the parked rows' values, as stored (integers as 8 bytes).
async fn parked_row_bytes(server: &TestServer, db: &Db) -> Vec<i64> {
    let sql = match db {
        Db::Sqlite => {
            "SELECT length(CAST(id_hash AS BLOB)) + length(CAST(client_id AS BLOB)) + length(CAST(source AS BLOB)) \
             + length(CAST(params AS BLOB)) + 16 FROM auth_requests"
        }
        Db::Postgres(_) => {
            "SELECT CAST(octet_length(id_hash) + octet_length(client_id) + octet_length(source) \
             + octet_length(params) + 16 AS BIGINT) FROM auth_requests"
        }
    };
    let rows: Vec<(i64,)> = sqlx::query_as(sql).fetch_all(server.app.store.pool()).await.expect("row sizes");
    rows.into_iter().map(|r| r.0).collect()
}

/// README "Input limits": 43 (handle hash) + 128 (client id) + 24 (source)
/// + 16 (two times) + the compact form's 916.
const WORST_ROW_BYTES: i64 = 43 + 128 + 24 + 16 + coop_idp::oidc::parked::MAX_ENCODED_BYTES as i64;

async fn authorize_limits_parked_size_at_every_bound(db: Db) {
    let server = TestServer::start_with(db.clone(), &[("trusted_proxies", "127.0.0.1/32")]).await;
    // The largest client: the longest id, sixteen of the longest URIs.
    let id = "c".repeat(max("client_id"));
    let uris: Vec<String> =
        (0..16).map(|i| sized(&format!("http://127.0.0.1:9/{i:02}/"), 'u', max("redirect_uri"))).collect();
    let registered = uris.clone();
    server.add_client_with(&id, AuthMethod::None, |r| r.redirect_uris = registered).await;
    // A hint whose `sub` is as long as a parked request keeps.
    let sub = "u".repeat(coop_idp::oidc::limits::MAX_HINT_SUB_BYTES);
    let hint = server
        .app
        .keys
        .current()
        .sign(jsonwebtoken::Algorithm::RS256, "JWT", &serde_json::json!({"iss": server.base, "sub": sub, "aud": id}))
        .expect("hint");
    let p = Pkce::random();
    let vschar: String = (0x20u8..=0x7e).map(char::from).collect();
    let state = sized(&vschar, '~', max("state"));
    let acr = coop_idp::oidc::ACR_VALUES_SUPPORTED.join(" ");
    let claims = serde_json::json!({
        "userinfo": coop_idp::oidc::claims::ALL_CLAIMS.iter().map(|c| (c.to_string(), serde_json::Value::Null)).collect::<serde_json::Map<_, _>>(),
        "id_token": coop_idp::oidc::claims::ALL_CLAIMS.iter().map(|c| (c.to_string(), serde_json::Value::Null)).collect::<serde_json::Map<_, _>>(),
    })
    .to_string();
    let nonce = sized("n", 'n', max("nonce"));
    let login_hint = sized("l@", 'l', max("login_hint"));
    let params = vec![
        ("response_type", "code"),
        ("client_id", id.as_str()),
        ("redirect_uri", uris[15].as_str()),
        ("scope", "openid profile email offline_access coop"),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("prompt", "login consent select_account"),
        ("max_age", "9999999999"),
        ("ui_locales", "en"),
        ("login_hint", login_hint.as_str()),
        ("id_token_hint", hint.as_str()),
        ("acr_values", acr.as_str()),
        ("claims", claims.as_str()),
    ];
    let browser = browser();
    let r = browser
        .get(authorize_url(&server, &params))
        .header("x-forwarded-for", "ffff:ffff:ffff:ffff:1:2:3:4")
        .send()
        .await
        .expect("authorize");
    let Answer::SignIn(signin) = answer(r).await else { panic!("the largest request is parked") };
    let sizes = parked_row_bytes(&server, &db).await;
    eprintln!("parked row, every parameter at its bound: {sizes:?} bytes (documented worst case {WORST_ROW_BYTES})");
    assert_eq!(sizes, vec![WORST_ROW_BYTES], "the documented worst case, exactly");
    // A typical request (platform-sized client id, random state and nonce).
    server.add_client("platform").await;
    let typical = Pkce::random();
    let r = browser
        .get(authorize_url(
            &server,
            &with(code_request("platform", &typical, &"s".repeat(43)), &[("nonce", &"n".repeat(43))]),
        ))
        .send()
        .await
        .expect("authorize");
    assert!(matches!(answer(r).await, Answer::SignIn(_)));
    let mut sizes = parked_row_bytes(&server, &db).await;
    sizes.sort_unstable();
    eprintln!("typical parked row: {} bytes", sizes[0]);
    assert!(sizes[0] <= 256, "{sizes:?}");
    // The largest request comes back whole: the page in English with the
    // hint filled in, then the state, every VSCHAR in it, at the client.
    let html = browser.get(server.url(&signin)).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("lang=\"en\""), "ui_locales kept");
    assert!(html.contains(&login_hint), "login_hint kept");
    server.add_account("marie.dupont@cc-girou.fr", None).await;
    let callback = submit_sign_in(&server, &browser, &signin, "marie.dupont@cc-girou.fr", PASSWORD).await;
    assert!(callback.starts_with(&uris[15]), "{callback}");
    assert_eq!(query(&callback).get("state"), Some(&state));
    assert!(query(&callback).contains_key("code"));
}

async fn park_from(server: &TestServer, p: &Pkce, ip: &str) -> String {
    let r = http_client()
        .get(authorize_url(server, &code_request("platform", p, "st")))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .expect("authorize");
    match answer(r).await {
        Answer::SignIn(l) => l,
        Answer::Client(q) => panic!("not parked: {q:?}"),
    }
}

async fn still_parked(server: &TestServer, signin: &str) -> bool {
    let status = http_client().get(server.url(signin)).send().await.expect("sign-in page").status();
    assert!(status == 200 || status == 400, "{status}");
    status == 200
}

async fn authorize_limits_parked_per_source_under_a_burst(db: Db) {
    let server = TestServer::start_with(db, &[("trusted_proxies", "127.0.0.1/32")]).await;
    server.add_client("platform").await;
    let p = Pkce::random();
    let other = park_from(&server, &p, "198.51.100.7").await;
    // A burst from one /64, each request from another address in it.
    let burst = PARKED_PER_SOURCE as usize + 36;
    let sent = (0..burst).map(|i| {
        let server = &server;
        let p = &p;
        async move { park_from(server, p, &format!("2001:db8:1:2::{:x}", i + 1)).await }
    });
    let handles = futures::future::join_all(sent).await;
    let count = |source: &'static str| {
        let pool = server.app.store.pool().clone();
        async move {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM auth_requests WHERE source = $1")
                .bind(source)
                .fetch_one(&pool)
                .await
                .expect("count");
            n
        }
    };
    assert_eq!(count("2001:db8:1:2::/64").await, PARKED_PER_SOURCE, "at most the cap, and the newest kept");
    let mut alive = 0;
    for h in &handles {
        alive += usize::from(still_parked(&server, h).await);
    }
    assert_eq!(alive, PARKED_PER_SOURCE as usize, "the dropped ones are answered as expired");
    // Another source, and another /64, are untouched.
    assert_eq!(count("198.51.100.7").await, 1);
    assert!(still_parked(&server, &other).await, "another source keeps its request");
    let neighbour = park_from(&server, &p, "2001:db8:1:3::1").await;
    assert!(still_parked(&server, &neighbour).await);
    assert_eq!(count("2001:db8:1:2::/64").await, PARKED_PER_SOURCE);
    // One more from the full /64: still the cap, the newest is there.
    let newest = park_from(&server, &p, "2001:db8:1:2::ffff").await;
    assert!(still_parked(&server, &newest).await);
    assert_eq!(count("2001:db8:1:2::/64").await, PARKED_PER_SOURCE);
}

/// Across instances (two processes on one PostgreSQL): the cap lives in the
/// database, so a burst spread over both still leaves at most the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_limits_parked_per_source_across_instances() {
    use crate::cluster::{Backends, Cluster};
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    cluster.spawn_many(2).await;
    cluster.add_client("platform").await;
    let bases = [cluster.instance(0).base.clone(), cluster.instance(1).base.clone()];
    let sent = (0..PARKED_PER_SOURCE as usize + 36).map(|i| {
        let url = authorize_url_at(&bases[i % 2], "platform", &Pkce::random(), "openid");
        async move {
            let r = http_client()
                .get(url)
                .header("x-forwarded-for", format!("2001:db8:9:9::{:x}", i + 1))
                .send()
                .await
                .expect("authorize");
            assert_eq!(r.status(), 303);
            assert!(location(&r).starts_with("/signin?request="), "{}", location(&r));
        }
    });
    futures::future::join_all(sent).await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM auth_requests WHERE source = $1")
        .bind("2001:db8:9:9::/64")
        .fetch_one(cluster.app.store.pool())
        .await
        .expect("count");
    assert_eq!(n, PARKED_PER_SOURCE);
}
