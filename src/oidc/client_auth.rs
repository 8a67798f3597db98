//! Client authentication at the token, revocation and introspection
//! endpoints: client_secret_basic, client_secret_post, private_key_jwt
//! (RFC 7523) and none for public clients.

use base64::Engine;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::clients::{self, AuthMethod, Client};
use super::{OAuthError, Params};
use crate::app::App;
use crate::store;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The credentials a request carried, before they are checked.
#[derive(Debug, Default)]
pub struct Presented {
    pub basic: Option<(String, String)>,
}

impl Presented {
    /// Parses an `Authorization: Basic` header (RFC 6749 §2.3.1: the id and
    /// secret are form-urlencoded before base64).
    pub fn from_authorization(header: Option<&str>) -> Result<Self, OAuthError> {
        let Some(value) = header else { return Ok(Presented::default()) };
        let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
            return Ok(Presented::default());
        };
        let bad = || {
            let mut e = OAuthError::invalid_client("malformed Basic credentials");
            e.basic_challenge = true;
            e
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (id, secret) = text.split_once(':').ok_or_else(bad)?;
        let id = form_decode(id).ok_or_else(bad)?;
        let secret = form_decode(secret).ok_or_else(bad)?;
        Ok(Presented { basic: Some((id, secret)) })
    }
}

fn form_decode(s: &str) -> Option<String> {
    let replaced = s.replace('+', " ");
    url::form_urlencoded::parse(format!("x={replaced}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .or(Some(String::new()))
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    jti: String,
    exp: i64,
}

/// Authenticates the client or answers `invalid_client`.
pub async fn authenticate(app: &App, presented: &Presented, form: &Params) -> Result<Client, OAuthError> {
    let assertion = form.get("client_assertion");
    let form_secret = form.get("client_secret");
    let used = [presented.basic.is_some(), form_secret.is_some(), assertion.is_some()];
    if used.iter().filter(|u| **u).count() > 1 {
        return Err(OAuthError::invalid_request("use exactly one client authentication method"));
    }
    let fail = |basic: bool| {
        let mut e = OAuthError::invalid_client("client authentication failed");
        e.basic_challenge = basic;
        e
    };

    if let Some((id, secret)) = &presented.basic {
        if form.get("client_id").is_some_and(|f| f != id) {
            return Err(OAuthError::invalid_request("client_id differs from the authenticated client"));
        }
        let client = clients::find(app, id).await?.ok_or_else(|| fail(true))?;
        if !client.auth_method.uses_secret() || !client.secret_matches(secret) {
            return Err(fail(true));
        }
        return Ok(client);
    }

    if let Some(assertion) = assertion {
        if form.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::invalid_request("unsupported client_assertion_type"));
        }
        return authenticate_assertion(app, assertion, form).await;
    }

    let id = form.get("client_id").ok_or_else(|| fail(false))?;
    let client = clients::find(app, id).await?.ok_or_else(|| fail(false))?;
    match (client.auth_method, form_secret) {
        (m, Some(secret)) if m.uses_secret() && client.secret_matches(secret) => Ok(client),
        (AuthMethod::None, None) => Ok(client),
        _ => Err(fail(false)),
    }
}

async fn authenticate_assertion(app: &App, assertion: &str, form: &Params) -> Result<Client, OAuthError> {
    let fail = || OAuthError::invalid_client("client assertion refused");
    // Read only to find the client whose keys then verify the signature.
    let unverified: AssertionClaims = jsonwebtoken::dangerous::insecure_decode(assertion).map_err(|_| fail())?.claims;
    if form.get("client_id").is_some_and(|id| id != unverified.iss) {
        return Err(OAuthError::invalid_request("client_id differs from the assertion issuer"));
    }
    let client = clients::find(app, &unverified.iss).await?.ok_or_else(fail)?;
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(fail());
    }
    let jwks = client.jwks.as_ref().ok_or_else(fail)?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| fail())?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(fail)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| fail())?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&client.id]);
    validation.sub = Some(client.id.clone());
    // RFC 7523 §3: the audience is the token endpoint; the issuer is accepted too.
    let token_endpoint = app.config.url("/token");
    let issuer = app.config.issuer_str();
    validation.set_audience(&[token_endpoint.as_str(), issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = 30;
    let verified: AssertionClaims = jsonwebtoken::decode(assertion, &key, &validation).map_err(|_| fail())?.claims;
    if verified.iss != verified.sub {
        return Err(fail());
    }
    let now = app.clock.now_ms();
    // An assertion valid for hours would make the replay cache unbounded.
    if verified.exp * 1000 > now + 3_600_000 {
        return Err(fail());
    }
    let mut tx = app.store.begin_write().await?;
    let fresh =
        store::grants::remember_assertion_jti(&mut tx, &client.id, &verified.jti, verified.exp * 1000 + 60_000, now)
            .await?;
    tx.commit().await?;
    if !fresh {
        return Err(OAuthError::invalid_client("client assertion replayed"));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_is_form_decoded() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%20client:s%3Acret+x");
        let p = Presented::from_authorization(Some(&format!("Basic {encoded}"))).expect("parsed");
        assert_eq!(p.basic, Some(("my client".into(), "s:cret x".into())));
    }

    #[test]
    fn malformed_basic_is_invalid_client_with_challenge() {
        let e = Presented::from_authorization(Some("Basic !!!")).expect_err("malformed");
        assert_eq!(e.code, "invalid_client");
        assert!(e.basic_challenge);
        assert!(Presented::from_authorization(Some("Bearer x")).expect("ignored").basic.is_none());
    }
}
