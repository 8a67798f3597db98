//! Passkeys (issue 17), the server's rules without a browser: a software
//! authenticator (P-256, "none" attestation, user verified) answers the
//! ceremonies the domain functions start. A registered passkey signs an
//! agent in alone (`amr` `pop` `user`), once per challenge; a removed one no
//! longer does; closing the access removes them and a closed account is
//! refused; a counter that goes backwards is refused and raises an alert;
//! failed assertions count in the throttle; a password reset keeps them.
//! The browser side (the script, the pages, Chromium's authenticator) is in
//! tests/browser/passkeys.rs. The ceremonies anyone may start are capped per
//! account and per source, oldest dropped first, under a burst too. The
//! sign-in page's autofill (a challenge for any passkey, the account named
//! by the answer) keeps every rule of the sign-in after the address.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use coop_idp::accounts::Account;
use coop_idp::audit;
use coop_idp::auth::passkeys::{self, Purpose};
use coop_idp::crypto::{b64url, sha256};
use coop_idp::oidc::signin::{self, PasskeyAnswer, PasskeyFailure, PasskeyOutcome};
use coop_idp::store::events::EventFilter;
use serde_json::{Value, json};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    a_passkey_signs_in_alone_once_per_challenge,
    a_removed_passkey_no_longer_signs_in,
    closing_the_access_removes_its_passkeys,
    a_counter_that_goes_back_is_refused_and_alerts,
    failed_assertions_count_in_the_throttle,
    a_reset_keeps_the_passkeys,
    challenges_are_bounded_per_account_and_per_source,
    the_autofill_signs_in_with_the_passkey_chosen,
    the_autofill_refuses_a_closed_account_and_an_unknown_passkey,
);

const AGENT: &str = "marie.dupont@cc-girou.fr";
const IP: Option<&str> = Some("192.0.2.10");

/// A software authenticator holding one credential.
pub(crate) struct SoftKey {
    pair: EcdsaKeyPair,
    id: Vec<u8>,
    counter: u32,
    origin: String,
}

/// Minimal CBOR: the head of an item of `major` type and length/value `n`.
fn head(major: u8, n: usize) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=255 => vec![m | 24, n as u8],
        _ => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v
        }
    }
}

fn text(s: &str) -> Vec<u8> {
    let mut v = head(3, s.len());
    v.extend_from_slice(s.as_bytes());
    v
}

fn bytes(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len());
    v.extend_from_slice(b);
    v
}

impl SoftKey {
    pub(crate) fn new(server: &TestServer) -> SoftKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("P-256 key");
        let mut id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut id).expect("random");
        SoftKey { pair, id, counter: 0, origin: server.base.clone() }
    }

    fn rp_hash(&self) -> Vec<u8> {
        let host = url::Url::parse(&self.origin).expect("origin").host_str().expect("host").to_string();
        sha256(host.as_bytes())
    }

    fn client_data(&self, kind: &str, options: &Value) -> Vec<u8> {
        let challenge = options["publicKey"]["challenge"].as_str().expect("challenge");
        json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    /// The answer to `navigator.credentials.create`.
    fn create(&mut self, options: &Value) -> String {
        self.counter += 1;
        let point = self.pair.public_key().as_ref().to_vec();
        let (x, y) = (&point[1..33], &point[33..65]);
        // COSE_Key {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
        let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cose.extend(bytes(x));
        cose.push(0x22);
        cose.extend(bytes(y));
        let mut auth = self.rp_hash();
        auth.push(0x45); // user present, user verified, attested credential data
        auth.extend_from_slice(&self.counter.to_be_bytes());
        auth.extend_from_slice(&[0u8; 16]);
        auth.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
        auth.extend_from_slice(&self.id);
        auth.extend(cose);
        let mut att = vec![0xa3];
        att.extend(text("fmt"));
        att.extend(text("none"));
        att.extend(text("attStmt"));
        att.push(0xa0);
        att.extend(text("authData"));
        att.extend(bytes(&auth));
        let client = self.client_data("webauthn.create", options);
        json!({
            "id": b64url(&self.id), "rawId": b64url(&self.id), "type": "public-key",
            "response": {"attestationObject": b64url(&att), "clientDataJSON": b64url(&client)},
            "extensions": {},
        })
        .to_string()
    }

    /// The answer to `navigator.credentials.get`, signed with `signer`
    /// (this key, or another to forge a wrong signature).
    fn get_signed_by(&mut self, options: &Value, signer: &EcdsaKeyPair) -> String {
        self.counter += 1;
        let mut auth = self.rp_hash();
        auth.push(0x05); // user present, user verified
        auth.extend_from_slice(&self.counter.to_be_bytes());
        let client = self.client_data("webauthn.get", options);
        let mut signed = auth.clone();
        signed.extend(sha256(&client));
        let signature = signer.sign(&SystemRandom::new(), &signed).expect("signature");
        json!({
            "id": b64url(&self.id), "rawId": b64url(&self.id), "type": "public-key",
            "response": {
                "authenticatorData": b64url(&auth), "clientDataJSON": b64url(&client),
                "signature": b64url(signature.as_ref()), "userHandle": null,
            },
            "extensions": {},
        })
        .to_string()
    }

    pub(crate) fn get(&mut self, options: &Value) -> String {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, self.pkcs8().as_ref()).expect("key");
        self.get_signed_by(options, &pair)
    }

    fn pkcs8(&self) -> Vec<u8> {
        self.pair.to_pkcs8v1().expect("pkcs8").as_ref().to_vec()
    }
}

