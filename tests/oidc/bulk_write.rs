//! Bulk write transactions (`Store::begin_bulk_write`, issue 18): on SQLite
//! run by the group writer's thread, elsewhere ordinary. All of one commits
//! or none of it, its log records chain with everyone else's, the writes that
//! arrive meanwhile wait and then go through, and (SQLite) its reads see the
//! database as it began.

use std::time::Duration;

use coop_idp::accounts::{Names, ProfessionalEmail, new_subject, pending_row};
use coop_idp::app::App;
use coop_idp::audit::{self, Event, Outcome, Verification, kind};
use coop_idp::provisioning::annex1::apply::{Import, import, import_with_fault};
use coop_idp::store::{self, StoreError, WriteTx};

use crate::annex1::{setup_partner, snapshot};
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    a_bulk_write_commits_whole_and_chains_with_the_writes_around_it,
    a_bulk_write_that_fails_or_is_dropped_leaves_nothing,
    a_large_annex_logs_everyone_once_in_one_chain_or_nothing,
);

/// More statements than one chunk handed to the writer's thread (512).
const PEOPLE: usize = 700;

async fn queue_account(tx: &mut WriteTx, i: usize) {
    let email = ProfessionalEmail::parse(&format!("agent{i}@cc-girou.fr")).expect("email");
    let names = Names { given_name: "Ada", family_name: "Lovelace", function: "Agent" };
    let row = pending_row(new_subject(), &email, names, None, 1);
    store::accounts::insert(tx, &row).await.expect("insert");
}

async fn count(app: &App, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(app.store.pool()).await.expect(sql)
}

async fn accounts(app: &App) -> i64 {
    count(app, "SELECT COUNT(*) FROM accounts WHERE email_normalized LIKE 'agent%'").await
}

fn record(i: usize) -> Event {
    Event::new(kind::LOG_READ, Outcome::Success, "cli").details(serde_json::json!({"n": i}))
}

async fn a_bulk_write_commits_whole_and_chains_with_the_writes_around_it(db: Db) {
    let server = TestServer::start(db).await;
    let app = server.app.clone();
    let before = match audit::verify(&app.store, &app.keys).await.expect("verify") {
        Verification::Intact { records } => records,
        other => panic!("{other:?}"),
    };
    let mut tx = app.store.begin_bulk_write().await.expect("begin");
    // The hot paths' writes and ordinary ones, started while it is open.
    let mut others = Vec::new();
    for i in 0..16 {
        let app = app.clone();
        others.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let mut tx = app.store.begin_batched_write().await.expect("begin");
                audit::append(&app.clock, &mut tx, vec![record(i)]).await.expect("append");
                tx.commit().await.expect("commit");
            } else {
                audit::record(&app.store, &app.clock, vec![record(i)]).await;
            }
        }));
    }
    for i in 0..PEOPLE {
        queue_account(&mut tx, i).await;
    }
    let records: Vec<Event> = (0..PEOPLE).map(|i| record(1000 + i)).collect();
    audit::append(&app.clock, &mut tx, records).await.expect("append");
    tx.commit().await.expect("commit");
    for task in others {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the other writes went through")
            .expect("task");
    }
    assert_eq!(accounts(&app).await, PEOPLE as i64);
    let expected = before + PEOPLE as i64 + 16;
    assert_eq!(audit::verify(&app.store, &app.keys).await.expect("verify"), Verification::Intact { records: expected });
    // The chain goes on from the bulk write's head, whoever writes next.
    let mut tx = app.store.begin_batched_write().await.expect("begin");
    audit::append(&app.clock, &mut tx, vec![record(9999)]).await.expect("append");
    tx.commit().await.expect("commit");
    assert_eq!(
        audit::verify(&app.store, &app.keys).await.expect("verify"),
        Verification::Intact { records: expected + 1 }
    );
}

