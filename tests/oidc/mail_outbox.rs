//! The mail sender takes the outbox in batches (one claim, one commit of
//! the outcomes per batch): a queue several batches long is delivered whole,
//! each message once, even with three senders at work at the same instant
//! (the server's own, and two more as other instances would be).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use coop_idp::mail::{Mail, MailTransport, enqueue, send_due};

use crate::cluster::eventually;
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(senders_deliver_a_long_queue_whole_and_each_message_once);

fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".eml") && !n.starts_with('.'))
        .collect()
}

async fn senders_deliver_a_long_queue_whole_and_each_message_once(db: Db) {
    let server = TestServer::start(db).await;
    // More than two batches of the sender.
    let count = 150;
    let now = server.app.clock.now_ms();
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