fn source() -> audit::Source {
    audit::Source { ip: Some("192.0.2.10".into()), user_agent: Some("test".into()) }
}

pub(crate) async fn account(server: &TestServer, id: &str) -> Account {
    Account::from_row(&server.app.store.account_by_id(id).await.expect("read").expect("account"))
}

/// Registers `key` for the account as its security page does.
pub(crate) async fn register(server: &TestServer, account: &Account, key: &mut SoftKey, name: &str) {
    let app = &server.app;
    let (options, cookie) = passkeys::start_registration(app, account, IP).await.expect("start").expect("options");
    let ceremony = passkeys::ceremony(app, &cookie, Purpose::Register).await.expect("read").expect("ceremony");
    let answer = key.create(&options);
    passkeys::add(app, &ceremony, account, &answer, name, &source()).await.expect("add").expect("registered");
}

/// The browser's `answer` to the challenge behind `cookie`, from `source()`.
async fn answer_challenge(server: &TestServer, cookie: &str, answer: &str) -> PasskeyOutcome {
    let source = source();
    let sent = PasskeyAnswer {
        ceremony_cookie: cookie,
        answer,
        browser: signin::Browser { previous_cookie: None, source: &source },
    };
    signin::with_passkey(&server.app, sent, None).await.expect("sign-in")
}

/// A passkey sign-in with the answer `answer` gives to the challenge.
async fn sign_in_with(
    server: &TestServer,
    email: &str,
    answer: impl FnOnce(&Value) -> String,
) -> Option<PasskeyOutcome> {
    let (options, cookie) = signin::passkey_signin_options(&server.app, email, IP).await.expect("options")?;
    let answer = answer(&options);
    Some(answer_challenge(server, &cookie, &answer).await)
}

async fn events(server: &TestServer, kind: &str) -> Vec<coop_idp::store::events::EventRow> {
    let filter = EventFilter { kind: Some(kind.into()), limit: 100, ..Default::default() };
    server.app.store.query_events(&filter).await.expect("events")
}

