//! The OpenID Connect / OAuth 2.0 protocol layer: one file per endpoint, the
//! checks each endpoint makes composed as small named steps.

pub mod authorize;
pub mod backchannel;
pub mod claims;
pub mod client_auth;
pub mod client_views;
pub mod clients;
pub mod discovery;
pub mod introspection;
pub mod limits;
pub mod logout;
pub mod parked;
pub mod pkce;
pub mod revocation;
pub mod signin;
pub mod token;
pub mod userinfo;

use std::collections::BTreeMap;

use crate::error::AppError;

/// Scopes we can fill; others are dropped from a request.
pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "offline_access", "coop"];

/// `prompt` values (OIDC Core §3.1.2.1).
pub const PROMPT_VALUES: [&str; 4] = ["none", "login", "consent", "select_account"];

/// Languages of the pages, as `ui_locales` names them.
pub const UI_LOCALES_SUPPORTED: [&str; 2] = ["fr", "en"];

/// Authentication context classes a sign-in can reach.
pub const ACR_VALUES_SUPPORTED: [&str; 3] =
    [crate::auth::session::ACR_PASSWORD, crate::auth::session::ACR_MFA, crate::auth::factors::ACR_PASSKEY];

/// An RFC 6749 error (§4.1.2.1 on redirects, §5.2 on the token endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    /// Set when the client failed to authenticate with HTTP Basic (RFC 6749
    /// §5.2: answer 401 with `WWW-Authenticate`).
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError { code, description: description.into(), basic_challenge: false }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }
    pub fn server_error() -> Self {
        Self::new("server_error", "internal error")
    }
    pub fn temporarily_unavailable() -> Self {
        Self::new("temporarily_unavailable", "try again later")
    }

    /// HTTP status on the token, revocation and introspection endpoints.
    pub fn status(&self) -> u16 {
        match self.code {
            "invalid_client" => 401,
            "server_error" => 500,
            "temporarily_unavailable" => 503,
            _ => 400,
        }
    }
}

/// Internal failures become `server_error`, or `temporarily_unavailable`
/// when the database is away; their detail goes to the log, not the client.
impl From<AppError> for OAuthError {
    fn from(e: AppError) -> Self {
        tracing::error!(error = %e, "protocol request failed");
        if is_unavailable(&e) { OAuthError::temporarily_unavailable() } else { OAuthError::server_error() }
    }
}

pub fn is_unavailable(e: &AppError) -> bool {
    matches!(e, AppError::Store(s) if s.is_unavailable())
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        AppError::from(e).into()
    }
}

/// Form or query parameters, refusing repeated names (RFC 6749 §3.1, §3.2).
#[derive(Debug, Clone, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                return Err(k);
            }
        }
        Ok(Params(map))
    }

    /// The value, with an empty value treated as absent (RFC 6749 §3.1).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// Splits a space-separated scope (or `acr_values`, `prompt`) string.
pub fn split_spaces(s: &str) -> Vec<String> {
    s.split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_single_ones_kept() {
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(Params::from_pairs(pairs(&[("a", "1"), ("a", "2")])).err(), Some("a".to_string()));
        let p = Params::from_pairs(pairs(&[("a", "1"), ("b", "")])).expect("params");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
    }
}
