//! RFC 7662 introspection, for authenticated clients only. A client sees
//! only its own tokens: another client's token is reported inactive.

use serde_json::{Value, json};

use super::client_auth::{self, Presented};
use super::clients::AuthMethod;
use super::{OAuthError, Params};
use crate::app::App;
use crate::crypto::hash_secret;

pub async fn introspect(app: &App, presented: &Presented, form: &Params) -> Result<Value, OAuthError> {
    let client = client_auth::authenticate(app, presented, form).await?;
    // A public client proves nothing (discovery does not offer `none` here).
    if client.auth_method == AuthMethod::None {
        return Err(OAuthError::invalid_client("public clients cannot use introspection"));
    }
    let token = form.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hash = hash_secret(token);
    let now = app.clock.now_ms();
    let refresh_first = form.get("token_type_hint") == Some("refresh_token");
    for try_refresh in [refresh_first, !refresh_first] {
        let found =
            if try_refresh { app.store.refresh_token(&hash).await? } else { app.store.access_token(&hash).await? };
        let Some(found) = found else { continue };
        let live = found.family.client_id == client.id
            && found.token_expires_at > now
            && found.used_at.is_none()
            && found.family.revoked_at.is_none()
            && found.account_state == "active";
        if !live {
            if found.family.client_id != client.id {
                tracing::info!(client_id = %client.id, "introspection of another client's token denied");
            }
            return Ok(json!({"active": false}));
        }
        return Ok(json!({
            "active": true,
            "scope": found.family.scope,
            "client_id": found.family.client_id,
            "sub": found.family.account_id,
            "aud": found.family.client_id,
            "iss": app.config.issuer_str(),
            "iat": found.token_created_at / 1000,
            "exp": found.token_expires_at / 1000,
            "token_type": if try_refresh { "refresh_token" } else { "Bearer" },
            "sid": found.family.sid,
        }));
    }
    Ok(json!({"active": false}))
}