async fn a_passkey_signs_in_alone_once_per_challenge(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    // Without a passkey, nothing to ask: the page keeps the password.
    assert!(signin::passkey_signin_options(&server.app, AGENT, IP).await.expect("options").is_none());
    assert!(signin::passkey_signin_options(&server.app, "nobody@cc-girou.fr", IP).await.expect("options").is_none());

    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Ordinateur du bureau").await;
    let rows = server.app.store.passkeys_of_account(&id).await.expect("passkeys");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "Ordinateur du bureau");
    assert!(rows[0].last_used_at.is_none());
    let registered = events(&server, "passkey_registered").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].account_id.as_deref(), Some(id.as_str()));
    // The same authenticator cannot be registered twice.
    let (options, cookie) =
        passkeys::start_registration(&server.app, &agent, IP).await.expect("start").expect("options");
    assert_eq!(options["publicKey"]["excludeCredentials"].as_array().map(Vec::len), Some(1));
    let ceremony = passkeys::ceremony(&server.app, &cookie, Purpose::Register).await.expect("read").expect("ceremony");
    let again = passkeys::add(&server.app, &ceremony, &agent, &key.create(&options), "Bis", &source()).await;
    assert!(again.expect("add").is_err(), "a credential is registered once");

    // Signing in: the passkey alone, and the session says so.
    let mut replay = None;
    let outcome = sign_in_with(&server, AGENT, |o| {
        let a = key.get(o);
        replay = Some((o.clone(), a.clone()));
        a
    })
    .await
    .expect("a passkey to ask for");
    let PasskeyOutcome::SignedIn(done) = outcome else { panic!("the passkey signs in") };
    assert_eq!(done.session.amr, vec!["pop".to_string(), "user".to_string()]);
    assert_eq!(done.session.acr, "urn:coop-idp:acr:passkey");
    let signins = events(&server, "signin").await;
    let details: Value = serde_json::from_str(&signins[0].details).expect("details");
    assert_eq!(details["method"], "passkey", "{details}");
    let rows = server.app.store.passkeys_of_account(&id).await.expect("passkeys");
    assert!(rows[0].last_used_at.is_some(), "the last use is recorded");

    // The same answer again: its challenge was consumed.
    let (options, answer) = replay.expect("the first answer");
    let again = sign_in_with(&server, AGENT, |_| answer.clone()).await.expect("options");
    assert!(matches!(again, PasskeyOutcome::Refused(_)), "an answer to another challenge is refused");
    let _ = options;
    // One challenge, one answer: the same answer sent twice signs in once.
    let (options, cookie) =
        signin::passkey_signin_options(&server.app, AGENT, IP).await.expect("options").expect("some");
    let answer = key.get(&options);
    for expected_signed_in in [true, false] {
        let outcome = answer_challenge(&server, &cookie, &answer).await;
        match (expected_signed_in, outcome) {
            (true, PasskeyOutcome::SignedIn(_)) | (false, PasskeyOutcome::Refused(PasskeyFailure::Expired)) => {}
            (true, _) => panic!("the first use of the answer signs in"),
            (false, _) => panic!("the second use of the answer finds its challenge consumed"),
        }
    }
    // The addition was mailed to the account.
    wait_for_mails(&server, AGENT, "A passkey named", 1).await;
}

async fn a_removed_passkey_no_longer_signs_in(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Clé USB").await;
    let passkey = server.app.store.passkeys_of_account(&id).await.expect("passkeys")[0].id.clone();
    // An answer prepared before the removal…
    let (options, cookie) =
        signin::passkey_signin_options(&server.app, AGENT, IP).await.expect("options").expect("some");
    let answer = key.get(&options);

    // Another account cannot remove it; its holder can.
    let other_id = server.add_account("paul.martin@cc-girou.fr", Some(("cc-girou", "CC du Girou"))).await;
    let other = account(&server, &other_id).await;
    assert!(!passkeys::remove(&server.app, &other, &passkey, &other.email, &source()).await.expect("remove"));
    assert!(passkeys::remove(&server.app, &agent, &passkey, AGENT, &source()).await.expect("remove"));
    assert_eq!(server.app.store.passkey_count(&id).await.expect("count"), 0);
    assert_eq!(events(&server, "passkey_removed").await.len(), 1);

    // …is refused, and no new challenge is offered.
    let outcome = answer_challenge(&server, &cookie, &answer).await;
    assert!(matches!(outcome, PasskeyOutcome::Refused(PasskeyFailure::Refused)));
    assert!(signin::passkey_signin_options(&server.app, AGENT, IP).await.expect("options").is_none());
    wait_for_mails(&server, AGENT, "The passkey named", 1).await;
}

async fn closing_the_access_removes_its_passkeys(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Téléphone").await;
    let (options, cookie) =
        signin::passkey_signin_options(&server.app, AGENT, IP).await.expect("options").expect("some");
    let answer = key.get(&options);

    let mut tx = server.app.store.begin_write().await.expect("tx");
    let now = server.app.clock.now_ms();
    coop_idp::provisioning::close_access_in(&server.app, &mut tx, &id, "2026-12-01", "access_closed", now)
        .await
        .expect("close");
    tx.commit().await.expect("commit");
    assert_eq!(server.app.store.passkey_count(&id).await.expect("count"), 0, "closing removes the passkeys");

    let outcome = answer_challenge(&server, &cookie, &answer).await;
    assert!(!matches!(outcome, PasskeyOutcome::SignedIn(_)), "a closed account is refused");
    assert!(signin::passkey_signin_options(&server.app, AGENT, IP).await.expect("options").is_none());
}

