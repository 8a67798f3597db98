//! The mail sender takes the outbox in batches (one claim, one commit of
//! the outcomes per batch): a queue several batches long is delivered whole,
//! each message once, even with three senders at work at the same instant
//! (the server's own, and two more as other instances would be).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use coop_idp::mail::{Mail, MailTransport, deliver_now_in_batches, enqueue, send_due};

use crate::cluster::eventually;
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    senders_deliver_a_long_queue_whole_and_each_message_once,
    the_commands_drain_overlaps_its_batches_and_delivers_each_message_once
);

fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".eml") && !n.starts_with('.'))
        .collect()
}

/// `count` messages due `ahead_ms` from now.
async fn queue_messages(server: &TestServer, count: usize, ahead_ms: i64) {
    let now = server.app.clock.now_ms() + ahead_ms;
    let mut tx = server.app.store.begin_write().await.expect("tx");
    for n in 0..count {
        let mail = Mail {
            recipient: format!("agent{n}@cc-girou.fr"),
            subject: format!("Message {n}"),
            text: format!("Bonjour {n}"),
            html: format!("<p>Bonjour {n}</p>"),
        };
        enqueue(&mut tx, &mail, now).await.expect("enqueue");
    }
    tx.commit().await.expect("commit");
}

async fn senders_deliver_a_long_queue_whole_and_each_message_once(db: Db) {
    let server = TestServer::start(db).await;
    // More than two batches of the sender.
    let count = 150;
    queue_messages(&server, count, 0).await;
    server.app.mail_wake.notify_one();

    let others = tempfile::tempdir().expect("tempdir");
    let senders = ["a", "b"].map(|name| {
        let app = server.app.clone();
        let dir = others.path().join(name);
        tokio::spawn(async move {
            let transport = MailTransport::Files(dir);
            let mut delivered = 0;
            while let Ok(n @ 1..) = send_due(&app.store, &app.clock, &transport, &app.config).await {
                delivered += n;
            }
            delivered
        })
    });
    let mut by_others = 0;
    for s in senders {
        by_others += s.await.expect("sender");
    }
    let app = server.app.clone();
    eventually(Duration::from_secs(30), "the outbox emptied", || async {
        (app.store.mail_counts().await.expect("counts") == (0, 0)).then_some(())
    })
    .await;
    let mut written = names_in(&server.app.config.data_dir.join("outbox"));
    let by_server = written.len();
    written.extend(names_in(&others.path().join("a")));
    written.extend(names_in(&others.path().join("b")));
    assert_eq!(
        written.len(),
        count,
        "each message written once ({by_server} by the server, {by_others} by the others)"
    );
    assert_eq!(written.iter().collect::<HashSet<_>>().len(), count, "no message written twice");
    assert_eq!(by_server + by_others, count);
}

/// The relay (plain and STARTTLS `smtp_url`) authenticates with the URL's
/// credentials, and keeps its conversation for the next messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_authenticates_and_keeps_its_conversation() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (inbox, sessions) = smtp_receiver(listener, Smtp::Willing);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        ("COOP_IDP_DATA_DIR".to_string(), dir.path().join("data").display().to_string()),
        ("COOP_IDP_SMTP_URL".to_string(), format!("smtp://agent%40caf.fr:s3cret@127.0.0.1:{port}")),
    ];
    let config = coop_idp::config::Config::from_sources(None, &env).expect("config");
    let transport = MailTransport::from_config(&config).expect("transport");
    assert!(matches!(transport, MailTransport::Relay(_)));
    for n in 0..3 {
        transport.deliver(&config, &numbered_message(n)).await.expect("delivered");
    }
    let received = inbox.lock().expect("inbox").clone();
    // AUTH PLAIN carries "\0user\0password" in base64.
    let plain = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"\0agent@caf.fr\0s3cret");
    assert_eq!(received.iter().filter(|l| l.starts_with("AUTH")).count(), 1, "{received:?}");
    assert!(received.iter().any(|l| l.contains(&plain)), "{received:?}");
    assert_eq!(received.iter().filter(|l| l.contains("Bonjour")).count(), 3);
    assert_eq!(sessions.load(std::sync::atomic::Ordering::SeqCst), 1, "one conversation for the three");
}

/// Message `n` of a few sent straight through a transport.
fn numbered_message(n: usize) -> coop_idp::store::mail::MailRow {
    coop_idp::store::mail::MailRow {
        id: format!("m{n}"),
        recipient: format!("agent{n}@cc-girou.fr"),
        subject: format!("Message {n}"),
        body_text: format!("Bonjour {n}"),
        body_html: format!("<p>Bonjour {n}</p>"),
        created_at: 0,
        next_attempt_at: 0,
        attempts: 0,
    }
}

/// A conversation reused within a second is not tested with a `NOOP`
/// first; when the server has closed it all the same, the message goes on a
/// new conversation rather than failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_closed_by_the_server_is_replaced_without_losing_the_message() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (inbox, sessions) = smtp_receiver(listener, Smtp::OneMessageEach);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        ("COOP_IDP_DATA_DIR".to_string(), dir.path().join("data").display().to_string()),
        ("COOP_IDP_SMTP_URL".to_string(), format!("smtp://127.0.0.1:{port}")),
    ];
    let config = coop_idp::config::Config::from_sources(None, &env).expect("config");
    let transport = MailTransport::from_config(&config).expect("transport");
    for n in 0..3 {
        transport.deliver(&config, &numbered_message(n)).await.expect("delivered on a new conversation");
    }
    let received = inbox.lock().expect("inbox").clone();
    assert_eq!(received.iter().filter(|l| l.contains("Bonjour")).count(), 3, "{received:?}");
    assert_eq!(sessions.load(std::sync::atomic::Ordering::SeqCst), 3, "one conversation a message");
}

/// The command line's drain (`annex1 import --apply`) claims a batch while
/// it writes the one before and records the one before that: over ten
/// batches, every message is written once, whole (no temporary file left),
/// and recorded sent. The messages are due ten minutes ahead, on the
/// drain's clock only, so that the server's own sender leaves them to it.
async fn the_commands_drain_overlaps_its_batches_and_delivers_each_message_once(db: Db) {
    let server = TestServer::start(db).await;
    let count = 150;
    queue_messages(&server, count, 600_000).await;
    let ahead = coop_idp::clock::Clock::system();
    ahead.advance_secs(700);
    let folder = tempfile::tempdir().expect("tempdir");
    let app = &server.app;
    let transport = MailTransport::Files(folder.path().to_path_buf());
    let delivered = deliver_now_in_batches(&app.store, &ahead, &transport, &app.config, 16).await.expect("drain");
    assert_eq!(delivered, count);
    assert_eq!(app.store.mail_counts().await.expect("counts"), (0, 0), "all recorded sent");
    let drained = names_in(folder.path());
    assert_eq!(drained.len(), count, "each message written");
    assert_eq!(drained.iter().collect::<HashSet<_>>().len(), count, "no message written twice");
    let leftovers = std::fs::read_dir(folder.path()).expect("folder").count() - drained.len();
    assert_eq!(leftovers, 0, "no temporary file left behind");
    for name in &drained {
        let text = std::fs::read_to_string(folder.path().join(name)).expect("eml");
        assert!(text.contains("Bonjour") && text.trim_end().ends_with("--"), "a whole message: {name}");
        // It may hold a one-time link: the owner's only.
        let mode = std::fs::metadata(folder.path().join(name)).expect("eml").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "{name}");
    }
    assert!(names_in(&app.config.data_dir.join("outbox")).is_empty(), "the server's sender took none");
}
