//! The token endpoint (RFC 6749 §3.2): client authentication once, above a
//! dispatch to one function per grant. Tokens are opaque, 256-bit random and
//! stored hashed, so revoking them takes effect at once (see README).

use jsonwebtoken::Algorithm;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::claims::{ClaimsRequest, user_claims};
use super::client_auth::{self, Presented};
use super::clients::Client;
use super::pkce::{CodeChallenge, CodeVerifier};
use super::{OAuthError, Params, split_spaces};
use crate::accounts::{Account, AccountState};
use crate::app::App;
use crate::clock::Millis;
use crate::crypto::{b64url, hash_secret, random_b64, random_token, sha256, sha512};
use crate::store::{self, StoreResult, WriteTx, grants::CodeRow, grants::FamilyRow};

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

/// What happened, for the caller's log (never the tokens themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    Issued,
    Refreshed,
}

/// `source` is where the request came from, for the connection log.
pub async fn handle(
    app: &App,
    presented: &Presented,
    form: &Params,
    source: &crate::audit::Source,
) -> Result<(TokenResponse, TokenEvent), OAuthError> {
    let client = client_auth::authenticate(app, presented, form).await?;
    let request = TokenRequest { client: &client, form, source };
    match form.get("grant_type") {
        Some("authorization_code") => authorization_code(app, request).await.map(|r| (r, TokenEvent::Issued)),
        Some("refresh_token") => refresh_token(app, request).await.map(|r| (r, TokenEvent::Refreshed)),
        None => Err(OAuthError::invalid_request("grant_type is required")),
        Some(_) => Err(OAuthError::new("unsupported_grant_type", "supported: authorization_code, refresh_token")),
    }
}

/// A token request of an authenticated client, as each grant reads it:
/// `source` is where it came from, for the connection log.
#[derive(Clone, Copy)]
struct TokenRequest<'a> {
    client: &'a Client,
    form: &'a Params,
    source: &'a crate::audit::Source,
}

async fn authorization_code(app: &App, request: TokenRequest<'_>) -> Result<TokenResponse, OAuthError> {
    let TokenRequest { client, form, source } = request;
    let code = form.get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri =
        form.get("redirect_uri").ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let verifier = form.get("code_verifier").ok_or_else(|| OAuthError::invalid_request("code_verifier is required"))?;
    let verifier = CodeVerifier::parse(verifier).ok_or_else(|| OAuthError::invalid_grant("malformed code_verifier"))?;
    let now = app.clock.now_ms();
    let code_hash = hash_secret(code);
    // The code, its session's times and its account with its roles
    // (checked below): one read.
    let (row, session, account) =
        app.store.code_grant(&code_hash).await?.ok_or_else(|| OAuthError::invalid_grant("unknown code"))?;

    if row.used_at.is_some() {
        punish_code_replay(app, &row).await?;
        return Err(OAuthError::invalid_grant("code already used"));
    }
    if row.client_id != client.id {
        return Err(OAuthError::invalid_grant("code issued to another client"));
    }
    if row.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request"));
    }
    if row.expires_at <= now {
        return Err(OAuthError::invalid_grant("code expired"));
    }
    // A code dies with its session (R4, R12). Ending a session deletes its
    // codes; this also refuses one whose session timed out unnoticed, or
    // ended while the code was being read.
    let idle_ms = app.config.session_idle_timeout_secs * 1000;
    if !crate::auth::session::is_live(session.as_ref(), now, idle_ms) {
        return Err(OAuthError::invalid_grant("the session of this code has ended"));
    }
    if !CodeChallenge::from_stored(row.code_challenge.clone()).verify(&verifier) {
        return Err(OAuthError::invalid_grant("code_verifier does not match code_challenge"));
    }
    let (account, roles) = active_account(account)?;
    let scopes = split_spaces(&row.scope);
    let family = FamilyRow {
        id: random_b64(16),
        client_id: client.id.clone(),
        account_id: row.account_id.clone(),
        session_id_hash: row.session_id_hash.clone(),
        sid: row.sid.clone(),
        scope: row.scope.clone(),
        claims: row.claims.clone(),
        auth_time: row.auth_time,
        acr: row.acr.clone(),
        amr: row.amr.clone(),
        created_at: now,
        expires_at: now + app.config.refresh_absolute_ttl_secs * 1000,
        revoked_at: None,
    };
    // One round trip on SQLite: everything is queued and sent with the
    // commit, which the family's unique code_hash makes fail for a second
    // exchange of the same code, however close the two.
    let mut tx = app.store.begin_batched_write().await?;
    store::grants::insert_family(&mut tx, &family, Some(&code_hash)).await?;
    store::grants::consume_code(&mut tx, &code_hash, &family.id, now);
    let offline = scopes.iter().any(|s| s == "offline_access");
    let issued = issue_tokens(app, &mut tx, &family, &family.scope, offline, None, now).await?;
    let event =
        token_event(crate::audit::kind::TOKEN_ISSUED, client, &account, &family, &family.scope, &issued, source);
    match append_and_commit(app, tx, event).await {
        Ok(()) => {}
        Err(e) if e.is_second_use() => {
            if let Some(row) = app.store.code(&code_hash).await? {
                punish_code_replay(app, &row).await?;
            }
            return Err(OAuthError::invalid_grant("code already used"));
        }
        Err(e) if e.is_session_gone() => return Err(OAuthError::invalid_grant("the session of this code has ended")),
        Err(e) => return Err(e.into()),
    }
    respond(app, client, &account, &roles, &family, &scopes, issued, row.nonce.as_deref(), now)
}

