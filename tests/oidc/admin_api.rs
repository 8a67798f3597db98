//! The admin API (R16, R18; issue 5 part 3): each role reaches exactly its
//! endpoints (401 without a session, 403 with the wrong role), state changes
//! need the CSRF token and are logged with the administrator as actor, the
//! log query has the filters of `logs query` and exports CSV safely, and
//! every read and export is itself logged. Also the `admin` command line.

use coop_idp::store::events::EventFilter;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::admin::*;
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    every_endpoint_family_admits_its_roles_and_refuses_the_others,
    state_changes_need_csrf_and_are_logged_with_the_administrator,
    log_filters_narrow_and_reads_are_logged,
    bad_filters_are_refused_with_the_valid_values,
    csv_export_escapes_injected_cells,
    csv_export_is_for_a_french_spreadsheet_and_injection_proof,
    cli_query_refuses_bad_filters_and_exports_safe_csv,
    failed_sign_ins_name_the_account_and_its_partner,
);

async fn status(b: &reqwest::Client, url: &str) -> StatusCode {
    b.get(url).send().await.expect("get").status()
}

async fn post_status(b: &reqwest::Client, url: &str, csrf: &str, body: &[u8]) -> StatusCode {
    b.post(url).header("x-csrf-token", csrf).body(body.to_vec()).send().await.expect("post").status()
}

const ANNEX: &str = "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\r\n\
ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG\r\n\
ouvert;Habil;Claire;claire.habil@cc-girou.fr;Responsable des habilitations\r\n\
ouvert;N'Diaye;Jean-Éric;je.ndiaye@cc-girou.fr;Responsable petite enfance\r\n";

