//! Importing an annex 1: the dry run builds the plan; `--apply` carries it
//! out in one transaction (R10–R12): new and reopened accesses get their
//! activation email through the outbox, closures end every session and token
//! at once and queue the back-channel logouts, the annex becomes the
//! partner's current one and the previous one is purged. Nothing is written
//! when the plan has errors, and an interrupted apply leaves nothing behind.

use time::Date;

use super::parse::parse_annex1_off_runtime;
use super::plan::{PartnerView, PersonEntry, Plan, build_plan};
use crate::accounts::{Names, ProfessionalEmail};
use crate::app::App;
use crate::audit;
use crate::clock::Millis;
use crate::crypto::sha256;
use crate::error::{AppError, AppResult};
use crate::provisioning::convention::Convention;
use crate::provisioning::invite::{Access, open_account, reinvite};
use crate::provisioning::{close_access_in, email_domains};
use crate::store::{self, WriteTx, mail::MailRow, partners::Annex1Row};

pub struct Import<'a> {
    pub partner_id: &'a str,
    pub file_name: &'a str,
    pub bytes: &'a [u8],
    /// Transmission date (default: today).
    pub transmitted: Option<Date>,
    pub apply: bool,
    /// Who runs the import (`cli` or an administrator's email).
    pub operator: &'a str,
}

#[derive(Debug)]
pub struct ImportOutcome {
    pub plan: Plan,
    pub applied: bool,
}

/// An annex 1 transmitted before the partner's current one: applying it
/// would bring back the lists the newer one replaced, so it is refused (a
/// corrected annex of the same day is not older).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "date de transmission / transmission date : l'annexe 1 du {transmitted} est antérieure à l'annexe 1 en vigueur (transmise le {current}) et ne la remplace pas / the annex 1 of {transmitted} is older than the current annex 1 (transmitted on {current}) and does not replace it"
)]
pub struct OlderAnnex {
    /// `YYYY-MM-DD`, both.
    pub transmitted: String,
    pub current: String,
}

/// `Some` when an annex transmitted on `transmitted` is older than the
/// partner's current annex 1.
pub async fn older_than_current(app: &App, partner_id: &str, transmitted: Date) -> AppResult<Option<OlderAnnex>> {
    let current = app.store.current_annex1(partner_id).await?;
    Ok(current.and_then(|c| {
        let older = crate::dates::parse_iso(&c.transmitted_on).is_some_and(|on| transmitted < on);
        older.then(|| OlderAnnex { transmitted: crate::dates::format_iso(transmitted), current: c.transmitted_on })
    }))
}

pub async fn import(app: &App, import: Import<'_>) -> AppResult<ImportOutcome> {
    Ok(run(app, import, None, None).await?.0)
}

/// [`import`] for a caller that delivers the activation emails itself once
/// it returns, with `mail::deliver_held` (the command line, and the
/// console and admin API in a task of the server): an apply's
/// messages are queued already claimed for `hold_ms`
/// (`WriteTx::hold_mail_until`) and returned with the outcome, rather than
/// claimed again from the outbox and read back.
pub async fn import_holding_mail(
    app: &App,
    import: Import<'_>,
    hold_ms: Millis,
) -> AppResult<(ImportOutcome, Vec<MailRow>)> {
    run(app, import, None, Some(hold_ms)).await
}

/// `fail_after`: for tests, fail after that many account changes, to prove
/// that an interrupted apply leaves nothing half done.
#[doc(hidden)]
pub async fn import_with_fault(app: &App, import: Import<'_>, fail_after: Option<usize>) -> AppResult<ImportOutcome> {
    Ok(run(app, import, fail_after, None).await?.0)
}

