//! RFC 7662 introspection, for authenticated clients only. A client sees
//! only its own tokens: another client's token is reported inactive.

use serde_json::{Value, json};

use super::client_auth::{self, Presented};
use super::clients::AuthMethod;
use super::revocation::find_presented_token;
use super::{OAuthError, Params};
use crate::app::App;
use crate::audit::{self, Event, Outcome, Source};

pub async fn introspect(app: &App, presented: &Presented, form: &Params, source: &Source) -> Result<Value, OAuthError> {
    let claimed = presented.basic.as_ref().map(|(id, _)| id.as_str()).or_else(|| form.get("client_id"));
    let client = match client_auth::authenticate(app, presented, form).await {
        Ok(c) => c,
        Err(e) => {
            record_denial(app, claimed, e.code, None, source).await;
            return Err(e);
        }
    };
    // A public client proves nothing (discovery does not offer `none` here).
    if client.auth_method == AuthMethod::None {
        record_denial(app, Some(&client.id), "public_client", None, source).await;
        return Err(OAuthError::invalid_client("public clients cannot use introspection"));
    }
    let (_, found) = find_presented_token(&app.store, form).await?;
    let now = app.clock.now_ms();
    let Some((found, is_refresh)) = found else { return Ok(json!({"active": false})) };
    let live = found.family.client_id == client.id
        && found.token_expires_at > now
        && found.used_at.is_none()
        && found.family.revoked_at.is_none()
        && found.account_state == "active";
    if !live {
        if found.family.client_id != client.id {
            record_denial(app, Some(&client.id), "other_client_token", Some(&found.family.account_id), source).await;
        }
        return Ok(json!({"active": false}));
    }
    Ok(json!({
        "active": true,
        "scope": found.family.scope,
        "client_id": found.family.client_id,
        "sub": found.family.account_id,
        "aud": found.family.client_id,
        "iss": app.config.issuer_str(),
        "iat": found.token_created_at / 1000,
        "exp": found.token_expires_at / 1000,
        "token_type": if is_refresh { "refresh_token" } else { "Bearer" },
        "sid": found.family.sid,
    }))
}

/// An introspection refused (R15): the client failed to authenticate, is
/// public, or asked about another client's token (which it is told is
/// inactive). The token itself is never recorded.
async fn record_denial(app: &App, client_id: Option<&str>, reason: &str, account_id: Option<&str>, source: &Source) {
    let actor = client_id.unwrap_or("anonymous").to_string();
    let mut e = Event::new(audit::kind::INTROSPECTION_DENIED, Outcome::Failure, actor)
        .source(source)
        .details(json!({"reason": reason}));
    if let Some(id) = client_id {
        e = e.client(id);
    }
    if let Some(account_id) = account_id {
        if let Ok(Some(row)) = app.store.account_by_id(account_id).await {
            e = e.email(row.person.email).partner(row.person.partner_id);
        }
        e = e.account(account_id);
    }
    audit::record(&app.store, &app.clock, vec![e]).await;
}