async fn every_endpoint_family_admits_its_roles_and_refuses_the_others(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let anonymous = browser();
    let (security, sec_csrf) = signed_in(&server, SECURITY).await;
    let (habilitation, hab_csrf) = signed_in(&server, HABILITATION).await;
    let (manager, man_csrf) = signed_in(&server, PARTNER_MANAGER).await;
    let (agent, agent_csrf) = signed_in(&server, AGENT).await;

    // (path, who may: security, habilitation, partner manager)
    let reads = [
        ("/admin/api/me", true, true, true),
        ("/admin/api/logs", true, false, false),
        ("/admin/api/logs?format=csv", true, false, false),
        ("/admin/api/alerts", true, false, false),
        ("/admin/api/partners", false, true, true),
        ("/admin/api/partners/cc-girou", false, true, true),
        ("/admin/api/partners/cc-girou/accounts", false, true, true),
        ("/admin/api/partners/ville-autre", false, true, false),
        ("/admin/api/partners/ville-autre/accounts", false, true, false),
        ("/admin/api/review", false, true, true),
    ];
    for (path, sec, hab, man) in reads {
        let url = server.url(path);
        assert_eq!(status(&anonymous, &url).await, 401, "{path} without a session");
        assert_eq!(status(&agent, &url).await, 403, "{path} for an agent without a role");
        for (b, allowed, who) in
            [(&security, sec, "security"), (&habilitation, hab, "habilitation"), (&manager, man, "partner")]
        {
            let expected = if allowed { 200 } else { 403 };
            assert_eq!(status(b, &url).await, expected, "{path} for {who}");
        }
    }
    // The 401 and 403 bodies say why, French first.
    let r = anonymous.get(server.url("/admin/api/logs")).send().await.expect("get");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "unauthenticated");
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("Connexion requise")), "{body}");

    // A partner's manager sees its own partner only, in lists too.
    let list: Value =
        manager.get(server.url("/admin/api/partners")).send().await.expect("get").json().await.expect("json");
    let ids: Vec<&str> =
        list["partners"].as_array().expect("partners").iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, [PARTNER]);
    let list: Value =
        habilitation.get(server.url("/admin/api/partners")).send().await.expect("get").json().await.expect("json");
    assert_eq!(list["partners"].as_array().map(Vec::len), Some(2));
    let review: Value =
        manager.get(server.url("/admin/api/review")).send().await.expect("get").json().await.expect("json");
    assert!(review["partners"].as_array().expect("review").iter().all(|r| r["partner_id"] == PARTNER), "{review}");
    let accounts: Value = habilitation
        .get(server.url("/admin/api/partners/cc-girou/accounts"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let marie = accounts["accounts"].as_array().expect("accounts").iter().find(|a| a["email"] == AGENT).expect("agent");
    assert_eq!(marie["state"], "active");
    assert!(marie["last_signin"].as_str().is_some_and(|t| t.ends_with('Z')), "{marie}");

    // Annex 1: dry run for both managers (own partner), apply for the Caf only.
    let dry = server.url("/admin/api/partners/cc-girou/annex1");
    let apply = server.url("/admin/api/partners/cc-girou/annex1?apply=true");
    let other = server.url("/admin/api/partners/ville-autre/annex1");
    let bytes = ANNEX.as_bytes();
    assert_eq!(post_status(&anonymous, &dry, "x", bytes).await, 401);
    assert_eq!(post_status(&agent, &dry, &agent_csrf, bytes).await, 403);
    assert_eq!(post_status(&security, &dry, &sec_csrf, bytes).await, 403);
    assert_eq!(post_status(&manager, &other, &man_csrf, bytes).await, 403, "another partner");
    assert_eq!(post_status(&manager, &apply, &man_csrf, bytes).await, 403, "a partner only proposes");
    let r = manager.post(&dry).header("x-csrf-token", &man_csrf).body(bytes.to_vec()).send().await.expect("post");
    assert_eq!(r.status(), 200);
    let plan: Value = r.json().await.expect("plan");
    for key in ["partner_id", "transmitted", "open", "reopen", "update", "close", "unchanged", "errors", "warnings"] {
        assert!(plan.get(key).is_some(), "{key} in {plan}");
    }
    assert_eq!(plan["open"][0]["email"], "je.ndiaye@cc-girou.fr", "{plan}");
    assert_eq!(plan["open"][0]["line"], 4, "{plan}");
    assert_eq!(server.app.store.account_by_email("je.ndiaye@cc-girou.fr").await.expect("db").map(|a| a.id), None);
    let r =
        habilitation.post(&apply).header("x-csrf-token", &hab_csrf).body(bytes.to_vec()).send().await.expect("post");
    assert_eq!(r.status(), 200);
    let opened = server.app.store.account_by_email("je.ndiaye@cc-girou.fr").await.expect("db").expect("opened");
    assert_eq!(opened.state, "pending");
    // An annex older than the current one (a French date) is refused, nothing changed.
    let current = server.app.store.current_annex1("cc-girou").await.expect("db").expect("annex");
    let older = server.url("/admin/api/partners/cc-girou/annex1?apply=true&transmitted=05/01/2026");
    let r = habilitation.post(&older).header("x-csrf-token", &hab_csrf).body(b"x".to_vec()).send().await.expect("post");
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"] == "conflict" && body["message"].as_str().is_some_and(|m| m.contains("antérieure")),
        "{body}"
    );
    let after = server.app.store.current_annex1("cc-girou").await.expect("db").expect("annex");
    assert_eq!((after.transmitted_on, after.applied_at), (current.transmitted_on, current.applied_at));

    // Accesses: resend activation and close, Caf habilitation only.
    let resend = server.url(&format!("/admin/api/accounts/{}/resend-activation", opened.id));
    for (b, csrf) in [(&security, &sec_csrf), (&manager, &man_csrf), (&agent, &agent_csrf)] {
        assert_eq!(post_status(b, &resend, csrf, b"").await, 403);
    }
    assert_eq!(post_status(&anonymous, &resend, "x", b"").await, 401);
    assert_eq!(post_status(&habilitation, &resend, &hab_csrf, b"").await, 200);
    let close = server.url(&format!("/admin/api/accounts/{}/close", opened.id));
    for (b, csrf) in [(&security, &sec_csrf), (&manager, &man_csrf), (&agent, &agent_csrf)] {
        assert_eq!(post_status(b, &close, csrf, b"").await, 403);
    }
    assert_eq!(post_status(&habilitation, &close, &hab_csrf, b"").await, 200);
    let closed = server.app.store.account_by_id(&opened.id).await.expect("db").expect("account");
    assert_eq!(closed.state, "closed");
    // Resending to a closed access is a conflict, an unknown account a 404.
    assert_eq!(post_status(&habilitation, &resend, &hab_csrf, b"").await, 409);
    let unknown = server.url("/admin/api/accounts/nobody/close");
    assert_eq!(post_status(&habilitation, &unknown, &hab_csrf, b"").await, 404);

    // A role revoked takes effect at the next request.
    let manager_id = server.app.store.account_by_email(PARTNER_MANAGER).await.expect("db").expect("manager").id;
    let mut tx = server.app.store.begin_write().await.expect("tx");
    coop_idp::store::accounts::revoke_role(&mut tx, &manager_id, "partner_habilitation").await.expect("revoke");
    tx.commit().await.expect("commit");
    assert_eq!(status(&manager, &server.url("/admin/api/partners")).await, 403);
}

