//! Security alerts (R5, R17; issue 5 part 4), driven over HTTP: each
//! detector fires on its pattern and stays quiet on normal use, the alert is
//! an `alert` event with its cause and the records behind it, its email
//! reaches the Caf security officer (annex 3) and the partner's (annex 2),
//! and a cause alerts once per period.

use std::time::Duration;

use coop_idp::provisioning::{Annex2, Annex3, Contacts, set_annex2, set_annex3};
use coop_idp::store::events::{EventFilter, EventRow};
use openidconnect::OAuth2TokenResponse;
use serde_json::Value;

use crate::common::admin::PARTNER;
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    spraying_from_one_address_alerts_both_security_officers_once_per_period,
    repeated_failures_on_one_account_alert_and_ordinary_mistakes_do_not,
    refresh_token_replay_alerts_and_rotation_does_not,
    repeated_reset_requests_alert_by_account_and_by_source,
    concurrent_sign_ins_from_distant_networks_or_many_devices_alert,
);

const CAF_SECURITY: &str = "rssi@caf.fr";
const PARTNER_SECURITY: &str = "securite@cc-girou.fr";
const AGENT: &str = "marie.dupont@cc-girou.fr";

async fn start(db: Db) -> TestServer {
    let server = TestServer::start_with(
        db,
        &[
            ("trusted_proxies", "127.0.0.1/32"),
            ("alert_scan_interval_secs", "1"),
            ("alert_spraying_accounts", "3"),
            ("alert_reset_per_account", "3"),
            ("alert_reset_per_source", "5"),
            ("alert_sharing_user_agents", "3"),
        ],
    )
    .await;
    server.add_account(AGENT, Some((PARTNER, "CC du Girou"))).await;
    set_annex2(
        &server.app,
        Annex2 {
            partner_id: PARTNER,
            contacts: Contacts {
                habilitation_name: "Claire Habil",
                habilitation_email: "habilitation@cc-girou.fr",
                security_name: "Sam Secu",
                security_email: PARTNER_SECURITY,
            },
            transmitted: "2026-01-05",
        },
    )
    .await
    .expect("annex 2");
    set_annex3(
        &server.app,
        Annex3 {
            contacts: Contacts {
                habilitation_name: "Caf Habil",
                habilitation_email: "habilitations@caf.fr",
                security_name: "Caf Secu",
                security_email: CAF_SECURITY,
            },
            technical_referents: &[],
            transmitted: "2026-01-05",
        },
    )
    .await
    .expect("annex 3");
    server
}

