//! Opening an access: the account is created `pending` and receives an
//! activation link by email; it becomes `active` only when its owner creates
//! a password (R1, R3). An administrator opens one access by hand here
//! (`invite`); the annex-1 import opens many; both go through
//! [`open_account`] and [`reinvite`], in their own transaction.

use serde_json::{Value, json};

use super::convention::Convention;
use crate::accounts::{AccountState, Names, ProfessionalEmail, new_subject, pending_row};
use crate::app::App;
use crate::audit::{self, Event, Outcome};
use crate::auth::links::{self, Purpose};
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::store::{self, WriteTx, accounts::AccountRow, partners::PartnerRow};

/// Who an access is opened for, and who opens it.
pub struct Access<'a> {
    pub partner: &'a PartnerRow,
    pub email: &'a ProfessionalEmail,
    pub names: Names<'a>,
    /// `cli` or an administrator's email, for the log.
    pub actor: &'a str,
    /// The log records' details (an import gives the annex line).
    pub details: Value,
}

/// Creates the account `pending` and queues its activation link, in the
/// caller's transaction. Returns the new account's id and its log records
/// (`access_opened`, `activation_sent`): the caller appends them with its
/// own, last, because appending holds the log's lock until the commit.
pub async fn open_account(
    app: &App,
    tx: &mut WriteTx,
    access: &Access<'_>,
    now: Millis,
) -> AppResult<(String, [Event; 2])> {
    let row = pending_row(new_subject(), access.email, access.names, Some(access.partner), now);
    store::accounts::insert(tx, &row).await?;
    let records = activation(app, tx, &row, access, audit::kind::ACCESS_OPENED).await?;
    Ok((row.id, records))
}

/// Queues a fresh activation link for account `id`, which the caller has
/// just made `pending` again; returns its log records (`access_reopened`,
/// `activation_sent`), as [`open_account`] does.
pub async fn reinvite(app: &App, tx: &mut WriteTx, id: &str, access: &Access<'_>) -> AppResult<[Event; 2]> {
    // The link's email needs the account as it now stands, not as read before.
    let row = pending_row(id.to_string(), access.email, access.names, Some(access.partner), 0);
    activation(app, tx, &row, access, audit::kind::ACCESS_REOPENED).await
}

async fn activation(
    app: &App,
    tx: &mut WriteTx,
    row: &AccountRow,
    access: &Access<'_>,
    opened: &'static str,
) -> AppResult<[Event; 2]> {
    links::create_and_mail(app, tx, row, Purpose::Activation).await?;
    let record = |kind| {
        Event::new(kind, Outcome::Success, access.actor)
            .email(row.email.clone())
            .account(row.id.clone())
            .partner(row.partner_id.clone())
            .details(access.details.clone())
    };
    Ok([record(opened), record(audit::kind::ACTIVATION_SENT)])
}

/// One access to open, as an administrator types it.
pub struct Invitation<'a> {
    pub partner_id: &'a str,
    pub email: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub function: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Invited {
    /// A new pending account.
    Opened(String),
    /// A pending or closed account got a fresh link (older links die).
    Reinvited(String),
}

pub async fn invite(app: &App, inv: Invitation<'_>) -> AppResult<Invited> {
    let bad = AppError::Invalid;
    let email = ProfessionalEmail::parse(inv.email).map_err(|e| bad(format!("adresse électronique / email : {e}")))?;
    let names = Names::parse(inv.given_name, inv.family_name, inv.function).map_err(|e| bad(e.to_string()))?;
    let partner =
        app.store.partner(inv.partner_id).await?.ok_or_else(|| bad(format!("unknown partner `{}`", inv.partner_id)))?;
    // R7: no access unless the partner's convention is in force.
    if !Convention::of(&partner).state(app.clock.today()).allows_openings() {
        return Err(bad(format!(
            "the convention of partner `{}` is not in force: no access can be opened",
            partner.id
        )));
    }
    let domains = super::email_domains(&partner);
    if !domains.is_empty() && !domains.iter().any(|d| d.eq_ignore_ascii_case(email.domain())) {
        return Err(bad(format!("{} is outside the partner's email domains ({})", email, domains.join(", "))));
    }
    let existing = app.store.account_by_email(email.normalized()).await?;
    let now = app.clock.now_ms();
    let access = Access { partner: &partner, email: &email, names, actor: "cli", details: json!({}) };
    let mut tx = app.store.begin_write().await?;
    let (outcome, records) = match existing {
        Some(a) if AccountState::parse(&a.state) == Some(AccountState::Active) => {
            return Err(bad(format!("{email} already has an active access")));
        }
        Some(a) => {
            store::accounts::update_state(&mut tx, &a.id, AccountState::Pending.as_str(), now).await?;
            let records = reinvite(app, &mut tx, &a.id, &access).await?;
            (Invited::Reinvited(a.id), records)
        }
        None => {
            let (id, records) = open_account(app, &mut tx, &access, now).await?;
            (Invited::Opened(id), records)
        }
    };
    audit::append(&app.clock, &mut tx, records.into()).await?;
    tx.commit().await?;
    app.mail_wake.notify_one();
    Ok(outcome)
}