async fn state_changes_need_csrf_and_are_logged_with_the_administrator(db: Db) {
    let server = TestServer::start(db).await;
    let accounts = setup(&server).await;
    let (habilitation, csrf) = signed_in(&server, HABILITATION).await;
    let close = server.url(&format!("/admin/api/accounts/{}/close", accounts.agent));

    // Without the header, or with another value: refused, nothing changed.
    let r = habilitation.post(&close).send().await.expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "csrf");
    assert_eq!(post_status(&habilitation, &close, "not-the-token-of-this-browser-xxxxxxxx", b"").await, 403);
    // A token from another browser is not this browser's.
    let (_, foreign) = signed_in(&server, SECURITY).await;
    assert_eq!(post_status(&habilitation, &close, &foreign, b"").await, 403);
    assert_eq!(server.app.store.account_by_id(&accounts.agent).await.expect("db").expect("agent").state, "active");

    // The agent's live session ends with the closure.
    let (agent, _) = signed_in(&server, AGENT).await;
    assert_eq!(status(&agent, &server.url("/admin/api/me")).await, 403);
    assert_eq!(post_status(&habilitation, &close, &csrf, b"").await, 200);
    assert_eq!(status(&agent, &server.url("/admin/api/me")).await, 401, "session ended at once");

    let closed = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("access_closed".into()), limit: 10, ..Default::default() })
        .await
        .expect("events");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].actor, HABILITATION);
    assert_eq!(closed[0].email.as_deref(), Some(AGENT));
    assert_eq!(closed[0].ip.as_deref(), Some("127.0.0.1"));
    // Closing again changes nothing and logs nothing.
    let again: Value =
        habilitation.post(&close).header("x-csrf-token", &csrf).send().await.expect("post").json().await.expect("json");
    assert_eq!(again["closed"], false);

    // The annex-1 dry run is recorded with the administrator as actor.
    let r = habilitation
        .post(server.url("/admin/api/partners/cc-girou/annex1"))
        .header("x-csrf-token", &csrf)
        .body(ANNEX.as_bytes().to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let dry = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("annex1_dry_run".into()), limit: 10, ..Default::default() })
        .await
        .expect("events");
    assert_eq!(dry.len(), 1);
    assert_eq!(dry[0].actor, HABILITATION);
}

async fn records(b: &reqwest::Client, server: &TestServer, query: &str) -> Vec<Value> {
    let r = b.get(server.url(&format!("/admin/api/logs?{query}"))).send().await.expect("get");
    assert_eq!(r.status(), 200, "{query}");
    let body: Value = r.json().await.expect("json");
    body["records"].as_array().expect("records").clone()
}

