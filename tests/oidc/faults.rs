//! Faults survived (R24, R25; issue 7): PostgreSQL and Redis cut during
//! traffic, a mail server refusing then accepting, instances and imports
//! killed with SIGKILL, and SIGTERM letting an in-flight request finish.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coop_idp::provisioning::{NewPartner, add_partner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::*;
use crate::common::*;

const EMAIL: &str = "marie.dupont@cc-girou.fr";

/// A full flow on one instance: authorize, sign in, token.
async fn flow_works(base: &str, secret: &str) -> bool {
    let pkce = Pkce::random();
    let code = code_at(&browser(), base, base, "platform", EMAIL, &pkce).await;
    exchange_at(base, "platform", secret, &code, &pkce).await.0 == 200
}

async fn status_of(r: reqwest::RequestBuilder) -> u16 {
    r.timeout(Duration::from_secs(30)).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_answers_503_then_recovers_by_itself() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    let proxy = Proxy::start(target_of(&backends.postgres).await).await;
    let via_proxy = through(&cluster.get("database_url"), &proxy);
    cluster.spawn(&[("database_url", &via_proxy)]).await;
    cluster.add_account(EMAIL).await;
    let secret = cluster.add_client("platform").await;
    let base = cluster.instance(0).base.clone();
    assert!(flow_works(&base, &secret).await);

    // Traffic all along: database-backed requests, every 50 ms.
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let traffic = {
        let (base, secret, statuses) = (base.clone(), secret.clone(), statuses.clone());
        tokio::spawn(async move {
            while !*stopped.borrow() {
                let s = status_of(
                    http_client()
                        .post(format!("{base}/token"))
                        .basic_auth("platform", Some(&secret))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", "not-a-refresh-token")]),
                )
                .await;
                statuses.lock().expect("statuses").push(s);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.cut();
    let ready = || async { status_of(http_client().get(format!("{base}/readyz"))).await };
    eventually(Duration::from_secs(20), "/readyz says not ready", || async { (ready().await == 503).then_some(()) })
        .await;
    // Fails fast, with 503, on the protocol endpoints and on the pages.
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the client cache
    let started = Instant::now();
    let (status, body) =
        token_at(&base, "platform", &secret, &[("grant_type", "refresh_token"), ("refresh_token", "x")]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(started.elapsed() < Duration::from_secs(15), "fails fast: {:?}", started.elapsed());
    assert_eq!(attempt_at(&base, EMAIL, PASSWORD).await, 503, "the sign-in page says so");
    assert_eq!(status_of(http_client().get(format!("{base}/healthz"))).await, 200, "the process itself lives");

    proxy.restore().await;
    eventually(Duration::from_secs(30), "/readyz ready again", || async { (ready().await == 200).then_some(()) }).await;
    // Back by itself, without a restart (a request or two may still meet a
    // connection broken by the cut).
    eventually(Duration::from_secs(30), "a full flow again", || async {
        flow_works_quietly(&base, &secret, EMAIL).await
    })
    .await;
    let _ = stop.send(true);
    traffic.await.expect("traffic");
    let seen = statuses.lock().expect("statuses").clone();
    assert!(seen.contains(&503), "traffic met the outage: {seen:?}");
    assert!(seen.iter().any(|s| (400..500).contains(s)), "and answers before and after it: {seen:?}");
    assert!(seen.iter().all(|s| *s == 503 || (400..500).contains(s)), "never a 500 nor a hang: {seen:?}");
}

/// `flow_works` as `email`, reporting a failure instead of panicking on it.
async fn flow_works_quietly(base: &str, secret: &str, email: &str) -> Option<()> {
    let pkce = Pkce::random();
    let b = browser();
    let r = b.get(authorize_url_at(base, "platform", &pkce, "openid")).send().await.ok()?;
    let signin = location(&r);
    if !signin.starts_with("/signin") {
        return None;
    }
    let html = b.get(format!("{base}{signin}")).send().await.ok()?.text().await.ok()?;
    let (csrf, request) = (hidden(&html, "csrf")?, hidden(&html, "request")?);
    let r = b
        .post(format!("{base}/signin"))
        .form(&[("csrf", csrf.as_str()), ("request", request.as_str()), ("email", email), ("password", PASSWORD)])
        .send()
        .await
        .ok()?;
    let code = query(&location(&r)).get("code")?.clone();
    let r = http_client()
        .post(format!("{base}/token"))
        .basic_auth("platform", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .send()
        .await
        .ok()?;
    (r.status() == 200).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_keeps_brute_force_protection_through_the_database() {
    let Some(backends) = Backends::from_env() else { return };
    let Some(redis) = Backend::Redis.for_test() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    let proxy = Proxy::start(target_of(&redis).await).await;
    let via_proxy = through(&redis, &proxy);
    cluster.spawn(&[("redis_url", &via_proxy)]).await;
    let base = cluster.instance(0).base.clone();
    let (attacked, other, later) = ("cible@cc-girou.fr", "voisine@cc-girou.fr", "tardive@cc-girou.fr");
    for e in [attacked, other, later] {
        cluster.add_account(e).await;
    }
    // Redis in use first.
    assert_eq!(attempt_at(&base, later, PASSWORD).await, 200);

    proxy.cut();
    for n in 0..5 {
        assert_eq!(attempt_at(&base, attacked, "wrong-Password-1").await, 401, "failure {n}: refused, no crash");
    }
    assert_eq!(attempt_at(&base, attacked, PASSWORD).await, 429, "protection stays without Redis");
    assert_eq!(attempt_at(&base, other, PASSWORD).await, 200, "other accounts still sign in");
    assert_eq!(status_of(http_client().get(format!("{base}/readyz"))).await, 200, "Redis is not a readiness condition");

    // Redis back: counters shared through it again.
    proxy.restore().await;
    let client =
        redis::Client::open(redis.as_str()).expect("redis").get_multiplexed_async_connection().await.expect("redis");
    let pattern = format!("{}*", cluster.get("redis_key_prefix"));
    let keys = || {
        let mut c = client.clone();
        let pattern = pattern.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut c).await.expect("KEYS");
            keys
        }
    };
    let before = keys().await.len();
    eventually(Duration::from_secs(30), "a failure counted in Redis again", || async {
        attempt_at(&base, later, "wrong-Password-1").await;
        (keys().await.len() > before).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------
// A mail server that refuses, then accepts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_in_the_outbox_while_the_server_refuses_then_leaves_once() {
    let Some(backends) = Backends::from_env() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
    let smtp = format!("smtp://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let (inbox, sessions) = smtp_receiver(listener, Smtp::Reluctant);
    let mut cluster = Cluster::new(&backends, &[("smtp_url", &smtp)]).await;
    cluster.spawn_many(2).await;
    cluster.add_account(EMAIL).await;
    assert_eq!(forgot_at(&cluster.instance(0).base, EMAIL, None).await, 200);

    let app = cluster.app.clone();
    let attempts = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(attempts), 0) FROM mail_outbox WHERE recipient = $1")
            .bind(EMAIL)
            .fetch_one(app.store.pool())
            .await
            .expect("attempts");
        n
    };
    eventually(Duration::from_secs(30), "two refused attempts", || async { (attempts().await >= 2).then_some(()) })
        .await;
    assert!(sessions.load(Ordering::SeqCst) >= 2);
    let messages = eventually(Duration::from_secs(40), "the message accepted by a retry", || async {
        let got = inbox.lock().expect("inbox").clone();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert!(messages[0].contains("password/reset"), "the reset message");
    eventually(Duration::from_secs(10), "marked sent", || async {
        (app.store.mail_counts().await.expect("counts") == (0, 0)).then_some(())
    })
    .await;
    // Another pass of both senders: still once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(inbox.lock().expect("inbox").len(), 1, "sent once, by one instance");
}

// ---------------------------------------------------------------------------
// SIGKILL and SIGTERM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_killed_during_sign_ins_leaves_nothing_half_written() {
    let Some(backends) = Backends::from_env() else { return };
    // A mail server nobody answers: every reset message stays queued.
    let closed = format!("smtp://127.0.0.1:{}", free_port());
    let mut cluster = Cluster::new(&backends, &[("smtp_url", &closed)]).await;
    cluster.spawn_many(2).await;
    let secret = cluster.add_client("platform").await;
    cluster.add_account(EMAIL).await;
    let agents: Vec<String> = (0..12).map(|n| format!("agent{n}@cc-girou.fr")).collect();
    for a in &agents {
        cluster.add_account(a).await;
    }
    let base = cluster.instance(0).base.clone();

    // Reset requests, sign-ins and token requests on A, while A is killed.
    let mut tasks = Vec::new();
    for a in agents.clone() {
        let (base, secret) = (base.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let b = browser();
            if let Ok(page) = b.get(format!("{base}/password/forgot")).send().await
                && let Some(csrf) = page.text().await.ok().and_then(|h| hidden(&h, "csrf"))
            {
                let form = [("csrf", csrf.as_str()), ("email", a.as_str())];
                let _ = b.post(format!("{base}/password/forgot")).form(&form).send().await;
            }
            // Each agent signs in as itself: twelve sign-ins of one account
            // at once would meet its throttle reservation (5 evaluated at a
            // time), and the kill would leave theirs counted, delaying the
            // checks of EMAIL below.
            let _ = flow_works_quietly(&base, &secret, &a).await;
        }));
    }
    let app = cluster.app.clone();
    let queued = || async {
        let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM mail_outbox WHERE sent_at IS NULL ORDER BY id")
            .fetch_all(app.store.pool())
            .await
            .expect("outbox");
        ids
    };
    let before = eventually(Duration::from_secs(60), "messages queued", || async {
        let ids = queued().await;
        (ids.len() >= 3).then_some(ids)
    })
    .await;
    cluster.instances[0].signal(libc::SIGKILL);
    cluster.instances[0].wait_exit(Duration::from_secs(10)).await;
    for t in tasks {
        let _ = t.await;
    }

    // Nothing lost from the outbox, nothing half-written in it. (A reset
    // request is answered before its message is queued, so that timing does
    // not tell whether the account exists: one answered in the last
    // milliseconds may not have queued its message; asking again does.)
    let after = queued().await;
    for id in &before {
        assert!(after.contains(id), "message {} still queued after the kill", id.0);
    }
    let rows: Vec<(String, String, String)> = sqlx::query_as("SELECT recipient, subject, body_text FROM mail_outbox")
        .fetch_all(app.store.pool())
        .await
        .expect("rows");
    for (recipient, subject, body) in &rows {
        assert!(!subject.is_empty() && body.contains("/password/reset?token="), "{recipient}: a whole message");
    }
    // The connection log's chain is whole.
    let (ok, out, err) = cluster.cli(&["logs", "verify"]).await;
    assert!(ok, "logs verify after the kill:\n{out}\n{err}");
    // The other instance serves on, and a restarted one too.
    let b = cluster.instance(1).base.clone();
    assert!(flow_works(&b, &secret).await, "instance B unaffected");
    let again = cluster.spawn(&[]).await;
    assert!(flow_works(&cluster.instance(again).base, &secret).await, "a restarted instance serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annex1_import_killed_applies_all_or_nothing() {
    let Some(backends) = Backends::from_env() else { return };
    let cluster = Cluster::new(&backends, &[]).await;
    let rows = 2000;
    // Two partners with the same annex size: one import runs to its end to
    // time it, the other is killed halfway through its writes.
    let mut files = Vec::new();
    for (partner, domain) in [("cc-girou", "cc-girou.fr"), ("cc-autre", "cc-autre.fr")] {
        add_partner(
            &cluster.app,
            NewPartner {
                id: partner,
                name: partner,
                convention_signed: Some("2026-01-01"),
                email_domains: &[domain.to_string()],
            },
        )
        .await
        .expect("partner");
        let mut csv = String::from(
            "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation\r\n",
        );
        for n in 0..rows {
            csv.push_str(&format!("ouvert;Agent{n};Camille;agent{n}@{domain};Agent d'accueil;\r\n"));
        }
        let file = cluster.path(&format!("annexe1-{partner}.csv"));
        std::fs::write(&file, csv).expect("write CSV");
        files.push(file.display().to_string());
    }
    let counts = |partner: &'static str, domain: &'static str| {
        let app = cluster.app.clone();
        async move {
            let (accounts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE partner_id = $1")
                .bind(partner)
                .fetch_one(app.store.pool())
                .await
                .expect("accounts");
            let (mails,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mail_outbox WHERE recipient LIKE $1")
                .bind(format!("%@{domain}"))
                .fetch_one(app.store.pool())
                .await
                .expect("mails");
            (accounts, mails)
        }
    };

    let started = Instant::now();
    let (ok, _, err) = cluster.cli(&["annex1", "import", "--partner", "cc-autre", &files[1]]).await;
    assert!(ok, "dry run: {err}");
    let planning = started.elapsed();
    let started = Instant::now();
    let (ok, out, err) = cluster.cli(&["annex1", "import", "--partner", "cc-girou", &files[0], "--apply"]).await;
    assert!(ok, "import: {out}\n{err}");
    let whole = started.elapsed();
    assert_eq!(counts("cc-girou", "cc-girou.fr").await, (rows, rows));

    let mut env = cluster.env_with(&[]);
    env.push(("data_dir".into(), cluster.path("cli-kill").display().to_string()));
    let log = cluster.path("import-killed.log");
    let mut child = cluster
        .command(&env, &["annex1", "import", "--partner", "cc-autre", &files[1], "--apply"], &log)
        .spawn()
        .expect("start the import");
    let halfway = planning + whole.saturating_sub(planning) / 2;
    tokio::time::sleep(halfway).await;
    let pid = child.id().expect("pid") as i32;
    // SAFETY: kill(2) on the pid of the child started just above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let status = child.wait().await.expect("wait");
    let (accounts, mails) = counts("cc-autre", "cc-autre.fr").await;
    eprintln!("import killed after {halfway:?} of {whole:?} ({status}): {accounts} accounts, {mails} messages");
    assert!(accounts == 0 || accounts == rows, "all or nothing, not {accounts} of {rows}");
    assert!(mails == 0 || mails == rows, "activation messages with their accounts, not {mails}");
    assert_eq!(accounts == 0, mails == 0, "accounts and messages together");
    let (ok, out, err) = cluster.cli(&["logs", "verify"]).await;
    assert!(ok, "logs verify after the kill:\n{out}\n{err}");

    // Run again to its end: everything there, once.
    let (ok, out, err) =
        cluster.cli(&["annex1", "import", "--partner", "cc-autre", &files[1], "--apply", "--json"]).await;
    assert!(ok, "import: {out}\n{err}");
    assert_eq!(counts("cc-autre", "cc-autre.fr").await, (rows, rows));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish() {
    let Some(backends) = Backends::from_env() else { return };
    let mut cluster = Cluster::new(&backends, &[]).await;
    cluster.spawn(&[]).await;
    let secret = cluster.add_client("platform").await;
    let base = cluster.instance(0).base.clone();
    let addr = base.trim_start_matches("http://").to_string();

    // A token request whose body is still arriving when SIGTERM comes.
    let body = "grant_type=refresh_token&refresh_token=not-a-refresh-token";
    let (head, tail) = body.split_at(20);
    let mut socket = TcpStream::connect(&addr).await.expect("connect");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("platform:{secret}"));
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.expect("send head");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.instances[0].signal(libc::SIGTERM);
    // New connections are refused once shutdown began.
    eventually(Duration::from_secs(10), "the listener closed", || async { TcpStream::connect(&addr).await.err() })
        .await;
    socket.write_all(tail.as_bytes()).await.expect("send the rest");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_string(&mut response))
        .await
        .expect("a response")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 400"), "the request finished: {response}");
    assert!(response.contains("invalid_grant"), "{response}");
    let status = cluster.instances[0].wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "clean exit: {status}");
}
