//! Relying parties: registration rules and the client as the protocol sees it.

use jsonwebtoken::Algorithm;
use url::Url;

use super::limits::{MAX_REDIRECT_URIS, bound_of};
use crate::app::App;
use crate::config::is_loopback_host;
use crate::crypto::{hash_secret, random_token};
use crate::error::{AppError, AppResult};
use crate::keys::parse_alg;
use crate::store::{self, StoreError, clients::ClientRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// Public client: no secret; PKCE is its only proof.
    None,
}

impl AuthMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            "none" => Some(Self::None),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
    pub fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

/// A redirect URI as registered: absolute, no fragment, https unless the
/// host is loopback (RFC 9700 §2.1, RFC 8252 §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

impl RedirectUri {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
        if url.fragment().is_some() {
            return Err(format!("`{s}`: a redirect URI must not have a fragment"));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            _ => return Err(format!("`{s}`: must be https (http only on loopback)")),
        }
        Ok(RedirectUri(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub auth_method: AuthMethod,
    secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub id_token_alg: Algorithm,
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
}

impl Client {
    pub fn from_row(row: ClientRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("client {}: {what}", row.id));
        Ok(Client {
            auth_method: AuthMethod::parse(&row.auth_method).ok_or_else(|| corrupt("auth_method"))?,
            id_token_alg: parse_alg(&row.id_token_alg).ok_or_else(|| corrupt("id_token_alg"))?,
            jwks: match &row.jwks {
                Some(text) => Some(serde_json::from_str(text).map_err(|_| corrupt("jwks"))?),
                None => None,
            },
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            redirect_uris: row.redirect_uris,
            post_logout_redirect_uris: row.post_logout_redirect_uris,
            backchannel_logout_uri: row.backchannel_logout_uri,
        })
    }

    /// Exact string comparison (RFC 9700 §4.1.3): no prefix, no suffix.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    pub fn secret_matches(&self, secret: &str) -> bool {
        match &self.secret_hash {
            Some(stored) => crate::crypto::constant_time_eq(hash_secret(secret).as_bytes(), stored.as_bytes()),
            None => false,
        }
    }
}

pub async fn find(app: &App, id: &str) -> AppResult<Option<Client>> {
    Ok(app.store.client(id).await?.map(Client::from_row).transpose()?)
}

pub struct Registration {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub auth_method: AuthMethod,
    pub id_token_alg: Algorithm,
    /// The client's public keys, required for `private_key_jwt`.
    pub jwks: Option<String>,
}

/// Registers a client; returns its secret (shown once, stored hashed) when
/// its method uses one.
pub async fn register(app: &App, r: Registration) -> AppResult<Option<String>> {
    let bad = |m: String| AppError::Invalid(m);
    if r.id.is_empty() || r.id.len() > 128 || !r.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(bad("--id: 1 to 128 letters, digits, '-', '_' or '.'".into()));
    }
    if r.name.trim().is_empty() {
        return Err(bad("--name must not be empty".into()));
    }
    if r.redirect_uris.is_empty() {
        return Err(bad("at least one --redirect-uri is required".into()));
    }
    if r.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad(format!("at most {MAX_REDIRECT_URIS} --redirect-uri")));
    }
    // An authorization request naming a longer one would be refused.
    let max = bound_of("redirect_uri").map_or(0, |b| b.max_bytes);
    if let Some(uri) = r.redirect_uris.iter().find(|u| u.len() > max) {
        return Err(bad(format!("`{uri}`: a redirect URI has at most {max} bytes")));
    }
    for uri in r.redirect_uris.iter().chain(&r.post_logout_redirect_uris).chain(&r.backchannel_logout_uri) {
        RedirectUri::parse(uri).map_err(bad)?;
    }
    let jwks = match (&r.auth_method, &r.jwks) {
        (AuthMethod::PrivateKeyJwt, None) => return Err(bad("private_key_jwt needs --jwks".into())),
        (_, Some(text)) => {
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_str(text).map_err(|e| bad(format!("--jwks is not a JWK set: {e}")))?;
            if set.keys.iter().any(|k| serde_json::to_value(k).ok().and_then(|v| v.get("d").cloned()).is_some()) {
                return Err(bad("--jwks must hold public keys only".into()));
            }
            Some(serde_json::to_string(&set).map_err(|e| bad(e.to_string()))?)
        }
        _ => None,
    };
    let secret = r.auth_method.uses_secret().then(random_token);
    let row = ClientRow {
        id: r.id,
        name: r.name,
        secret_hash: secret.as_deref().map(hash_secret),
        auth_method: r.auth_method.as_str().to_string(),
        redirect_uris: r.redirect_uris,
        post_logout_redirect_uris: r.post_logout_redirect_uris,
        backchannel_logout_uri: r.backchannel_logout_uri,
        id_token_alg: crate::keys::alg_name(r.id_token_alg).to_string(),
        jwks,
    };
    let mut tx = app.store.begin_write().await?;
    store::clients::insert(&mut tx, &row, app.clock.now_ms()).await.map_err(|e| match e {
        StoreError::Conflict(_) => bad(format!("client `{}` already exists", row.id)),
        other => other.into(),
    })?;
    tx.commit().await?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules_both_sides() {
        assert!(RedirectUri::parse("https://rp.example.fr/cb").is_ok());
        assert!(RedirectUri::parse("http://127.0.0.1:9000/cb").is_ok());
        assert!(RedirectUri::parse("http://localhost/cb").is_ok());
        assert!(RedirectUri::parse("http://rp.example.fr/cb").is_err());
        assert!(RedirectUri::parse("https://rp.example.fr/cb#x").is_err());
        assert!(RedirectUri::parse("/cb").is_err());
        assert!(RedirectUri::parse("javascript:alert(1)").is_err());
    }
}
