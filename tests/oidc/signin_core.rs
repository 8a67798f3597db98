//! A sign-in is one domain use case whose writes are one transaction
//! (issue 14, item 1): the previous session ended, the new one opened, the
//! code issued, the parked request consumed and the sign-in record, all or
//! nothing. A session therefore never exists without its record.

use crate::common::*;
use crate::on_both_databases;
use crate::second_step::*;

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
/// Makes every insert of a record of this kind fail.
async fn install_fault(server: &TestServer, db: &Db, kind: &str) {
    let pool = server.app.store.pool();
    let statements: Vec<String> = match db {
        Db::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_kind BEFORE INSERT ON events WHEN NEW.kind = '{kind}' \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )],
        Db::Postgres(_) => vec![
            format!(
                "CREATE FUNCTION refuse_kind() RETURNS trigger AS $$ BEGIN \
                 IF NEW.kind = '{kind}' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$ \
                 LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER refuse_kind BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_kind()".into(),
        ],
    };
    for sql in statements {
        sqlx::query(&sql).execute(pool).await.expect("install the fault");
    }
}

async fn remove_fault(server: &TestServer, db: &Db) {
    let sql = match db {
        Db::Sqlite => "DROP TRIGGER refuse_kind",
        Db::Postgres(_) => "DROP TRIGGER refuse_kind ON events",
    };
    sqlx::query(sql).execute(server.app.store.pool()).await.expect("remove the fault");
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
    install_fault(&server, &db, "signin").await;
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

/// An administrator enrolled in this test, signed out again; returns a
/// browser holding the pending state of a new sign-in (the code asked).
async fn pending_code_step(server: &TestServer) -> reqwest::Client {
    let admin = server.add_account(ADMIN, None).await;
    server.grant_role(&admin, "caf_habilitation").await;
    let first = browser();
    let r = password_post(server, &first, ADMIN).await;
    assert_eq!(location(&r), ENROL);
    enrol(server, &first, ADMIN).await;
    let b = browser();
    assert_eq!(location(&password_post(server, &b, ADMIN).await), VERIFY);
    b
}

async fn password_post(server: &TestServer, b: &reqwest::Client, email: &str) -> reqwest::Response {
    let page = b.get(server.url("/signin")).send().await.expect("page").text().await.expect("html");
    let csrf = hidden(&page, "csrf").expect("csrf");
    b.post(server.url("/signin"))
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", PASSWORD)])
        .send()
        .await
        .expect("sign in")
}

/// The second step is one transaction too: when its `second_factor` record
/// cannot be written, no session opens, the code's step is not spent and
/// the pending state stays, so the same code works once the log is back.
async fn a_second_step_opens_its_session_with_its_records_or_not_at_all(db: Db) {
    let server = TestServer::start(db.clone()).await;
    let b = pending_code_step(&server).await;
    let sessions = count(&server, "SELECT COUNT(*) FROM sessions").await;
    install_fault(&server, &db, "second_factor").await;
    let code = fresh_code(&server, ADMIN).await;
    let r = post_code(&server, &b, VERIFY, &code).await;
    assert_eq!(r.status(), 500);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM sessions").await, sessions, "no session without its records");
    remove_fault(&server, &db).await;
    let r = post_code(&server, &b, VERIFY, &code).await;
    assert_eq!(r.status(), 200, "the same code, not spent by the failed step");
    assert_eq!(count(&server, "SELECT COUNT(*) FROM sessions").await, sessions + 1);
    assert_eq!(sessions_without_record(&server).await, 0);
}

/// Wrong codes are reserved like wrong passwords: a concurrent burst of 40
/// gets at most the free allowance checked; the others are told to wait.
async fn forty_concurrent_wrong_codes_evaluate_at_most_five(db: Db) {
    let server = TestServer::start(db).await;
    let b = pending_code_step(&server).await;
    let page = b.get(server.url(VERIFY)).send().await.expect("page").text().await.expect("html");
    let csrf = hidden(&page, "csrf").expect("csrf");
    let tasks = (0..40).map(|_| {
        let (b, url, csrf) = (b.clone(), server.url(VERIFY), csrf.clone());
        tokio::spawn(async move {
            b.post(url).form(&[("csrf", csrf.as_str()), ("code", "000000")]).send().await.expect("code").status()
        })
    });
    let statuses: Vec<u16> =
        futures::future::join_all(tasks).await.into_iter().map(|r| r.expect("task").as_u16()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!((1..=5).contains(&checked), "{checked} evaluated: {statuses:?}");
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    // The right code is refused too while the delay runs, then accepted.
    let code = fresh_code(&server, ADMIN).await;
    assert_eq!(post_code(&server, &b, VERIFY, &code).await.status(), 429);
    // Five failures: one minute, within the pending state's ten.
    server.clock.advance_secs(61);
    let code = fresh_code(&server, ADMIN).await;
    assert_eq!(post_code(&server, &b, VERIFY, &code).await.status(), 200);
}

const ADMIN: &str = "rssi.coeur@caf.fr";

on_both_databases!(
    every_session_has_its_sign_in_record,
    a_second_step_opens_its_session_with_its_records_or_not_at_all,
    forty_concurrent_wrong_codes_evaluate_at_most_five,
);