/// Waits until the detectors have examined every event recorded so far.
async fn settle(server: &TestServer) {
    let (head,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM events")
        .fetch_one(server.app.store.pool())
        .await
        .expect("head");
    for _ in 0..300 {
        if server.app.store.job_cursor("alerts").await.expect("cursor") >= head {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the alert detectors did not reach record {head}");
}

async fn alerts(server: &TestServer, detector: &str) -> Vec<(EventRow, Value)> {
    settle(server).await;
    let rows = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("alert".into()), limit: 1000, ..Default::default() })
        .await
        .expect("alerts");
    rows.into_iter()
        .map(|r| {
            let d: Value = serde_json::from_str(&r.details).expect("details");
            (r, d)
        })
        .filter(|(_, d)| d["detector"] == detector)
        .collect()
}

fn mails_to(server: &TestServer, recipient: &str, marker: &str) -> usize {
    outbox(server).iter().filter(|m| is_to(m, recipient) && m.contains(marker)).count()
}

async fn spraying_from_one_address_alerts_both_security_officers_once_per_period(db: Db) {
    let server = start(db).await;
    // Normal use: two people mistype from the same office.
    for who in [AGENT, "paul.martin@cc-girou.fr"] {
        assert_eq!(failed_sign_in(&server, who, "198.51.100.7", "ua").await, 401);
    }
    assert!(alerts(&server, "password_spraying").await.is_empty(), "two mistakes are not spraying");

    // Spraying: one address, three accounts (one of them the partner's agent).
    for who in [AGENT, "inconnu@cc-girou.fr", "quelquun@ailleurs.fr"] {
        assert_eq!(failed_sign_in(&server, who, "203.0.113.9", "spray/1.0").await, 401);
    }
    // Several instances scanning at once examine each event once.
    let scans: Vec<_> = (0..4)
        .map(|_| {
            let app = server.app.clone();
            tokio::spawn(async move { coop_idp::alerts::scan(&app).await.expect("scan") })
        })
        .collect();
    for s in scans {
        s.await.expect("scan task");
    }
    let found = alerts(&server, "password_spraying").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (row, d) = &found[0];
    assert_eq!(row.kind, "alert");
    assert_eq!(row.actor, "system");
    assert_eq!(row.partner_id.as_deref(), Some(PARTNER));
    assert_eq!(d["subject"], "ip:203.0.113.9");
    assert_eq!(d["counts"]["accounts"], 3);
    assert_eq!(d["event_seqs"].as_array().map(Vec::len), Some(3));
    assert!(d["message"].as_str().is_some_and(|m| m.contains("203.0.113.9")), "{d}");
    assert_eq!(d["notified"], serde_json::json!([CAF_SECURITY, PARTNER_SECURITY]));
    let quoted: Vec<i64> = d["event_seqs"].as_array().expect("seqs").iter().filter_map(Value::as_i64).collect();
    for seq in quoted {
        let r = server.app.store.events_after(seq - 1, 1).await.expect("event");
        assert_eq!(r[0].kind, "signin_failed");
        assert_eq!(r[0].ip.as_deref(), Some("203.0.113.9"));
    }
    // The emails, French first, to both security officers.
    let caf = wait_for_mails(&server, CAF_SECURITY, "spraying", 1).await;
    wait_for_mails(&server, PARTNER_SECURITY, "spraying", 1).await;
    let body = &caf[0];
    let fr = body.find("Bonjour").expect("French");
    let en = body.find("Hello").expect("English");
    assert!(fr < en, "French first");

    // Deduplicated: more of the same within the period adds nothing.
    for who in ["quatre@cc-girou.fr", "cinq@cc-girou.fr"] {
        assert_eq!(failed_sign_in(&server, who, "203.0.113.9", "spray/1.0").await, 401);
    }
    assert_eq!(alerts(&server, "password_spraying").await.len(), 1, "one alert per cause and period");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mails_to(&server, CAF_SECURITY, "spraying"), 1);

    // A new period: a new wave is a new alert.
    server.clock.advance_secs(3601);
    for who in ["six@cc-girou.fr", "sept@cc-girou.fr", "huit@cc-girou.fr"] {
        assert_eq!(failed_sign_in(&server, who, "203.0.113.9", "spray/1.0").await, 401);
    }
    assert_eq!(alerts(&server, "password_spraying").await.len(), 2);
}

async fn repeated_failures_on_one_account_alert_and_ordinary_mistakes_do_not(db: Db) {
    let server = start(db).await;
    // Ordinary: two mistakes, then the right password.
    for _ in 0..2 {
        assert_eq!(failed_sign_in(&server, AGENT, "198.51.100.7", "ua").await, 401);
    }
    signed_in_from(&server, AGENT, Some("198.51.100.7"), None).await;
    assert!(alerts(&server, "account_locked").await.is_empty());

    // Five failures in a row lock the account; the next attempt is refused.
    for _ in 0..3 {
        assert_eq!(failed_sign_in(&server, AGENT, "198.51.100.8", "ua").await, 401);
    }
    assert!(alerts(&server, "account_locked").await.is_empty(), "the success started the count again");
    for _ in 0..2 {
        assert_eq!(failed_sign_in(&server, AGENT, "198.51.100.8", "ua").await, 401);
    }
    assert_eq!(failed_sign_in(&server, AGENT, "198.51.100.8", "ua").await, 429);
    let found = alerts(&server, "account_locked").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (row, d) = &found[0];
    assert_eq!(row.email.as_deref(), Some(AGENT));
    assert_eq!(d["subject"], format!("email:{AGENT}"));
    assert_eq!(d["notified"], serde_json::json!([CAF_SECURITY, PARTNER_SECURITY]));
    wait_for_mails(&server, PARTNER_SECURITY, AGENT, 1).await;
}

