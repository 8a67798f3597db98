//! Tamper evidence of the connection log (R15; issue 5, part 2): an edit, a
//! deletion or a reordering made directly in the database is found at the
//! right record, by the domain check and by `coop-idp logs verify`; a cut
//! tail, a chain rewritten with recomputed hashes and a forged checkpoint are
//! found thanks to the signed checkpoints.

use coop_idp::app::App;
use coop_idp::audit::{self, Event, Outcome, Verification, checkpoint, kind};
use coop_idp::store::events::EventRow;

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    edits_deletions_and_reorderings_are_found_at_the_right_record,
    a_cut_tail_is_caught_by_the_signed_checkpoint,
    a_rewritten_chain_and_forged_checkpoints_are_caught,
    batched_and_ordinary_appends_from_two_processes_make_one_chain,
);

/// Appends `n` records through the recorder.
async fn write_records(server: &TestServer, n: usize) {
    for i in 0..n {
        let e = Event::new(kind::LOG_READ, Outcome::Success, "cli")
            .email(format!("agent{i}@cc-girou.fr"))
            .details(serde_json::json!({"n": i}));
        audit::record(&server.app.store, &server.app.clock, vec![e]).await;
    }
}

async fn broken_at(server: &TestServer) -> (i64, String) {
    match verify(&server.app).await.expect("verify") {
        Verification::Broken { seq, reason } => (seq, reason),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

async fn exec(server: &TestServer, sql: &str) {
    sqlx::query(sql).execute(server.app.store.pool()).await.expect(sql);
}

/// `coop-idp logs verify` against the server's database and keys.
/// The chain checked with the server's keys.
async fn verify(app: &App) -> coop_idp::error::AppResult<Verification> {
    audit::verify(&app.store, &app.keys).await
}

/// Signs the head now (`None`: already signed).
async fn sign_head(app: &App) -> Option<i64> {
    checkpoint::checkpoint(&app.store, &app.keys, &app.config.issuer_str(), &app.clock).await.expect("checkpoint")
}

fn cli_verify(server: &TestServer) -> (bool, serde_json::Value) {
    let out = cli(server, &["logs", "verify"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json)
}

async fn edits_deletions_and_reorderings_are_found_at_the_right_record(db: Db) {
    let server = TestServer::start(db).await;
    write_records(&server, 6).await;
    assert_eq!(verify(&server.app).await.expect("verify"), Verification::Intact { records: 6 });
    let (ok, json) = cli_verify(&server);
    assert!(ok, "{json}");
    assert_eq!(json["status"], "intact");

    // An edited field.
    exec(&server, "UPDATE events SET email = 'someone.else@cc-girou.fr' WHERE seq = 3").await;
    assert_eq!(broken_at(&server).await, (3, "content altered".to_string()));
    exec(&server, "UPDATE events SET email = 'agent2@cc-girou.fr' WHERE seq = 3").await;
    assert!(matches!(verify(&server.app).await.expect("verify"), Verification::Intact { .. }));

    // Two records swapped (their seq exchanged).
    exec(&server, "UPDATE events SET seq = -4 WHERE seq = 4").await;
    exec(&server, "UPDATE events SET seq = 4 WHERE seq = 3").await;
    exec(&server, "UPDATE events SET seq = 3 WHERE seq = -4").await;
    assert_eq!(broken_at(&server).await.0, 3);
    let (ok, json) = cli_verify(&server);
    assert!(!ok, "a broken chain must exit non-zero");
    assert_eq!(json["first_broken_record"], 3, "{json}");
    exec(&server, "UPDATE events SET seq = -3 WHERE seq = 3").await;
    exec(&server, "UPDATE events SET seq = 3 WHERE seq = 4").await;
    exec(&server, "UPDATE events SET seq = 4 WHERE seq = -3").await;
    assert!(matches!(verify(&server.app).await.expect("verify"), Verification::Intact { .. }));

    // A deleted record: the next one is named.
    exec(&server, "DELETE FROM events WHERE seq = 4").await;
    assert_eq!(broken_at(&server).await, (5, "record 4 is missing".to_string()));
    // The first record deleted: not a purge, so it is caught too.
    exec(&server, "DELETE FROM events WHERE seq = 1").await;
    assert_eq!(broken_at(&server).await.0, 2);
    let (ok, json) = cli_verify(&server);
    assert!(!ok);
    assert_eq!(json["first_broken_record"], 2, "{json}");
}

async fn a_cut_tail_is_caught_by_the_signed_checkpoint(db: Db) {
    let server = TestServer::start(db).await;
    write_records(&server, 5).await;
    assert_eq!(sign_head(&server.app).await, Some(5));
    // Nothing new: no second checkpoint of the same head.
    assert_eq!(sign_head(&server.app).await, None);
    write_records(&server, 2).await;
    assert_eq!(verify(&server.app).await.expect("verify"), Verification::Intact { records: 7 });

    // Cutting the records after the checkpoint cannot be seen...
    exec(&server, "DELETE FROM events WHERE seq > 5").await;
    assert_eq!(verify(&server.app).await.expect("verify"), Verification::Intact { records: 5 });
    // ...but cutting into the signed part is.
    exec(&server, "DELETE FROM events WHERE seq >= 4").await;
    let (seq, reason) = broken_at(&server).await;
    assert_eq!(seq, 4, "{reason}");
    assert!(reason.contains("records 4 to 5 deleted"), "{reason}");
    let (ok, json) = cli_verify(&server);
    assert!(!ok);
    assert_eq!(json["first_broken_record"], 4, "{json}");
}

async fn a_rewritten_chain_and_forged_checkpoints_are_caught(db: Db) {
    let server = TestServer::start(db).await;
    write_records(&server, 4).await;
    sign_head(&server.app).await;
    let pool = server.app.store.pool();

    // Someone who knows the algorithm edits record 2 and recomputes every
    // hash after it: the chain holds, the signed checkpoint does not.
    let rows = server.app.store.events_after(0, 100).await.expect("rows");
    let mut prev = rows[0].hash.clone();
    for row in rows.iter().skip(1) {
        let mut forged: EventRow = row.clone();
        if forged.seq == 2 {
            forged.email = Some("nobody@cc-girou.fr".into());
        }
        forged.prev_hash = prev.clone();
        forged.hash = audit::record_hash(&forged);
        sqlx::query("UPDATE events SET email = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&forged.email)
            .bind(&forged.prev_hash)
            .bind(&forged.hash)
            .bind(forged.seq)
            .execute(pool)
            .await
            .expect("rewrite");
        prev = forged.hash;
    }
    let (seq, reason) = broken_at(&server).await;
    assert_eq!((seq, reason.as_str()), (4, "differs from the signed checkpoint at this record"));

    // Making the checkpoint row agree is a forgery its signature shows.
    sqlx::query("UPDATE log_checkpoints SET hash = $1 WHERE seq = 4").bind(&prev).execute(pool).await.expect("edit");
    let (seq, reason) = broken_at(&server).await;
    assert_eq!(seq, 4);
    assert!(reason.contains("differ from the signed"), "{reason}");

    // A checkpoint signed by another key (e.g. the forger's own) is refused.
    let other = tempfile::tempdir().expect("tempdir");
    let foreign = coop_idp::keys::KeyManager::open(other.path(), 600, server.clock.now_ms()).expect("keys").current();
    let claims = checkpoint::CheckpointClaims { iss: server.base.clone(), seq: 4, hash: prev.clone(), time: 0, iat: 0 };
    let jws = foreign.sign(jsonwebtoken::Algorithm::RS256, checkpoint::TYP, &claims).expect("sign");
    sqlx::query("UPDATE log_checkpoints SET jws = $1, time_ms = 0 WHERE seq = 4")
        .bind(&jws)
        .execute(pool)
        .await
        .expect("forge");
    let (seq, reason) = broken_at(&server).await;
    assert_eq!(seq, 4);
    assert!(reason.contains("signature invalid or key unknown"), "{reason}");
    let (ok, json) = cli_verify(&server);
    assert!(!ok);
    assert_eq!(json["first_broken_record"], 4, "{json}");
}

/// The hot paths' transactions (committed in groups on SQLite, chained by the
/// group writer) and ordinary ones, at once, while another process (the
/// command line) appends too: every record is there, once, in one unbroken
/// chain.
async fn batched_and_ordinary_appends_from_two_processes_make_one_chain(db: Db) {
    let server = TestServer::start(db).await;
    let app = server.app.clone();
    let mut tasks = Vec::new();
    for i in 0..48 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let e = Event::new(kind::LOG_READ, Outcome::Success, "cli")
                .email(format!("agent{i}@cc-girou.fr"))
                .details(serde_json::json!({"n": i}));
            if i % 2 == 0 {
                let mut tx = app.store.begin_batched_write().await.expect("begin");
                audit::append(&app.clock, &mut tx, vec![e]).await.expect("append");
                tx.commit().await.expect("commit");
            } else {
                audit::record(&app.store, &app.clock, vec![e]).await;
            }
        }));
    }
    let other_process = {
        let (config, base) = (server.app.config.clone(), server.base.clone());
        tokio::task::spawn_blocking(move || {
            cli_on(&config, &base, &["logs", "query", "--email", "agent1@cc-girou.fr", "--format", "json"])
        })
    };
    for task in tasks {
        task.await.expect("task");
    }
    let out = other_process.await.expect("cli");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 48 records from the server, one (the log read) from the command line.
    assert_eq!(verify(&app).await.expect("verify"), Verification::Intact { records: 49 });
    let emails: Vec<String> = sqlx::query_scalar::<_, String>("SELECT email FROM events WHERE details LIKE '{\"n\":%'")
        .fetch_all(app.store.pool())
        .await
        .expect("emails");
    let distinct: std::collections::BTreeSet<&String> = emails.iter().collect();
    assert_eq!((emails.len(), distinct.len()), (48, 48), "each record once");
    // And the chain goes on from there, whichever writer comes next.
    let mut tx = app.store.begin_batched_write().await.expect("begin");
    audit::append(&app.clock, &mut tx, vec![Event::new(kind::LOG_READ, Outcome::Success, "cli")])
        .await
        .expect("append");
    tx.commit().await.expect("commit");
    write_records(&server, 1).await;
    assert_eq!(verify(&app).await.expect("verify"), Verification::Intact { records: 51 });
}

