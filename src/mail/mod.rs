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
use crate::store::mail::{MailRow, OUTBOX};
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
const LEASE_MS: Millis = smtp_lease_ms(BATCH);

/// A lease longer than delivering `batch` messages over SMTP at the slowest.
const fn smtp_lease_ms(batch: i64) -> Millis {
    (batch / crate::mail_transport::DELIVERIES_AT_ONCE as i64 + 4) * 15_000
}

/// Delivers a batch of the messages that are due through `transport`;
/// returns how many it delivered (0: nothing was due, or every delivery
/// failed and waits for its retry). Run by the start-up's sender loop,
/// woken by `App::mail_wake`, until it returns 0.
pub async fn send_due(store: &Store, clock: &Clock, transport: &MailTransport, config: &Config) -> AppResult<usize> {
    let rows = claim(store, clock, BATCH, LEASE_MS).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let backlog = rows.len() == usize::try_from(BATCH).unwrap_or(usize::MAX);
    let outcomes = transport.deliver_all(config, &rows).await;
    let mut delivered = record(store, clock, &rows, outcomes, Verbosity::EachDelivery).await?;
    if backlog {
        // A full batch: more is waiting (an annex applied from the
        // console queues thousands at once). The rest goes in the larger,
        // overlapping batches of `deliver_now`: one `syncfs` per 64
        // messages cost more than writing them.
        let batch = batch_now(transport);
        let batches = Batches::new(Vec::new(), transport, batch);
        delivered += drain(store, clock, transport, config, batches, Verbosity::EachDelivery).await?;
    }
    Ok(delivered)
}

/// Messages [`deliver_now`] claims at once. To the folder, each batch ends
/// with one `syncfs`, which costs milliseconds whatever the batch holds
/// (79 batches of 64 spent 0.5–1 s of a 5,000-message import in it); over
/// SMTP, the conversations run dry at the end of each batch.
const BATCH_NOW_FILES: i64 = 1024;
const BATCH_NOW_SMTP: i64 = 256;

type Outcomes = Vec<Result<(), TransportError>>;

/// Delivers every message due, now: for a command that delivers what it
/// has just queued before it returns (the annex-1 import). Larger batches
/// than [`send_due`], and each batch's delivery overlaps the recording of
/// the batch before it and the claim of the one after (the database works
/// on its own thread, the files are built and written on another). A
/// message is still recorded delivered only once it is (written and
/// synced, or accepted by the server). Returns how many it delivered; what
/// failed waits for its retry (by the server's sender).
pub async fn deliver_now(store: &Store, clock: &Clock, transport: &MailTransport, config: &Config) -> AppResult<usize> {
    deliver_now_in_batches(store, clock, transport, config, batch_now(transport)).await
}

/// [`deliver_now`] with batches of `batch` (tests: several batches of a
/// short queue).
#[doc(hidden)]
pub async fn deliver_now_in_batches(
    store: &Store,
    clock: &Clock,
    transport: &MailTransport,
    config: &Config,
    batch: i64,
) -> AppResult<usize> {
    let batches = Batches::new(Vec::new(), transport, batch);
    drain(store, clock, transport, config, batches, Verbosity::Batches).await
}

fn batch_now(transport: &MailTransport) -> i64 {
    match transport {
        MailTransport::Files(_) => BATCH_NOW_FILES,
        MailTransport::Smtp(_) | MailTransport::Relay(_) => BATCH_NOW_SMTP,
    }
}

/// The lease of a batch of [`deliver_now`]: it is claimed while the one
/// before it is delivered, so it covers two deliveries. Writing files waits
/// on no server: a minute is ample (and a file written twice, after a lease
/// ran out, is the same file, replaced). Over SMTP, as `LEASE_MS` for this
/// batch size.
fn lease_now_ms(transport: &MailTransport, batch: i64) -> Millis {
    match transport {
        MailTransport::Files(_) => 2 * 60_000,
        MailTransport::Smtp(_) | MailTransport::Relay(_) => 2 * smtp_lease_ms(batch),
    }
}

/// How long the messages of a transaction that holds its mail
/// (`WriteTx::hold_mail_until`) stay its own, from their insert: a batch's
/// lease of [`deliver_now`] once the transaction has committed, with a
/// minute for the transaction itself. [`deliver_held`] claims a batch again
/// should the rest of its hold be shorter than a lease.
pub fn hold_ms(transport: &MailTransport) -> Millis {
    lease_now_ms(transport, batch_now(transport)) + 60_000
}

/// Delivers `held`, the messages a transaction queued already claimed
/// (`WriteTx::hold_mail_until`) and has committed, as [`deliver_now`] does
/// but without claiming them first (their insert did); then what else is
/// due. Returns how many it delivered.
pub async fn deliver_held(
    store: &Store,
    clock: &Clock,
    transport: &MailTransport,
    config: &Config,
    held: Vec<MailRow>,
) -> AppResult<usize> {
    deliver_held_in_batches(store, clock, transport, config, held, batch_now(transport)).await
}