async fn run(
    app: &App,
    import: Import<'_>,
    fail_after: Option<usize>,
    hold_ms: Option<Millis>,
) -> AppResult<(ImportOutcome, Vec<MailRow>)> {
    let partner = app
        .store
        .partner(import.partner_id)
        .await?
        .ok_or_else(|| AppError::Invalid(format!("unknown partner `{}`", import.partner_id)))?;
    let today = app.clock.today();
    let transmitted = import.transmitted.unwrap_or(today);
    if transmitted > today {
        return Err(AppError::Invalid(
            "date de transmission / transmission date : dans le futur / in the future".into(),
        ));
    }
    if let Some(older) = older_than_current(app, &partner.id, transmitted).await? {
        return Err(AppError::Invalid(older.to_string()));
    }
    let parsed = parse_annex1_off_runtime(import.file_name, import.bytes.into()).await.map_err(|p| {
        let place = match (&p.sheet, p.line) {
            (_, 0) => String::new(),
            (Some(sheet), line) => format!(", feuille « {sheet} », ligne {line}"),
            (None, line) => format!(", ligne {line}"),
        };
        AppError::Invalid(format!("{}{place} : {} [{}]", import.file_name, p.message, p.code))
    })?;
    let rows_json = serde_json::to_string(
        &parsed
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "line": r.line, "sheet": r.sheet, "list": r.list, "family_name": r.family_name,
                    "given_name": r.given_name, "email": r.email, "function": r.function,
                    "closure_date": r.closure_date,
                })
            })
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let domains = email_domains(&partner);
    let view =
        PartnerView { id: &partner.id, email_domains: &domains, convention: Convention::of(&partner).state(today) };

    // The plan is computed from the accounts as read inside the write
    // transaction, so nothing can change between plan and apply. Its reads
    // see the accounts as they were when it began, never its own writes
    // (`begin_bulk_write`): each person is read before anything is written,
    // and a closure reads only sessions, which nothing here writes first.
    let mut tx = app.store.begin_bulk_write().await?;
    let existing = store::accounts::of_partner(&mut tx, &partner.id).await?;
    let mut plan = build_plan(&view, transmitted, parsed, &existing);
    let taken = store::accounts::taken_elsewhere(&mut tx, &partner.id, &plan.opened_emails()).await?;
    plan.refuse_taken(&taken.into_iter().collect());
    if !import.apply || !plan.errors.is_empty() {
        drop(tx);
        tracing::info!(partner = %partner.id, operator = import.operator, errors = plan.errors.len(), changes = plan.changes(), "annex 1 dry run");
        let outcome = if plan.errors.is_empty() { audit::Outcome::Success } else { audit::Outcome::Failure };
        let e = audit::Event::new(audit::kind::ANNEX1_DRY_RUN, outcome, import.operator)
            .partner(Some(partner.id.clone()))
            .details(counts(&plan, import.apply));
        audit::record(&app.store, &app.clock, vec![e]).await;
        return Ok((ImportOutcome { plan, applied: false }, Vec::new()));
    }

    let now = app.clock.now_ms();
    if let Some(hold_ms) = hold_ms {
        tx.hold_mail_until(now + hold_ms);
    }
    let mut events = Vec::new();
    let person = |kind: &'static str, id: &str, e: &PersonEntry| {
        audit::Event::new(kind, audit::Outcome::Success, import.operator)
            .email(e.email.clone())
            .account(id.to_string())
            .partner(Some(partner.id.clone()))
            .details(details(e))
    };
    let mut done = 0usize;
    let step = |done: &mut usize| -> AppResult<()> {
        *done += 1;
        match fail_after {
            Some(n) if *done > n => Err(AppError::Invalid("injected failure".into())),
            _ => Ok(()),
        }
    };
    for e in &plan.open {
        step(&mut done)?;
        let email = email_of(e)?;
        let (_, records) = open_account(app, &mut tx, &access(&partner, &email, e, import.operator), now).await?;
        events.extend(records);
        append_as_we_go(app, &mut tx, &mut events).await?;
    }
    for e in &plan.reopen {
        step(&mut done)?;
        let id = e.account_id.as_deref().unwrap_or_default();
        store::accounts::set_identity(&mut tx, id, &e.given_name, &e.family_name, &e.function, now, true).await?;
        let email = email_of(e)?;
        events.extend(reinvite(app, &mut tx, id, &access(&partner, &email, e, import.operator)).await?);
        append_as_we_go(app, &mut tx, &mut events).await?;
    }
    for e in &plan.update {
        step(&mut done)?;
        let id = e.account_id.as_deref().unwrap_or_default();
        store::accounts::set_identity(&mut tx, id, &e.given_name, &e.family_name, &e.function, now, false).await?;
        events.push(person(audit::kind::ACCESS_UPDATED, id, e));
        append_as_we_go(app, &mut tx, &mut events).await?;
    }
    for e in &plan.close {
        step(&mut done)?;
        let id = e.account_id.as_deref().unwrap_or_default();
        let requested = e.closure_date.clone().unwrap_or_else(|| plan.transmitted.clone());
        close_access_in(app, &mut tx, id, &requested, "access_closed", now).await?;
        events.push(person(audit::kind::ACCESS_CLOSED, id, e));
        append_as_we_go(app, &mut tx, &mut events).await?;
    }
    store::partners::replace_annex1(
        &mut tx,
        &Annex1Row {
            partner_id: partner.id.clone(),
            transmitted_on: plan.transmitted.clone(),
            checksum: hex::encode(sha256(import.bytes)),
            rows: rows_json,
            applied_at: now,
            operator: import.operator.to_string(),
        },
    )
    .await?;
    events.push(
        audit::Event::new(audit::kind::ANNEX1_APPLIED, audit::Outcome::Success, import.operator)
            .partner(Some(partner.id.clone()))
            .details(counts(&plan, true)),
    );
    audit::append(&app.clock, &mut tx, events).await?;
    let held = tx.take_held_mail();
    tx.commit().await?;
    app.mail_wake.notify_one();
    app.backchannel_wake.notify_one();
    tracing::info!(
        partner = %partner.id, operator = import.operator, opened = plan.open.len(), reopened = plan.reopen.len(),
        updated = plan.update.len(), closed = plan.close.len(), "annex 1 applied"
    );
    Ok((ImportOutcome { plan, applied: true }, held))
}

