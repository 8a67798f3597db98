//! The mail the server sends: its file outbox (`data/outbox/*.eml`), the
//! links in it, and a small SMTP receiver for the tests of real delivery.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::server::TestServer;

/// Every `.eml` of the file outbox, oldest first (names start with the
/// creation time in milliseconds).
pub fn outbox(server: &TestServer) -> Vec<String> {
    let dir = server.app.config.data_dir.join("outbox");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "eml")
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read_to_string(p).expect("read .eml")).collect()
}

pub fn is_to(mail: &str, recipient: &str) -> bool {
    mail.lines().any(|l| l.strip_prefix("To: ").is_some_and(|to| to.contains(recipient)))
}

/// Waits for at least `count` outbox messages to `recipient` containing
/// `marker`; returns all of them, oldest first.
pub async fn wait_for_mails(server: &TestServer, recipient: &str, marker: &str, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let found: Vec<String> =
            outbox(server).into_iter().filter(|m| is_to(m, recipient) && m.contains(marker)).collect();
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {count} message(s) to {recipient} containing {marker:?} in the outbox");
}

/// The newest activation (`/activate`) or reset (`/password/reset`) link
/// mailed to `recipient`, waiting for the `count`th one.
pub async fn mailed_link(server: &TestServer, recipient: &str, path: &str, count: usize) -> String {
    let prefix = format!("{}?token=", server.url(path));
    let mails = wait_for_mails(server, recipient, &prefix, count).await;
    link_in(mails.last().expect("a message"), &prefix)
}

pub fn link_in(mail: &str, prefix: &str) -> String {
    let start = mail.find(prefix).expect("the link, in plain text");
    let rest = &mail[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The messages an SMTP receiver accepted, in order.
pub type Inbox = Arc<Mutex<Vec<String>>>;

/// How an SMTP receiver treats the sessions it is offered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Smtp {
    Willing,
    /// Session 0 is refused at the greeting (421), session 1 at `MAIL`
    /// (451); later ones are accepted.
    Reluctant,
    /// Each session closes after its first message, without a word.
    OneMessageEach,
}

/// A minimal SMTP receiver on `listener`: enough of RFC 5321 for lettre in
/// plain mode. Returns what it accepted and how many sessions it was offered.
pub fn smtp_receiver(listener: TcpListener, mood: Smtp) -> (Inbox, Arc<AtomicUsize>) {
    let inbox: Inbox = Arc::default();
    let sessions = Arc::new(AtomicUsize::new(0));
    let (messages, count) = (inbox.clone(), sessions.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let refuse = if mood == Smtp::Reluctant { n } else { usize::MAX };
            let messages = messages.clone();
            let one = mood == Smtp::OneMessageEach;
            tokio::spawn(async move {
                if let Err(e) = smtp_session(socket, messages, refuse, one).await {
                    eprintln!("SMTP receiver: {e}");
                }
            });
        }
    });
    (inbox, sessions)
}

/// One SMTP conversation; `refuse` 0 refuses it at the greeting, 1 at `MAIL`;
/// `one`: it ends after the first message.
async fn smtp_session(socket: TcpStream, inbox: Inbox, refuse: usize, one: bool) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    if refuse == 0 {
        write.write_all(b"421 4.3.2 busy, try again later\r\n").await?;
        return Ok(());
    }
    let mut reader = BufReader::new(read);
    write.write_all(b"220 receiver ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => write.write_all(b"250-receiver\r\n250 AUTH PLAIN LOGIN\r\n").await?,
            // The credentials are kept with the messages, for the test to read.
            "AUTH" => {
                inbox.lock().expect("inbox").push(line.trim_end().to_string());
                write.write_all(b"235 2.7.0 accepted\r\n").await?
            }
            "MAIL" if refuse == 1 => write.write_all(b"451 4.3.0 temporary failure\r\n").await?,
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(if line.starts_with("..") { &line[1..] } else { &line });
                }
                inbox.lock().expect("inbox").push(data);
                write.write_all(b"250 queued\r\n").await?;
                if one {
                    return Ok(());
                }
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"250 ok\r\n").await?,
        }
    }
}
