//! What an administrator does to partners and accesses, and what it may
//! see of them: shared by the command line, the admin API and the console.

use serde_json::{Value, json};

use super::{Admin, AdminError, AdminResult, Role};
use crate::accounts::AccountState;
use crate::alerts::AlertView;
use crate::app::App;
use crate::audit::{self, Event, Outcome, Source};
use crate::auth::links::{self, Purpose};
use crate::clock::{Millis, rfc3339_ms};
use crate::dates::format_iso;
use crate::error::AppResult;
use crate::provisioning::convention::{Convention, ConventionState};
use crate::provisioning::review::PartnerReview;
use crate::store::{self, accounts::AccountRow, partners::PartnerRow};

/// The partner, when this administrator may see it: refused before saying
/// whether it exists.
pub async fn visible_partner(app: &App, admin: &Admin, id: &str) -> AdminResult<PartnerRow> {
    if !admin.may_see_partner(id) {
        return Err(AdminError::Forbidden);
    }
    app.store.partner(id).await?.ok_or_else(|| AdminError::UnknownPartner(id.to_string()))
}

/// The summaries of the partners this administrator sees.
pub async fn visible_partners(app: &App, admin: &Admin) -> AppResult<Vec<Value>> {
    let mut out = Vec::new();
    for p in app.store.partners().await? {
        if admin.may_see_partner(&p.id) {
            out.push(partner_summary(app, &p).await?);
        }
    }
    Ok(out)
}

/// The yearly review board (R13): every partner for the Caf, its own for a
/// partner's manager.
pub async fn review_board(app: &App, admin: &Admin) -> AppResult<Vec<PartnerReview>> {
    let list = crate::provisioning::review::review(&app.store, &app.clock).await?;
    Ok(list.into_iter().filter(|r| admin.may_see_partner(&r.partner_id)).collect())
}

/// The account an action concerns, when this administrator may act on its
/// partner. Caf staff belong to no partner: only the Caf's managers act on
/// them.
pub async fn account_in_scope(app: &App, admin: &Admin, id: &str) -> AdminResult<AccountRow> {
    let row = app.store.account_by_id(id).await?.ok_or_else(|| AdminError::UnknownAccount(id.to_string()))?;
    let allowed = match &row.partner_id {
        Some(p) => admin.may_see_partner(p),
        None => admin.has(Role::CafHabilitation),
    };
    if allowed { Ok(row) } else { Err(AdminError::Forbidden) }
}

/// A read of the security alerts, as asked.
pub struct AlertsRead<'a> {
    /// As typed, for the record; `since_ms` is what it means.
    pub since: Option<&'a str>,
    pub since_ms: Option<Millis>,
    pub limit: i64,
    pub offset: i64,
    /// `json`, `csv` (an export) or `console`.
    pub format: &'a str,
}

/// The alerts, the read recorded in the connection log (`log_read`, or
/// `log_exported` for a CSV file) like every read of it.
pub async fn read_alerts(app: &App, actor: &str, source: &Source, read: AlertsRead<'_>) -> AppResult<Vec<AlertView>> {
    let list = crate::alerts::list(&app.store, read.since_ms, read.limit, read.offset).await?;
    let kind = if read.format == "csv" { audit::kind::LOG_EXPORTED } else { audit::kind::LOG_READ };
    let e = Event::new(kind, Outcome::Success, actor)
        .source(source)
        .details(json!({"alerts": true, "since": read.since, "format": read.format, "records": list.len()}));
    audit::record(&app.store, &app.clock, vec![e]).await;
    Ok(list)
}

/// The codes of the convention's states, as `partner_summary` gives them
/// (the console shows each with its label).
pub const CONVENTION_STATES: [&str; 4] = ["not_signed", "in_force", "ended", "terminated"];

