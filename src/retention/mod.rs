//! Retention of personal data (R19, convention art. 2.1) and attestations of
//! destruction (R20).
//!
//! What goes, and when:
//! - connection-log records: `log_retention_months` (6 to 12, default 12)
//!   after they were written; the chain stays verifiable because the purge
//!   records the removed range and the last removed hash; ended browser
//!   sessions (address, user agent) as long;
//! - a closed account's user-account data (password hash, sessions with
//!   their addresses and user agents, tokens, links, roles, emails): 6 months
//!   after the end of the authorisation (the closure);
//! - the habilitation record of a closed account (identity, professional
//!   address, function, dates: what annex 1 lists for closed accesses):
//!   2 years after the closure request;
//! - a partner's annex 1 and annex 2: 2 years after the end of its
//!   convention.
//!
//! Each purge runs in one transaction, appends a `purge` record (counts and
//! ids, never the data) and signs the log's head. What was destroyed is also
//! kept per partner and account in `destructions`, with a keyed hash of the
//! person's address, for the attestations.

pub mod attestation;
pub mod pdf;

use serde::Serialize;
use serde_json::json;
use time::{Date, Month, OffsetDateTime};

use crate::app::App;
use crate::audit::{self, Event, Outcome, kind};
use crate::clock::{Millis, rfc3339_ms};
use crate::dates::{add_months, format_iso, parse_iso};
use crate::error::AppResult;
use crate::provisioning::convention::{Convention, ConventionState};
use crate::store::{
    self, WriteTx, retention::AccountDataCounts, retention::ClosedAccountRow, retention::DestructionRow,
    retention::LogPurgeRow,
};

/// The file, in the keys folder, holding the key of the address hashes.
pub const EMAIL_HMAC_KEY_FILE: &str = "destruction-hmac.key";
/// User-account data of a closed account lives this long after the closure.
pub const ACCOUNT_DATA_MONTHS: u32 = 6;
/// Habilitation records and annexes live this long (2 years).
pub const HABILITATION_MONTHS: u32 = 24;

/// `date` minus `months`, clamped to the end of the month.
pub fn sub_months(date: Date, months: u32) -> Date {
    let total = date.year() * 12 + date.month() as i32 - 1 - months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::January);
    let day = date.day().min(time::util::days_in_month(month, year));
    Date::from_calendar_date(year, month, day).unwrap_or(date)
}

/// The instant `months` calendar months before `ms` (same time of day).
pub fn months_before(ms: Millis, months: u32) -> Millis {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let earlier = t.replace_date(sub_months(t.date(), months));
    (earlier.unix_timestamp_nanos() / 1_000_000) as Millis
}

fn date_of(ms: Millis) -> Date {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH).date()
}

/// When the authorisation ended: the closure itself (`closed_at`), else the
/// requested closure date, else the last change of the record.
pub fn end_of_authorisation(a: &ClosedAccountRow) -> Millis {
    a.closed_at
        .or_else(|| {
            a.closure_requested_on
                .as_deref()
                .and_then(parse_iso)
                .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
        })
        .unwrap_or(a.updated_at)
}

/// The date of the closure request, which starts the 2 years of the
/// habilitation record (convention art. 2.1).
pub fn closure_request_date(a: &ClosedAccountRow) -> Date {
    a.closure_requested_on.as_deref().and_then(parse_iso).unwrap_or_else(|| date_of(end_of_authorisation(a)))
}

/// Whether the user-account data of this closure is already gone (an
/// access reopened and closed again has new data to destroy).
pub fn data_destroyed(a: &ClosedAccountRow) -> bool {
    a.data_destroyed_at.is_some_and(|d| d >= end_of_authorisation(a))
}

pub fn account_data_due(a: &ClosedAccountRow, now: Millis) -> bool {
    !data_destroyed(a) && end_of_authorisation(a) <= months_before(now, ACCOUNT_DATA_MONTHS)
}

pub fn habilitation_record_due(a: &ClosedAccountRow, today: Date) -> bool {
    add_months(closure_request_date(a), HABILITATION_MONTHS) <= today
}

/// The end of a convention that has ended, if its annexes are due.
pub fn annexes_due(state: ConventionState, today: Date) -> Option<Date> {
    match state {
        ConventionState::Ended { on } | ConventionState::Terminated { on }
            if add_months(on, HABILITATION_MONTHS) <= today =>
        {
            Some(on)
        }
        _ => None,
    }
}