async fn log_filters_narrow_and_reads_are_logged(db: Db) {
    let server = TestServer::start_with(db, &[("trusted_proxies", "127.0.0.1/32")]).await;
    setup(&server).await;
    assert_eq!(failed_sign_in(&server, AGENT, "203.0.113.9", "ua-a").await, 401);
    assert_eq!(failed_sign_in(&server, OTHER_AGENT, "198.51.100.7", "ua-b").await, 401);
    let (security, _) = signed_in(&server, SECURITY).await;
    let (_agent, _) = signed_in_from(&server, AGENT, Some("203.0.113.9"), None).await;

    let all = records(&security, &server, "").await;
    assert!(all.len() >= 4, "{all:?}");
    let check = |name: &str, subset: &[Value], keep: &dyn Fn(&Value) -> bool| {
        assert!(!subset.is_empty(), "{name}: something matches");
        assert!(subset.len() < all.len(), "{name}: narrows");
        assert!(subset.iter().all(keep), "{name}: only matching records: {subset:?}");
    };
    let by_email = records(&security, &server, &format!("email={AGENT}")).await;
    check("email", &by_email, &|r| r["email"] == AGENT);
    let by_partner = records(&security, &server, "partner=cc-girou").await;
    check("partner", &by_partner, &|r| r["partner_id"] == PARTNER);
    let by_event = records(&security, &server, "event=signin_failed").await;
    check("event", &by_event, &|r| r["kind"] == "signin_failed");
    assert_eq!(by_event.len(), 2);
    let by_ip = records(&security, &server, "ip=198.51.100.7").await;
    check("ip", &by_ip, &|r| r["ip"] == "198.51.100.7");
    let combined = records(&security, &server, "ip=203.0.113.9&event=signin").await;
    check("combined", &combined, &|r| r["ip"] == "203.0.113.9" && r["kind"] == "signin");
    // Periods: the future is empty; an `until` in the past too; a date works.
    let future = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let future = future.format(&time::format_description::well_known::Rfc3339).expect("time");
    assert!(records(&security, &server, &format!("since={}", future.replace('+', "%2B"))).await.is_empty());
    assert!(records(&security, &server, "until=2020-01-01").await.is_empty());
    let dated = records(&security, &server, "since=2020-01-01").await;
    // Everything since 2020, which the next read sees plus the record of this read.
    assert_eq!(dated.len() + 1, records(&security, &server, "").await.len());
    let r = security.get(server.url("/admin/api/logs?since=yesterday")).send().await.expect("get");
    assert_eq!(r.status(), 400);
    // The outcome narrows too, both ways.
    let failures = records(&security, &server, "outcome=failure").await;
    check("outcome", &failures, &|r| r["outcome"] == "failure");
    let successes = records(&security, &server, "outcome=success&event=signin_failed").await;
    assert!(successes.is_empty(), "{successes:?}");

    // Pagination: pages of 2 follow each other without overlap.
    let r: Value =
        security.get(server.url("/admin/api/logs?limit=2")).send().await.expect("get").json().await.expect("json");
    assert_eq!(r["records"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["next_offset"], 2);
    let next: Value = security
        .get(server.url("/admin/api/logs?limit=2&offset=2"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(next["records"][0]["seq"].as_i64() > r["records"][1]["seq"].as_i64());

    // Every read and export is itself logged, with the officer as actor.
    let csv = security.get(server.url("/admin/api/logs?format=csv&event=signin_failed")).send().await.expect("get");
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/csv")));
    security.get(server.url("/admin/api/alerts")).send().await.expect("alerts");
    let reads = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("log_read".into()), limit: 100, ..Default::default() })
        .await
        .expect("events");
    assert!(reads.len() >= 10, "{}", reads.len());
    assert!(reads.iter().all(|r| r.actor == SECURITY && r.ip.as_deref() == Some("127.0.0.1")));
    assert!(reads.iter().any(|r| r.details.contains("\"alerts\":true")));
    let exports = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("log_exported".into()), limit: 100, ..Default::default() })
        .await
        .expect("events");
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].actor, SECURITY);
    assert!(exports[0].details.contains("\"format\":\"csv\""), "{}", exports[0].details);
    assert!(exports[0].details.contains("\"records\":2"), "{}", exports[0].details);
}

