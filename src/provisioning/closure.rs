//! Closing one access by hand (`account close EMAIL --reason TEXT`): what a
//! closure by annex 1 does (R12) — state, links, sessions and tokens ended,
//! back-channel logouts queued — and its `access_closed` record, in one
//! transaction; the operator's reason goes into the record.

use serde::Serialize;

use crate::accounts::AccountState;
use crate::accounts::directory::{normalized, unknown};
use crate::app::App;
use crate::audit::{self, Event, Outcome};
use crate::dates::format_iso;
use crate::error::{AppError, AppResult};

/// The longest reason kept in the connection log, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What was closed.
#[derive(Debug, Clone, Serialize)]
pub struct Closed {
    pub account_id: String,
    pub email: String,
    pub partner_id: Option<String>,
    /// The closure date recorded (today, as for an annex without a date).
    pub closure_date: String,
}

/// Closes the access of `email` now; `actor` is recorded (`cli`). A closed
/// access, an empty or overlong reason, an unknown address: refused,
/// nothing changed.
pub async fn close_by_hand(app: &App, email: &str, reason: &str, actor: &str) -> AppResult<Closed> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::Invalid("motif / reason : ne doit pas être vide / must not be empty".into()));
    }
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(AppError::Invalid(format!(
            "motif / reason : une ligne d'au plus {MAX_REASON_CHARS} caractères / \
             one line of at most {MAX_REASON_CHARS} characters"
        )));
    }
    let row = app.store.account_by_email(&normalized(email)).await?.ok_or_else(|| unknown(email))?;
    if AccountState::parse(&row.state) == Some(AccountState::Closed) {
        return Err(AppError::Invalid(format!(
            "l'accès de « {0} » est déjà clôturé / the access of `{0}` is already closed",
            row.email
        )));
    }
    let now = app.clock.now_ms();
    let on = format_iso(app.clock.today());
    let mut tx = app.store.begin_write().await?;
    super::close_access_in(app, &mut tx, &row.id, &on, "access_closed", now).await?;
    let e = Event::new(audit::kind::ACCESS_CLOSED, Outcome::Success, actor)
        .email(row.email.clone())
        .account(row.id.clone())
        .partner(row.partner_id.clone())
        .details(serde_json::json!({
            "reason": "closed_by_hand", "comment": reason, "function": row.function, "closure_date": on,
        }));
    audit::append(&app.clock, &mut tx, vec![e]).await?;
    tx.commit().await?;
    app.backchannel_wake.notify_one();
    tracing::info!(account = %row.id, closure_date = %on, "access closed by hand");
    Ok(Closed { account_id: row.id, email: row.person.email, partner_id: row.person.partner_id, closure_date: on })
}
