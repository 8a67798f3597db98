//! An authorization code dies with the session it was issued in (R4, R12;
//! issue 14 item 3): a code obtained before a sign-out, a password change
//! or a closure is refused after it, while the same flow without them
//! exchanges its code.

use crate::common::*;
use crate::on_both_databases;

const EMAIL: &str = "agent.code@cc-girou.fr";
const NEW_PASSWORD: &str = "Tuile-Verte-7-Basalte";

struct Setup {
    server: TestServer,
    browser: reqwest::Client,
    account_id: String,
    secret: String,
    id_token: String,
}

async fn setup(db: Db) -> Setup {
    let server = TestServer::start(db).await;
    let account_id = server.add_account(EMAIL, None).await;
    let secret = server.add_client("platform").await;
    let browser = browser();
    // Sign in once; the code of that first flow is exchanged at once.
    let pkce = Pkce::random();
    let code = code_at(&browser, &server.url(""), &server.url(""), "platform", EMAIL, &pkce).await;
    let (status, body) = exchange_at(&server.url(""), "platform", &secret, &code, &pkce).await;
    assert_eq!(status, 200, "{body}");
    let id_token = body["id_token"].as_str().expect("id_token").to_string();
    Setup { server, browser, account_id, secret, id_token }
}

/// A code from the live session, without signing in again; not exchanged.
async fn silent_code(s: &Setup, pkce: &Pkce) -> String {
    let r = s.browser.get(authorize_url_at(&s.server.url(""), "platform", pkce, "openid offline_access")).send().await;
    let to = location(&r.expect("authorize"));
    query(&to).get("code").cloned().unwrap_or_else(|| panic!("a code from the live session: {to}"))
}

async fn exchange(s: &Setup, code: &str, pkce: &Pkce) -> (u16, serde_json::Value) {
    exchange_at(&s.server.url(""), "platform", &s.secret, code, pkce).await
}

fn refused(result: (u16, serde_json::Value)) {
    assert_eq!(result.0, 400, "{}", result.1);
    assert_eq!(result.1["error"], "invalid_grant");
}

async fn a_code_from_a_live_session_is_exchanged(db: Db) {
    let s = setup(db).await;
    let pkce = Pkce::random();
    let code = silent_code(&s, &pkce).await;
    assert_eq!(exchange(&s, &code, &pkce).await.0, 200);
}

async fn a_code_obtained_before_sign_out_is_refused_after_it(db: Db) {
    let s = setup(db).await;
    let pkce = Pkce::random();
    let code = silent_code(&s, &pkce).await;
    let mut url = url::Url::parse(&s.server.url("/logout")).expect("url");
    url.query_pairs_mut().append_pair("id_token_hint", &s.id_token);
    let r = s.browser.get(url.as_str()).send().await.expect("logout");
    assert_eq!(r.status(), 200, "signed out");
    refused(exchange(&s, &code, &pkce).await);
}

async fn a_code_obtained_before_a_password_change_is_refused_after_it(db: Db) {
    let s = setup(db).await;
    let pkce = Pkce::random();
    let code = silent_code(&s, &pkce).await;
    let changed = coop_idp::auth::links::change_password(
        &s.server.app,
        &s.account_id,
        PASSWORD,
        coop_idp::auth::links::Typed { password: NEW_PASSWORD, confirmation: NEW_PASSWORD },
        &coop_idp::audit::Source { ip: Some("127.0.0.1".into()), user_agent: None },
    )
    .await
    .expect("change");
    assert!(changed.is_ok(), "{changed:?}");
    refused(exchange(&s, &code, &pkce).await);
}

async fn a_code_obtained_before_closure_is_refused_after_it(db: Db) {
    let s = setup(db).await;
    let pkce = Pkce::random();
    let code = silent_code(&s, &pkce).await;
    let source = coop_idp::audit::Source { ip: Some("127.0.0.1".into()), user_agent: None };
    let closed = coop_idp::admin::actions::close_access(&s.server.app, &s.account_id, "test", &source).await;
    assert!(closed.expect("close"), "closed now");
    refused(exchange(&s, &code, &pkce).await);
}

on_both_databases!(
    a_code_from_a_live_session_is_exchanged,
    a_code_obtained_before_sign_out_is_refused_after_it,
    a_code_obtained_before_a_password_change_is_refused_after_it,
    a_code_obtained_before_closure_is_refused_after_it,
    a_code_whose_session_ended_without_deleting_it_is_refused,
    a_code_whose_session_ends_during_its_exchange_is_refused,
    a_code_exchanged_while_another_write_holds_the_writer_is_exchanged,
);

async fn a_code_whose_session_ended_without_deleting_it_is_refused(db: Db) {
    let s = setup(db).await;
    let pkce = Pkce::random();
    let code = silent_code(&s, &pkce).await;
    // As a session ended by an instance older than this rule would leave it.
    sqlx::query("UPDATE sessions SET ended_at = $1 WHERE account_id = $2")
        .bind(s.server.clock.now_ms())
        .bind(&s.account_id)
        .execute(s.server.app.store.pool())
        .await
        .expect("end the session alone");
    refused(exchange(&s, &code, &pkce).await);
}

/// The session of a code, and a write transaction holding the writer (the
/// single SQLite writer, or on PostgreSQL the session's row once `end` has
/// run) while the code's exchange is under way.
async fn exchange_behind_a_write(s: &Setup, end_the_session: bool) -> (u16, serde_json::Value) {
    let pkce = Pkce::random();
    let code = silent_code(s, &pkce).await;
    let app = &s.server.app;
    let row = app.store.code(&coop_idp::crypto::hash_secret(&code)).await.expect("read").expect("the code");
    let mut holder = app.store.begin_write().await.expect("begin");
    if end_the_session {
        let ended =
            coop_idp::store::sessions::end(&mut holder, &row.session_id_hash, "logout", s.server.clock.now_ms())
                .await
                .expect("end");
        assert!(ended, "the session was live");
    } else {
        // The session's row locked and left as it is.
        sqlx::query("UPDATE sessions SET ended_at = ended_at WHERE id_hash = $1")
            .bind(&row.session_id_hash)
            .execute(holder.conn().await.expect("connection"))
            .await
            .expect("lock the session");
    }
    // The exchange reads the code while its session is still live for every
    // reader, then waits for the writer.
    let base = s.server.url("");
    let secret = s.secret.clone();
    let exchange = tokio::spawn(async move { exchange_at(&base, "platform", &secret, &code, &pkce).await });
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(!exchange.is_finished(), "the exchange waits for the write in progress");
    holder.commit().await.expect("commit");
    exchange.await.expect("exchange task")
}

/// The race that a read-then-write exchange leaves open: the session ends
/// between the code's read and the family's commit. The family's insert
/// reads the live session in its own statement, so the code is refused.
async fn a_code_whose_session_ends_during_its_exchange_is_refused(db: Db) {
    let s = setup(db).await;
    refused(exchange_behind_a_write(&s, true).await);
}

/// The other side: the same wait with the session left alone gives tokens.
async fn a_code_exchanged_while_another_write_holds_the_writer_is_exchanged(db: Db) {
    let s = setup(db).await;
    let (status, body) = exchange_behind_a_write(&s, false).await;
    assert_eq!(status, 200, "{body}");
}