async fn csv_export_escapes_injected_cells(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let injected = "=HYPERLINK(\"http://evil\"),x;\"q\"\nnext@cc-girou.fr";
    let r = SignIn::new(injected, "x").with_user_agent("@SUM(A1)").post(&browser(), &server.base).await;
    assert_eq!(r.status(), 401);
    assert_eq!(failed_sign_in(&server, AGENT, "127.0.0.1", "-2+3").await, 401);

    let (security, _) = signed_in(&server, SECURITY).await;
    let r = security.get(server.url("/admin/api/logs?format=csv&event=signin_failed")).send().await.expect("get");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("csv");
    assert!(text.starts_with("\u{feff}N°;Date (UTC);Type d'événement;Résultat;"), "{text}");
    // The raw text quotes the cell and doubles its quotes …
    assert!(text.contains("\"'=HYPERLINK(\"\"http://evil\"\"),x;\"\"q\"\"\nnext@cc-girou.fr\""), "{text}");
    // … and a CSV reader gets the values back, neutralised.
    let text = text.trim_start_matches('\u{feff}');
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').has_headers(true).from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a well-formed CSV row")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(&rows[0][4], format!("'{injected}"));
    assert_eq!(&rows[0][9], "'@SUM(A1)");
    assert_eq!(&rows[0][10], format!("'{injected}"), "actor neutralised too");
    assert_eq!(&rows[1][9], "'-2+3");
    for row in &rows {
        for cell in row.iter() {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a formula escaped: {cell}");
        }
    }
}

/// A `GET` on the log API: status and JSON body.
async fn api_error(b: &reqwest::Client, server: &TestServer, query: &str) -> (StatusCode, Value) {
    let r = b.get(server.url(&format!("/admin/api/logs?{query}"))).send().await.expect("get");
    let status = r.status();
    (status, r.json().await.expect("JSON error"))
}

