//! Retention (R19) and attestations of destruction (R20), with the clock
//! moved months ahead: each purge destroys what is due and nothing that is
//! not yet due, keeps the connection log verifiable, and a dry run changes
//! nothing. The attestation's JWS verifies with the published JWKS and fails
//! when the PDF or the payload is altered.

use coop_idp::audit::{Verification, verify};
use coop_idp::dates::{add_months, format_iso};
use coop_idp::retention::{PurgeReport, attestation, purge};
use coop_idp::store::{self, events::EventFilter, sessions::NewSession};
use time::{Date, Duration};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    purge_destroys_exactly_what_is_due_and_keeps_the_log_verifiable,
    dry_run_shows_what_would_go_and_changes_nothing,
    attestation_verifies_with_the_published_key_and_fails_when_altered,
    a_job_lease_is_taken_once_across_instances,
);

const PARTNER: &str = "cc-girou";
const CLOSED: &str = "marie.dupont@cc-girou.fr";
const OPEN: &str = "paul.martin@cc-girou.fr";

/// Keeps the scheduled purge and checkpoint of the test server out of the
/// way: the test runs them itself, at the dates it chooses.
async fn hold_leases(server: &TestServer) {
    for name in ["purge", "checkpoint"] {
        let held =
            store::retention::try_acquire_lease(&server.app.store, name, "test", 0, i64::MAX / 2).await.expect("lease");
        assert!(held, "the job lease {name} was free");
        let again =
            store::retention::try_acquire_lease(&server.app.store, name, "other", server.clock.now_ms(), 1).await;
        assert!(!again.expect("lease"), "a held lease is not taken by another instance");
    }
}

async fn advance_to(server: &TestServer, target: Date) {
    let days = (target - server.app.clock.today()).whole_days();
    assert!(days >= 0, "the clock only moves forward");
    server.clock.advance_secs(days * 86_400);
}

async fn count(server: &TestServer, sql: &str, id: &str) -> i64 {
    let row: (i64,) = sqlx::query_as(sql).bind(id).fetch_one(server.app.store.pool()).await.expect(sql);
    row.0
}

async fn add_session(server: &TestServer, account_id: &str) -> String {
    let now = server.clock.now_ms();
    let id_hash = coop_idp::crypto::random_token();
    let mut tx = server.app.store.begin_write().await.expect("tx");
    store::sessions::insert(
        &mut tx,
        &NewSession {
            id_hash: &id_hash,
            sid: &coop_idp::crypto::random_b64(16),
            account_id,
            auth_time: now,
            amr: "pwd",
            acr: "urn:coop-idp:acr:password",
            absolute_expires_at: now + 3_600_000,
            ip: Some("192.0.2.7"),
            user_agent: Some("Firefox"),
        },
        now,
    )
    .await
    .expect("session");
    tx.commit().await.expect("commit");
    id_hash
}

/// A partner with a signed convention, one closed and one open account
/// (each with a session), a role and an annex 2; returns (closed, open) ids.
async fn setup(server: &TestServer) -> (String, String) {
    let app = &server.app;
    let day = format_iso(app.clock.today());
    for (id, name) in [(PARTNER, "CC du Girou"), ("cc-ancien", "CC Ancienne")] {
        let p = coop_idp::provisioning::NewPartner { id, name, convention_signed: Some(&day), email_domains: &[] };
        coop_idp::provisioning::add_partner(app, p).await.expect("partner");
        let annex2 = coop_idp::provisioning::Annex2 {
            partner_id: id,
            contacts: coop_idp::provisioning::Contacts {
                habilitation_name: "Jeanne Habilitée",
                habilitation_email: "habilitations@cc-girou.fr",
                security_name: "Luc Sécurité",
                security_email: "securite@cc-girou.fr",
            },
            transmitted: &day,
        };
        coop_idp::provisioning::set_annex2(app, annex2).await.expect("annex 2");
    }
    let closed = server.add_account(CLOSED, None).await;
    let open = server.add_account(OPEN, None).await;
    for id in [&closed, &open] {
        sqlx::query("UPDATE accounts SET partner_id = $1 WHERE id = $2")
            .bind(PARTNER)
            .bind(id)
            .execute(app.store.pool())
            .await
            .expect("partner of the account");
    }
    add_session(server, &closed).await;
    add_session(server, &open).await;
    server.grant_role(&closed, "partner_habilitation").await;
    let mut tx = app.store.begin_write().await.expect("tx");
    store::accounts::close(&mut tx, &closed, &day, server.clock.now_ms()).await.expect("close");
    tx.commit().await.expect("commit");
    coop_idp::provisioning::terminate_convention(app, "cc-ancien", &day, "fin du partenariat").await.expect("end");
    (closed, open)
}