/// Log records gathered before they are appended while the apply goes on,
/// where appending early holds up no one (`WriteTx::appending_holds_the_log`:
/// SQLite): the writer inserts them while the next people are built, rather
/// than all 10,000 of a 5,000-person annex after the last one. On
/// PostgreSQL they wait for the end, the log's lock with them.
const APPEND_EVERY: usize = 512;

async fn append_as_we_go(app: &App, tx: &mut WriteTx, events: &mut Vec<audit::Event>) -> AppResult<()> {
    if events.len() >= APPEND_EVERY && !tx.appending_holds_the_log() {
        audit::append(&app.clock, tx, std::mem::take(events)).await?;
    }
    Ok(())
}

fn counts(plan: &Plan, apply: bool) -> serde_json::Value {
    serde_json::json!({
        "apply_requested": apply,
        "transmitted": plan.transmitted,
        "open": plan.open.len(), "reopen": plan.reopen.len(), "update": plan.update.len(),
        "close": plan.close.len(), "unchanged": plan.unchanged.len(),
        "errors": plan.errors.len(), "warnings": plan.warnings.len(),
    })
}

/// What the log says of a person of the annex.
fn details(e: &PersonEntry) -> serde_json::Value {
    serde_json::json!({"line": e.line, "function": e.function, "closure_date": e.closure_date})
}

/// The plan parsed every entry's address already; parsed again for its type.
fn email_of(e: &PersonEntry) -> AppResult<ProfessionalEmail> {
    ProfessionalEmail::parse(&e.email).map_err(|err| AppError::Invalid(err.to_string()))
}

fn access<'a>(
    partner: &'a store::partners::PartnerRow,
    email: &'a ProfessionalEmail,
    e: &'a PersonEntry,
    actor: &'a str,
) -> Access<'a> {
    Access {
        partner,
        email,
        // As the parser cleaned them (collapsed, never empty).
        names: Names { given_name: &e.given_name, family_name: &e.family_name, function: &e.function },
        actor,
        details: details(e),
    }
}
