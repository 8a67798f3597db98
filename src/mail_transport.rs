//! Mail delivery: SMTP (lettre) or `.eml` files. Kept below `mail` (which
//! renders and queues) so that the running context (`app`) can hold it.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use url::Url;

use crate::config::Config;
use crate::smtp_relay::Relay;
use crate::store::mail::MailRow;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("smtp_url: {0}")]
    Config(String),
    #[error("message: {0}")]
    Message(String),
    #[error("SMTP: {0}")]
    Smtp(String),
    #[error("outbox folder: {0}")]
    File(String),
}

/// SMTP conversations a sender holds at once.
pub const DELIVERIES_AT_ONCE: usize = 8;

pub enum MailTransport {
    /// Implicit TLS (`smtps://`), through lettre's own transport.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Plain and STARTTLS relays, on sockets without Nagle's delay.
    Relay(Relay),
    Files(PathBuf),
}

/// RFC 3834: tells auto-responders not to answer.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

impl MailTransport {
    /// `smtp://host:port` (plain, for local sinks), `smtp://…?tls=starttls`,
    /// `smtps://user:pass@host:465` (implicit TLS); unset: files.
    pub fn from_config(config: &Config) -> Result<Self, TransportError> {
        let Some(raw) = &config.smtp_url else {
            return Ok(MailTransport::Files(config.data_dir.join("outbox")));
        };
        let url = Url::parse(raw).map_err(|e| TransportError::Config(e.to_string()))?;
        let host = url.host_str().ok_or_else(|| TransportError::Config("no host".into()))?.to_string();
        let starttls = url.query_pairs().any(|(k, v)| k == "tls" && v == "starttls");
        let bad = |e: lettre::transport::smtp::Error| TransportError::Config(e.to_string());
        let credentials = (!url.username().is_empty()).then(|| {
            Credentials::new(percent_decode(url.username()), percent_decode(url.password().unwrap_or_default()))
        });
        let timeout = Duration::from_secs(15);
        if url.scheme() == "smtps" {
            let mut builder =
                AsyncSmtpTransport::<Tokio1Executor>::relay(&host).map_err(bad)?.port(url.port().unwrap_or(465));
            if let Some(credentials) = credentials {
                builder = builder.credentials(credentials);
            }
            return Ok(MailTransport::Smtp(builder.timeout(Some(timeout)).build()));
        }
        let port = url.port().unwrap_or(if starttls { 587 } else { 25 });
        Ok(MailTransport::Relay(Relay::new((host, port), starttls, credentials, timeout, DELIVERIES_AT_ONCE)))
    }

    /// Delivers `rows`; the outcomes in the same order. Over SMTP, up to
    /// [`DELIVERIES_AT_ONCE`] conversations at a time. To the folder, the
    /// messages are built and written on a blocking thread (the caller's
    /// thread stays free for the database), then made durable together (one
    /// `syncfs`) before any is reported delivered, rather than one `fsync` a
    /// message.
    pub async fn deliver_all(&self, config: &Config, rows: &[MailRow]) -> Vec<Result<(), TransportError>> {
        match self {
            MailTransport::Smtp(_) | MailTransport::Relay(_) => {
                // Encoding a message (quoted-printable, then the whole text)
                // is most of the CPU of its delivery: done on a blocking
                // thread, a few messages ahead of the conversations, which
                // keep this thread for the servers' answers.
                let (ready, mut prepared) = tokio::sync::mpsc::channel(PREPARED_AHEAD);
                let from = sender(&config.mail_from);
                let count = rows.len();
                let rows = rows.to_vec();
                let encoder = tokio::task::spawn_blocking(move || {
                    for row in &rows {
                        let message = from.as_ref().map_err(Clone::clone).and_then(|from| prepare(from, row));
                        if ready.blocking_send(message).is_err() {
                            return;
                        }
                    }
                });
                let messages = futures::stream::poll_fn(move |cx| prepared.poll_recv(cx));
                let outcomes: Vec<_> = messages
                    .map(|message| async move { self.send_prepared(&message?).await })
                    .buffered(DELIVERIES_AT_ONCE)
                    .collect()
                    .await;
                if let Err(e) = encoder.await {
                    tracing::error!(error = %e, "encoding the emails");
                }
                // Should the encoder have stopped early, what it did not
                // encode failed, not vanished.
                let missing = count.saturating_sub(outcomes.len());
                outcomes
                    .into_iter()
                    .chain((0..missing).map(|_| Err(TransportError::Message("not encoded".into()))))
                    .collect()
            }
            MailTransport::Files(dir) => {
                // Parsed once for the batch, not once a message.
                let from = sender(&config.mail_from);
                // Built and written by two threads, half each.
                let (first, second) = rows.split_at(rows.len().div_ceil(2));
                let half = |rows: &[MailRow]| -> Emls {
                    let (from, rows) = (from.clone(), rows.to_vec());
                    Box::new(rows.into_iter().map(move |row| {
                        let message = build_message(from.as_ref().map_err(Clone::clone)?, &row, true)?;
                        Ok((eml_name(&row), message.formatted()))
                    }))
                };
                write_emls(dir.clone(), vec![half(first), half(second)]).await
            }
        }
    }

