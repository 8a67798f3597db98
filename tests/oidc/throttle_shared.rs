//! Failed sign-in counters shared through Redis across instances, and the
//! database fallback when Redis is away (R6).

use crate::common::*;

fn redis_url() -> Option<String> {
    match std::env::var("COOP_IDP_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: COOP_IDP_TEST_REDIS_URL is not set, Redis variant not run");
            None
        }
    }
}

/// One sign-in attempt without an authorization request; returns the status.
async fn attempt(server: &TestServer, email: &str, password: &str) -> u16 {
    let browser = browser();
    let page = browser.get(server.url("/signin")).send().await.expect("page").text().await.expect("html");
    let csrf = hidden(&page, "csrf").expect("csrf");
    browser
        .post(server.url("/signin"))
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password)])
        .send()
        .await
        .expect("submit")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_one_instance_delay_attempts_on_another() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("test-{}:", coop_idp::crypto::random_b64(6));
    let a = TestServer::start_with(Db::Sqlite, &[("redis_url", &url), ("redis_key_prefix", &prefix)]).await;
    let b = TestServer::start_with(Db::Sqlite, &[("redis_url", &url), ("redis_key_prefix", &prefix)]).await;
    let alone = TestServer::start(Db::Sqlite).await;
    let email = "agent.partage@cc-girou.fr";
    for name in [&a, &b, &alone] {
        name.add_account(email, None).await;
    }
    for _ in 0..5 {
        assert_eq!(attempt(&a, email, "wrong-Password-1").await, 401);
    }
    // B has no failure of its own, yet refuses even the right password.
    assert_eq!(attempt(&b, email, PASSWORD).await, 429);
    // An instance that does not share the counters is not affected.
    assert_eq!(attempt(&alone, email, PASSWORD).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_falls_back_to_the_database() {
    // A port nobody listens on: every Redis call fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!("redis://127.0.0.1:{port}");
    let server = TestServer::start_with(Db::Sqlite, &[("redis_url", &url)]).await;
    let email = "agent.seul@cc-girou.fr";
    server.add_account(email, None).await;
    for _ in 0..5 {
        assert_eq!(attempt(&server, email, "wrong-Password-1").await, 401);
    }
    assert_eq!(attempt(&server, email, PASSWORD).await, 429, "protection still applies without Redis");
    server.clock.advance_secs(61);
    assert_eq!(attempt(&server, email, PASSWORD).await, 200);
}