fn ids(list: &[coop_idp::retention::AccountPurged]) -> Vec<String> {
    list.iter().map(|a| a.account_id.clone()).collect()
}

fn nothing_due(r: &PurgeReport) {
    assert!(r.is_empty(), "nothing is due yet: {}", serde_json::to_string(r).unwrap_or_default());
}

async fn assert_intact(server: &TestServer) {
    assert!(
        matches!(verify(&server.app.store, &server.app.keys).await.expect("verify"), Verification::Intact { .. }),
        "the log must stay verifiable after a purge"
    );
}

async fn purge_destroys_exactly_what_is_due_and_keeps_the_log_verifiable(db: Db) {
    let server = TestServer::start(db).await;
    hold_leases(&server).await;
    let day0 = server.app.clock.today();
    let (closed, open) = setup(&server).await;
    let written_before = server.app.store.events_after(0, 1000).await.expect("events").len() as i64;
    assert!(written_before > 0);
    // A session of the open account that ended today.
    let ended = add_session(&server, &open).await;
    let mut tx = server.app.store.begin_write().await.expect("tx");
    store::sessions::end(&mut tx, &ended, "logout", server.clock.now_ms()).await.expect("end");
    tx.commit().await.expect("commit");
    let session_kept = "SELECT COUNT(*) FROM sessions WHERE id_hash = $1";
    let sessions = "SELECT COUNT(*) FROM sessions WHERE account_id = $1 AND ended_at IS NULL";
    let roles = "SELECT COUNT(*) FROM account_roles WHERE account_id = $1";
    let accounts = "SELECT COUNT(*) FROM accounts WHERE id = $1";

    // Six months after the closure, less a day: nothing goes.
    advance_to(&server, add_months(day0, 6) - Duration::days(1)).await;
    nothing_due(&purge(&server.app, false, "cli").await.expect("purge"));
    assert_eq!(count(&server, sessions, &closed).await, 1);

    // Six months: the closed account's user-account data, and only it.
    advance_to(&server, add_months(day0, 6)).await;
    let r = purge(&server.app, false, "cli").await.expect("purge");
    assert_eq!(ids(&r.account_data), vec![closed.clone()]);
    assert!(r.habilitation_records.is_empty() && r.annexes.is_empty() && r.events.is_none());
    let data = r.account_data[0].data.as_ref().expect("counts");
    assert_eq!((data.sessions, data.roles), (1, 1));
    assert_eq!(count(&server, sessions, &closed).await, 0);
    assert_eq!(count(&server, roles, &closed).await, 0);
    assert_eq!(count(&server, sessions, &open).await, 1, "an open account keeps its sessions");
    let record = server.app.store.account_by_id(&closed).await.expect("read").expect("habilitation record kept");
    assert_eq!((record.family_name.as_str(), record.function.as_str()), ("Dupont", "Coordinatrice CTG"));
    assert!(record.password_hash.is_none());
    assert_intact(&server).await;
    // Done once: the next purge finds nothing more.
    nothing_due(&purge(&server.app, false, "system").await.expect("purge"));

    // Connection-log records: 12 months, not a day less.
    advance_to(&server, add_months(day0, 12) - Duration::days(1)).await;
    let r = purge(&server.app, false, "cli").await.expect("purge");
    assert!(r.events.is_none() && r.ended_sessions == 0);
    assert_eq!(count(&server, session_kept, &ended).await, 1);
    advance_to(&server, add_months(day0, 12)).await;
    let r = purge(&server.app, false, "cli").await.expect("purge");
    assert_eq!(r.ended_sessions, 1, "the session that ended 12 months ago goes with the log");
    assert_eq!(count(&server, session_kept, &ended).await, 0);
    let events = r.events.as_ref().expect("old records purged");
    assert_eq!((events.from_seq, events.to_seq, events.removed), (1, written_before, written_before));
    let first = server.app.store.events_after(0, 1).await.expect("events");
    assert_eq!(first[0].seq, written_before + 1, "records written after the cut-off stay");
    assert_intact(&server).await;
    let out = cli(&server, &["logs", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // Two years after the closure request and the end of the convention,
    // not a day less: the habilitation record and the ended partner's annexes.
    advance_to(&server, add_months(day0, 24) - Duration::days(1)).await;
    let r = purge(&server.app, false, "cli").await.expect("purge");
    assert!(r.habilitation_records.is_empty() && r.annexes.is_empty());
    assert_eq!(count(&server, accounts, &closed).await, 1);
    advance_to(&server, add_months(day0, 24)).await;
    let r = purge(&server.app, false, "cli").await.expect("purge");
    assert_eq!(ids(&r.habilitation_records), vec![closed.clone()]);
    assert_eq!(r.annexes.len(), 1);
    assert_eq!((r.annexes[0].partner_id.as_str(), r.annexes[0].annex2), ("cc-ancien", 1));
    assert_eq!(count(&server, accounts, &closed).await, 0);
    assert_eq!(count(&server, accounts, &open).await, 1);
    assert!(server.app.store.annex2(PARTNER).await.expect("read").is_some(), "a convention in force keeps its annexes");
    assert!(server.app.store.annex2("cc-ancien").await.expect("read").is_none());
    assert_intact(&server).await;

    // The purge records say what went by ids and counts, never the data.
    let filter = EventFilter { kind: Some("purge".into()), limit: 100, ..Default::default() };
    let records = server.app.store.query_events(&filter).await.expect("query");
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.actor, "cli");
        for personal in ["marie", "Dupont", "Coordinatrice", "Habilitée", "192.0.2.7"] {
            assert!(!r.details.contains(personal), "{personal} in {}", r.details);
        }
    }
    let last = records.last().expect("last");
    assert!(last.details.contains(&closed), "{}", last.details);
}

