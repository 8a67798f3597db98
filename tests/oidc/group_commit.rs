//! The group writers (`Store::begin_batched_write`): transactions committed
//! together, where one that fails must fail alone with its own error, and,
//! on PostgreSQL, a writer or a point read whose connection the server ended
//! connects again by itself.

use std::time::Duration;

use coop_idp::accounts::{Names, ProfessionalEmail, new_subject, pending_row};
use coop_idp::app::App;
use coop_idp::audit::{self, Event, Outcome, Verification, kind};
use coop_idp::store::{self, StoreError};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(a_conflicting_transaction_among_batched_ones_fails_alone_with_its_conflict);

/// Transactions sent at once: more than one batch's worth on either writer.
const WRITES: usize = 40;

fn record(i: usize) -> Event {
    Event::new(kind::LOG_READ, Outcome::Success, "test").details(serde_json::json!({"n": i}))
}

/// One batched transaction: an account (a `queue_insert`, whose conflict is
/// named) and a log record.
async fn open_account(app: &App, email: &str, n: usize) -> Result<(), StoreError> {
    let email = ProfessionalEmail::parse(email).expect("email");
    let names = Names { given_name: "Ada", family_name: "Lovelace", function: "Agent" };
    let mut tx = app.store.begin_batched_write().await?;
    store::accounts::insert(&mut tx, &pending_row(new_subject(), &email, names, None, 1)).await?;
    audit::append(&app.clock, &mut tx, vec![record(n)]).await.map_err(|e| StoreError::Group(e.to_string()))?;
    tx.commit().await
}

async fn records(app: &App) -> i64 {
    match audit::verify(&app.store, &app.keys).await.expect("verify") {
        Verification::Intact { records } => records,
        other => panic!("the chain is broken: {other:?}"),
    }
}

async fn a_conflicting_transaction_among_batched_ones_fails_alone_with_its_conflict(db: Db) {
    let server = TestServer::start(db).await;
    let app = server.app.clone();
    open_account(&app, "taken@cc-girou.fr", 0).await.expect("the first account");
    let before = records(&app).await;
    // Every fifth one takes an address already taken.
    let taken = |i: usize| i.is_multiple_of(5);
    let outcomes = futures::future::join_all((0..WRITES).map(|i| {
        let app = app.clone();
        async move {
            let email = if taken(i) { "taken@cc-girou.fr".to_string() } else { format!("agent{i}@cc-girou.fr") };
            (i, open_account(&app, &email, i).await)
        }
    }))
    .await;
    for (i, outcome) in &outcomes {
        match outcome {
            Err(StoreError::Conflict(what)) if taken(*i) => assert_eq!(what, "account"),
            Ok(()) if !taken(*i) => {}
            other => panic!("transaction {i}: {other:?}"),
        }
    }
    let opened = (0..WRITES).filter(|i| !taken(*i)).count() as i64;
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE email_normalized LIKE 'agent%'")
        .fetch_one(app.store.pool())
        .await
        .expect("count");
    assert_eq!(accounts, opened, "every other transaction committed");
    assert_eq!(records(&app).await, before + opened, "one record per committed transaction, none of the failed");
}

/// PostgreSQL ends every connection of one instance (a failover, an
/// administrator's `pg_terminate_backend`): the group writer's and the point
/// reads' own connections are among them, and the next transactions and
/// reads go through on new ones (a request or two may meet a broken one
/// first, as 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_and_the_readers_connect_again_after_postgresql_ends_their_connections() {
    let Some(Db::Postgres(url)) = Db::postgres() else { return };
    let name = format!("coop_idp_test_{}", coop_idp::crypto::random_b64(9).to_lowercase().replace(['-', '_'], "x"));
    let separator = if url.contains('?') { '&' } else { '?' };
    let server = TestServer::start(Db::Postgres(format!("{url}{separator}application_name={name}"))).await;
    let app = server.app.clone();
    for i in 0..4 {
        open_account(&app, &format!("before{i}@cc-girou.fr"), i).await.expect("before");
        // The point reads' connections (`pg_read.rs`), opened too.
        app.store.session("no-such-session").await.expect("a point read");
    }
    let admin = store::Store::connect(&url).await.expect("admin connection");
    let ended: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_all(admin.pool())
            .await
            .expect("terminate");
    admin.close().await;
    // The pool's, the writer's and the readers'.
    assert!(ended.len() >= 4 && ended.iter().all(|e| *e), "{ended:?}");

    let mut failures = Vec::new();
    let mut opened = 0;
    for i in 0..20 {
        match open_account(&app, &format!("after{i}@cc-girou.fr"), 100 + i).await {
            Ok(()) => opened += 1,
            Err(e) => {
                assert!(e.is_unavailable(), "a broken connection is 'unavailable', not a fault: {e:?}");
                failures.push(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(failures.len() <= 4, "only the first transactions meet the broken connections: {failures:?}");
    let mut read_failures = 0;
    for _ in 0..10 {
        match app.store.session("no-such-session").await {
            Ok(found) => assert!(found.is_none()),
            Err(e) => {
                assert!(e.is_unavailable(), "a broken connection is 'unavailable', not a fault: {e:?}");
                read_failures += 1;
            }
        }
    }
    assert!(read_failures <= 2, "each reading connection fails once at most, then is opened again");
    assert!(opened >= 16);
    // The pool's broken connections are found by its check of a connection
    // idle for a second, and replaced.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE email_normalized LIKE 'after%'")
        .fetch_one(app.store.pool())
        .await
        .expect("count");
    assert_eq!(after, opened, "what was reported committed is there, and only that");
    records(&app).await;
}