    pub async fn deliver(&self, config: &Config, row: &MailRow) -> Result<(), TransportError> {
        let from = sender(&config.mail_from)?;
        match self {
            MailTransport::Files(dir) => write_eml(dir, row, &build_message(&from, row, true)?.formatted()).await,
            MailTransport::Smtp(_) | MailTransport::Relay(_) => self.send_prepared(&prepare(&from, row)?).await,
        }
    }

    async fn send_prepared(&self, message: &Prepared) -> Result<(), TransportError> {
        let Prepared { envelope, bytes } = message;
        match self {
            MailTransport::Smtp(smtp) => {
                smtp.send_raw(envelope, bytes).await.map_err(|e| TransportError::Smtp(e.to_string()))?;
                Ok(())
            }
            MailTransport::Relay(relay) => relay.send(envelope, bytes).await.map_err(TransportError::Smtp),
            MailTransport::Files(_) => Err(TransportError::Message("not an SMTP transport".into())),
        }
    }
}

/// Messages encoded ahead of the conversations that send them.
const PREPARED_AHEAD: usize = 64;

/// A message ready for SMTP: its envelope and its text, 7-bit safe (the
/// server may not announce 8BITMIME).
struct Prepared {
    envelope: Envelope,
    bytes: Vec<u8>,
}

fn prepare(from: &Mailbox, row: &MailRow) -> Result<Prepared, TransportError> {
    let message = build_message(from, row, false)?;
    Ok(Prepared { envelope: message.envelope().clone(), bytes: message.formatted() })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A part of the message: 8bit when `eight_bit` (in the file outbox: it
/// keeps the link readable, and spares quoted-printable encoding, which was
/// 7 % of an annex-1 command's instructions for the HTML parts), given
/// pre-encoded because lettre's own 8bit check allows 76-character lines
/// only and panics beyond, where RFC 2045 allows 998; otherwise lettre's
/// choice (quoted-printable for French text).
fn part(content_type: ContentType, text: &str, eight_bit: bool) -> SinglePart {
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let fits = !crlf.contains('\0') && crlf.split("\r\n").all(|l| l.len() <= 998 && !l.contains('\r'));
    let body = if eight_bit && fits {
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::EightBit)
    } else {
        Body::new(text.to_string())
    };
    SinglePart::builder().header(content_type).body(body)
}

fn sender(mail_from: &str) -> Result<Mailbox, TransportError> {
    mail_from.parse().map_err(|e: lettre::address::AddressError| TransportError::Message(e.to_string()))
}

fn build_message(from: &Mailbox, row: &MailRow, eight_bit: bool) -> Result<Message, TransportError> {
    let bad = |e: String| TransportError::Message(e);
    let to: Mailbox = row.recipient.parse().map_err(|e: lettre::address::AddressError| bad(e.to_string()))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&row.subject)
        .header(AutoSubmitted)
        .multipart(
            MultiPart::alternative()
                .singlepart(part(ContentType::TEXT_PLAIN, &row.body_text, eight_bit))
                .singlepart(part(ContentType::TEXT_HTML, &row.body_html, eight_bit)),
        )
        .map_err(|e| bad(e.to_string()))
}

