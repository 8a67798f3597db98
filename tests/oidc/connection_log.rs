//! The connection log (R15, R16): events appear when their action happens
//! over HTTP, secrets never reach it, and any edit, deletion or reordering is
//! found by the chain verification.

use coop_idp::audit::{Verification, export, verify};
use coop_idp::store::events::EventFilter;

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(sign_in_events_are_recorded_without_secrets_and_tampering_is_caught);

const EMAIL: &str = "lea.bernard@cc-girou.fr";

async fn events(server: &TestServer, filter: EventFilter) -> Vec<coop_idp::store::events::EventRow> {
    server.app.store.query_events(&EventFilter { limit: 1000, ..filter }).await.expect("query")
}

async fn wrong_password(server: &TestServer) {
    let form = SignIn::new(EMAIL, "Canary-Secret-42!").with_user_agent("canary-agent/1.0");
    assert_eq!(form.post(&browser(), &server.base).await.status(), 401);
}

async fn sign_in_events_are_recorded_without_secrets_and_tampering_is_caught(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account(EMAIL, None).await;
    let secret = server.add_client("platform").await;
    wrong_password(&server).await;
    let browser = browser();
    let tokens =
        sign_in_for_tokens(&server, &browser, "platform", Some(&secret), &[("scope", "openid offline_access")], EMAIL)
            .await;

    let all = events(&server, EventFilter { email_normalized: Some(EMAIL.into()), ..Default::default() }).await;
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.starts_with(&["signin_failed", "signin", "token_issued"]), "{kinds:?}");
    let failed = &all[0];
    assert_eq!(failed.outcome, "failure");
    assert_eq!(failed.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(failed.user_agent.as_deref(), Some("canary-agent/1.0"));
    assert!(failed.details.contains("wrong_password"), "{}", failed.details);
    let signin = &all[1];
    assert_eq!(signin.account_id.as_deref(), Some(sub.as_str()));
    assert_eq!(signin.client_id.as_deref(), Some("platform"));
    assert_eq!(signin.actor, EMAIL);

    // Filters narrow the result, both ways.
    let only_failures = events(&server, EventFilter { kind: Some("signin_failed".into()), ..Default::default() }).await;
    assert_eq!(only_failures.len(), 1);
    let other_ip = events(&server, EventFilter { ip: Some("10.9.9.9".into()), ..Default::default() }).await;
    assert!(other_ip.is_empty());
    let future = server.clock.now_ms() + 60_000;
    assert!(events(&server, EventFilter { since_ms: Some(future), ..Default::default() }).await.is_empty());

    // No password, code or token anywhere in the log or its exports.
    let everything = events(&server, EventFilter::default()).await;
    let dump = format!("{}{}", export::to_json(&everything), export::to_csv(&everything, &export::CsvLayout::FIELDS));
    for secret in [
        "Canary-Secret-42!",
        PASSWORD,
        tokens["access_token"].as_str().expect("access"),
        tokens["refresh_token"].as_str().expect("refresh"),
        secret.as_str(),
    ] {
        assert!(!dump.contains(secret), "a secret reached the log");
    }
    let csv = export::to_csv(&everything, &export::CsvLayout::FIELDS);
    assert!(csv.starts_with("seq,time,kind,outcome,email,"), "{csv}");

    // The chain holds, then each kind of tampering is caught at the right record.
    assert_eq!(
        verify(&server.app.store, &server.app.keys).await.expect("verify"),
        Verification::Intact { records: everything.len() as i64 }
    );
    let pool = server.app.store.pool();
    sqlx::query("UPDATE events SET ip = '10.0.0.1' WHERE seq = 2").execute(pool).await.expect("edit");
    assert!(matches!(
        verify(&server.app.store, &server.app.keys).await.expect("verify"),
        Verification::Broken { seq: 2, .. }
    ));
    sqlx::query("UPDATE events SET ip = '127.0.0.1' WHERE seq = 2").execute(pool).await.expect("restore");
    assert!(matches!(verify(&server.app.store, &server.app.keys).await.expect("verify"), Verification::Intact { .. }));
    sqlx::query("DELETE FROM events WHERE seq = 2").execute(pool).await.expect("delete");
    assert!(matches!(
        verify(&server.app.store, &server.app.keys).await.expect("verify"),
        Verification::Broken { seq: 3, .. }
    ));
}

on_both_databases!(two_processes_appending_keep_one_chain);

