//! Security alerts (R5, R17; convention art. 2: incidents are notified
//! "without delay"). A background job reads the connection log after a
//! stored cursor and runs the detectors on each new event. An alert is an
//! `alert` event plus an email (French, then English) to the Caf security
//! officer (annex 3) and, when accounts of a partner are concerned, to that
//! partner's security officer (annex 2); at most one per detector and
//! subject per `alert_period_secs`.
//!
//! Runs once across instances: the cursor moves by compare-and-set in the
//! transaction that records the alerts and queues their emails, so an
//! instance that lost the race records nothing and reads on.

pub mod detectors;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::app::App;
use crate::audit::{self, Event, Outcome};
use crate::clock::{Millis, rfc3339_ms};
use crate::error::{AppError, AppResult};
use crate::mail::{self, MailKind};
use crate::store::{self, Store, events::EventFilter, events::EventRow};
use detectors::Finding;

const CURSOR: &str = "alerts";
const BATCH: i64 = 500;

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(app.config.alerts.scan_interval_secs.max(1) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let outcome = scan(&app).await;
        crate::metrics::job("alerts", &outcome);
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "security alert detectors");
        }
    }
}

/// Examines every event recorded since the last pass; returns how many
/// alerts were raised.
pub async fn scan(app: &App) -> AppResult<usize> {
    let mut raised = 0;
    loop {
        let from = app.store.job_cursor(CURSOR).await?;
        let batch = app.store.events_after(from, BATCH).await?;
        let Some(to) = batch.last().map(|e| e.seq) else { break };
        let mut findings = Vec::new();
        for e in &batch {
            findings.extend(detectors::detect(app, e).await?);
        }
        let mut prepared = Vec::new();
        for f in findings {
            prepared.push(prepare(app, f).await?);
        }
        let mut tx = app.store.begin_write().await?;
        if !store::alerts::advance_cursor(&mut tx, CURSOR, from, to).await? {
            // Another instance examined these events first; read on at the next pass.
            break;
        }
        let period = app.config.alerts.period_secs * 1000;
        let mut events = Vec::new();
        for (finding, mails, recipients) in prepared {
            if let Some(last) = store::alerts::last_raised(&mut tx, finding.detector, &finding.subject).await?
                && finding.time_ms < last + period
            {
                continue;
            }
            store::alerts::set_last_raised(&mut tx, finding.detector, &finding.subject, finding.time_ms).await?;
            let now = app.clock.now_ms();
            for m in &mails {
                mail::enqueue(&mut tx, m, now).await?;
            }
            events.push(alert_event(&finding, &recipients));
            tracing::warn!(detector = finding.detector, subject = %finding.subject, "security alert");
        }
        raised += events.len();
        audit::append(&app.clock, &mut tx, events).await?;
        tx.commit().await?;
        if (batch.len() as i64) < BATCH {
            break;
        }
    }
    if raised > 0 {
        app.mail_wake.notify_one();
    }
    Ok(raised)
}

type Prepared = (Finding, Vec<mail::Mail>, Vec<String>);