/// Migration 0017 (SQLite) copies the log into a table keyed by its rowid:
/// a log written before it keeps every record and still verifies, and the
/// unique index SQLite kept beside `seq BIGINT PRIMARY KEY` is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_survives_migration_0017_whole() {
    let server = TestServer::start(Db::Sqlite).await;
    write_records(&server, 40).await;
    sign_head(&server.app).await;
    assert_eq!(events_autoindexes(&server).await, 0, "after 0017, seq is the rowid");
    // The table as 0007 made it, with the same records, and 0017 not yet
    // applied; on one connection, whose schema each statement sees changed.
    let mut conn = server.app.store.pool().acquire().await.expect("connection");
    for sql in [
        "CREATE TABLE events_0007 (seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, kind TEXT NOT NULL, \
         outcome TEXT NOT NULL, email TEXT, email_normalized TEXT, account_id TEXT, partner_id TEXT, \
         client_id TEXT, ip TEXT, user_agent TEXT, actor TEXT NOT NULL, session_hash TEXT, details TEXT NOT NULL, \
         prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
        "INSERT INTO events_0007 SELECT * FROM events",
        "DROP TABLE events",
        "ALTER TABLE events_0007 RENAME TO events",
        "DELETE FROM _sqlx_migrations WHERE version = 17",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.expect(sql);
    }
    drop(conn);
    assert_eq!(events_autoindexes(&server).await, 1, "the 0007 layout");
    let before: Vec<EventRow> = server.app.store.events_after(0, 1_000).await.expect("read");

    server.app.store.migrate().await.expect("0017 again");
    assert_eq!(events_autoindexes(&server).await, 0);
    let after: Vec<EventRow> = server.app.store.events_after(0, 1_000).await.expect("read");
    assert_eq!(after.len(), before.len());
    assert!(before.len() >= 40, "the 40 records written, at least: {}", before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!((a.seq, &a.hash, &a.prev_hash, &a.details), (b.seq, &b.hash, &b.prev_hash, &b.details));
    }
    assert!(matches!(verify(&server.app).await.expect("verify"), Verification::Intact { .. }), "chain and checkpoint");
    let (ok, json) = cli_verify(&server);
    assert!(ok, "{json}");
}

/// SQLite's hidden indexes on the log table (one for `seq BIGINT PRIMARY KEY`).
async fn events_autoindexes(server: &TestServer) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'events' AND name LIKE 'sqlite_autoindex%'",
    )
    .fetch_one(server.app.store.pool())
    .await
    .expect("schema")
}
