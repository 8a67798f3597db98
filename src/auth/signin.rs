//! The end of a sign-in, once the credentials are checked (password, and
//! second factor when required): the browser's previous session ended, the
//! new one opened, the parked authorization request's code issued and the
//! request consumed, and the connection-log record — one write transaction,
//! all or nothing, so a session never exists without its sign-in record.

use crate::accounts::Account;
use crate::app::App;
use crate::audit;
use crate::auth::session::{self, Session, SessionSource};
use crate::crypto::hash_secret;
use crate::error::AppResult;
use crate::oidc::authorize::{self, AuthorizationRequest};
use crate::store;

pub struct Completion<'a> {
    pub account: &'a Account,
    pub amr: &'a [&'a str],
    pub acr: &'a str,
    /// The session cookie the browser still holds: a new id at every
    /// sign-in, the previous session ends.
    pub previous_cookie: Option<&'a str>,
    /// The parked authorization request, with its handle, to answer now.
    pub parked: Option<(&'a str, &'a AuthorizationRequest)>,
    pub source: &'a audit::Source,
    pub user_agent: Option<&'a str>,
}

pub struct Completed {
    /// The new session's cookie value.
    pub cookie: String,
    pub session: Session,
    /// The redirect to the relying party with its code, when a request was parked.
    pub location: Option<String>,
}

/// Reads the previous session (when the browser holds one) and its clients,
/// then writes everything in one transaction.
pub async fn complete(app: &App, c: Completion<'_>) -> AppResult<Completed> {
    let previous = match c.previous_cookie {
        Some(cookie) => app.store.session(&hash_secret(cookie)).await?,
        None => None,
    };
    let clients = match &previous {
        Some(row) => app.store.session_client_ids(&row.id_hash).await?,
        None => Vec::new(),
    };
    let mut tx = app.store.begin_write().await?;
    let mut notices = false;
    if let Some(row) = &previous {
        notices = session::end_in(app, &mut tx, row, &clients, "replaced").await? && !clients.is_empty();
    }
    let source = SessionSource { ip: c.source.ip.as_deref(), user_agent: c.user_agent };
    let (cookie, session) = session::open_in(app, &mut tx, &c.account.id, c.amr, c.acr, source).await?;
    let location = match c.parked {
        Some((handle, request)) => {
            let location = authorize::issue_code_in(app, &mut tx, request, &session).await?;
            store::delete_auth_request(&mut tx, &hash_secret(handle)).await?;
            Some(location)
        }
        None => None,
    };
    let mut event = audit::Event::new(audit::kind::SIGNIN, audit::Outcome::Success, c.account.email.clone())
        .email(c.account.email.clone())
        .account(c.account.id.clone())
        .partner(c.account.partner_id.clone())
        .source(c.source)
        .session(&session.sid)
        .details(serde_json::json!({"amr": c.amr, "acr": c.acr}));
    if let Some((_, request)) = c.parked {
        event = event.client(request.client_id.clone());
    }
    audit::append(app, &mut tx, vec![event]).await?;
    tx.commit().await?;
    if notices {
        app.backchannel_wake.notify_one();
    }
    tracing::info!(account = %c.account.id, "signed in");
    Ok(Completed { cookie, session, location })
}
