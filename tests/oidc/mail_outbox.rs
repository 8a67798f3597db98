//! The mail sender takes the outbox in batches (one claim, one commit of
//! the outcomes per batch): a queue several batches long is delivered whole,
//! each message once, even with three senders at work at the same instant
//! (the server's own, and two more as other instances would be).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use coop_idp::mail::{Mail, MailTransport, deliver_held_in_batches, deliver_now_in_batches, enqueue, send_due};
use coop_idp::store::mail::{MailRow, OUTBOX};

use crate::cluster::eventually;
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    senders_deliver_a_long_queue_whole_and_each_message_once,
    the_commands_drain_overlaps_its_batches_and_delivers_each_message_once,
    held_messages_are_the_holders_until_their_hold_ends,
    a_held_batch_whose_hold_runs_short_is_claimed_again_first,
);

fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".eml") && !n.starts_with('.'))
        .collect()
}

fn mail(n: usize) -> Mail {
    Mail {
        recipient: format!("agent{n}@cc-girou.fr"),
        subject: format!("Message {n}"),
        text: format!("Bonjour {n}"),
        html: format!("<p>Bonjour {n}</p>"),
    }
}

/// `count` messages due `ahead_ms` from now.
async fn queue_messages(server: &TestServer, count: usize, ahead_ms: i64) {
    let now = server.app.clock.now_ms() + ahead_ms;
    let mut tx = server.app.store.begin_write().await.expect("tx");
    for n in 0..count {
        enqueue(&mut tx, &mail(n), now).await.expect("enqueue");
    }
    tx.commit().await.expect("commit");
}

/// `count` messages queued in a transaction that holds them for `hold_ms`;
/// the held rows, once committed.
async fn hold_messages(server: &TestServer, count: usize, hold_ms: i64) -> Vec<MailRow> {
    let now = server.app.clock.now_ms();
    let mut tx = server.app.store.begin_write().await.expect("tx");
    tx.hold_mail_until(now + hold_ms);
    for n in 0..count {
        enqueue(&mut tx, &mail(n), now).await.expect("enqueue");
    }
    let held = tx.take_held_mail();
    tx.commit().await.expect("commit");
    held
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

/// A transaction that holds its mail (the annex-1 command) inserts its
/// messages claimed until the hold ends: no sender takes them before (the
/// command delivers them itself, without claiming them), every sender may
/// after (the command stopped before delivering them).
async fn held_messages_are_the_holders_until_their_hold_ends(db: Db) {
    let server = TestServer::start(db).await;
    let app = &server.app;
    let hold_ms = 600_000;
    let held = hold_messages(&server, 12, hold_ms).await;
    assert_eq!(held.len(), 12, "each message queued is held");
    assert_eq!(app.store.mail_counts().await.expect("counts"), (12, 0), "in the outbox, committed");
    let other = tempfile::tempdir().expect("tempdir");
    let transport = MailTransport::Files(other.path().to_path_buf());
    assert_eq!(send_due(&app.store, &app.clock, &transport, &app.config).await.expect("send"), 0, "held");
    let after = coop_idp::clock::Clock::system();
    after.advance_secs(hold_ms / 1000 + 1);
    let mut taken = 0;
    while let Ok(n @ 1..) = send_due(&app.store, &after, &transport, &app.config).await {
        taken += n;
    }
    assert_eq!(taken, 12, "due once the hold has ended");
    assert_eq!(names_in(other.path()).len(), 12);

    // A transaction that did not commit leaves no message to deliver.
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await.expect("tx");
    tx.hold_mail_until(now + hold_ms);
    enqueue(&mut tx, &mail(99), now).await.expect("enqueue");
    drop(tx);
    let counts = || async { app.store.mail_counts().await.expect("counts") };
    eventually(Duration::from_secs(10), "rolled back", || async { (counts().await == (0, 0)).then_some(()) }).await;

    // Held and delivered by the holder, in several batches: each once,
    // recorded sent; the server's sender took none.
    let held = hold_messages(&server, 40, hold_ms).await;
    let folder = tempfile::tempdir().expect("tempdir");
    let transport = MailTransport::Files(folder.path().to_path_buf());
    let delivered =
        deliver_held_in_batches(&app.store, &app.clock, &transport, &app.config, held, 16).await.expect("deliver");
    assert_eq!(delivered, 40);
    assert_eq!(counts().await, (0, 0), "all recorded sent");
    let written = names_in(folder.path());
    assert_eq!(written.iter().collect::<HashSet<_>>().len(), 40, "each message written once");
    assert!(names_in(&app.config.data_dir.join("outbox")).is_empty(), "the server's sender took none");
}

/// A held batch is delivered while the one before it is written: when the
/// rest of its hold no longer covers that (a slow server), the holder
/// claims it again before delivering it, and leaves a message another
/// sender took meanwhile; a batch whose hold still covers it goes as held.
async fn a_held_batch_whose_hold_runs_short_is_claimed_again_first(db: Db) {
    let server = TestServer::start(db).await;
    let app = &server.app;
    // Shorter than a lease of the drain (2 minutes to the folder).
    let held = hold_messages(&server, 10, 90_000).await;
    // Another sender takes one of them (its hold ended on its clock).
    let taken = &held[3];
    let until = taken.next_attempt_at + 600_000;
    assert!(OUTBOX.claim(&app.store, &taken.id, taken.next_attempt_at, until).await.expect("claim"));
    let folder = tempfile::tempdir().expect("tempdir");
    let transport = MailTransport::Files(folder.path().to_path_buf());
    let delivered = deliver_held_in_batches(&app.store, &app.clock, &transport, &app.config, held.clone(), 4)
        .await
        .expect("deliver");
    assert_eq!(delivered, 9, "all but the one taken by the other sender");
    let written = names_in(folder.path());
    assert!(!written.iter().any(|n| n.contains(&taken.id)), "{written:?}");
    assert_eq!(app.store.mail_counts().await.expect("counts"), (1, 0), "the other sender's, still its own");

    // Held long enough, the same situation: the batch goes as held, not
    // claimed again, so the message the other sender "took" (which it
    // could not have, during the hold) is written all the same.
    let folder = tempfile::tempdir().expect("tempdir");
    let transport = MailTransport::Files(folder.path().to_path_buf());
    let held = hold_messages(&server, 5, 10 * 60_000).await;
    let taken = &held[1];
    assert!(
        OUTBOX.claim(&app.store, &taken.id, taken.next_attempt_at, taken.next_attempt_at + 1).await.expect("claim")
    );
    let delivered =
        deliver_held_in_batches(&app.store, &app.clock, &transport, &app.config, held, 2).await.expect("deliver");
    assert_eq!(delivered, 5);
    assert_eq!(names_in(folder.path()).len(), 5);
}
