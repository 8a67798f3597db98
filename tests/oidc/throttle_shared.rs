//! Failed sign-in counters shared through Redis across instances, and the
//! database fallback when Redis is away (R6).

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_one_instance_delay_attempts_on_another() {
    let Some(url) = Backend::Redis.for_test() else { return };
    let prefix = format!("test-{}:", coop_idp::crypto::random_b64(6));
    let a = TestServer::start_with(Db::Sqlite, &[("redis_url", &url), ("redis_key_prefix", &prefix)]).await;
    let b = TestServer::start_with(Db::Sqlite, &[("redis_url", &url), ("redis_key_prefix", &prefix)]).await;
    let alone = TestServer::start(Db::Sqlite).await;
    let email = "agent.partage@cc-girou.fr";
    for name in [&a, &b, &alone] {
        name.add_account(email, None).await;
    }
    for _ in 0..5 {
        assert_eq!(attempt_at(&a.base, email, "wrong-Password-1").await, 401);
    }
    // B has no failure of its own, yet refuses even the right password.
    assert_eq!(attempt_at(&b.base, email, PASSWORD).await, 429);
    // An instance that does not share the counters is not affected.
    assert_eq!(attempt_at(&alone.base, email, PASSWORD).await, 200);
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
        assert_eq!(attempt_at(&server.base, email, "wrong-Password-1").await, 401);
    }
    assert_eq!(attempt_at(&server.base, email, PASSWORD).await, 429, "protection still applies without Redis");
    server.clock.advance_secs(61);
    assert_eq!(attempt_at(&server.base, email, PASSWORD).await, 200);
}