async fn a_counter_that_goes_back_is_refused_and_alerts(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Clé").await;
    for _ in 0..2 {
        let ok = sign_in_with(&server, AGENT, |o| key.get(o)).await.expect("options");
        assert!(matches!(ok, PasskeyOutcome::SignedIn(_)), "a counter moving forward signs in");
    }
    let stored = server.app.store.passkeys_of_account(&id).await.expect("passkeys")[0].counter;
    assert_eq!(stored, i64::from(key.counter));

    // A copy of the key, behind the original.
    key.counter -= 2;
    let cloned = sign_in_with(&server, AGENT, |o| key.get(o)).await.expect("options");
    assert!(matches!(cloned, PasskeyOutcome::Refused(PasskeyFailure::Refused)), "a counter going back is refused");
    let failed = events(&server, "signin_failed").await;
    let details: Value = serde_json::from_str(&failed[0].details).expect("details");
    assert_eq!(details["reason"], "passkey_counter_regressed", "{details}");
    assert_eq!(details["stored_counter"], json!(stored));

    let raised = coop_idp::alerts::scan(&server.app).await.expect("alerts");
    assert!(raised >= 1, "an alert is raised");
    let alerts = events(&server, "alert").await;
    assert!(alerts.iter().any(|a| a.details.contains("passkey_cloned")), "{:?}", alerts);
}

async fn failed_assertions_count_in_the_throttle(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Clé").await;
    let forger = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
    let mut throttled = None;
    for attempt in 1..=20 {
        let outcome = sign_in_with(&server, AGENT, |o| key.get_signed_by(o, &forger)).await.expect("options");
        match outcome {
            PasskeyOutcome::Refused(PasskeyFailure::Throttled { .. }) => {
                throttled = Some(attempt);
                break;
            }
            PasskeyOutcome::Refused(_) => {}
            PasskeyOutcome::SignedIn(_) => panic!("a wrong signature signed in"),
        }
    }
    let attempt = throttled.expect("failed assertions are throttled");
    assert!(attempt > 1, "the first failure is not throttled");
    // While delayed, even the right key waits: the attempt is not evaluated.
    let blocked = sign_in_with(&server, AGENT, |o| key.get(o)).await.expect("options");
    assert!(matches!(blocked, PasskeyOutcome::Refused(PasskeyFailure::Throttled { .. })));
    // The failures are recorded like a password's, with the method.
    let failed = events(&server, "signin_failed").await;
    assert!(failed.iter().all(|e| e.details.contains("\"method\":\"passkey\"")), "{failed:?}");
}

async fn a_reset_keeps_the_passkeys(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Clé").await;
    let signed = sign_in_with(&server, AGENT, |o| key.get(o)).await.expect("options");
    let PasskeyOutcome::SignedIn(done) = signed else { panic!("signed in") };

    // The lost-password link ends every session and keeps the passkeys.
    coop_idp::auth::links::request_reset(&server.app, AGENT, None).await.expect("reset requested");
    let link = mailed_link(&server, AGENT, "/password/reset", 1).await;
    let new = "Nouveau-Mot-2-Passe!";
    let b = browser();
    let r =
        submit_form(&b, &link, &server.url("/password/reset"), &[("password", new), ("confirmation", new)], &[]).await;
    assert!(r.status().is_success(), "{}", r.status());
    let session = coop_idp::auth::session::current(&server.app, &done.cookie).await.expect("session");
    assert!(session.is_none(), "the reset ended the passkey's session");
    assert_eq!(server.app.store.passkey_count(&id).await.expect("count"), 1, "the passkeys are kept");
    let again = sign_in_with(&server, AGENT, |o| key.get(o)).await.expect("options");
    assert!(matches!(again, PasskeyOutcome::SignedIn(_)), "the passkey still signs in after a reset");
}

async fn ceremonies_where(server: &TestServer, column: &str, value: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM passkey_ceremonies WHERE {column} = $1");
    let (n,): (i64,) = sqlx::query_as(&sql).bind(value).fetch_one(server.app.store.pool()).await.expect("count");
    n
}

async fn alive(server: &TestServer, cookie: &str, purpose: Purpose) -> bool {
    passkeys::ceremony(&server.app, cookie, purpose).await.expect("read").is_some()
}

