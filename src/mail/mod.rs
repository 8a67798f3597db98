//! Email (R25): messages are written to the `mail_outbox` table in the same
//! transaction as the change that causes them, then delivered by a
//! background worker — over SMTP when `smtp_url` is set, otherwise as `.eml`
//! files under `<data_dir>/outbox/`. Failed deliveries are retried with
//! exponential backoff for 72 hours before the message is marked failed.

mod templates;

pub use crate::mail_transport::{MailTransport, TransportError};
pub use templates::{MailKind, render};

use crate::clock::{Backoff, Clock, Millis};
use crate::config::Config;
use crate::crypto::random_b64;
use crate::error::AppResult;
use crate::store::mail::OUTBOX;
use crate::store::{self, Store, StoreResult, WriteTx};

/// Retries after 2 s, 4 s, 8 s … capped at 10 minutes, for 72 hours.
pub const BACKOFF: Backoff = Backoff { first_ms: 2000, max_ms: 10 * 60 * 1000, give_up_after_ms: 72 * 3600 * 1000 };

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

/// Messages claimed and delivered together: one claim and one commit of
/// their outcomes per batch, rather than two transactions per message.
const BATCH: i64 = 64;

/// How long a batch is this sender's: longer than delivering it at the
/// slowest (`BATCH / DELIVERIES_AT_ONCE` rounds of the 15 s SMTP timeout).
const LEASE_MS: Millis = (BATCH / crate::mail_transport::DELIVERIES_AT_ONCE as i64 + 4) * 15_000;

/// Delivers a batch of the messages that are due through `transport`;
/// returns how many it delivered (0: nothing was due, or every delivery
/// failed and waits for its retry). Run by the start-up's sender loop,
/// woken by `App::mail_wake`, until it returns 0.
pub async fn send_due(store: &Store, clock: &Clock, transport: &MailTransport, config: &Config) -> AppResult<usize> {
    let now = clock.now_ms();
    let mut tx = store.begin_write().await?;
    let rows = store::mail::claim_due(&mut tx, now, now + LEASE_MS, BATCH).await?;
    tx.commit().await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let outcomes = transport.deliver_all(config, &rows).await;
    let now = clock.now_ms();
    let mut sent = Vec::new();
    let mut tx = store.begin_write().await?;
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Ok(()) => {
                sent.push(row.id.as_str());
                tracing::info!(mail = %row.id, "email delivered");
            }
            Err(e) => {
                let next = BACKOFF.next_attempt(now, row.created_at, row.attempts);
                OUTBOX.mark_failed(&mut tx, &row.id, &e.to_string(), next, now).await?;
                if next.is_some() {
                    tracing::warn!(mail = %row.id, attempts = row.attempts + 1, error = %e, "email delivery failed; will retry");
                } else {
                    tracing::error!(mail = %row.id, error = %e, "email delivery failed for good");
                }
            }
        }
    }
    OUTBOX.mark_all_done(&mut tx, &sent, now).await?;
    tx.commit().await?;
    Ok(sent.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_is_retried_from_2_s_doubling_to_10_min_for_72_h() {
        assert_eq!(BACKOFF.delay_ms(0), 2_000);
        assert_eq!(BACKOFF.delay_ms(3), 16_000);
        assert_eq!(BACKOFF.delay_ms(20), 600_000);
        let hour = 3_600_000;
        assert_eq!(BACKOFF.next_attempt(72 * hour - 1, 0, 0), Some(72 * hour - 1 + 2_000));
        assert_eq!(BACKOFF.next_attempt(72 * hour, 0, 0), None);
    }
}
