//! The one place where domain errors become HTTP responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::i18n::Locale;
use super::pages;
use crate::error::AppError;
use crate::oidc::OAuthError;
use crate::oidc::userinfo::BearerError;

/// RFC 6749 §5.2 JSON, never cached; 401 + `WWW-Authenticate` for a failed
/// HTTP Basic authentication.
impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, Json(json!({"error": self.code, "error_description": self.description}))).into_response();
        no_store(&mut r);
        if self.basic_challenge {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"coop-idp\""));
        }
        r
    }
}

/// RFC 6750 §3: bearer errors in `WWW-Authenticate`.
impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge) = match self {
            BearerError::InvalidToken => (StatusCode::UNAUTHORIZED, "Bearer error=\"invalid_token\""),
            BearerError::InvalidRequest => (StatusCode::BAD_REQUEST, "Bearer error=\"invalid_request\""),
            BearerError::Internal(e) => return OAuthError::from(e).into_response(),
        };
        let mut r = (
            status,
            Json(
                json!({"error": if status == StatusCode::UNAUTHORIZED { "invalid_token" } else { "invalid_request" }}),
            ),
        )
            .into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        no_store(&mut r);
        r
    }
}

pub fn no_store(r: &mut Response) {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// An internal failure on a page: 503 when the database is away, else 500;
/// the detail goes to the log only.
pub fn internal_page(e: AppError, locale: Locale) -> Response {
    tracing::error!(error = %e, "page request failed");
    if crate::oidc::is_unavailable(&e) {
        pages::error_page(StatusCode::SERVICE_UNAVAILABLE, locale, "err_unavailable")
    } else {
        pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, locale, "err_internal")
    }
}