/// A partner, its convention and its current annex 1, as shown to managers.
pub async fn partner_summary(app: &App, p: &PartnerRow) -> AppResult<Value> {
    let state = match Convention::of(p).state(app.clock.today()) {
        ConventionState::NotSigned => json!({"state": "not_signed"}),
        ConventionState::InForce { term } => json!({"state": "in_force", "term": format_iso(term)}),
        ConventionState::Ended { on } => json!({"state": "ended", "on": format_iso(on)}),
        ConventionState::Terminated { on } => {
            json!({"state": "terminated", "on": format_iso(on), "reason": p.termination_reason})
        }
    };
    let annex = app.store.current_annex1(&p.id).await?;
    let annex2 = app.store.annex2(&p.id).await?;
    Ok(json!({
        "id": p.id,
        "name": p.name,
        "email_domains": serde_json::from_str::<Value>(&p.email_domains).unwrap_or_default(),
        "convention": {"signed_on": p.convention_signed_on, "non_renewal_notified_on": p.non_renewal_notified_on, "status": state},
        "annex1": annex.map(|a| json!({"transmitted_on": a.transmitted_on, "checksum": a.checksum, "applied_at": rfc3339_ms(a.applied_at), "operator": a.operator})),
        "annex2": annex2,
    }))
}

/// A partner's accounts with their state and last sign-in.
pub async fn partner_accounts(app: &App, partner_id: &str) -> AppResult<Vec<Value>> {
    Ok(app
        .store
        .partner_accounts(partner_id)
        .await?
        .into_iter()
        .map(|a| {
            json!({
                "account_id": a.id, "email": a.email, "given_name": a.given_name, "family_name": a.family_name,
                "function": a.function, "state": a.state, "closure_requested_on": a.closure_requested_on,
                "last_signin": a.last_signin_ms.map(rfc3339_ms),
            })
        })
        .collect())
}

async fn account(app: &App, account_id: &str) -> AdminResult<store::accounts::AccountRow> {
    app.store.account_by_id(account_id).await?.ok_or_else(|| AdminError::UnknownAccount(account_id.to_string()))
}

/// Sends a fresh activation link to an access whose password is not created
/// yet; the older links stop working.
pub async fn resend_activation(app: &App, account_id: &str, actor: &str, source: &Source) -> AdminResult<()> {
    let row = account(app, account_id).await?;
    match AccountState::parse(&row.state) {
        Some(AccountState::Pending) => {}
        Some(AccountState::Closed) | None => return Err(AdminError::Closed(row.person.email)),
        Some(AccountState::Active) => return Err(AdminError::NotPending(row.person.email)),
    }
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await?;
    store::credentials::supersede_links_of_account(&mut tx, &row.id, now).await?;
    links::create_and_mail(app, &mut tx, &row, Purpose::Activation).await?;
    let e = Event::new(audit::kind::ACTIVATION_SENT, Outcome::Success, actor)
        .email(row.email.clone())
        .account(row.id.clone())
        .partner(row.partner_id.clone())
        .source(source)
        .details(json!({"resent": true}));
    audit::append(&app.clock, &mut tx, vec![e]).await?;
    tx.commit().await?;
    app.mail_wake.notify_one();
    Ok(())
}

/// Closes an access at once (R12): state, links, sessions and tokens in one
/// transaction, back-channel logouts queued. Closing a closed access is a
/// no-op (false).
pub async fn close_access(app: &App, account_id: &str, actor: &str, source: &Source) -> AdminResult<bool> {
    let row = account(app, account_id).await?;
    if AccountState::parse(&row.state) == Some(AccountState::Closed) {
        return Ok(false);
    }
    let now = app.clock.now_ms();
    let on = format_iso(app.clock.today());
    let mut tx = app.store.begin_write().await?;
    crate::provisioning::close_access_in(app, &mut tx, &row.id, &on, "access_closed", now).await?;
    let e = Event::new(audit::kind::ACCESS_CLOSED, Outcome::Success, actor)
        .email(row.email.clone())
        .account(row.id.clone())
        .partner(row.partner_id.clone())
        .source(source)
        .details(json!({"reason": "closed_by_administrator", "closure_date": on}));
    audit::append(&app.clock, &mut tx, vec![e]).await?;
    tx.commit().await?;
    app.backchannel_wake.notify_one();
    Ok(true)
}
