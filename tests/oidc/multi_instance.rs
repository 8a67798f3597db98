//! Several stateless instances on one PostgreSQL and one Redis (R24, issue
//! 7): a flow started on one instance completes on another, single-use
//! things stay single-use when two instances receive them in the same
//! instant, a key rotated through the shared folder is published by all,
//! and background jobs (mail, alerts, log checkpoints) run once across
//! instances.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;
use crate::common::*;

const EMAIL: &str = "marie.dupont@cc-girou.fr";
const NEW_PASSWORD: &str = "Tuile-Verte-7-Basalte";
const OTHER_PASSWORD: &str = "Brique-Rouge-4-Granit";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_started_on_one_instance_completes_on_the_others() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    cluster.spawn_many(3).await;
    cluster.add_account(EMAIL).await;
    let secret = cluster.add_client("platform").await;
    let (a, b, c) = (cluster.instance(0), cluster.instance(1), cluster.instance(2));

    // Authorize and sign in on A, redeem the code on B, userinfo on C.
    let browser = browser();
    let pkce = Pkce::random();
    let code = code_at(&browser, &a.base, &a.base, "platform", EMAIL, &pkce).await;
    let (status, tokens) = exchange_at(&b.base, "platform", &secret, &code, &pkce).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(jwt_part(tokens["id_token"].as_str().expect("id_token"), 1)["iss"], ISSUER);
    let access = tokens["access_token"].as_str().expect("access token");
    let r = http_client().get(c.url("/userinfo")).bearer_auth(access).send().await.expect("userinfo");
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.expect("JSON");
    assert_eq!(info["email"], EMAIL);

    // The session made on A is known to B: no second sign-in there.
    let r =
        browser.get(authorize_url_at(&b.base, "platform", &Pkce::random(), "openid")).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with(REDIRECT), "signed in on B already: {}", location(&r));
    // A browser without that session is sent to sign in (the other side).
    let r = fresh_authorize(&c.base, "platform").await;
    assert!(r.starts_with("/signin?request="), "{r}");

    // A refresh token issued by B works on C.
    let refresh = tokens["refresh_token"].as_str().expect("refresh token");
    let (status, body) =
        token_at(&c.base, "platform", &secret, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, 200, "{body}");
}

/// Exactly one of two simultaneous uses succeeds.
fn exactly_one_success(statuses: [u16; 2], what: &str) {
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 1, "{what}: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || (400..500).contains(s)), "{what}: refused, not failed: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_use_holds_across_instances_in_the_same_instant() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    cluster.spawn_many(2).await;
    cluster.add_account(EMAIL).await;
    let secret = cluster.add_client("platform").await;
    let (a, b) = (cluster.instance(0), cluster.instance(1));

    for round in 0..3 {
        // A code redeemed on A and on B at once.
        let pkce = Pkce::random();
        let code = code_at(&browser(), &a.base, &b.base, "platform", EMAIL, &pkce).await;
        let ((sa, ta), (sb, tb)) = tokio::join!(
            exchange_at(&a.base, "platform", &secret, &code, &pkce),
            exchange_at(&b.base, "platform", &secret, &code, &pkce),
        );
        exactly_one_success([sa, sb], &format!("code, round {round}"));
        let tokens = if sa == 200 { ta } else { tb };
        let (status, body) = token_at(
            &b.base,
            "platform",
            &secret,
            &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap_or(""))],
        )
        .await;
        assert_eq!(status, 400, "the replayed code revoked what the first use issued: {body}");

        // A refresh token (from a code used once), likewise.
        let pkce = Pkce::random();
        let code = code_at(&browser(), &b.base, &a.base, "platform", EMAIL, &pkce).await;
        let (status, tokens) = exchange_at(&a.base, "platform", &secret, &code, &pkce).await;
        assert_eq!(status, 200, "{tokens}");
        let refresh = tokens["refresh_token"].as_str().expect("refresh token").to_string();
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
        let ((sa, _), (sb, _)) =
            tokio::join!(token_at(&a.base, "platform", &secret, &form), token_at(&b.base, "platform", &secret, &form));
        exactly_one_success([sa, sb], &format!("refresh token, round {round}"));
    }

    // A reset link used on A and on B at once, with different passwords.
    assert_eq!(forgot_at(&a.base, EMAIL, None).await, 200);
    let prefix = format!("{ISSUER}/password/reset?token=");
    let mail = eventually(Duration::from_secs(20), "the reset email", || async {
        cluster.all_outboxes().into_iter().find(|m| m.contains(&prefix))
    })
    .await;
    let link = link_in(&mail, &prefix);
    let (ba, bb) = (browser(), browser());
    let (link_a, link_b) = (link.replace(ISSUER, &a.base), link.replace(ISSUER, &b.base));
    let (fa, fb) = tokio::join!(Form::of(&ba, &link_a), Form::of(&bb, &link_b));
    let (sa, sb) =
        tokio::join!(reset_submit(&ba, &a.base, &fa, NEW_PASSWORD), reset_submit(&bb, &b.base, &fb, OTHER_PASSWORD));
    exactly_one_success([sa, sb], "reset link");
    let (winner, loser) = if sa == 200 { (NEW_PASSWORD, OTHER_PASSWORD) } else { (OTHER_PASSWORD, NEW_PASSWORD) };
    assert_eq!(attempt_at(&b.base, EMAIL, winner).await, 200, "the password set by the one use");
    assert_eq!(attempt_at(&a.base, EMAIL, loser).await, 401, "the other use changed nothing");
}