/// The issuance's log record, then the commit. A second use of the code or
/// refresh token surfaces here: at the commit on SQLite, at the first
/// statement sent on PostgreSQL (before the log's lock is taken).
async fn append_and_commit(
    app: &App,
    mut tx: WriteTx,
    event: crate::audit::Event,
) -> Result<(), crate::error::AppError> {
    crate::audit::append(&app.clock, &mut tx, vec![event]).await?;
    tx.commit().await?;
    Ok(())
}

/// RFC 6749 §4.1.2 and RFC 9700 §4.5: a replayed code revokes what it gave.
async fn punish_code_replay(app: &App, row: &CodeRow) -> Result<(), OAuthError> {
    if let Some(family_id) = &row.family_id {
        let mut tx = app.store.begin_write().await?;
        store::grants::revoke_family(&mut tx, family_id, "code_replay", app.clock.now_ms()).await?;
        tx.commit().await?;
        tracing::warn!(client_id = %row.client_id, "authorization code replayed; its tokens were revoked");
    }
    Ok(())
}

async fn refresh_token(app: &App, request: TokenRequest<'_>) -> Result<TokenResponse, OAuthError> {
    let TokenRequest { client, form, source } = request;
    let presented =
        form.get("refresh_token").ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let now = app.clock.now_ms();
    let token_hash = hash_secret(presented);
    // The token, its family and the account with its roles: one read.
    let grant = app
        .store
        .refresh_grant(&token_hash)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
    let found = grant.token;
    let family = found.family;
    if family.client_id != client.id {
        return Err(OAuthError::invalid_grant("refresh token issued to another client"));
    }
    if found.used_at.is_some() {
        revoke_on_reuse(app, &family, now).await?;
        return Err(OAuthError::invalid_grant("refresh token already used"));
    }
    if family.revoked_at.is_some() || family.expires_at <= now || found.token_expires_at <= now {
        return Err(OAuthError::invalid_grant("refresh token expired or revoked"));
    }
    let granted = split_spaces(&family.scope);
    let scopes = match form.get("scope") {
        None => granted.clone(),
        Some(asked) => {
            let asked = split_spaces(asked);
            if asked.iter().any(|s| !granted.contains(s)) {
                return Err(OAuthError::new("invalid_scope", "scope exceeds the original grant"));
            }
            asked
        }
    };
    let account = Account::from_row(&grant.account);
    if account.state != AccountState::Active {
        return Err(OAuthError::invalid_grant("account is not active"));
    }
    // One round trip on SQLite, as for the code: the successor's unique
    // parent_hash makes the commit fail for a second rotation.
    let mut tx = app.store.begin_batched_write().await?;
    let issued = issue_tokens(app, &mut tx, &family, &scopes.join(" "), true, Some(&token_hash), now).await?;
    store::grants::consume_refresh_token(&mut tx, &token_hash, now);
    let event =
        token_event(crate::audit::kind::TOKEN_REFRESHED, client, &account, &family, &scopes.join(" "), &issued, source);
    match append_and_commit(app, tx, event).await {
        Ok(()) => {}
        Err(e) if e.is_second_use() => {
            revoke_on_reuse(app, &family, now).await?;
            return Err(OAuthError::invalid_grant("refresh token already used"));
        }
        Err(e) => return Err(e.into()),
    }
    respond(app, client, &account, &grant.roles, &family, &scopes, issued, None, now)
}