/// [`deliver_held`] with batches of `batch` (tests).
#[doc(hidden)]
pub async fn deliver_held_in_batches(
    store: &Store,
    clock: &Clock,
    transport: &MailTransport,
    config: &Config,
    held: Vec<MailRow>,
    batch: i64,
) -> AppResult<usize> {
    let batches = Batches::new(held, transport, batch);
    drain(store, clock, transport, config, batches, Verbosity::Batches).await
}

/// Where the batches of a drain come from: the held messages first, then
/// claims of what is due.
struct Batches {
    held: std::vec::IntoIter<MailRow>,
    batch: i64,
    lease_ms: Millis,
}

impl Batches {
    /// `held` first, then claims of `batch` under [`deliver_now`]'s lease.
    fn new(held: Vec<MailRow>, transport: &MailTransport, batch: i64) -> Self {
        Batches { held: held.into_iter(), batch, lease_ms: lease_now_ms(transport, batch) }
    }

    async fn next(&mut self, store: &Store, clock: &Clock) -> AppResult<Vec<MailRow>> {
        let size = usize::try_from(self.batch).unwrap_or(1).max(1);
        while !self.held.as_slice().is_empty() {
            let rows: Vec<MailRow> = self.held.by_ref().take(size).collect();
            let kept = self.still_held(store, clock, rows).await?;
            if !kept.is_empty() {
                return Ok(kept);
            }
        }
        claim(store, clock, self.batch, self.lease_ms).await
    }

    /// A held batch is delivered after the one being delivered now: its
    /// hold must still cover two deliveries at the slowest, as a claim's
    /// lease does. If not (a slow server), it is claimed again, message by
    /// message; a message someone else took meanwhile is left to them.
    async fn still_held(&self, store: &Store, clock: &Clock, rows: Vec<MailRow>) -> AppResult<Vec<MailRow>> {
        let until = clock.now_ms() + self.lease_ms;
        if rows.iter().all(|r| r.next_attempt_at >= until) {
            return Ok(rows);
        }
        let mut kept = Vec::with_capacity(rows.len());
        for mut row in rows {
            if row.next_attempt_at < until {
                if !OUTBOX.claim(store, &row.id, row.next_attempt_at, until).await? {
                    continue;
                }
                row.next_attempt_at = until;
            }
            kept.push(row);
        }
        Ok(kept)
    }
}

/// Delivers the batches of `batches` until none is left, each batch's
/// delivery overlapping the recording of the one before and the taking of
/// the one after.
async fn drain(
    store: &Store,
    clock: &Clock,
    transport: &MailTransport,
    config: &Config,
    mut batches: Batches,
    verbosity: Verbosity,
) -> AppResult<usize> {
    let mut delivered = 0;
    let mut rows = batches.next(store, clock).await?;
    let mut done: Option<(Vec<MailRow>, Outcomes)> = None;
    while !rows.is_empty() {
        let previous = done.take();
        let (outcomes, (recorded, next)) = tokio::join!(transport.deliver_all(config, &rows), async {
            let recorded = match previous {
                Some((rows, outcomes)) => record(store, clock, &rows, outcomes, verbosity).await,
                None => Ok(0),
            };
            (recorded, batches.next(store, clock).await)
        });
        delivered += recorded?;
        done = Some((rows, outcomes));
        rows = match next {
            Ok(next) => next,
            // What was delivered is recorded before the error goes up.
            Err(e) => {
                if let Some((rows, outcomes)) = done.take() {
                    record(store, clock, &rows, outcomes, verbosity).await?;
                }
                return Err(e);
            }
        };
    }
    if let Some((rows, outcomes)) = done {
        delivered += record(store, clock, &rows, outcomes, verbosity).await?;
    }
    Ok(delivered)
}

/// Claims up to `limit` due messages for `lease_ms`, in a transaction of
/// its own.
async fn claim(store: &Store, clock: &Clock, limit: i64, lease_ms: Millis) -> AppResult<Vec<MailRow>> {
    let now = clock.now_ms();
    let mut tx = store.begin_write().await?;
    let rows = store::mail::claim_due(&mut tx, now, now + lease_ms, limit).await?;
    tx.commit().await?;
    Ok(rows)
}

/// What [`record`] logs at `info` of the messages delivered: each one (the
/// server's sender), or a count per batch (a command, whose user reads the
/// total on its output rather than 5,000 lines on its error output, which
/// also cost 5,000 writes); each message is then at `debug`. Failures are
/// logged one by one either way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verbosity {
    EachDelivery,
    Batches,
}

/// Records the outcomes of a batch in one transaction: delivered, or tried
/// again later, or given up. Returns how many were delivered.
async fn record(
    store: &Store,
    clock: &Clock,
    rows: &[MailRow],
    outcomes: Outcomes,
    verbosity: Verbosity,
) -> AppResult<usize> {
    let now = clock.now_ms();
    let mut sent = Vec::new();
    let mut tx = store.begin_write().await?;
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Ok(()) => {
                sent.push(row.id.as_str());
                match verbosity {
                    Verbosity::EachDelivery => tracing::info!(mail = %row.id, "email delivered"),
                    Verbosity::Batches => tracing::debug!(mail = %row.id, "email delivered"),
                }
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
    if verbosity == Verbosity::Batches && !sent.is_empty() {
        tracing::info!(delivered = sent.len(), "emails delivered");
    }
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