/// Rotations of many refresh chains on two instances at once, each instance
/// committing its share in batches (the PostgreSQL group writer), two
/// instances taking turns at the log's lock: every rotation succeeds once,
/// and the connection log is one unbroken chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_on_two_instances_at_once_make_one_chain() {
    let Some(backends) = Backends::from_env() else { return };
    const CHAINS: usize = 16;
    let mut cluster = Cluster::new(&backends, &[]).await;
    cluster.spawn_many(2).await;
    cluster.add_account(EMAIL).await;
    let secret = cluster.add_client("platform").await;
    let (a, b) = (cluster.instance(0), cluster.instance(1));
    let mut refresh = Vec::new();
    for _ in 0..CHAINS {
        let pkce = Pkce::random();
        let code = code_at(&browser(), &a.base, &a.base, "platform", EMAIL, &pkce).await;
        let (status, tokens) = exchange_at(&b.base, "platform", &secret, &code, &pkce).await;
        assert_eq!(status, 200, "{tokens}");
        refresh.push(tokens["refresh_token"].as_str().expect("refresh token").to_string());
    }
    for round in 0..4 {
        let answers = futures::future::join_all(refresh.iter().enumerate().map(|(i, token)| {
            let base = if (i + round) % 2 == 0 { &a.base } else { &b.base };
            let secret = &secret;
            async move {
                token_at(base, "platform", secret, &[("grant_type", "refresh_token"), ("refresh_token", token)]).await
            }
        }))
        .await;
        for (i, (status, body)) in answers.into_iter().enumerate() {
            assert_eq!(status, 200, "round {round}, chain {i}: {body}");
            refresh[i] = body["refresh_token"].as_str().expect("refresh token").to_string();
        }
    }
    let (ok, out, err) = cluster.cli(&["logs", "verify"]).await;
    assert!(ok, "logs verify: {out}{err}");
}

/// Sets `password` through the form of a reset link shown on `base`; the status.
async fn reset_submit(browser: &reqwest::Client, base: &str, form: &Form, password: &str) -> u16 {
    let fields = [("password", password), ("confirmation", password)];
    form.submit(browser, &format!("{base}/password/reset"), &fields, &[]).await.status().as_u16()
}

