//! RFC 7009 token revocation. Revoking a refresh token revokes its whole
//! family (and so its access tokens); an unknown token or one of another
//! client is answered 200 without effect, so the endpoint tells nothing.

use super::client_auth::{self, Presented};
use super::{OAuthError, Params};
use crate::app::App;
use crate::audit;
use crate::crypto::hash_secret;
use crate::store::{self, Store, grants::TokenLookup};

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

/// Returns what was revoked and the client that asked. A revocation and
/// its `token_revoked` record are one transaction.
pub async fn revoke(
    app: &App,
    presented: &Presented,
    form: &Params,
    source: &audit::Source,
) -> Result<(Revoked, String), OAuthError> {
    let client = client_auth::authenticate(app, presented, form).await?;
    let (hash, found) = find_presented_token(&app.store, form).await?;
    let now = app.clock.now_ms();
    let Some((found, is_refresh)) = found else { return Ok((Revoked::Nothing, client.id)) };
    if found.family.client_id != client.id {
        return Ok((Revoked::Nothing, client.id));
    }
    let account = app.store.account_by_id(&found.family.account_id).await?;
    let mut tx = app.store.begin_write().await?;
    let what = if is_refresh {
        store::grants::revoke_family(&mut tx, &found.family.id, "revoked_by_client", now).await?;
        Revoked::RefreshToken { account_id: found.family.account_id.clone() }
    } else {
        store::grants::delete_access_token(&mut tx, &hash).await?;
        Revoked::AccessToken { account_id: found.family.account_id.clone() }
    };
    let token_type = if is_refresh { "refresh_token" } else { "access_token" };
    let mut e = audit::Event::new(audit::kind::TOKEN_REVOKED, audit::Outcome::Success, client.id.clone())
        .account(found.family.account_id.clone())
        .client(client.id.clone())
        .source(source)
        .details(serde_json::json!({"token_type": token_type}));
    if let Some(row) = account {
        e = e.email(row.person.email).partner(row.person.partner_id);
    }
    audit::append(&app.clock, &mut tx, vec![e]).await?;
    tx.commit().await?;
    Ok((what, client.id))
}

/// The token presented to introspection or revocation (`token`): its hash,
/// and the token found with whether it is a refresh token. It is looked
/// for first where `token_type_hint` points; an unknown hint changes
/// nothing (RFC 7009 §2.1, RFC 7662 §2.1).
pub(super) async fn find_presented_token(
    store: &Store,
    form: &Params,
) -> Result<(String, Option<(TokenLookup, bool)>), OAuthError> {
    let token = form.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hash = hash_secret(token);
    let refresh_first = form.get("token_type_hint") == Some("refresh_token");
    for is_refresh in [refresh_first, !refresh_first] {
        let found = if is_refresh { store.refresh_token(&hash).await? } else { store.access_token(&hash).await? };
        if let Some(found) = found {
            return Ok((hash, Some((found, is_refresh))));
        }
    }
    Ok((hash, None))
}
