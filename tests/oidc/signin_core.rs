//! A sign-in is one domain use case whose writes are one transaction
//! (issue 14, item 1): the previous session ended, the new one opened, the
//! code issued, the parked request consumed and the sign-in record, all or
//! nothing. A session therefore never exists without its record.

use crate::common::*;
use crate::on_both_databases;

const EMAIL: &str = "agent.coeur@cc-girou.fr";

async fn count(server: &TestServer, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(server.app.store.pool()).await.expect("count");
    n
}

/// Sessions without a `signin` record naming them (by the hash of their `sid`).
async fn sessions_without_record(server: &TestServer) -> usize {
    let pool = server.app.store.pool();
    let sids: Vec<(String,)> = sqlx::query_as("SELECT sid FROM sessions").fetch_all(pool).await.expect("sessions");
    let recorded: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT session_hash FROM events WHERE kind = 'signin'").fetch_all(pool).await.expect("events");
    let recorded: Vec<String> = recorded.into_iter().filter_map(|(h,)| h).collect();
    sids.iter().filter(|(sid,)| !recorded.contains(&coop_idp::crypto::hash_secret(sid))).count()
}

/// Makes every insertion of a `signin` record fail, as a full disk would.
async fn break_sign_in_records(server: &TestServer, db: &Db) {
    let pool = server.app.store.pool();
    let statements: &[&str] = match db {
        Db::Sqlite => &["CREATE TRIGGER refuse_signin BEFORE INSERT ON events WHEN NEW.kind = 'signin' \
              BEGIN SELECT RAISE(ABORT, 'injected fault'); END"],
        Db::Postgres(_) => &[
            "CREATE FUNCTION refuse_signin() RETURNS trigger AS $$ BEGIN \
             IF NEW.kind = 'signin' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$ \
             LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_signin BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_signin()",
        ],
    };
    for sql in statements {
        sqlx::query(sql).execute(pool).await.expect("install the fault");
    }
}

async fn every_session_has_its_sign_in_record(db: Db) {
    let server = TestServer::start(db.clone()).await;
    server.add_account(EMAIL, None).await;
    server.add_client("platform").await;
    let browser = browser();
    // Two sign-ins in one browser: the second replaces the first session.
    code_at(&browser, &server.url(""), &server.url(""), "platform", EMAIL, &Pkce::random()).await;
    let again = SignIn::new(EMAIL, PASSWORD).post(&browser, &server.base).await;
    assert_eq!(again.status(), 200);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM sessions").await, 2);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL").await, 1, "replaced");
    assert_eq!(sessions_without_record(&server).await, 0);

    // The record cannot be written: no session, no code, the request still parked.
    break_sign_in_records(&server, &db).await;
    let (codes, parked) = (
        count(&server, "SELECT COUNT(*) FROM authorization_codes").await,
        count(&server, "SELECT COUNT(*) FROM auth_requests").await,
    );
    let other = crate::common::browser();
    let r = other.get(authorize_url_at(&server.url(""), "platform", &Pkce::random(), "openid")).send().await;
    let signin = location(&r.expect("authorize"));
    let failed = SignIn::new(EMAIL, PASSWORD).on(&signin).post(&other, &server.base).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM sessions").await, 2, "no session without its record");
    assert_eq!(count(&server, "SELECT COUNT(*) FROM authorization_codes").await, codes);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM auth_requests").await, parked + 1, "the request stays parked");
    assert_eq!(sessions_without_record(&server).await, 0);
}

on_both_databases!(every_session_has_its_sign_in_record);
