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

/// Errors of the admin API, as JSON `{"error", "message"}` (French, then
/// English), never cached.
#[derive(Debug)]
pub enum ApiError {
    /// No live session: 401.
    Unauthenticated,
    /// A session whose roles do not allow this: 403.
    Forbidden,
    /// An administrator's session without the second factor: 403.
    SecondFactorRequired,
    /// A state-changing request without the CSRF token of this browser: 403.
    Csrf,
    NotFound(String),
    Invalid(String),
    /// A query parameter refused: 400 with the parameter, and the values it
    /// accepts (`valid_values` when they can be listed, else `expected`).
    InvalidParameter {
        parameter: String,
        message: String,
        valid_values: Option<Vec<String>>,
        expected: Option<String>,
    },
    Conflict(String),
    Internal(AppError),
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid(m) => ApiError::Invalid(m),
            other => ApiError::Internal(other),
        }
    }
}

impl From<crate::admin::AccessDenied> for ApiError {
    fn from(e: crate::admin::AccessDenied) -> Self {
        match e {
            crate::admin::AccessDenied::Unauthenticated => ApiError::Unauthenticated,
            crate::admin::AccessDenied::Forbidden => ApiError::Forbidden,
            crate::admin::AccessDenied::SecondFactorRequired => ApiError::SecondFactorRequired,
            crate::admin::AccessDenied::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(e: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError as E;
        match e {
            E::UnknownAccount(_) | E::UnknownPartner(_) => ApiError::NotFound(e.to_string()),
            E::Forbidden => ApiError::Forbidden,
            E::Closed(_) | E::NotPending(_) | E::AlreadyBootstrapped | E::OlderAnnex(_) => {
                ApiError::Conflict(e.to_string())
            }
            E::UnknownRole(_) | E::NoPartner(_) | E::NotCafStaff { .. } | E::Invalid(_) | E::BadDate(_) => {
                ApiError::Invalid(e.to_string())
            }
            E::App(e) => e.into(),
        }
    }
}

impl From<crate::audit::query::QueryError> for ApiError {
    fn from(e: crate::audit::query::QueryError) -> Self {
        match (e.param(), e) {
            (_, crate::audit::query::QueryError::Internal(e)) => ApiError::Internal(e),
            (param, e) => ApiError::InvalidParameter {
                parameter: param.map(|p| p.name().to_string()).unwrap_or_default(),
                message: e.to_string(),
                valid_values: e.valid_values(),
                expected: e.expected(),
            },
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut extra = serde_json::Map::new();
        let (status, code, message) = match self {
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Connexion requise : ouvrez une session avec un compte administrateur. / Sign-in required: sign in with an administrator account.".to_string(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Votre rôle ne permet pas cette action. / Your role does not allow this.".to_string(),
            ),
            ApiError::SecondFactorRequired => (
                StatusCode::FORBIDDEN,
                "second_factor_required",
                "Second facteur requis : reconnectez-vous avec votre code à usage unique (TOTP). / Second factor required: sign in again with your one-time code (TOTP).".to_string(),
            ),
            ApiError::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "Jeton anti-falsification (X-CSRF-Token) absent ou invalide. / Missing or invalid anti-forgery token (X-CSRF-Token).".to_string(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid_request", m),
            ApiError::InvalidParameter { parameter, message, valid_values, expected } => {
                extra.insert("parameter".into(), json!(parameter));
                if let Some(v) = valid_values {
                    extra.insert("valid_values".into(), json!(v));
                }
                if let Some(x) = expected {
                    extra.insert("expected".into(), json!(x));
                }
                (StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "admin API request failed");
                if crate::oidc::is_unavailable(&e) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "Service momentanément indisponible. / Service temporarily unavailable.".to_string(),
                    )
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Erreur interne. / Internal error.".to_string())
                }
            }
        };
        let mut body =
            serde_json::Map::from_iter([("error".to_string(), json!(code)), ("message".into(), json!(message))]);
        body.extend(extra);
        let mut r = (status, Json(body)).into_response();
        no_store(&mut r);
        r
    }
}