/// RFC 9700 §4.14.2: a rotated refresh token presented again means it leaked;
/// the whole family goes.
async fn revoke_on_reuse(app: &App, family: &FamilyRow, now: Millis) -> Result<(), OAuthError> {
    let email = app.store.account_by_id(&family.account_id).await?.map(|a| (a.person.email, a.person.partner_id));
    let mut tx = app.store.begin_write().await?;
    store::grants::revoke_family(&mut tx, &family.id, "refresh_reuse", now).await?;
    let mut event =
        crate::audit::Event::new(crate::audit::kind::REFRESH_REUSE_DETECTED, crate::audit::Outcome::Failure, "system")
            .account(family.account_id.clone())
            .client(family.client_id.clone())
            .session(&family.sid)
            .details(serde_json::json!({"family_revoked": true}));
    if let Some((email, partner)) = email {
        event = event.email(email).partner(partner);
    }
    crate::audit::append(&app.clock, &mut tx, vec![event]).await?;
    tx.commit().await?;
    tracing::warn!(family = %family.id, "refresh token reused; its family was revoked");
    Ok(())
}

/// The account, which must exist and be active, and its roles.
fn active_account(
    found: Option<(store::accounts::AccountRow, Vec<String>)>,
) -> Result<(Account, Vec<String>), OAuthError> {
    let (row, roles) = found.ok_or_else(|| OAuthError::invalid_grant("account not found"))?;
    let account = Account::from_row(&row);
    if account.state != AccountState::Active {
        return Err(OAuthError::invalid_grant("account is not active"));
    }
    Ok((account, roles))
}

/// The connection-log record of an issuance, written in the same
/// transaction as the tokens (one pass through the writer, not two).
fn token_event(
    kind: &'static str,
    client: &Client,
    account: &Account,
    family: &FamilyRow,
    scope: &str,
    issued: &Issued,
    source: &crate::audit::Source,
) -> crate::audit::Event {
    crate::audit::Event::new(kind, crate::audit::Outcome::Success, client.id.clone())
        .email(account.email.clone())
        .account(account.id.clone())
        .partner(account.partner_id.clone())
        .client(client.id.clone())
        .session(&family.sid)
        .source(source)
        .details(serde_json::json!({"scope": scope, "refresh_token": issued.refresh_token.is_some()}))
}

struct Issued {
    access_token: String,
    refresh_token: Option<String>,
}

