//! The administration console at `/admin` (issue 6): server-rendered pages
//! working without JavaScript, over the same domain functions as the admin
//! API. Every handler names its gate, `Administrator<roles::…>`
//! (`admin::require_admin`, and a step-up to the second factor for a
//! session opened without it), and a form its [`CheckedForm`] (CSRF double
//! submit); every action and every read of the log is recorded. One file
//! per area: the log and its integrity, the alerts, the purges, the
//! partners (with the yearly review), annex 1, the accesses.
//!
//! [`CheckedForm`]: super::extract::CheckedForm

mod accounts;
mod alerts;
mod annex1;
mod logs;
mod partners;
mod passkeys;
mod purges;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::{Value, context};

use super::error::internal_page;
use super::extract::{AdminPage, Administrator, roles};
use super::i18n::Locale;
use super::{AppState, browser, pages};
use crate::admin::{AdminError, Role};
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/logs", get(logs::search))
        .route("/admin/logs/export", get(logs::export))
        .route("/admin/integrity", get(logs::integrity))
        .route("/admin/alerts", get(alerts::list))
        .route("/admin/purges", get(purges::history))
        .route("/admin/purges/{partner}/attestation.pdf", get(purges::attestation_pdf))
        .route("/admin/purges/{partner}/attestation.jws", get(purges::attestation_jws))
        .route("/admin/partners", get(partners::list))
        .route("/admin/partners/{id}", get(partners::one))
        .route("/admin/review", get(partners::review))
        .route(
            "/admin/partners/{id}/annex1",
            get(annex1::form).post(annex1::upload).layer(DefaultBodyLimit::max(annex1::MAX_UPLOAD_BYTES)),
        )
        .route("/admin/partners/{id}/annex1/apply", post(annex1::apply))
        .route("/admin/accounts/{id}/resend-activation", post(accounts::resend_activation))
        .route("/admin/accounts/{id}/close", get(accounts::close_confirm).post(accounts::close))
        .route("/admin/accounts/{id}/passkeys", get(passkeys::list))
        .route("/admin/accounts/{id}/passkeys/{passkey}/remove", post(passkeys::remove))
}

/// A console handler's answer: the page, or the page to show instead.
type PageResult = Result<Response, Response>;

/// An internal failure as the console shows it (503 when the database is
/// away, else 500): `.map_err(internal(locale))?`.
fn internal<E: Into<AppError>>(locale: Locale) -> impl FnOnce(E) -> Response {
    move |e| internal_page(e.into(), locale)
}

/// A refused administrative action as a page: 403 for a partner or an
/// account out of this administrator's reach, 404 for one that does not
/// exist, `other` (409) for the action's own refusals.
fn refusal(e: AdminError, locale: Locale, other: &str) -> Response {
    match e {
        AdminError::Forbidden => pages::error_page(StatusCode::FORBIDDEN, locale, "err_forbidden"),
        AdminError::UnknownPartner(_) | AdminError::UnknownAccount(_) => {
            pages::error_page(StatusCode::NOT_FOUND, locale, "err_not_found")
        }
        AdminError::App(e) => internal_page(e, locale),
        _ => pages::error_page(StatusCode::CONFLICT, locale, other),
    }
}

impl AdminPage {
    /// Renders a console page with the administrator and this browser's
    /// CSRF token in its context.
    fn render(&self, app: &AppState, status: StatusCode, template: &str, path: &str, extra: Value) -> Response {
        let (jar, csrf) = browser::csrf_token(&app.config, self.jar.clone());
        let admin = &self.admin;
        let roles: Vec<&str> = admin.roles.iter().map(|r| r.as_str()).collect();
        let ctx = context! {
            csrf => csrf,
            admin_email => admin.email.clone(),
            roles => roles,
            is_security => admin.has(Role::CafSecurity),
            is_caf_habilitation => admin.has(Role::CafHabilitation),
            is_habilitation => admin.has(Role::CafHabilitation) || admin.has(Role::PartnerHabilitation),
            ..extra
        };
        (jar, pages::render(status, template, self.locale, path, ctx)).into_response()
    }
}

async fn home(State(app): State<AppState>, Administrator(c, _): Administrator<roles::Any>) -> Response {
    c.render(&app, StatusCode::OK, "admin/home.html", "/admin", context! {})
}
