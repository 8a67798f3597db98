//! Protocol endpoints: discovery, JWKS, token, userinfo, revocation,
//! introspection.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::no_store;
use super::extract::ClientCall;
use crate::oidc::client_auth::Presented;
use crate::oidc::userinfo::BearerError;
use crate::oidc::{self, OAuthError, Params};

pub async fn discovery(State(app): State<AppState>) -> Response {
    let mut r = Json(oidc::discovery::metadata(&app.config)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

pub async fn jwks(State(app): State<AppState>) -> Response {
    let mut r = Json(app.keys.current().jwks(app.clock.now_ms())).into_response();
    // Short, so that a rotation is seen quickly.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    r
}

/// Whether a `Content-Type` value is `application/x-www-form-urlencoded`
/// (RFC 9110 §8.3.1): type and subtype compared without regard to case,
/// then optional parameters (`; charset=UTF-8`), each `name=value` with a
/// token or a quoted string as value. A prefix is not enough:
/// `application/x-www-form-urlencodedX` names another media type.
pub fn is_form_urlencoded(value: &str) -> bool {
    const OWS: [char; 2] = [' ', '\t'];
    let (essence, mut rest) = match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if !essence.trim_matches(OWS).eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return false;
    }
    let is_token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    // Each round: `;`, then an optional parameter.
    while let Some(after) = rest.strip_prefix(';') {
        let after = after.trim_start_matches(OWS);
        if after.is_empty() || after.starts_with(';') {
            rest = after;
            continue;
        }
        let Some((name, tail)) = after.split_once('=') else { return false };
        if !is_token(name) {
            return false;
        }
        let value_len = if let Some(quoted) = tail.strip_prefix('"') {
            // A quoted string: up to the closing quote, `\` escaping one character.
            let mut escaped = false;
            let Some(end) = quoted.char_indices().find_map(|(i, c)| {
                let closes = !escaped && c == '"';
                escaped = !escaped && c == '\\';
                closes.then_some(i)
            }) else {
                return false;
            };
            end + 2
        } else {
            let end = tail.find([';', ' ', '\t']).unwrap_or(tail.len());
            if !is_token(&tail[..end]) {
                return false;
            }
            end
        };
        rest = tail[value_len..].trim_start_matches(OWS);
    }
    rest.is_empty()
}

/// Parses an `application/x-www-form-urlencoded` body, refusing repeats.
pub fn form_params(headers: &HeaderMap, body: &Bytes) -> Result<Params, OAuthError> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    // Two Content-Type headers leave the body's type undecided: refused.
    let is_form = match (types.next(), types.next()) {
        (Some(v), None) => v.to_str().is_ok_and(is_form_urlencoded),
        _ => false,
    };
    if !is_form {
        return Err(OAuthError::invalid_request("expected application/x-www-form-urlencoded"));
    }
    Params::from_pairs(pairs(body)).map_err(|name| OAuthError::invalid_request(format!("parameter {name} is repeated")))
}

pub fn pairs(data: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(data).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub(super) fn presented(headers: &HeaderMap) -> Result<Presented, OAuthError> {
    Presented::from_authorization(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
}

pub async fn token(State(app): State<AppState>, call: ClientCall) -> Response {
    let result = oidc::token::handle(&app, &call.presented, &call.form, &call.source).await;
    json_no_store(result.map(|(tokens, _event)| tokens))
}

/// A protocol answer: JSON never cached, or the error's own response.
fn json_no_store<T: serde::Serialize, E: IntoResponse>(result: Result<T, E>) -> Response {
    match result {
        Ok(body) => {
            let mut r = Json(body).into_response();
            no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    json_no_store(oidc::userinfo::userinfo(&app, bearer(&headers)).await)
}

/// POST: bearer in the header, or (RFC 6750 §2.2) `access_token` in the form.
pub async fn userinfo_post(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let from_body = form_params(&headers, &body).ok().and_then(|p| p.get("access_token").map(str::to_string));
    let result = match (bearer(&headers), from_body.as_deref()) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest),
        (Some(t), None) | (None, Some(t)) => oidc::userinfo::userinfo(&app, Some(t)).await,
        (None, None) => Err(BearerError::InvalidToken),
    };
    json_no_store(result)
}

pub async fn revoke(State(app): State<AppState>, call: ClientCall) -> Response {
    match oidc::revocation::revoke(&app, &call.presented, &call.form, &call.source).await {
        Ok(_) => {
            let mut r = StatusCode::OK.into_response();
            no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
    }
}

pub async fn introspect(State(app): State<AppState>, call: ClientCall) -> Response {
    json_no_store(oidc::introspection::introspect(&app, &call.presented, &call.form, &call.source).await)
}

#[cfg(test)]
mod tests {
    use super::is_form_urlencoded;

    #[test]
    fn the_media_type_is_parsed_not_prefix_matched() {
        for accepted in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=utf-8",
            "application/x-www-form-urlencoded ; charset=\"UTF-8\"",
            "application/x-www-form-urlencoded; charset=\"a;b\\\"c\"; x=y",
            "application/x-www-form-urlencoded;",
        ] {
            assert!(is_form_urlencoded(accepted), "{accepted}");
        }
        for refused in [
            "application/x-www-form-urlencodedX",
            "application/x-www-form-urlencoded2; charset=UTF-8",
            "application/x-www-form-urlencoded, text/plain",
            "application/x-www-form-urlencoded; charset",
            "application/x-www-form-urlencoded; =UTF-8",
            "application/x-www-form-urlencoded; charset=\"UTF-8",
            "application/x-www-form-urlencoded; charset=UTF 8",
            "application/x-www-form",
            "text/plain",
            "multipart/form-data; boundary=x",
            "",
        ] {
            assert!(!is_form_urlencoded(refused), "{refused}");
        }
    }
}