/// `<created_ms>-<id>.eml`: unique to the message, so that writing it
/// again (a retry after a lost outcome) replaces it rather than adding one.
fn eml_name(row: &MailRow) -> String {
    format!("{}-{}.eml", row.created_at, row.id)
}

async fn write_eml(dir: &std::path::Path, row: &MailRow, bytes: &[u8]) -> Result<(), TransportError> {
    let file = (eml_name(row), bytes.to_vec());
    let mut written = write_emls(dir.to_path_buf(), vec![Box::new(std::iter::once(Ok(file)))]).await;
    written.pop().unwrap_or_else(|| Err(TransportError::File("nothing written".into())))
}

/// The files to write, each built when its turn comes (on the writing thread).
type Emls = Box<dyn ExactSizeIterator<Item = Result<(String, Vec<u8>), TransportError>> + Send>;

/// Writes each file atomically (temporary name, then rename: no reader sees
/// a partial message), readable by the owner only (it may hold a one-time
/// link), then makes them all durable at once; a file is reported written
/// only once it is. The names are relative to the folder's descriptor, so
/// that the kernel does not walk the folder's path twice a file. Each of
/// `parts` is built and written on a thread of its own (building a message
/// costs as much as writing it); the outcomes come in the parts' order.
async fn write_emls(dir: PathBuf, parts: Vec<Emls>) -> Vec<Result<(), TransportError>> {
    let count = parts.iter().map(|p| p.len()).sum();
    let written = tokio::task::spawn_blocking(move || {
        let folder = crate::keys::create_private_dir(&dir).and_then(|()| Folder::open(&dir));
        let folder = match folder {
            Ok(folder) => folder,
            Err(e) => {
                let message = e.to_string();
                return parts.into_iter().flatten().map(|_| Err(TransportError::File(message.clone()))).collect();
            }
        };
        let write_part = |files: Emls| -> Vec<Result<(), TransportError>> {
            let file_error = |e: std::io::Error| TransportError::File(e.to_string());
            files
                .map(|f| f.and_then(|(name, bytes)| folder.write_atomically(&name, &bytes).map_err(file_error)))
                .collect()
        };
        let mut outcomes: Vec<Result<(), TransportError>> = std::thread::scope(|scope| {
            let mut parts = parts.into_iter();
            let first = parts.next();
            let others: Vec<_> = parts.map(|files| (files.len(), scope.spawn(move || write_part(files)))).collect();
            let mut outcomes = first.map(write_part).unwrap_or_default();
            for (len, other) in others {
                let failed = |_| vec![Err(TransportError::File("the writing thread failed".into())); len];
                outcomes.extend(other.join().unwrap_or_else(failed));
            }
            outcomes
        });
        // The data of the files and the renames in the folder, in one call.
        if let Err(e) = folder.sync_filesystem() {
            let message = e.to_string();
            for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *o = Err(TransportError::File(message.clone()));
            }
        }
        outcomes
    })
    .await;
    written.unwrap_or_else(|e| (0..count).map(|_| Err(TransportError::File(e.to_string()))).collect())
}

/// The outbox folder, open.
struct Folder(std::os::fd::OwnedFd);

impl Folder {
    fn open(dir: &std::path::Path) -> std::io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        Ok(Folder(rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?))
    }

    /// `.<name>.tmp` written whole, then renamed `name`.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        use std::io::Write;
        let tmp = format!(".{name}.tmp");
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.0, tmp.as_str(), flags, Mode::RUSR | Mode::WUSR)?;
        std::fs::File::from(fd).write_all(bytes)?;
        Ok(rustix::fs::renameat(&self.0, tmp.as_str(), &self.0, name)?)
    }

    /// `syncfs(2)` on the file system holding the folder.
    fn sync_filesystem(&self) -> std::io::Result<()> {
        Ok(rustix::fs::syncfs(&self.0)?)
    }
}
