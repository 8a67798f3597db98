//! Signing out: the session behind the browser's cookie ended, its tokens
//! revoked, its unexchanged codes deleted, the back-channel notices queued
//! and the `signout` record appended, in one write transaction.

use crate::app::App;
use crate::audit;
use crate::auth::session;
use crate::crypto::hash_secret;
use crate::error::AppResult;

/// Ends the session behind a cookie value; false when there was no live
/// session to end (nothing is recorded then).
pub async fn sign_out(app: &App, cookie: &str, source: &audit::Source) -> AppResult<bool> {
    let id_hash = hash_secret(cookie);
    let Some(row) = app.store.session(&id_hash).await? else { return Ok(false) };
    if row.ended_at.is_some() {
        return Ok(false);
    }
    let clients = app.store.session_client_ids(&id_hash).await?;
    let account = app.store.account_by_id(&row.account_id).await?;
    let mut tx = app.store.begin_write().await?;
    if !session::end_in(app, &mut tx, &row, &clients, "logout").await? {
        return Ok(false);
    }
    let email = account.as_ref().map(|a| a.email.clone()).unwrap_or_default();
    let event = audit::Event::new(audit::kind::SIGNOUT, audit::Outcome::Success, email.clone())
        .email(email)
        .account(row.account_id.clone())
        .partner(account.and_then(|a| a.person.partner_id))
        .source(source)
        .session(&row.sid);
    audit::append(&app.clock, &mut tx, vec![event]).await?;
    tx.commit().await?;
    if !clients.is_empty() {
        app.backchannel_wake.notify_one();
    }
    Ok(true)
}
