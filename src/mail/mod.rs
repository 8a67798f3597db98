//! Email (R25): messages are written to the `mail_outbox` table in the same
//! transaction as the change that causes them, then delivered by a
//! background worker — over SMTP when `smtp_url` is set, otherwise as `.eml`
//! files under `<data_dir>/outbox/`. Failed deliveries are retried with
//! exponential backoff for 72 hours before the message is marked failed.

mod templates;

pub use crate::mail_transport::{MailTransport, TransportError};
pub use templates::{MailKind, render};

use crate::clock::{Clock, Millis};
use crate::config::Config;
use crate::crypto::random_b64;
use crate::error::AppResult;
use crate::store::mail::OUTBOX;
use crate::store::{self, Store, StoreResult, WriteTx};

const GIVE_UP_AFTER_MS: Millis = 72 * 3600 * 1000;
const MAX_BACKOFF_MS: Millis = 10 * 60 * 1000;

/// A message ready to queue.
pub struct Mail {
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Queues a message inside the caller's transaction.
pub async fn enqueue(tx: &mut WriteTx, mail: &Mail, now: Millis) -> StoreResult<()> {
    store::mail::enqueue(tx, &random_b64(16), &mail.recipient, &mail.subject, &mail.text, &mail.html, now).await
}

/// 2 s, 4 s, 8 s … capped at 10 minutes.
pub fn backoff_ms(attempts: i64) -> Millis {
    (2000i64 << attempts.clamp(0, 20) as u32).min(MAX_BACKOFF_MS)
}

/// Delivers every message that is due through `transport`; returns how
/// many left. Run by the start-up's sender loop, woken by `App::mail_wake`.
pub async fn send_due(store: &Store, clock: &Clock, transport: &MailTransport, config: &Config) -> AppResult<usize> {
    let mut sent = 0;
    for row in store.due_mail(clock.now_ms(), 20).await? {
        // A lease longer than any delivery attempt: if this process dies
        // mid-send, the message is tried again once the lease ends.
        if !OUTBOX.claim(store, &row.id, row.next_attempt_at, clock.now_ms() + 120_000).await? {
            continue;
        }
        let outcome = transport.deliver(config, &row).await;
        let now = clock.now_ms();
        let mut tx = store.begin_write().await?;
        match outcome {
            Ok(()) => {
                OUTBOX.mark_done(&mut tx, &row.id, now).await?;
                sent += 1;
                tracing::info!(mail = %row.id, "email delivered");
            }
            Err(e) => {
                let next = (now - row.created_at < GIVE_UP_AFTER_MS).then(|| now + backoff_ms(row.attempts));
                OUTBOX.mark_failed(&mut tx, &row.id, &e.to_string(), next, now).await?;
                if next.is_some() {
                    tracing::warn!(mail = %row.id, attempts = row.attempts + 1, error = %e, "email delivery failed; will retry");
                } else {
                    tracing::error!(mail = %row.id, error = %e, "email delivery failed for good");
                }
            }
        }
        tx.commit().await?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff_ms(0), 2000);
        assert_eq!(backoff_ms(2), 8000);
        assert_eq!(backoff_ms(50), MAX_BACKOFF_MS);
    }
}