/// Finds the partners concerned and renders the emails, before the writing
/// transaction opens (reads stay out of it).
async fn prepare(app: &App, mut f: Finding) -> AppResult<Prepared> {
    let mut partners: BTreeSet<String> = f.partner_ids.iter().cloned().collect();
    if partners.is_empty() {
        for email in f.emails_for_partners.iter().take(50) {
            if let Some(a) = app.store.account_by_email(email).await?
                && let Some(p) = a.person.partner_id
            {
                partners.insert(p);
            }
        }
    }
    f.partner_ids = partners.iter().cloned().collect();
    let mut contacts: Vec<(String, String)> = Vec::new();
    match app.store.annex3().await? {
        Some(caf) => contacts.push((caf.contacts.security_officer_name, caf.contacts.security_officer_email)),
        None => tracing::warn!(detector = f.detector, "security alert but no annex 3: no Caf security officer to tell"),
    }
    for p in &partners {
        if let Some(a2) = app.store.annex2(p).await?
            && !contacts.iter().any(|(_, m)| m.eq_ignore_ascii_case(&a2.contacts.security_officer_email))
        {
            contacts.push((a2.contacts.security_officer_name, a2.contacts.security_officer_email));
        }
    }
    let (title_fr, title_en) = detectors::title(f.detector);
    let when = rfc3339_ms(f.time_ms);
    let seqs = f.seqs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
    let mut mails = Vec::new();
    for (name, email) in &contacts {
        let kind = MailKind::Alert {
            name,
            title_fr,
            title_en,
            cause_fr: &f.cause_fr,
            cause_en: &f.cause_en,
            time: &when,
            seqs: &seqs,
        };
        mails.push(mail::render(email, kind).map_err(|e| AppError::Invalid(e.to_string()))?);
    }
    let recipients = contacts.into_iter().map(|(_, m)| m).collect();
    Ok((f, mails, recipients))
}

fn alert_event(f: &Finding, recipients: &[String]) -> Event {
    let mut e = Event::new(audit::kind::ALERT, Outcome::Failure, "system")
        .partner(f.partner_ids.first().cloned())
        .details(json!({
            "detector": f.detector,
            "subject": f.subject,
            "cause": f.cause,
            "message": f.cause_fr,
            "message_en": f.cause_en,
            "counts": f.counts,
            "event_seqs": f.seqs,
            "partners": f.partner_ids,
            "notified": recipients,
        }));
    if let Some(m) = &f.email {
        e = e.email(m.clone());
    }
    if let Some(a) = &f.account_id {
        e = e.account(a.clone());
    }
    e
}

/// An alert as listed for the security officer.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub seq: i64,
    pub time: String,
    pub detector: String,
    pub subject: String,
    pub cause: String,
    pub message: String,
    pub email: Option<String>,
    pub partner_id: Option<String>,
    pub event_seqs: Value,
    pub notified: Value,
}

pub fn view(row: &EventRow) -> AlertView {
    let d: Value = serde_json::from_str(&row.details).unwrap_or(Value::Null);
    let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
    AlertView {
        seq: row.seq,
        time: rfc3339_ms(row.time_ms),
        detector: s("detector"),
        subject: s("subject"),
        cause: s("cause"),
        message: s("message"),
        email: row.email.clone(),
        partner_id: row.partner_id.clone(),
        event_seqs: d["event_seqs"].clone(),
        notified: d["notified"].clone(),
    }
}

/// Alerts from `since`, oldest first.
pub async fn list(store: &Store, since_ms: Option<Millis>, limit: i64, offset: i64) -> AppResult<Vec<AlertView>> {
    let filter = EventFilter {
        kind: Some(audit::kind::ALERT.to_string()),
        since_ms,
        limit: limit.clamp(1, audit::query::MAX_LIMIT),
        offset: offset.max(0),
        ..Default::default()
    };
    Ok(store.query_events(&filter).await?.iter().map(view).collect())
}

pub const CSV_COLUMNS: [&str; 10] =
    ["seq", "time", "detector", "subject", "cause", "message", "email", "partner_id", "event_seqs", "notified"];

pub fn to_csv(alerts: &[AlertView]) -> String {
    use crate::audit::export::{Separator, csv_line};
    let mut out = csv_line(CSV_COLUMNS, Separator::Comma);
    for a in alerts {
        let v = serde_json::to_value(a).unwrap_or(Value::Null);
        out.push_str(&csv_line(
            CSV_COLUMNS.iter().map(|c| match &v[*c] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            Separator::Comma,
        ));
    }
    out
}

pub fn to_table(alerts: &[AlertView]) -> String {
    let mut out = format!("{:<24} {:<20} {:<40} {}\n", "time", "detector", "subject", "message");
    for a in alerts {
        out.push_str(&format!("{:<24} {:<20} {:<40} {}\n", a.time, a.detector, a.subject, a.message));
    }
    out
}