/// A sign-in challenge for `AGENT` asked from `ip`; its cookie.
async fn signin_challenge(server: &TestServer, ip: &str) -> String {
    let started = signin::passkey_signin_options(&server.app, AGENT, Some(ip)).await.expect("options");
    started.expect("a passkey to ask for").1
}

/// A registration challenge for `account` asked from `ip`; its cookie.
async fn register_challenge(server: &TestServer, account: &Account, ip: &str) -> String {
    let started = passkeys::start_registration(&server.app, account, Some(ip)).await.expect("options");
    started.expect("room for a passkey").1
}

async fn challenges_are_bounded_per_account_and_per_source(db: Db) {
    use passkeys::{CEREMONIES_PER_ACCOUNT as PER_ACCOUNT, CEREMONIES_PER_SOURCE as PER_SOURCE};
    let tick = || tokio::time::sleep(std::time::Duration::from_millis(3));
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Clé").await;
    let per_account = |server: &TestServer| {
        let id = id.clone();
        let pool = server.app.store.pool().clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM passkey_ceremonies WHERE account_id = $1 AND purpose = 'signin'")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
            n
        }
    };

    // Per account, each request from another source: at the cap all stay…
    let mut cookies = Vec::new();
    for i in 0..PER_ACCOUNT {
        cookies.push(signin_challenge(&server, &format!("198.51.100.{}", i + 1)).await);
        tick().await;
    }
    assert_eq!(per_account(&server).await, PER_ACCOUNT);
    for c in &cookies {
        assert!(alive(&server, c, Purpose::SignIn).await, "at the cap, nothing is dropped");
    }
    // …one more drops the oldest, and only it.
    cookies.push(signin_challenge(&server, "198.51.100.99").await);
    assert_eq!(per_account(&server).await, PER_ACCOUNT, "never more than the cap");
    assert!(!alive(&server, &cookies[0], Purpose::SignIn).await, "the oldest is dropped");
    for c in &cookies[1..] {
        assert!(alive(&server, c, Purpose::SignIn).await);
    }
    // A burst of parallel requests does not outrun the cap.
    tick().await;
    let burst = (0..3 * PER_ACCOUNT).map(|i| {
        let server = &server;
        async move { signin_challenge(server, &format!("203.0.113.{}", i + 1)).await }
    });
    let burst = futures::future::join_all(burst).await;
    assert_eq!(per_account(&server).await, PER_ACCOUNT, "a burst does not outrun the cap");
    let mut kept = 0;
    for c in &burst {
        kept += i64::from(alive(&server, c, Purpose::SignIn).await);
    }
    assert_eq!(kept, PER_ACCOUNT, "the burst's newest are the ones kept");
    // Another purpose of the same account has its own cap.
    register_challenge(&server, &agent, "198.51.100.200").await;
    assert_eq!(per_account(&server).await, PER_ACCOUNT);
    // The newest challenge still signs in.
    tick().await;
    let (options, cookie) =
        signin::passkey_signin_options(&server.app, AGENT, Some("198.51.100.1")).await.expect("options").expect("some");
    let answer = key.get(&options);
    let outcome = answer_challenge(&server, &cookie, &answer).await;
    assert!(matches!(outcome, PasskeyOutcome::SignedIn(_)), "the newest ceremony completes");

    // Per source: one /64, each request from another of its addresses,
    // across accounts (registrations, `PER_ACCOUNT` each).
    let accounts_needed = (PER_SOURCE / PER_ACCOUNT) as usize + 4;
    let mut others = Vec::new();
    for i in 0..accounts_needed {
        let id = server.add_account(&format!("agent{i}@cc-girou.fr"), Some(("cc-girou", "CC du Girou"))).await;
        others.push(account(&server, &id).await);
    }
    let net = "2001:db8:5:6::/64";
    let mut cookies = Vec::new();
    for n in 0..PER_SOURCE as usize {
        let who = &others[n / PER_ACCOUNT as usize];
        cookies.push(register_challenge(&server, who, &format!("2001:db8:5:6::{:x}", n + 1)).await);
        tick().await;
    }
    assert_eq!(ceremonies_where(&server, "source", net).await, PER_SOURCE);
    for c in &cookies {
        assert!(alive(&server, c, Purpose::Register).await, "at the cap, nothing is dropped");
    }
    let next = &others[PER_SOURCE as usize / PER_ACCOUNT as usize];
    cookies.push(register_challenge(&server, next, "2001:db8:5:6::ffff").await);
    assert_eq!(ceremonies_where(&server, "source", net).await, PER_SOURCE, "never more than the cap");
    assert!(!alive(&server, &cookies[0], Purpose::Register).await, "the oldest is dropped");
    assert!(alive(&server, &cookies[PER_SOURCE as usize], Purpose::Register).await, "the newest is kept");
    // A parallel burst from the /64, across the remaining accounts.
    tick().await;
    let burst = (0..3 * PER_ACCOUNT as usize).map(|n| {
        let server = &server;
        let who = &others[accounts_needed - 3 + n % 3];
        async move { register_challenge(server, who, &format!("2001:db8:5:6:1::{:x}", n + 1)).await }
    });
    futures::future::join_all(burst).await;
    assert_eq!(ceremonies_where(&server, "source", net).await, PER_SOURCE, "a burst does not outrun the cap");
    // Other sources are untouched, and the newest from the full /64 signs in.
    // (the agent's sign-in challenges, asked from other sources, less the
    // one that signed in)
    assert_eq!(per_account(&server).await, PER_ACCOUNT - 1, "other sources are untouched");
    tick().await;
    let (options, cookie) = signin::passkey_signin_options(&server.app, AGENT, Some("2001:db8:5:6::abcd"))
        .await
        .expect("options")
        .expect("some");
    assert_eq!(ceremonies_where(&server, "source", net).await, PER_SOURCE);
    let answer = key.get(&options);
    let outcome = answer_challenge(&server, &cookie, &answer).await;
    assert!(matches!(outcome, PasskeyOutcome::SignedIn(_)), "the newest ceremony of a full source completes");
}

