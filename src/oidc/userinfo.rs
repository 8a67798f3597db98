//! The userinfo endpoint (OIDC Core §5.3) and bearer-token checks shared with
//! introspection.

use serde_json::{Map, Value, json};

use super::claims::{ClaimsRequest, user_claims};
use super::split_spaces;
use crate::accounts::Account;
use crate::app::App;
use crate::crypto::hash_secret;
use crate::error::AppError;
use crate::store::grants::TokenLookup;

#[derive(Debug)]
pub enum BearerError {
    /// RFC 6750 §3.1: missing, unknown, expired or revoked.
    InvalidToken,
    InvalidRequest,
    Internal(AppError),
}

impl From<AppError> for BearerError {
    fn from(e: AppError) -> Self {
        BearerError::Internal(e)
    }
}

impl From<crate::store::StoreError> for BearerError {
    fn from(e: crate::store::StoreError) -> Self {
        BearerError::Internal(e.into())
    }
}

/// A live access token: not expired, its family not revoked (revocation,
/// session end, password reset) and its account still active.
pub async fn live_access_token(app: &App, token: &str) -> Result<Option<TokenLookup>, AppError> {
    let now = app.clock.now_ms();
    let Some(found) = app.store.access_token(&hash_secret(token)).await? else { return Ok(None) };
    let live = found.token_expires_at > now && found.family.revoked_at.is_none() && found.account_state == "active";
    Ok(live.then_some(found))
}

pub async fn userinfo(app: &App, token: Option<&str>) -> Result<Map<String, Value>, BearerError> {
    let token = token.ok_or(BearerError::InvalidToken)?;
    // The checks of `live_access_token`, on the token read together with its
    // account and roles (one statement).
    let now = app.clock.now_ms();
    let grant = app.store.access_grant(&hash_secret(token)).await?.ok_or(BearerError::InvalidToken)?;
    let found = &grant.token;
    let live = found.token_expires_at > now && found.family.revoked_at.is_none() && found.account_state == "active";
    if !live {
        return Err(BearerError::InvalidToken);
    }
    let scopes = split_spaces(&found.family.scope);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(BearerError::InvalidToken);
    }
    let account = Account::from_row(&grant.account);
    let roles = grant.roles;
    let requested = found
        .family
        .claims
        .as_deref()
        .and_then(|c| serde_json::from_str::<ClaimsRequest>(c).ok())
        .map(|c| c.userinfo)
        .unwrap_or_default();
    let mut claims = user_claims(&account, &roles, &scopes, &requested);
    claims.insert("sub".into(), json!(account.id));
    Ok(claims)
}