async fn jwks_kids(base: &str) -> HashSet<String> {
    jwks(base).await["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotated_on_the_shared_folder_is_published_by_every_instance() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    cluster.spawn_many(3).await;
    let before = jwks_kids(&cluster.instance(0).base).await;
    for i in &cluster.instances {
        assert_eq!(jwks_kids(&i.base).await, before, "every instance publishes the same keys");
    }

    let (ok, out, err) = cluster.cli(&["keys", "rotate"]).await;
    assert!(ok, "keys rotate: {err}");
    let printed: Value = serde_json::from_str(out.trim()).expect("JSON");
    let new_kids: HashSet<String> = printed["new_kids"]
        .as_array()
        .expect("new_kids")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    assert!(!new_kids.is_empty() && new_kids.is_disjoint(&before));

    for i in &cluster.instances {
        let kids = eventually(Duration::from_secs(20), &format!("new keys in the JWKS of {}", i.base), || async {
            let kids = jwks_kids(&i.base).await;
            new_kids.is_subset(&kids).then_some(kids)
        })
        .await;
        assert!(before.is_subset(&kids), "the previous keys stay published");
    }

    // New ID tokens are signed with the new key, whichever instance signs.
    cluster.add_account(EMAIL).await;
    let secret = cluster.add_client("platform").await;
    let pkce = Pkce::random();
    let code =
        code_at(&browser(), &cluster.instance(1).base, &cluster.instance(1).base, "platform", EMAIL, &pkce).await;
    let (status, tokens) = exchange_at(&cluster.instance(2).base, "platform", &secret, &code, &pkce).await;
    assert_eq!(status, 200, "{tokens}");
    let kid = jwt_part(tokens["id_token"].as_str().expect("id_token"), 0)["kid"].clone();
    assert!(new_kids.contains(kid.as_str().expect("kid")), "signed with the new key: {kid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_run_once_across_instances() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[("alert_scan_interval_secs", "1")]).await;
    cluster.spawn_many(3).await;

    // Mail queued by another process: all three senders see it at once.
    let count = 140;
    let now = cluster.app.clock.now_ms();
    let mut tx = cluster.app.store.begin_write().await.expect("tx");
    for n in 0..count {
        let mail = coop_idp::mail::Mail {
            recipient: format!("agent{n}@cc-girou.fr"),
            subject: format!("Message {n}"),
            text: format!("Bonjour {n}"),
            html: format!("<p>Bonjour {n}</p>"),
        };
        coop_idp::mail::enqueue(&mut tx, &mail, now).await.expect("enqueue");
    }
    tx.commit().await.expect("commit");
    let app = cluster.app.clone();
    eventually(Duration::from_secs(30), "every queued message sent", || async {
        (app.store.mail_counts().await.expect("counts") == (0, 0)).then_some(())
    })
    .await;
    let sent = cluster.all_outboxes();
    assert_eq!(sent.len(), count, "each message written once, by one instance");
    let recipients: HashSet<usize> =
        (0..count).filter(|n| sent.iter().any(|m| is_to(m, &format!("agent{n}@")))).collect();
    assert_eq!(recipients.len(), count, "every message delivered");

    // Failed sign-ins spread over the instances: the three detectors raise one alert.
    cluster.add_account(EMAIL).await;
    for n in 0..5 {
        let status = attempt_at(&cluster.instance(n % 3).base, EMAIL, "wrong-Password-1").await;
        assert!(status == 401 || status == 429, "{status}");
    }
    let (head,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM events").fetch_one(app.store.pool()).await.expect("head");
    eventually(Duration::from_secs(30), "detectors past the failures", || async {
        (app.store.job_cursor("alerts").await.expect("cursor") >= head).then_some(())
    })
    .await;
    // Another scan period for any instance that would examine them again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (alerts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE kind = 'alert' AND details LIKE $1")
        .bind("%account_locked%")
        .fetch_one(app.store.pool())
        .await
        .expect("alerts");
    assert_eq!(alerts, 1, "one alert, not one per instance");
}

/// Signed checkpoints of the connection log: three instances, each trying
/// every period, sign the head once per period between them, not three
/// times, while records keep coming on every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_checkpoints_are_signed_once_across_instances() {
    let Some(backends) = Backends::from_env() else { return };
    const INTERVAL: u64 = 5;
    let mut cluster = Cluster::new(&backends, &[("log_checkpoint_interval_secs", &INTERVAL.to_string())]).await;
    let started = std::time::Instant::now();
    cluster.spawn_many(3).await;
    cluster.add_account(EMAIL).await;

    // A new head in every period, appended through each instance in turn.
    let appending = std::time::Instant::now();
    let mut n = 0;
    while appending.elapsed() < Duration::from_secs(4 * INTERVAL + 2) {
        assert_eq!(attempt_at(&cluster.instance(n % 3).base, EMAIL, PASSWORD).await, 200);
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed().as_secs();
    let app = cluster.app.clone();
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT seq, jws FROM log_checkpoints ORDER BY seq")
        .fetch_all(app.store.pool())
        .await
        .expect("checkpoints");
    let signed_at: Vec<i64> = rows.iter().map(|(_, jws)| jwt_part(jws, 1)["iat"].as_i64().expect("iat")).collect();
    assert!(rows.len() >= 2, "the job ran in the periods that passed: {signed_at:?}");
    assert!(
        rows.len() as u64 <= elapsed / INTERVAL + 1,
        "at most one checkpoint per period ({elapsed} s): {} checkpoints signed at {signed_at:?}",
        rows.len()
    );
    for pair in signed_at.windows(2) {
        // `iat` is in whole seconds; the lease holds a whole period.
        assert!(pair[1] - pair[0] >= INTERVAL as i64 - 1, "two checkpoints in one period: {signed_at:?}");
    }
    let seqs: HashSet<i64> = rows.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs.len(), rows.len(), "one checkpoint per chain position");

    // The chain and its checkpoints check out.
    let (ok, out, err) = cluster.cli(&["logs", "verify"]).await;
    assert!(ok, "logs verify: {out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_listener_only() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    let port = free_port();
    let metrics_listen = format!("127.0.0.1:{port}");
    cluster.spawn(&[("metrics_listen", &metrics_listen)]).await;
    cluster.add_account(EMAIL).await;
    let secret = cluster.add_client("platform").await;
    let base = cluster.instance(0).base.clone();
    let pkce = Pkce::random();
    let code = code_at(&browser(), &base, &base, "platform", EMAIL, &pkce).await;
    assert_eq!(exchange_at(&base, "platform", &secret, &code, &pkce).await.0, 200);
    for _ in 0..5 {
        assert_eq!(attempt_at(&base, EMAIL, "wrong-Password-1").await, 401);
    }
    assert_eq!(attempt_at(&base, EMAIL, PASSWORD).await, 429, "delayed after five failures");

    // Not on the public listener.
    let r = http_client().get(format!("{base}/metrics")).send().await.expect("public /metrics");
    assert_eq!(r.status(), 404);

    let scrape = || async {
        let r = http_client().get(format!("http://{metrics_listen}/metrics")).send().await.expect("scrape");
        assert_eq!(r.status(), 200);
        r.text().await.expect("text")
    };
    let text = eventually(Duration::from_secs(10), "a mail sender run counted", || async {
        let text = scrape().await;
        text.contains(r#"coop_idp_job_runs_total{job="mail",outcome="ok"}"#).then_some(text)
    })
    .await;
    for expected in [
        r#"coop_idp_http_requests_total{route="/token",method="POST",status="200"} 1"#,
        r#"coop_idp_http_requests_total{route="/signin",method="POST",status="401"} 5"#,
        r#"coop_idp_http_requests_total{route="/signin",method="POST",status="429"} 1"#,
        "coop_idp_throttled_attempts_total 1",
        r#"coop_idp_signins_total{outcome="success"} 1"#,
        r#"coop_idp_signins_total{outcome="failure"} 5"#,
        r#"coop_idp_outbox_depth{outbox="mail"} 0"#,
        r#"coop_idp_outbox_oldest_age_seconds{outbox="backchannel"} 0"#,
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    let histogram = text.lines().any(|l| {
        l.starts_with("coop_idp_http_request_duration_seconds_bucket{")
            && l.contains(r#"route="/authorize""#)
            && l.contains(r#"le="+Inf""#)
            && l.ends_with(" 1")
    });
    assert!(histogram, "latency histogram by route:\n{text}");
    assert!(!text.contains("request="), "routes, never raw URLs:\n{text}");
    assert!(!text.contains("route=\"/metrics\""), "the scrapes are not public traffic");
}