/// The user handle the server gives an account's passkeys (what a
/// discoverable credential sends back with its assertion).
fn user_handle(account_id: &str) -> Vec<u8> {
    sha256(format!("coop-idp passkey user {account_id}").as_bytes())[..16].to_vec()
}

/// `answer` as a discoverable credential sends it: with a user handle.
fn with_handle(answer: &str, handle: &[u8]) -> String {
    let mut v: Value = serde_json::from_str(answer).expect("answer");
    v["response"]["userHandle"] = json!(b64url(handle));
    v.to_string()
}

/// An autofill sign-in (no address typed) with the answer `answer` gives.
async fn autofill_with(server: &TestServer, answer: impl FnOnce(&Value) -> String) -> PasskeyOutcome {
    let (options, cookie) = signin::passkey_autofill_options(&server.app, IP).await.expect("options").expect("some");
    assert_eq!(options["mediation"], "conditional", "{options}");
    let allowed = options["publicKey"]["allowCredentials"].as_array().map_or(0, Vec::len);
    assert_eq!(allowed, 0, "any passkey of the site may answer");
    let answer = answer(&options);
    answer_challenge(server, &cookie, &answer).await
}

async fn last_failure(server: &TestServer) -> (Option<String>, Value) {
    let failed = events(server, "signin_failed").await;
    let last = failed.last().expect("a refusal recorded");
    (last.account_id.clone(), serde_json::from_str(&last.details).expect("details"))
}

