//! The accounts as the command line lists and shows them (`account list`,
//! `account show`): who, at which partner, in which state, their last
//! sign-in and whether an activation waits. Never a password or its hash.

use serde::Serialize;

use super::AccountState;
use crate::app::App;
use crate::clock::{Millis, rfc3339_ms};
use crate::error::{AppError, AppResult};
use crate::store::accounts::{AccountFilter, AccountListRow, Person};

/// Bounds of one page of `account list`.
pub const MAX_LIST: i64 = 100_000;

/// Which accounts to list; every filter given applies.
#[derive(Debug, Clone, Default)]
pub struct ListQuery<'a> {
    pub partner_id: Option<&'a str>,
    /// `pending`, `active` or `closed`.
    pub state: Option<&'a str>,
    /// Only the accounts whose password is not created yet (state `pending`).
    pub pending_activation: bool,
    pub limit: i64,
    pub offset: i64,
}

/// The activation of an account still pending.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    /// When the newest activation link was made.
    pub sent_at: Option<String>,
    /// When the link still usable expires (`null`: none is: resend one).
    pub expires_at: Option<String>,
    /// A link not used, not superseded and not expired exists.
    pub live: bool,
}

/// One account, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub account_id: String,
    #[serde(flatten)]
    pub person: Person,
    pub state: String,
    pub closure_requested_on: Option<String>,
    pub closed_at: Option<String>,
    pub created_at: String,
    pub last_signin: Option<String>,
    /// Only for a pending account.
    pub activation: Option<Activation>,
}

/// One account, as shown: the listed fields, its roles and second factor.
#[derive(Debug, Clone, Serialize)]
pub struct AccountDetails {
    #[serde(flatten)]
    pub account: AccountView,
    pub updated_at: String,
    pub roles: Vec<String>,
    pub second_factor: bool,
}

impl AccountView {
    fn of(row: AccountListRow, now: Millis) -> Self {
        let activation = (row.state == AccountState::Pending.as_str()).then(|| Activation {
            sent_at: row.activation_sent_at.map(rfc3339_ms),
            expires_at: row.activation_expires_at.map(rfc3339_ms),
            live: row.activation_expires_at.is_some_and(|e| e > now),
        });
        AccountView {
            account_id: row.id,
            person: row.person,
            state: row.state,
            closure_requested_on: row.closure_requested_on,
            closed_at: row.closed_at.map(rfc3339_ms),
            created_at: rfc3339_ms(row.created_at),
            last_signin: row.last_signin_ms.map(rfc3339_ms),
            activation,
        }
    }
}

/// The accounts matching the query, by address. An unknown partner or
/// state is refused rather than answered with an empty list.
pub async fn list(app: &App, q: &ListQuery<'_>) -> AppResult<Vec<AccountView>> {
    let state = match (q.state, q.pending_activation) {
        (Some(s), _) if AccountState::parse(s).is_none() => {
            return Err(AppError::Invalid(format!(
                "état / state : « {s} » : pending, active ou closed attendu / expected pending, active or closed"
            )));
        }
        (Some(s), true) if s != AccountState::Pending.as_str() => {
            return Err(AppError::Invalid(format!(
                "--pending-activation ne liste que l'état pending, pas « {s} » / lists the pending state only, not `{s}`"
            )));
        }
        (_, true) => Some(AccountState::Pending.as_str()),
        (s, false) => s,
    };
    if !(1..=MAX_LIST).contains(&q.limit) || q.offset < 0 {
        return Err(AppError::Invalid(format!(
            "limit : 1 à {MAX_LIST}, offset : 0 ou plus / limit: 1 to {MAX_LIST}, offset: 0 or more"
        )));
    }
    if let Some(p) = q.partner_id
        && app.store.partner(p).await?.is_none()
    {
        return Err(AppError::Invalid(format!("partenaire inconnu « {p} » / unknown partner `{p}`")));
    }
    let filter = AccountFilter { partner_id: q.partner_id, state, email_normalized: None };
    let now = app.clock.now_ms();
    Ok(app.store.account_list(&filter, q.limit, q.offset).await?.into_iter().map(|r| AccountView::of(r, now)).collect())
}

/// The account of a professional address (as typed: case and spaces do
/// not matter).
pub async fn show(app: &App, email: &str) -> AppResult<AccountDetails> {
    let normalized = normalized(email);
    let filter = AccountFilter { email_normalized: Some(&normalized), ..AccountFilter::default() };
    let row = app.store.account_list(&filter, 1, 0).await?.into_iter().next().ok_or_else(|| unknown(email))?;
    let factors = app.store.signin_account(&normalized).await?;
    let roles = app.store.account_roles(&row.id).await?;
    let updated_at = rfc3339_ms(row.updated_at);
    Ok(AccountDetails {
        account: AccountView::of(row, app.clock.now_ms()),
        updated_at,
        roles,
        second_factor: factors.is_some_and(|f| f.totp_count > 0),
    })
}

/// An address as accounts are found by it.
pub fn normalized(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The refusal for an address no account has (the words of the admin
/// commands' own).
pub fn unknown(email: &str) -> AppError {
    let email = email.trim();
    AppError::Invalid(format!("aucun compte pour « {email} » / no account for `{email}`"))
}
