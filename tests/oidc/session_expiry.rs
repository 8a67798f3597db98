//! `session_expired` (R15): a session that outlives its inactivity or
//! absolute timeout is ended and recorded once, whether the next request or
//! the job's sweep notices it.

use coop_idp::store::events::EventFilter;

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(expired_sessions_are_recorded_once);

const EMAIL: &str = "lea.bernard@cc-girou.fr";

async fn expiries(server: &TestServer) -> Vec<coop_idp::store::events::EventRow> {
    let filter = EventFilter { kind: Some("session_expired".into()), limit: 100, ..Default::default() };
    server.app.store.query_events(&filter).await.expect("query")
}

async fn expired_sessions_are_recorded_once(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account(EMAIL, Some(("cc-girou", "CC du Girou"))).await;
    let secret = server.add_client("platform").await;
    let b = browser();
    sign_in_for_tokens(&server, &b, "platform", Some(&secret), &[("scope", "openid")], EMAIL).await;
    assert!(expiries(&server).await.is_empty());

    // Idle past the inactivity timeout: the next request sees it and asks to sign in.
    server.clock.advance_secs(server.app.config.session_idle_timeout_secs + 1);
    let p = Pkce::random();
    let r = b.get(authorize_url(&server, &code_request("platform", &p, "st"))).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/signin?"), "{}", location(&r));
    let recorded = expiries(&server).await;
    assert_eq!(recorded.len(), 1);
    let e = &recorded[0];
    assert_eq!(e.email.as_deref(), Some(EMAIL));
    assert_eq!(e.account_id.as_deref(), Some(sub.as_str()));
    assert_eq!(e.partner_id.as_deref(), Some("cc-girou"));
    assert_eq!(e.actor, "system");
    assert!(e.session_hash.is_some());
    assert!(e.details.contains("idle_timeout"), "{}", e.details);
    // Noticed again: still one record.
    let again = b.get(authorize_url(&server, &code_request("platform", &p, "st"))).send().await.expect("authorize");
    assert_eq!(again.status(), 303);
    assert_eq!(expiries(&server).await.len(), 1);

    // A new session left alone past its absolute lifetime: the sweep ends it.
    let b2 = browser();
    sign_in_for_tokens(&server, &b2, "platform", Some(&secret), &[("scope", "openid")], EMAIL).await;
    server.clock.advance_secs(server.app.config.session_absolute_timeout_secs + 1);
    coop_idp::auth::session::sweep_expired(&server.app).await.expect("sweep");
    assert_eq!(coop_idp::auth::session::sweep_expired(&server.app).await.expect("sweep"), 0);
    let recorded = expiries(&server).await;
    assert_eq!(recorded.len(), 2);
    assert!(recorded[1].details.contains("absolute_timeout"), "{}", recorded[1].details);
    assert_ne!(recorded[0].session_hash, recorded[1].session_hash);
}