/// A typo is a 400 naming the parameter and what it accepts, never an empty
/// (or a silently widened) answer; what is valid still passes.
async fn bad_filters_are_refused_with_the_valid_values(db: Db) {
    let server = TestServer::start_with(db, &[("trusted_proxies", "127.0.0.1/32")]).await;
    setup(&server).await;
    assert_eq!(failed_sign_in(&server, AGENT, "203.0.113.9", "ua-a").await, 401);
    let (security, _) = signed_in(&server, SECURITY).await;
    let reads_before = read_count(&server).await;

    let (status, body) = api_error(&security, &server, "event=signin_fail").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["parameter"], "event");
    let kinds: Vec<&str> = body["valid_values"].as_array().expect("kinds").iter().filter_map(Value::as_str).collect();
    assert_eq!(kinds, coop_idp::audit::kind::ALL, "every kind, from the one list");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("signin_fail") && m.contains("signin_failed")));
    let (status, body) = api_error(&security, &server, "outcome=failed").await;
    assert_eq!((status, &body["parameter"]), (StatusCode::BAD_REQUEST, &Value::from("outcome")));
    assert_eq!(body["valid_values"], serde_json::json!(["success", "failure"]));
    let (status, body) = api_error(&security, &server, "partner=cc-giro").await;
    assert_eq!((status, &body["parameter"]), (StatusCode::BAD_REQUEST, &Value::from("partner")));
    assert_eq!(body["valid_values"], serde_json::json!([PARTNER, OTHER]));
    for (query, parameter) in [
        ("ip=203.0.113", "ip"),
        ("ip=203.0.113.9/24", "ip"),
        ("since=31/13/2026", "since"),
        ("until=demain", "until"),
        ("since=2026-02-01&until=2026-01-01", "until"),
        ("limit=0", "limit"),
        ("limit=100001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("format=xlsx", "format"),
        ("lang=de&format=csv", "lang"),
        ("evnt=signin_failed", "evnt"),
    ] {
        let (status, body) = api_error(&security, &server, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(body["valid_values"].is_array() || body["expected"].is_string(), "{query}: {body}");
    }
    let (_, body) = api_error(&security, &server, "format=xlsx").await;
    assert_eq!(body["valid_values"], serde_json::json!(["json", "csv"]));
    assert_eq!(read_count(&server).await, reads_before, "a refused query reads nothing");

    // The other side: the same filters, well typed, answer.
    let found = records(
        &security,
        &server,
        "event=signin_failed&outcome=failure&ip=203.0.113.9&since=2020-01-01&until=2999-01-01&limit=100000&lang=en",
    )
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    // A registered partner is a valid filter, records or not (`records` checks the 200).
    records(&security, &server, "partner=ville-autre").await;
    // An address is compared in its canonical form, as recorded.
    assert!(records(&security, &server, "ip=2001:DB8:0::1").await.is_empty());
}

async fn read_count(server: &TestServer) -> usize {
    server
        .app
        .store
        .query_events(&EventFilter { kind: Some("log_read".into()), limit: 1000, ..Default::default() })
        .await
        .expect("events")
        .len()
}

/// The user agent of the issue: split on `;` it would give cells starting
/// with `=`.
pub(crate) const HOSTILE_AGENT: &str = "Mozilla/5.0;=1+41;=cmd|' /C calc'!A0";

async fn csv_export_is_for_a_french_spreadsheet_and_injection_proof(db: Db) {
    let server = TestServer::start_with(db, &[("trusted_proxies", "127.0.0.1/32")]).await;
    setup(&server).await;
    assert_eq!(failed_sign_in(&server, "Jérôme.Hébert@cc-girou.fr", "203.0.113.9", HOSTILE_AGENT).await, 401);
    let (security, _) = signed_in(&server, SECURITY).await;

    let r = security.get(server.url("/admin/api/logs?format=csv&event=signin_failed")).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let bytes = r.bytes().await.expect("csv");
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 byte-order mark first");
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    let header = text.trim_start_matches('\u{feff}').lines().next().unwrap_or_default();
    assert_eq!(
        header,
        "N°;Date (UTC);Type d'événement;Résultat;Adresse électronique;Compte;Partenaire;Application;\
         Adresse IP;Navigateur (user agent);Auteur;Détails"
    );
    assert!(text.contains("Jérôme.Hébert@cc-girou.fr"), "accents as they are: {text}");
    assert!(text.contains("\"Mozilla/5.0;'=1+41;'=cmd|' /C calc'!A0\""), "{text}");
    assert_no_formula_cell(&text);
    // Read with `;`, as a French spreadsheet does: one column per field.
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].len(), 12);
    assert_eq!(&rows[0][2], "signin_failed");
    assert_eq!(&rows[0][9], "Mozilla/5.0;'=1+41;'=cmd|' /C calc'!A0");

    // In English when the request is, by `lang` or by `Accept-Language`.
    for (query, accept) in [("&lang=en", "fr"), ("", "en-GB,en;q=0.8")] {
        let r = security
            .get(server.url(&format!("/admin/api/logs?format=csv&event=signin_failed{query}")))
            .header("accept-language", accept)
            .send()
            .await
            .expect("get");
        let text = r.text().await.expect("csv");
        assert!(text.starts_with("\u{feff}No.;Time (UTC);Event kind;Outcome;Email address;"), "{query}: {text}");
        assert_no_formula_cell(&text);
    }
}