async fn refresh_token_replay_alerts_and_rotation_does_not(db: Db) {
    let server = start(db).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (tokens, _) = code_flow(&server, &rp, &browser, AGENT, &["offline_access"]).await;
    let r0 = tokens.refresh_token().expect("refresh token").secret().clone();
    let (status, _, body) = refresh_raw(&server, "platform", &secret, &r0, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(alerts(&server, "refresh_token_reuse").await.is_empty(), "rotation is normal use");

    let (status, _, _) = refresh_raw(&server, "platform", &secret, &r0, None).await;
    assert_eq!(status, 400);
    let found = alerts(&server, "refresh_token_reuse").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (row, d) = &found[0];
    assert_eq!(row.email.as_deref(), Some(AGENT));
    assert_eq!(row.partner_id.as_deref(), Some(PARTNER));
    let reuse = server.app.store.events_after(d["event_seqs"][0].as_i64().expect("seq") - 1, 1).await.expect("event");
    assert_eq!(reuse[0].kind, "refresh_reuse_detected");
    wait_for_mails(&server, CAF_SECURITY, "refresh token", 1).await;
    wait_for_mails(&server, PARTNER_SECURITY, "refresh token", 1).await;
    // No secret in the alert or its email.
    assert!(!row.details.contains(&r0));
    assert!(!outbox(&server).iter().any(|m| m.contains(&r0)));
}

async fn forgot(server: &TestServer, email: &str, ip: &str) {
    assert_eq!(forgot_at(&server.base, email, Some(ip)).await, 200);
}

async fn repeated_reset_requests_alert_by_account_and_by_source(db: Db) {
    let server = start(db).await;
    // Normal: a person asks twice.
    for _ in 0..2 {
        forgot(&server, AGENT, "198.51.100.7").await;
    }
    assert!(alerts(&server, "reset_abuse").await.is_empty());
    // A third request for the same account within the hour.
    forgot(&server, AGENT, "198.51.100.9").await;
    let found = alerts(&server, "reset_abuse").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1["subject"], format!("email:{AGENT}"));
    assert_eq!(found[0].1["notified"], serde_json::json!([CAF_SECURITY, PARTNER_SECURITY]));
    // One source asking for many accounts.
    for i in 0..5 {
        forgot(&server, &format!("agent{i}@cc-girou.fr"), "203.0.113.50").await;
    }
    let found = alerts(&server, "reset_abuse").await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[1].1["subject"], "ip:203.0.113.50");
    assert_eq!(found[1].1["counts"]["requests"], 5);
    wait_for_mails(&server, CAF_SECURITY, "203.0.113.50", 1).await;
}

async fn concurrent_sign_ins_from_distant_networks_or_many_devices_alert(db: Db) {
    let server = start(db).await;
    let other = "paul.martin@cc-girou.fr";
    server.add_account(other, Some((PARTNER, "CC du Girou"))).await;
    // Normal: the same person from two addresses of one network, one browser.
    signed_in_from(&server, other, Some("198.51.100.7"), Some("Firefox/140")).await;
    signed_in_from(&server, other, Some("198.51.23.4"), Some("Firefox/140")).await;
    assert!(alerts(&server, "shared_credentials").await.is_empty());

    // Normal: signed out at the office, then signed in from home.
    let lea = "lea.bernard@cc-girou.fr";
    server.add_account(lea, Some((PARTNER, "CC du Girou"))).await;
    let (office, _) = signed_in_from(&server, lea, Some("198.51.100.7"), Some("Firefox/140")).await;
    let page =
        office.get(server.url("/logout")).header("x-forwarded-for", "198.51.100.7").send().await.expect("logout");
    let csrf = hidden(&page.text().await.expect("html"), "csrf").expect("confirmation form");
    let r = office
        .post(server.url("/logout/confirm"))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("confirm");
    assert_eq!(r.status(), 200);
    signed_in_from(&server, lea, Some("203.0.113.77"), Some("Firefox/140")).await;
    assert!(alerts(&server, "shared_credentials").await.is_empty(), "a session ended before is not concurrent");

    // Shared: the agent at once from two distant networks.
    signed_in_from(&server, AGENT, Some("198.51.100.7"), Some("Firefox/140")).await;
    assert!(alerts(&server, "shared_credentials").await.is_empty());
    signed_in_from(&server, AGENT, Some("203.0.113.9"), Some("Firefox/140")).await;
    let found = alerts(&server, "shared_credentials").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (row, d) = &found[0];
    assert_eq!(row.email.as_deref(), Some(AGENT));
    assert_eq!(d["cause"], "distant_networks");
    assert_eq!(d["counts"]["networks"], serde_json::json!(["198.51.0.0/16", "203.0.0.0/16"]));
    wait_for_mails(&server, PARTNER_SECURITY, "shared credentials", 1).await;

    // Many devices from one network: the other agent on three browsers.
    signed_in_from(&server, other, Some("198.51.100.7"), Some("Chrome/139")).await;
    assert_eq!(alerts(&server, "shared_credentials").await.len(), 1, "two browsers are not many");
    signed_in_from(&server, other, Some("198.51.100.8"), Some("Safari/18")).await;
    let found = alerts(&server, "shared_credentials").await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[1].1["cause"], "many_devices");
    assert_eq!(found[1].1["counts"]["user_agents"], 3);
}