async fn dry_run_shows_what_would_go_and_changes_nothing(db: Db) {
    let server = TestServer::start(db).await;
    hold_leases(&server).await;
    let day0 = server.app.clock.today();
    let (closed, _) = setup(&server).await;
    advance_to(&server, add_months(day0, 13)).await;
    let snapshot = async || {
        let mut v = Vec::new();
        for table in ["events", "sessions", "account_roles", "log_checkpoints", "destructions", "log_purges"] {
            let row: (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(server.app.store.pool())
                .await
                .expect("count");
            v.push(row.0);
        }
        v
    };
    let before = snapshot().await;
    let dry = purge(&server.app, true, "cli").await.expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(ids(&dry.account_data), vec![closed.clone()]);
    assert!(dry.events.is_some());
    assert_eq!(dry.account_data[0].email_hmac, None);
    assert_eq!(snapshot().await, before, "a dry run changes nothing");
    let data = server.app.store.account_by_id(&closed).await.expect("read").expect("account");
    assert_eq!(data.family_name, "Dupont");

    // The command line prints the same report (nothing is due at today's date).
    let out = cli(&server, &["purge", "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["dry_run"], true);
    assert_eq!(snapshot().await, before);

    // The real purge does what the dry run showed.
    let real = purge(&server.app, false, "cli").await.expect("purge");
    assert_eq!(ids(&real.account_data), ids(&dry.account_data));
    assert_eq!(real.events.as_ref().map(|e| e.removed), dry.events.as_ref().map(|e| e.removed));
    assert_intact(&server).await;
}

/// Verifies a compact JWS with the JWKS published by the server, over HTTP.
async fn verify_with_published_jwks(server: &TestServer, jws: &str) -> Option<serde_json::Value> {
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(server.url("/jwks")).await.expect("jwks").json().await.expect("jwks json");
    let header = jsonwebtoken::decode_header(jws).ok()?;
    let jwk = jwks.find(header.kid.as_deref()?)?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(jws, &key, &validation).ok().map(|d| d.claims)
}

async fn attestation_verifies_with_the_published_key_and_fails_when_altered(db: Db) {
    let server = TestServer::start(db).await;
    hold_leases(&server).await;
    let day0 = server.app.clock.today();
    let (closed, _) = setup(&server).await;
    // Before the destruction there is nothing to attest.
    assert!(attestation::build(&server.app, PARTNER, Some(CLOSED)).await.is_err());
    advance_to(&server, add_months(day0, 6)).await;
    purge(&server.app, false, "system").await.expect("purge");

    let a = attestation::build(&server.app, PARTNER, Some(" Marie.Dupont@CC-Girou.fr ")).await.expect("attestation");
    assert_eq!(a.claims.destructions.len(), 1);
    assert_eq!(a.claims.destructions[0].category, "account_data");
    assert_eq!(a.claims.destructions[0].account_id.as_deref(), Some(closed.as_str()));
    assert_eq!(a.claims.email.as_deref(), Some(CLOSED));
    // A person whose data was not destroyed gets no attestation.
    assert!(attestation::build(&server.app, PARTNER, Some(OPEN)).await.is_err());

    // The PDF, in French with its accents: non-ASCII lines are written as
    // hex strings of their Windows-1252 (WinAnsiEncoding) bytes.
    assert!(a.pdf.starts_with(b"%PDF-"));
    let text = String::from_utf8_lossy(&a.pdf).to_uppercase();
    let shown = |s: &str| text.contains(&hex::encode_upper(coop_idp::retention::pdf::win_ansi(s)));
    assert!(shown("Attestation de destruction de données à caractère"));
    assert!(shown(CLOSED));
    assert!(shown("Données détruites"));

    // The JWS verifies with the published key and states the PDF's hash.
    let payload = verify_with_published_jwks(&server, &a.jws).await.expect("signature verifies with the JWKS");
    assert_eq!(payload["partner_id"], PARTNER);
    assert_eq!(payload["pdf_sha256"], coop_idp::crypto::b64url(&coop_idp::crypto::sha256(&a.pdf)));
    assert!(attestation::verify(&server.app, &a.pdf, &a.jws).is_ok());

    // An altered PDF no longer matches; an altered payload no longer verifies.
    let mut pdf = a.pdf.clone();
    let at = pdf.len() / 2;
    pdf[at] ^= 1;
    assert!(attestation::verify(&server.app, &pdf, &a.jws).is_err());
    let parts: Vec<&str> = a.jws.split('.').collect();
    let mut altered = payload.clone();
    altered["destructions"][0]["destroyed_at"] = serde_json::json!("2020-01-01T00:00:00.000Z");
    let forged = format!("{}.{}.{}", parts[0], coop_idp::crypto::b64url(altered.to_string().as_bytes()), parts[2]);
    assert!(verify_with_published_jwks(&server, &forged).await.is_none());
    assert!(attestation::verify(&server.app, &a.pdf, &forged).is_err());

    // The command line writes both files; the partner-wide one too.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out_path = out_dir.path().display().to_string();
    let out = cli(&server, &["attestation", "--partner", PARTNER, "--email", CLOSED, "--out", &out_path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let pdf = std::fs::read(json["pdf"].as_str().expect("pdf path")).expect("pdf");
    let jws = std::fs::read_to_string(json["jws"].as_str().expect("jws path")).expect("jws");
    assert!(!json["pdf"].as_str().unwrap_or_default().contains("marie"), "no address in file names");
    let claims = attestation::verify(&server.app, &pdf, &jws).expect("the written files verify");
    assert_eq!(claims.destructions.len(), 1);
    let out = cli(&server, &["attestation", "--partner", PARTNER, "--out", &out_path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&server, &["attestation", "--partner", PARTNER, "--email", OPEN, "--out", &out_path]);
    assert!(!out.status.success(), "nothing destroyed for that person");
}

async fn a_job_lease_is_taken_once_across_instances(db: Db) {
    let server = TestServer::start(db).await;
    let now = server.clock.now_ms();
    // Eight instances try at once: one wins.
    let attempts = (0..8).map(|i| {
        let store = server.app.store.clone();
        tokio::spawn(async move {
            store::retention::try_acquire_lease(&store, "test-job", &format!("instance-{i}"), now, now + 60_000).await
        })
    });
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await.expect("task").expect("lease") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    // Until it expires nobody else, not even the winner, takes it again; then anyone may.
    for holder in ["instance-0", "instance-9"] {
        assert!(
            !store::retention::try_acquire_lease(&server.app.store, "test-job", holder, now + 59_999, now + 120_000)
                .await
                .expect("lease")
        );
    }
    assert!(
        store::retention::try_acquire_lease(&server.app.store, "test-job", "instance-9", now + 60_000, now + 120_000)
            .await
            .expect("lease")
    );
}