/// The keyed hash (HMAC-SHA256) of a normalised address: lets an attestation
/// find a person's destruction records later without keeping the address.
pub fn email_hmac(key: &[u8], email: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, email.trim().to_lowercase().as_bytes());
    crate::crypto::b64url(tag.as_ref())
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventsPurged {
    pub from_seq: i64,
    pub to_seq: i64,
    pub removed: i64,
    /// The hash of the last removed record: the next record's `prev_hash`.
    pub last_hash: String,
    /// Records written before this instant went.
    pub before: String,
    /// How many records went, per partner (`null`: no partner).
    pub by_partner: Vec<(Option<String>, i64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountPurged {
    pub account_id: String,
    pub partner_id: Option<String>,
    /// `null` in a dry run.
    pub email_hmac: Option<String>,
    pub closure_requested_on: String,
    pub data: Option<AccountDataCounts>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnnexesPurged {
    pub partner_id: String,
    pub convention_ended_on: String,
    pub annex1: u64,
    pub annex2: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub dry_run: bool,
    pub time: String,
    /// The `purge` record's seq (none in a dry run or when nothing went).
    pub seq: Option<i64>,
    pub events: Option<EventsPurged>,
    /// Browser sessions that ended before the log's cut-off.
    pub ended_sessions: u64,
    /// User-account data destroyed 6 months after the closure.
    pub account_data: Vec<AccountPurged>,
    /// Habilitation records deleted 2 years after the closure request.
    pub habilitation_records: Vec<AccountPurged>,
    pub annexes: Vec<AnnexesPurged>,
}

impl PurgeReport {
    pub fn is_empty(&self) -> bool {
        self.events.is_none()
            && self.ended_sessions == 0
            && self.account_data.is_empty()
            && self.habilitation_records.is_empty()
            && self.annexes.is_empty()
    }

    /// The `purge` record's details: what went, by counts and ids.
    fn details(&self) -> serde_json::Value {
        json!({
            "counts": {
                "events": self.events.as_ref().map_or(0, |e| e.removed),
                "ended_sessions": self.ended_sessions,
                "account_data": self.account_data.len(),
                "habilitation_records": self.habilitation_records.len(),
                "annex1": self.annexes.iter().map(|a| a.annex1).sum::<u64>(),
                "annex2": self.annexes.iter().map(|a| a.annex2).sum::<u64>(),
            },
            "events": self.events,
            "account_data": self.account_data,
            "habilitation_records": self.habilitation_records,
            "annexes": self.annexes,
        })
    }
}

/// Runs the purge now. A dry run does the same work in a transaction that
/// is rolled back, so it shows exactly what would go and changes nothing.
/// `actor`: `cli` or `system`. A scheduled purge that finds nothing due
/// records nothing; one asked for from the command line always does.
pub async fn purge(app: &App, dry_run: bool, actor: &str) -> AppResult<PurgeReport> {
    let now = app.clock.now_ms();
    let today = app.clock.today();
    let hmac_key = if dry_run {
        None
    } else {
        Some(crate::keys::load_or_create_secret(&app.config.keys_dir, EMAIL_HMAC_KEY_FILE)?)
    };
    let mut tx = app.store.begin_write().await?;
    store::retention::lock_purge(&mut tx).await?;
    let mut report = PurgeReport {
        dry_run,
        time: rfc3339_ms(now),
        seq: None,
        events: None,
        ended_sessions: 0,
        account_data: Vec::new(),
        habilitation_records: Vec::new(),
        annexes: Vec::new(),
    };

    for a in store::retention::closed_accounts(&mut tx).await? {
        let record_due = habilitation_record_due(&a, today);
        if !record_due && !account_data_due(&a, now) {
            continue;
        }
        let data = if !data_destroyed(&a) {
            Some(store::retention::destroy_account_data(&mut tx, &a.id, &a.email_normalized, now).await?)
        } else {
            None
        };
        if record_due {
            store::accounts::delete(&mut tx, &a.id).await?;
        }
        let entry = AccountPurged {
            account_id: a.id.clone(),
            partner_id: a.partner_id.clone(),
            email_hmac: hmac_key.as_deref().map(|k| email_hmac(k, &a.email_normalized)),
            closure_requested_on: format_iso(closure_request_date(&a)),
            data,
        };
        if record_due { report.habilitation_records.push(entry) } else { report.account_data.push(entry) }
    }

    for p in app.store.partners().await? {
        let Some(ended) = annexes_due(Convention::of(&p).state(today), today) else { continue };
        let (annex1, annex2) = store::partners::delete_annexes(&mut tx, &p.id).await?;
        if annex1 + annex2 > 0 {
            report.annexes.push(AnnexesPurged {
                partner_id: p.id.clone(),
                convention_ended_on: format_iso(ended),
                annex1,
                annex2,
            });
        }
    }

    let before = months_before(now, app.config.log_retention_months);
    if let Some((from_seq, to_seq, last_hash)) = store::events::prefix_before(&mut tx, before).await? {
        let by_partner = store::events::counts_by_partner(&mut tx, to_seq).await?;
        let removed = store::events::delete_up_to(&mut tx, to_seq).await? as i64;
        store::retention::insert_log_purge(
            &mut tx,
            &LogPurgeRow { up_to_seq: to_seq, last_hash: last_hash.clone(), removed, purged_at: now },
        )
        .await?;
        report.events =
            Some(EventsPurged { from_seq, to_seq, removed, last_hash, before: rfc3339_ms(before), by_partner });
    }

    report.ended_sessions = store::sessions::delete_ended_before(&mut tx, before).await?;

    if dry_run {
        // Dropping the transaction rolls every deletion back.
        drop(tx);
        return Ok(report);
    }
    if report.is_empty() && actor == "system" {
        tx.commit().await?;
        return Ok(report);
    }
    let e = Event::new(kind::PURGE, Outcome::Success, actor).details(report.details());
    audit::append(&app.clock, &mut tx, vec![e]).await?;
    let seq = store::events::head_in(&mut tx).await?.map(|h| h.0).unwrap_or_default();
    report.seq = Some(seq);
    record_destructions(&mut tx, &report, now, seq).await?;
    audit::checkpoint::checkpoint_in(&mut tx, &app.keys, &app.config.issuer_str(), &app.clock).await?;
    tx.commit().await?;
    tracing::info!(
        events = report.events.as_ref().map_or(0, |e| e.removed),
        account_data = report.account_data.len(),
        habilitation_records = report.habilitation_records.len(),
        annexes = report.annexes.len(),
        "retention purge"
    );
    Ok(report)
}

/// One row per partner or account and kind of data, for the attestations.
async fn record_destructions(tx: &mut WriteTx, r: &PurgeReport, now: Millis, seq: i64) -> AppResult<()> {
    let mut rows = Vec::new();
    let mut row = |category: &str, partner: Option<String>, account: Option<&AccountPurged>, details| {
        rows.push(DestructionRow {
            id: crate::crypto::random_b64(12),
            destroyed_at: now,
            category: category.to_string(),
            partner_id: partner,
            account_id: account.map(|a| a.account_id.clone()),
            email_hmac: account.and_then(|a| a.email_hmac.clone()),
            details,
            purge_seq: seq,
        });
    };
    for a in &r.account_data {
        row("account_data", a.partner_id.clone(), Some(a), json!({"data": a.data}).to_string());
    }
    for a in &r.habilitation_records {
        let details = json!({"data": a.data, "closure_requested_on": a.closure_requested_on}).to_string();
        row("habilitation_record", a.partner_id.clone(), Some(a), details);
    }
    for a in &r.annexes {
        let details = json!({"convention_ended_on": a.convention_ended_on, "annex1": a.annex1, "annex2": a.annex2});
        row("annexes", Some(a.partner_id.clone()), None, details.to_string());
    }
    if let Some(e) = &r.events {
        for (partner, count) in &e.by_partner {
            let details = json!({"records": count, "before": e.before}).to_string();
            row("connection_log", partner.clone(), None, details);
        }
    }
    for d in &rows {
        store::retention::insert_destruction(tx, d).await?;
    }
    Ok(())
}

/// The scheduled part, run from the 60 s job loop: a checkpoint every
/// `log_checkpoint_interval_secs` and a purge every `purge_interval_secs`,
/// each once across instances (leases on the injectable clock).
pub async fn run_scheduled(app: &App, holder: &str) {
    let now = app.clock.now_ms();
    let lease = |name: &'static str, secs: i64| async move {
        store::retention::try_acquire_lease(&app.store, name, holder, now, now + secs * 1000).await
    };
    match lease("purge", app.config.purge_interval_secs).await {
        Ok(true) => {
            let outcome = purge(app, false, "system").await;
            crate::metrics::job("purge", &outcome);
            if let Err(e) = outcome {
                tracing::error!(error = %e, "retention purge");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "purge lease"),
    }
    match lease("checkpoint", app.config.log_checkpoint_interval_secs).await {
        Ok(true) => {
            let outcome =
                audit::checkpoint::checkpoint(&app.store, &app.keys, &app.config.issuer_str(), &app.clock).await;
            crate::metrics::job("checkpoint", &outcome);
            if let Err(e) = outcome {
                tracing::error!(error = %e, "connection-log checkpoint");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "checkpoint lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn ms(d: Date) -> Millis {
        d.midnight().assume_utc().unix_timestamp() * 1000
    }

    fn closed(closed_on: Date, requested: Option<&str>) -> ClosedAccountRow {
        ClosedAccountRow {
            id: "a".into(),
            email_normalized: "x@y.fr".into(),
            partner_id: None,
            closure_requested_on: requested.map(str::to_string),
            closed_at: Some(ms(closed_on)),
            updated_at: 0,
            data_destroyed_at: None,
        }
    }

    #[test]
    fn month_subtraction_clamps_and_crosses_years() {
        assert_eq!(sub_months(date!(2026 - 03 - 31), 1), date!(2026 - 02 - 28));
        assert_eq!(sub_months(date!(2026 - 01 - 15), 12), date!(2025 - 01 - 15));
        assert_eq!(sub_months(date!(2026 - 05 - 10), 6), date!(2025 - 11 - 10));
        assert_eq!(months_before(ms(date!(2026 - 05 - 10)) + 5_000, 6), ms(date!(2025 - 11 - 10)) + 5_000);
    }

    #[test]
    fn account_data_goes_six_months_after_the_closure_not_before() {
        let a = closed(date!(2026 - 01 - 10), Some("2026-01-10"));
        assert!(!account_data_due(&a, ms(date!(2026 - 07 - 10)) - 1));
        assert!(account_data_due(&a, ms(date!(2026 - 07 - 10))));
        let done = ClosedAccountRow { data_destroyed_at: Some(ms(date!(2026 - 07 - 10))), ..a.clone() };
        assert!(!account_data_due(&done, ms(date!(2027 - 01 - 01))));
        // Destroyed after an earlier closure, then reopened and closed again.
        let earlier = ClosedAccountRow { data_destroyed_at: Some(ms(date!(2025 - 01 - 01))), ..a };
        assert!(account_data_due(&earlier, ms(date!(2026 - 07 - 10))));
    }

    #[test]
    fn habilitation_record_goes_two_years_after_the_closure_request() {
        // The request date counts, not the day the access was closed.
        let a = closed(date!(2026 - 03 - 01), Some("2026-01-10"));
        assert!(!habilitation_record_due(&a, date!(2028 - 01 - 09)));
        assert!(habilitation_record_due(&a, date!(2028 - 01 - 10)));
        let without_request = closed(date!(2026 - 03 - 01), None);
        assert!(!habilitation_record_due(&without_request, date!(2028 - 02 - 29)));
        assert!(habilitation_record_due(&without_request, date!(2028 - 03 - 01)));
    }

    #[test]
    fn annexes_go_two_years_after_the_end_of_the_convention() {
        let ended = ConventionState::Terminated { on: date!(2025 - 09 - 01) };
        assert_eq!(annexes_due(ended, date!(2027 - 08 - 31)), None);
        assert_eq!(annexes_due(ended, date!(2027 - 09 - 01)), Some(date!(2025 - 09 - 01)));
        let in_force = ConventionState::InForce { term: date!(2026 - 01 - 01) };
        assert_eq!(annexes_due(in_force, date!(2040 - 01 - 01)), None);
    }

    #[test]
    fn email_hash_is_keyed_and_normalised() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        assert_eq!(email_hmac(&k1, " Marie.Dupont@CC-Girou.fr "), email_hmac(&k1, "marie.dupont@cc-girou.fr"));
        assert_ne!(email_hmac(&k1, "marie.dupont@cc-girou.fr"), email_hmac(&k2, "marie.dupont@cc-girou.fr"));
        assert!(!email_hmac(&k1, "marie.dupont@cc-girou.fr").contains("marie"));
    }
}