/// `logs query` on the server's database: a typo exits 2 with the list of
/// kinds; the CSV keeps the field names, `,` by default, `;` (with a BOM)
/// on request, and no formula either way.
async fn cli_query_refuses_bad_filters_and_exports_safe_csv(db: Db) {
    let server = TestServer::start_with(db, &[("trusted_proxies", "127.0.0.1/32")]).await;
    setup(&server).await;
    assert_eq!(failed_sign_in(&server, AGENT, "203.0.113.9", HOSTILE_AGENT).await, 401);
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let out = cli(&server, &["logs", "query", "--event", "signin_fail"]);
    assert_eq!(out.status.code(), Some(2), "bad input: {}", errors(&out));
    assert!(text(&out).is_empty(), "no header, no empty table: {}", text(&out));
    for kind in coop_idp::audit::kind::ALL {
        assert!(errors(&out).contains(kind), "{kind} listed: {}", errors(&out));
    }
    for args in [
        vec!["--outcome", "failed"],
        vec!["--ip", "203.0.113"],
        vec!["--since", "hier"],
        vec!["--since", "2026-02-01", "--until", "2026-01-01"],
        vec!["--partner", "cc-giro"],
        vec!["--limit", "0"],
        vec!["--format", "json", "--separator", "semicolon"],
        vec!["--format", "xlsx"],
        vec!["--format", "csv", "--separator", "tab"],
    ] {
        let out = cli(&server, &[&["logs", "query"][..], &args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", errors(&out));
    }
    let out = cli(&server, &["logs", "query", "--partner", "cc-giro"]);
    assert!(errors(&out).contains(PARTNER) && errors(&out).contains(OTHER), "{}", errors(&out));

    let out = cli(&server, &["logs", "query", "--event", "signin_failed", "--outcome", "failure", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", errors(&out));
    let csv = text(&out);
    assert!(
        csv.starts_with("seq,time,kind,outcome,email,account_id,partner_id,client_id,ip,user_agent,actor,details\r\n")
    );
    assert!(csv.contains("\"Mozilla/5.0;'=1+41;'=cmd|' /C calc'!A0\""), "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert_no_formula_cell(&csv);
    let out =
        cli(&server, &["logs", "query", "--event", "signin_failed", "--format", "csv", "--separator", "semicolon"]);
    assert_eq!(out.status.code(), Some(0), "{}", errors(&out));
    let csv = text(&out);
    assert!(csv.starts_with("\u{feff}seq;time;kind;outcome;email;"), "{csv}");
    assert_no_formula_cell(&csv);
    let mut reader =
        csv::ReaderBuilder::new().delimiter(b';').from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
    let row = reader.records().next().expect("a row").expect("CSV");
    assert_eq!(&row[9], "Mozilla/5.0;'=1+41;'=cmd|' /C calc'!A0");
}

// ---------------------------------------------------------------------------
// The command line

#[test]
fn admin_cli_bootstrap_grant_revoke_and_errors() {
    let cli = Cli::new();
    // Fresh installation: the first administrator, with an activation link.
    let done = cli.json(&[
        "admin",
        "bootstrap",
        "--email",
        "Claire.Rssi@caf.fr",
        "--given-name",
        "Claire",
        "--family-name",
        "Rssi",
    ]);
    assert_eq!(done["created"], true);
    assert_eq!(done["roles"], serde_json::json!(["caf_habilitation", "caf_security"]));
    let mails = cli.outbox();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("/activate?token="), "{}", mails[0]);
    // Only once: afterwards it refuses and points to the other commands.
    let (code, _, err) =
        cli.run(&["admin", "bootstrap", "--email", "autre@caf.fr", "--given-name", "A", "--family-name", "B"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("admin invite"), "{err}");

    let (code, out, err) =
        cli.run(&["partner", "add", "--id", "cc-girou", "--name", "CC du Girou", "--convention-signed", "2026-01-05"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = cli.run(&[
        "account",
        "invite",
        "--partner",
        "cc-girou",
        "--email",
        "marie.dupont@cc-girou.fr",
        "--given-name",
        "Marie",
        "--family-name",
        "Dupont",
        "--function",
        "Responsable des habilitations",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");

    let before = cli.json(&["admin", "list"]);
    // Errors: clear, non-zero, nothing changed.
    for (args, says) in [
        (vec!["admin", "grant", "marie.dupont@cc-girou.fr", "superuser"], "rôle inconnu"),
        (vec!["admin", "grant", "personne@cc-girou.fr", "caf_security"], "aucun compte"),
        (vec!["admin", "grant", "claire.rssi@caf.fr", "partner_habilitation"], "aucun partenaire"),
        (vec!["admin", "revoke", "marie.dupont@cc-girou.fr", "admin"], "rôle inconnu"),
        (vec!["admin", "revoke", "personne@cc-girou.fr", "caf_security"], "aucun compte"),
    ] {
        let (code, out, err) = cli.run(&args);
        assert_ne!(code, Some(0), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(cli.json(&["admin", "list"]), before);

    let granted = cli.json(&["admin", "grant", "Marie.Dupont@cc-girou.fr", "partner_habilitation"]);
    assert_eq!(granted["granted"], true);
    let again = cli.json(&["admin", "grant", "marie.dupont@cc-girou.fr", "partner_habilitation"]);
    assert_eq!(again["granted"], false, "idempotent");
    let list = cli.json(&["admin", "list"]);
    let marie =
        list.as_array().expect("list").iter().find(|a| a["email"] == "marie.dupont@cc-girou.fr").expect("listed");
    assert_eq!(marie["roles"], serde_json::json!(["partner_habilitation"]));
    assert_eq!(marie["partner_id"], "cc-girou");
    let revoked = cli.json(&["admin", "revoke", "marie.dupont@cc-girou.fr", "partner_habilitation"]);
    assert_eq!(revoked["revoked"], true);

    // Granting and revoking are administrative actions in the log, by `cli`.
    let log = cli.json(&["logs", "query", "--format", "json", "--email", "marie.dupont@cc-girou.fr"]);
    let kinds: Vec<(&str, &str)> = log
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"].as_str().is_some_and(|k| k.starts_with("role_")))
        .map(|r| (r["kind"].as_str().unwrap_or_default(), r["actor"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(kinds, [("role_granted", "cli"), ("role_revoked", "cli")]);
    let (code, out, _) = cli.run(&["alerts", "list", "--format", "csv"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("seq,time,detector,subject,"), "{out}");
}

async fn failed_sign_ins_name_the_account_and_its_partner(db: Db) {
    let server = TestServer::start_with(db, &[("trusted_proxies", "127.0.0.1/32")]).await;
    let ids = setup(&server).await;
    let unknown = "personne@cc-girou.fr";
    assert_eq!(failed_sign_in(&server, AGENT, "203.0.113.9", "ua-a").await, 401);
    assert_eq!(failed_sign_in(&server, unknown, "203.0.113.9", "ua-a").await, 401);
    let (security, _) = signed_in(&server, SECURITY).await;

    // The agent's failure is found by partner, with the account named.
    let found = records(&security, &server, "partner=cc-girou&event=signin_failed").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0]["email"].as_str(), found[0]["account_id"].as_str()), (Some(AGENT), Some(ids.agent.as_str())));
    // An unknown address keeps the typed address only.
    let typed = records(&security, &server, &format!("email={unknown}&event=signin_failed")).await;
    assert_eq!(typed.len(), 1, "{typed:?}");
    assert!(typed[0]["account_id"].is_null() && typed[0]["partner_id"].is_null(), "{typed:?}");

    // The same through the command line.
    let out = cli(&server, &["logs", "query", "--partner", PARTNER, "--event", "signin_failed", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let listed = listed.as_array().expect("records");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["account_id"].as_str(), Some(ids.agent.as_str()));
}
