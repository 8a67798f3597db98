//! RFC 7009 token revocation. Revoking a refresh token revokes its whole
//! family (and so its access tokens); an unknown token or one of another
//! client is answered 200 without effect, so the endpoint tells nothing.

use super::client_auth::{self, Presented};
use super::{OAuthError, Params};
use crate::app::App;
use crate::crypto::hash_secret;
use crate::store;

#[derive(Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The account whose access token was revoked.
    AccessToken {
        account_id: String,
    },
    /// The account whose refresh-token family was revoked.
    RefreshToken {
        account_id: String,
    },
    Nothing,
}

/// Returns what was revoked and the client that asked.
pub async fn revoke(app: &App, presented: &Presented, form: &Params) -> Result<(Revoked, String), OAuthError> {
    let client = client_auth::authenticate(app, presented, form).await?;
    let token = form.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hash = hash_secret(token);
    let now = app.clock.now_ms();
    let refresh_first = form.get("token_type_hint") == Some("refresh_token");
    for try_refresh in [refresh_first, !refresh_first] {
        let found =
            if try_refresh { app.store.refresh_token(&hash).await? } else { app.store.access_token(&hash).await? };
        let Some(found) = found else { continue };
        if found.family.client_id != client.id {
            return Ok((Revoked::Nothing, client.id));
        }
        let mut tx = app.store.begin_write().await?;
        let what = if try_refresh {
            store::revoke_family(&mut tx, &found.family.id, "revoked_by_client", now).await?;
            Revoked::RefreshToken { account_id: found.family.account_id.clone() }
        } else {
            store::delete_access_token(&mut tx, &hash).await?;
            Revoked::AccessToken { account_id: found.family.account_id.clone() }
        };
        tx.commit().await?;
        return Ok((what, client.id));
    }
    Ok((Revoked::Nothing, client.id))
}