async fn a_bulk_write_that_fails_or_is_dropped_leaves_nothing(db: Db) {
    let server = TestServer::start(db).await;
    let app = server.app.clone();
    let events = || count(&app, "SELECT COUNT(*) FROM events");
    let events_before = events().await;

    // A second account with an address already taken: the whole
    // transaction fails at its commit, with the conflict named.
    let mut tx = app.store.begin_bulk_write().await.expect("begin");
    for i in 0..PEOPLE {
        queue_account(&mut tx, i).await;
    }
    queue_account(&mut tx, 3).await;
    // Reported at the latest by the commit (PostgreSQL: when the log's
    // lock is taken, which sends what was queued).
    let failure = match audit::append(&app.clock, &mut tx, vec![record(1)]).await {
        Err(e) => format!("{e:?}"),
        Ok(()) => format!("{:?}", tx.commit().await),
    };
    assert!(failure.contains(&format!("{:?}", StoreError::Conflict("account".into()))), "{failure}");
    assert_eq!(accounts(&app).await, 0);
    assert_eq!(events().await, events_before);

    // Dropped before its commit: nothing either.
    let mut tx = app.store.begin_bulk_write().await.expect("begin");
    for i in 0..PEOPLE {
        queue_account(&mut tx, i).await;
    }
    drop(tx);

    // And the writers serve on: the same accounts go in now.
    let mut tx = app.store.begin_bulk_write().await.expect("begin");
    for i in 0..10 {
        queue_account(&mut tx, i).await;
    }
    tx.commit().await.expect("commit");
    assert_eq!(accounts(&app).await, 10);
    audit::record(&app.store, &app.clock, vec![record(2)]).await;
    assert_eq!(events().await, events_before + 1);
    assert!(matches!(audit::verify(&app.store, &app.keys).await.expect("verify"), Verification::Intact { .. }));
}

/// SQLite: the transaction holds the write lock from its beginning, so its
/// reads see the database as it began (and not its own writes, as
/// `begin_bulk_write` warns); a write sent on its read connection fails at
/// once; a write of the hot paths waits for its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_bulk_write_reads_the_database_as_it_began() {
    let server = TestServer::start(Db::Sqlite).await;
    let app = server.app.clone();
    let mut tx = app.store.begin_bulk_write().await.expect("begin");
    queue_account(&mut tx, 1).await;
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tx = app.store.begin_batched_write().await.expect("begin");
            queue_account(&mut tx, 2).await;
            tx.commit().await.expect("commit");
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "another write waits for the bulk one");
    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE email_normalized LIKE 'agent%'")
        .fetch_one(tx.conn().await.expect("conn"))
        .await
        .expect("read");
    assert_eq!(seen, 0, "its reads see the database as it began");
    let started = std::time::Instant::now();
    let refused = sqlx::query("DELETE FROM accounts").execute(tx.conn().await.expect("conn")).await;
    assert!(refused.is_err(), "its read connection takes no write");
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not after the lock's timeout");
    tx.commit().await.expect("commit");
    tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the other write went through").expect("task");
    assert_eq!(accounts(&app).await, 2);
}

/// An annex of 300 new people: 600 log records, more than the apply gathers
/// before it appends them on SQLite (512, `apply::APPEND_EVERY`). Stopped
/// after 290 people (records already appended), nothing is left, the log
/// included; applied whole, each person has their two records, once, and
/// the chain holds.
async fn a_large_annex_logs_everyone_once_in_one_chain_or_nothing(db: Db) {
    const PEOPLE: usize = 300;
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-01")).await;
    let mut csv = String::from(
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation\r\n",
    );
    for i in 0..PEOPLE {
        csv.push_str(&format!("ouvert;Nom{i};Prénom{i};agent{i}@cc-girou.fr;Agent;\r\n"));
    }
    let request = |apply| Import {
        partner_id: "cc-girou",
        file_name: "annexe1.csv",
        bytes: csv.as_bytes(),
        transmitted: None,
        apply,
        operator: "test",
    };
    let app = &server.app;
    let events = || count(app, "SELECT COUNT(*) FROM events");
    let before = (snapshot(&server).await, events().await);
    assert!(import_with_fault(app, request(true), Some(290)).await.is_err());
    assert_eq!((snapshot(&server).await, events().await), before, "nothing of the stopped apply stays");
    assert!(matches!(audit::verify(&app.store, &app.keys).await.expect("verify"), Verification::Intact { .. }));

    let outcome = import(app, request(true)).await.expect("import");
    assert!(outcome.applied);
    let opened = count(app, "SELECT COUNT(*) FROM events WHERE kind = 'access_opened'").await;
    let sent = count(app, "SELECT COUNT(*) FROM events WHERE kind = 'activation_sent'").await;
    let people = count(app, "SELECT COUNT(DISTINCT account_id) FROM events WHERE kind = 'access_opened'").await;
    assert_eq!((opened, sent, people), (PEOPLE as i64, PEOPLE as i64, PEOPLE as i64));
    assert_eq!(accounts(app).await, PEOPLE as i64);
    let Verification::Intact { records } = audit::verify(&app.store, &app.keys).await.expect("verify") else {
        panic!("the chain is broken");
    };
    assert_eq!(records, events().await);
    // And the chain goes on from there.
    audit::record(&app.store, &app.clock, vec![record(1)]).await;
    assert_eq!(
        audit::verify(&app.store, &app.keys).await.expect("verify"),
        Verification::Intact { records: records + 1 }
    );
}
