//! A burst of concurrent sign-ins cannot outrun the failed-attempt
//! restriction (R6, issue 14 item 2): each attempt is reserved before its
//! password is checked, so at most the free allowance is evaluated, on one
//! instance or several, with the counters in the database or in Redis.

use crate::cluster::*;
use crate::common::*;
use crate::on_both_databases;

const FREE: usize = 5;
const WRONG: &str = "wrong-Password-1";

/// Sends one attempt per (instance, email, password) at once; the statuses.
async fn burst(attempts: Vec<(String, String, &'static str)>) -> Vec<u16> {
    let tasks = attempts
        .into_iter()
        .map(|(base, email, password)| tokio::spawn(async move { attempt_at(&base, &email, password).await }));
    futures::future::join_all(tasks).await.into_iter().map(|r| r.expect("attempt task")).collect()
}

fn evaluated(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 401 || **s == 200).count()
}

async fn forty_concurrent_attempts_evaluate_at_most_five(db: Db) {
    let server = TestServer::start(db).await;
    let email = "agent.cible@cc-girou.fr";
    server.add_account(email, None).await;
    let base = server.url("");
    let statuses = burst((0..40).map(|_| (base.clone(), email.to_string(), WRONG)).collect()).await;
    let checked = evaluated(&statuses);
    assert!((1..=FREE).contains(&checked), "{checked} evaluated: {statuses:?}");
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    // The right password waits for the delay like any other attempt…
    assert_eq!(attempt_at(&base, email, PASSWORD).await, 429);
    // …which ends on its own: the owner is not locked out for long.
    server.clock.advance_secs(61);
    assert_eq!(attempt_at(&base, email, PASSWORD).await, 200);
    // The success cleared the count: four mistakes are free again.
    for _ in 0..FREE - 1 {
        assert_eq!(attempt_at(&base, email, WRONG).await, 401);
    }
    assert_eq!(attempt_at(&base, email, PASSWORD).await, 200);
}

async fn a_burst_across_accounts_spends_the_source_budget_once(db: Db) {
    let server = TestServer::start_with(db.clone(), &[("throttle_ip_max_failures", "10")]).await;
    let base = server.url("");
    let attempts = (0..30).map(|i| (base.clone(), format!("inconnu.{i}@cc-girou.fr"), WRONG)).collect();
    let statuses = burst(attempts).await;
    let checked = evaluated(&statuses);
    assert!((1..=10).contains(&checked), "{checked} evaluated: {statuses:?}");
    // Successes do not spend the budget of a source: a fresh server and
    // more sign-ins than the budget, all accepted.
    let other = TestServer::start_with(db, &[("throttle_ip_max_failures", "5")]).await;
    let email = "agent.assidu@cc-girou.fr";
    other.add_account(email, None).await;
    for _ in 0..8 {
        assert_eq!(attempt_at(&other.url(""), email, PASSWORD).await, 200);
    }
}

on_both_databases!(
    forty_concurrent_attempts_evaluate_at_most_five,
    a_burst_across_accounts_spends_the_source_budget_once
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_split_over_two_instances_sharing_redis_evaluates_at_most_five() {
    let Some(url) = Backend::Redis.for_test() else { return };
    let prefix = format!("test-{}:", coop_idp::crypto::random_b64(6));
    let a = TestServer::start_with(Db::Sqlite, &[("redis_url", &url), ("redis_key_prefix", &prefix)]).await;
    let b = TestServer::start_with(Db::Sqlite, &[("redis_url", &url), ("redis_key_prefix", &prefix)]).await;
    let email = "agent.partage@cc-girou.fr";
    a.add_account(email, None).await;
    b.add_account(email, None).await;
    let attempts =
        (0..40).map(|i| (if i % 2 == 0 { a.url("") } else { b.url("") }, email.to_string(), WRONG)).collect();
    let statuses = burst(attempts).await;
    let checked = evaluated(&statuses);
    assert!((1..=FREE).contains(&checked), "{checked} evaluated: {statuses:?}");
    assert_eq!(attempt_at(&b.url(""), email, PASSWORD).await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_split_over_two_server_processes_evaluates_at_most_five() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    cluster.spawn_many(2).await;
    let email = "agent.grappe@cc-girou.fr";
    cluster.add_account(email).await;
    let bases = [cluster.instance(0).base.clone(), cluster.instance(1).base.clone()];
    let attempts = (0..40).map(|i| (bases[i % 2].clone(), email.to_string(), WRONG)).collect();
    let statuses = burst(attempts).await;
    let checked = evaluated(&statuses);
    assert!((1..=FREE).contains(&checked), "{checked} evaluated: {statuses:?}");
    assert_eq!(attempt_at(&bases[1], email, PASSWORD).await, 429);
}