async fn issue_tokens(
    app: &App,
    tx: &mut WriteTx,
    family: &FamilyRow,
    scope: &str,
    with_refresh: bool,
    replaces: Option<&str>,
    now: Millis,
) -> StoreResult<Issued> {
    let access_token = random_token();
    store::grants::insert_access_token(
        tx,
        &hash_secret(&access_token),
        &family.id,
        scope,
        now,
        now + app.config.access_token_ttl_secs * 1000,
    )
    .await?;
    let refresh_token = if with_refresh {
        let token = random_token();
        let expires = (now + app.config.refresh_idle_ttl_secs * 1000).min(family.expires_at);
        store::grants::insert_refresh_token(tx, &hash_secret(&token), &family.id, now, expires, replaces).await?;
        Some(token)
    } else {
        None
    };
    Ok(Issued { access_token, refresh_token })
}

#[allow(clippy::too_many_arguments)]
fn respond(
    app: &App,
    client: &Client,
    account: &Account,
    roles: &[String],
    family: &FamilyRow,
    scopes: &[String],
    issued: Issued,
    nonce: Option<&str>,
    now: Millis,
) -> Result<TokenResponse, OAuthError> {
    let id_token = if scopes.iter().any(|s| s == "openid") {
        let requested = family
            .claims
            .as_deref()
            .and_then(|c| serde_json::from_str::<ClaimsRequest>(c).ok())
            .map(|c| c.id_token)
            .unwrap_or_default();
        let claims = IdTokenInput {
            client,
            account,
            roles,
            scopes,
            requested: &requested,
            family,
            nonce,
            access_token: &issued.access_token,
            now,
        };
        Some(sign_id_token(app, &claims)?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: app.config.access_token_ttl_secs,
        refresh_token: issued.refresh_token,
        id_token,
        scope: scopes.join(" "),
    })
}

struct IdTokenInput<'a> {
    client: &'a Client,
    account: &'a Account,
    roles: &'a [String],
    scopes: &'a [String],
    requested: &'a [String],
    family: &'a FamilyRow,
    nonce: Option<&'a str>,
    access_token: &'a str,
    now: Millis,
}

/// OIDC Core §3.3.2.11: the left half of the hash that matches the signing
/// algorithm (SHA-512 for Ed25519).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest = match alg {
        Algorithm::EdDSA => sha512(access_token.as_bytes()),
        _ => sha256(access_token.as_bytes()),
    };
    b64url(&digest[..digest.len() / 2])
}

fn sign_id_token(app: &App, input: &IdTokenInput) -> Result<String, OAuthError> {
    let now_secs = input.now / 1000;
    let mut claims: Map<String, Value> = user_claims(input.account, input.roles, input.scopes, input.requested);
    let alg = input.client.id_token_alg;
    let amr: Vec<&str> = input.family.amr.split(' ').filter(|s| !s.is_empty()).collect();
    for (k, v) in [
        ("iss", json!(app.config.issuer_str())),
        ("sub", json!(input.account.id)),
        ("aud", json!(input.client.id)),
        ("azp", json!(input.client.id)),
        ("iat", json!(now_secs)),
        ("exp", json!(now_secs + app.config.id_token_ttl_secs)),
        ("auth_time", json!(input.family.auth_time / 1000)),
        ("amr", json!(amr)),
        ("acr", json!(input.family.acr)),
        ("sid", json!(input.family.sid)),
        ("at_hash", json!(at_hash(alg, input.access_token))),
    ] {
        claims.insert(k.to_string(), v);
    }
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    app.keys
        .current()
        .sign(alg, crate::keys::ID_TOKEN_TYP, &claims)
        .map_err(|e| OAuthError::from(crate::error::AppError::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_spec_example_shape() {
        // OIDC Core §A.3 style: left 128 bits of SHA-256, base64url.
        let h = at_hash(Algorithm::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y");
        assert_eq!(h.len(), 22);
        assert_eq!(at_hash(Algorithm::EdDSA, "x").len(), 43);
        assert_ne!(at_hash(Algorithm::RS256, "a"), at_hash(Algorithm::RS256, "b"));
    }
}
