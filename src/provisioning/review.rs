//! The yearly review (R13, art. 2.2): each partner sends an updated annex 1
//! at least once a year. The deadline is 12 months after the last annex 1
//! (or after the signature when none was sent). The partner's habilitation
//! manager (annex 2) is reminded 30 days before and again once overdue; the
//! Caf's habilitation manager (annex 3) gets a daily digest of late partners.
//! Each reminder is recorded before its email is queued, in one transaction,
//! under a unique key: it goes once, whatever the number of instances.

use serde::Serialize;
use time::Date;

use super::convention::Convention;
use crate::app::App;
use crate::clock::Clock;
use crate::dates::{add_months, format_iso, parse_iso};
use crate::error::{AppError, AppResult};
use crate::mail::{self, MailKind};
use crate::store::{self, Store};

pub const REMIND_DAYS_BEFORE: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    UpToDate,
    DueSoon,
    Overdue,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartnerReview {
    pub partner_id: String,
    pub partner_name: String,
    pub last_annex1: Option<String>,
    pub deadline: String,
    pub status: ReviewStatus,
}

pub fn deadline(last_annex1: Option<Date>, signed_on: Option<Date>) -> Option<Date> {
    last_annex1.or(signed_on).map(|d| add_months(d, 12))
}

pub fn status(deadline: Date, today: Date) -> ReviewStatus {
    if today > deadline {
        ReviewStatus::Overdue
    } else if (deadline - today).whole_days() <= REMIND_DAYS_BEFORE {
        ReviewStatus::DueSoon
    } else {
        ReviewStatus::UpToDate
    }
}

/// Every partner whose convention is in force, with its review status.
pub async fn review(store: &Store, clock: &Clock) -> AppResult<Vec<PartnerReview>> {
    let today = clock.today();
    let mut out = Vec::new();
    for p in store.partners().await? {
        if !Convention::of(&p).state(today).allows_openings() {
            continue;
        }
        let last = store.current_annex1(&p.id).await?.map(|a| a.transmitted_on);
        let Some(due) =
            deadline(last.as_deref().and_then(parse_iso), p.convention_signed_on.as_deref().and_then(parse_iso))
        else {
            continue;
        };
        out.push(PartnerReview {
            partner_id: p.id,
            partner_name: p.name,
            last_annex1: last,
            deadline: format_iso(due),
            status: status(due, today),
        });
    }
    Ok(out)
}

/// Sends the reminders that are due and not yet sent; returns how many.
pub async fn send_reminders(app: &App) -> AppResult<usize> {
    let now = app.clock.now_ms();
    let reviews = review(&app.store, &app.clock).await?;
    let mut sent = 0;
    for r in reviews.iter().filter(|r| r.status != ReviewStatus::UpToDate) {
        let Some(annex2) = app.store.annex2(&r.partner_id).await? else {
            // The reminders run every minute on every instance: the warning
            // is recorded like a reminder (kind `no_contact`, keyed by the
            // day), so it is logged once a day by one instance, restarts
            // included.
            let mut tx = app.store.begin_write().await?;
            let first = store::partners::record_reminder(
                &mut tx,
                &r.partner_id,
                &format_iso(app.clock.today()),
                "no_contact",
                now,
            )
            .await?;
            tx.commit().await?;
            if first {
                tracing::warn!(partner = %r.partner_id, "annual review due but no annex-2 habilitation manager to remind");
            }
            continue;
        };
        let kind = if r.status == ReviewStatus::Overdue { "overdue" } else { "due_soon" };
        let message = mail::render(
            &annex2.contacts.habilitation_manager_email,
            MailKind::ReviewReminder {
                name: &annex2.contacts.habilitation_manager_name,
                partner_name: &r.partner_name,
                deadline: &r.deadline,
                overdue: r.status == ReviewStatus::Overdue,
            },
        )
        .map_err(|e| AppError::Invalid(e.to_string()))?;
        let mut tx = app.store.begin_write().await?;
        if store::partners::record_reminder(&mut tx, &r.partner_id, &r.deadline, kind, now).await? {
            mail::enqueue(&mut tx, &message, now).await?;
            sent += 1;
        }
        tx.commit().await?;
    }
    let late: Vec<&PartnerReview> = reviews.iter().filter(|r| r.status == ReviewStatus::Overdue).collect();
    if !late.is_empty()
        && let Some(caf) = app.store.annex3().await?
    {
        let lines: Vec<String> = late
            .iter()
            .map(|r| format!("{} ({}) — échéance / deadline {}", r.partner_name, r.partner_id, r.deadline))
            .collect();
        let message = mail::render(
            &caf.contacts.habilitation_manager_email,
            MailKind::ReviewDigest { name: &caf.contacts.habilitation_manager_name, partners: &lines },
        )
        .map_err(|e| AppError::Invalid(e.to_string()))?;
        let mut tx = app.store.begin_write().await?;
        if store::partners::record_reminder(&mut tx, "*", &format_iso(app.clock.today()), "digest", now).await? {
            mail::enqueue(&mut tx, &message, now).await?;
            sent += 1;
        }
        tx.commit().await?;
    }
    if sent > 0 {
        app.mail_wake.notify_one();
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn deadline_is_a_year_after_the_last_annex_or_the_signature() {
        assert_eq!(deadline(Some(date!(2026 - 02 - 01)), Some(date!(2025 - 01 - 01))), Some(date!(2027 - 02 - 01)));
        assert_eq!(deadline(None, Some(date!(2025 - 01 - 01))), Some(date!(2026 - 01 - 01)));
        assert_eq!(deadline(None, None), None);
    }

    #[test]
    fn status_thresholds_both_sides() {
        let due = date!(2026 - 12 - 31);
        assert_eq!(status(due, date!(2026 - 11 - 30)), ReviewStatus::UpToDate);
        assert_eq!(status(due, date!(2026 - 12 - 01)), ReviewStatus::DueSoon);
        assert_eq!(status(due, date!(2026 - 12 - 31)), ReviewStatus::DueSoon);
        assert_eq!(status(due, date!(2027 - 01 - 01)), ReviewStatus::Overdue);
    }
}