async fn the_autofill_signs_in_with_the_passkey_chosen(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    // Registration asks for a credential the authenticator keeps.
    let (options, _) = passkeys::start_registration(&server.app, &agent, IP).await.expect("start").expect("options");
    assert_eq!(options["publicKey"]["authenticatorSelection"]["residentKey"], "preferred", "{options}");
    register(&server, &agent, &mut key, "Téléphone").await;

    // The challenge is tied to no account, and counted against its source.
    let (_, cookie) = signin::passkey_autofill_options(&server.app, IP).await.expect("options").expect("some");
    let ceremony = passkeys::ceremony(&server.app, &cookie, Purpose::Autofill).await.expect("read").expect("live");
    assert!(ceremony.account_id.is_none());
    assert!(passkeys::ceremony(&server.app, &cookie, Purpose::SignIn).await.expect("read").is_none());
    assert!(ceremonies_where(&server, "source", "192.0.2.10").await >= 1);

    let handle = user_handle(&id);
    let outcome = autofill_with(&server, |o| with_handle(&key.get(o), &handle)).await;
    let PasskeyOutcome::SignedIn(done) = outcome else { panic!("the passkey chosen signs in") };
    assert_eq!(done.session.account_id, id);
    assert_eq!(done.session.amr, vec!["pop".to_string(), "user".to_string()]);
    let signins = events(&server, "signin").await;
    assert_eq!(signins[0].account_id.as_deref(), Some(id.as_str()));
    let details: Value = serde_json::from_str(&signins[0].details).expect("details");
    assert_eq!(details["method"], "passkey", "{details}");

    // Another account's user handle with this credential: refused.
    let other = server.add_account("paul.martin@cc-girou.fr", Some(("cc-girou", "CC du Girou"))).await;
    let outcome = autofill_with(&server, |o| with_handle(&key.get(o), &user_handle(&other))).await;
    assert!(matches!(outcome, PasskeyOutcome::Refused(PasskeyFailure::Refused)));
    assert_eq!(last_failure(&server).await.1["reason"], "passkey_unknown");
    // No user handle at all (not a discoverable answer): refused.
    let outcome = autofill_with(&server, |o| key.get(o)).await;
    assert!(matches!(outcome, PasskeyOutcome::Refused(PasskeyFailure::Refused)));

    // A counter that went backwards: refused, recorded for the alert.
    key.counter -= 3;
    let outcome = autofill_with(&server, |o| with_handle(&key.get(o), &handle)).await;
    assert!(matches!(outcome, PasskeyOutcome::Refused(PasskeyFailure::Refused)));
    let (account_id, details) = last_failure(&server).await;
    assert_eq!(details["reason"], "passkey_counter_regressed", "{details}");
    assert_eq!(account_id.as_deref(), Some(id.as_str()));
    key.counter += 10;

    // Failed assertions count in the throttle, under the account's address.
    let forger = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
    let mut throttled = false;
    for _ in 0..20 {
        match autofill_with(&server, |o| with_handle(&key.get_signed_by(o, &forger), &handle)).await {
            PasskeyOutcome::Refused(PasskeyFailure::Throttled { .. }) => {
                throttled = true;
                break;
            }
            PasskeyOutcome::Refused(_) => {}
            PasskeyOutcome::SignedIn(_) => panic!("a wrong signature signed in"),
        }
    }
    assert!(throttled, "failed autofill assertions are throttled");
    let blocked = sign_in_with(&server, AGENT, |o| key.get(o)).await.expect("options");
    assert!(matches!(blocked, PasskeyOutcome::Refused(PasskeyFailure::Throttled { .. })), "the same address");
}

async fn the_autofill_refuses_a_closed_account_and_an_unknown_passkey(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(AGENT, Some(("cc-girou", "CC du Girou"))).await;
    let agent = account(&server, &id).await;
    let mut key = SoftKey::new(&server);
    register(&server, &agent, &mut key, "Clé").await;
    let handle = user_handle(&id);

    // Closed (its passkeys still stored): refused and recorded as closed.
    server.close_account(&id).await;
    let outcome = autofill_with(&server, |o| with_handle(&key.get(o), &handle)).await;
    assert!(matches!(outcome, PasskeyOutcome::Refused(PasskeyFailure::Refused)), "a closed account is refused");
    let (account_id, details) = last_failure(&server).await;
    assert_eq!(details["reason"], "closed", "{details}");
    assert_eq!(details["method"], "passkey");
    assert_eq!(account_id.as_deref(), Some(id.as_str()));
    assert!(events(&server, "signin").await.is_empty(), "no sign-in");

    // Its access closed (passkeys removed): the passkey is unknown.
    let mut tx = server.app.store.begin_write().await.expect("tx");
    let now = server.app.clock.now_ms();
    coop_idp::provisioning::close_access_in(&server.app, &mut tx, &id, "2026-12-01", "access_closed", now)
        .await
        .expect("close");
    tx.commit().await.expect("commit");
    let outcome = autofill_with(&server, |o| with_handle(&key.get(o), &handle)).await;
    assert!(matches!(outcome, PasskeyOutcome::Refused(PasskeyFailure::Refused)));
    let (account_id, details) = last_failure(&server).await;
    assert_eq!(details["reason"], "passkey_unknown", "{details}");
    assert_eq!(account_id, None);
    // An answer that cannot be read is refused and recorded too.
    let outcome = autofill_with(&server, |_| "{\"id\": 1}".to_string()).await;
    assert!(matches!(outcome, PasskeyOutcome::Refused(PasskeyFailure::Refused)));
    assert_eq!(last_failure(&server).await.1["reason"], "passkey_invalid");
    assert!(events(&server, "signin").await.is_empty(), "no sign-in");
}