/// The server remembers the chain head it last wrote; the command line, a
/// process of its own, appends too. Each must build on the other's records.
async fn two_processes_appending_keep_one_chain(db: Db) {
    use coop_idp::audit::{Event, Outcome, kind, record};
    let server = TestServer::start(db).await;
    let command_line =
        coop_idp::startup::open(server.app.config.clone(), server.clock.clone()).await.expect("second process");
    let event = |actor: &str| vec![Event::new(kind::LOG_READ, Outcome::Success, actor)];
    for _ in 0..3 {
        record(&server.app.store, &server.app.clock, event("server")).await;
        record(&server.app.store, &server.app.clock, event("server")).await;
        record(&command_line.store, &command_line.clock, event("cli")).await;
    }
    record(&server.app.store, &server.app.clock, event("server")).await;
    let all = events(&server, EventFilter::default()).await;
    let actors: Vec<&str> = all.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors.iter().filter(|a| **a == "server").count(), 7, "{actors:?}");
    assert_eq!(actors.iter().filter(|a| **a == "cli").count(), 3, "{actors:?}");
    assert_eq!(
        verify(&server.app.store, &server.app.keys).await.expect("verify"),
        Verification::Intact { records: all.len() as i64 }
    );
    command_line.store.close().await;
}

on_both_databases!(introspection_denials_and_refused_links_are_recorded);

async fn introspection_denials_and_refused_links_are_recorded(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account(EMAIL, None).await;
    let secret = server.add_client("platform").await;
    let other = server.add_client("other").await;
    let tokens =
        sign_in_for_tokens(&server, &browser(), "platform", Some(&secret), &[("scope", "openid")], EMAIL).await;
    let access = tokens["access_token"].as_str().expect("access").to_string();
    let introspect = |id: &'static str, secret: String| {
        let access = access.clone();
        let url = server.url("/introspect");
        async move {
            http_client().post(url).basic_auth(id, Some(secret)).form(&[("token", access)]).send().await.expect("post")
        }
    };
    // The owner's own introspection is not a denial.
    let r = introspect("platform", secret.clone()).await;
    assert_eq!(r.json::<serde_json::Value>().await.expect("json")["active"], true);
    assert!(of_kind(&server, "introspection_denied").await.is_empty());
    // A wrong secret, then another client asking about this token.
    assert_eq!(introspect("platform", "wrong".into()).await.status(), 401);
    let r = introspect("other", other).await;
    assert_eq!(r.json::<serde_json::Value>().await.expect("json")["active"], false);
    let denied = of_kind(&server, "introspection_denied").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert_eq!(denied[0].client_id.as_deref(), Some("platform"));
    assert!(denied[0].details.contains("invalid_client"), "{}", denied[0].details);
    assert_eq!(denied[1].client_id.as_deref(), Some("other"));
    assert_eq!(denied[1].account_id.as_deref(), Some(sub.as_str()));
    assert_eq!(denied[1].email.as_deref(), Some(EMAIL));
    assert!(denied[1].details.contains("other_client_token"), "{}", denied[1].details);
    for e in &denied {
        assert!(!e.details.contains(&access) && !e.details.contains("wrong"), "{}", e.details);
    }

    // Links: a usable one is not a refusal; an unknown one and an expired
    // one are, the expired one with its account.
    coop_idp::auth::links::request_reset(&server.app, EMAIL, None).await.expect("reset requested");
    let link = mailed_link(&server, EMAIL, "/password/reset", 1).await;
    assert_eq!(browser().get(&link).send().await.expect("open").status(), 200);
    assert!(of_kind(&server, "link_refused").await.is_empty());
    let r = browser().get(server.url("/activate?token=not-a-token")).send().await.expect("open");
    assert!(r.status().is_client_error(), "{}", r.status());
    server.clock.advance_secs(server.app.config.reset_link_ttl_secs + 1);
    let r = browser().get(&link).send().await.expect("open");
    assert!(r.status().is_client_error(), "{}", r.status());
    let refused = of_kind(&server, "link_refused").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].details.contains("\"unknown\"") && refused[0].email.is_none(), "{:?}", refused[0]);
    assert!(refused[1].details.contains("\"expired\""), "{}", refused[1].details);
    assert_eq!(refused[1].email.as_deref(), Some(EMAIL));
    let token = link.rsplit("token=").next().expect("token");
    assert!(refused.iter().all(|e| !e.details.contains(token)));
}

async fn of_kind(server: &TestServer, kind: &str) -> Vec<coop_idp::store::events::EventRow> {
    events(server, EventFilter { kind: Some(kind.into()), ..Default::default() }).await
}
