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
        .route("/admin/purges/{partner}/attestation.pdf", get(purges::attestation))
        .route("/admin/purges/{partner}/attestation.jws", get(purges::attestation))
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

/// `{{ time | local_time }}`: an RFC 3339 time (as records carry them) in
/// local time, `05/12/2026 17:25:37` (the zone is named once on the page,
/// under the navigation); any other value as it is.
pub(super) fn local_time(value: Value) -> Value {
    match value.as_str().and_then(crate::dates::format_local_rfc3339) {
        // Digits, `/`, `:` and a space: nothing to escape.
        Some(shown) => Value::from_safe_string(shown),
        None => value,
    }
}

/// `{{ date | day }}`: a stored day (`2026-12-05`) as people read it,
/// `05/12/2026`; any other value as it is.
pub(super) fn day(value: Value) -> Value {
    match value.as_str().and_then(crate::dates::parse_iso) {
        Some(d) => Value::from_safe_string(crate::dates::format_day(d)),
        None => value,
    }
}

async fn home(State(app): State<AppState>, Administrator(c, _): Administrator<roles::Any>) -> Response {
    c.render(&app, StatusCode::OK, "admin/home.html", "/admin", context! {})
}

#[cfg(test)]
mod tests {
    use minijinja::Value;

    use crate::accounts::AccountState;
    use crate::admin::Role;
    use crate::admin::actions::CONVENTION_STATES;
    use crate::audit::{Outcome, kind};
    use crate::web::i18n::{Locale, texts};

    /// Every code the console shows — each connection-log kind, outcome,
    /// account state, role and convention state — has its label in both
    /// languages, and every label is of such a code.
    #[test]
    fn every_code_has_a_label() {
        // Exhaustive on purpose: a new account state does not compile here until listed.
        let state = |s: AccountState| match s {
            AccountState::Pending | AccountState::Active | AccountState::Closed => s.as_str(),
        };
        let states = [AccountState::Pending, AccountState::Active, AccountState::Closed];
        let mut codes: Vec<String> = kind::ALL.iter().map(|k| format!("label_kind_{k}")).collect();
        codes.extend(Outcome::ALL.iter().map(|o| format!("label_outcome_{}", o.as_str())));
        codes.extend(states.map(|s| format!("label_state_{}", state(s))));
        codes.extend(Role::ALL.iter().map(|r| format!("label_role_{}", r.as_str())));
        codes.extend(CONVENTION_STATES.iter().map(|c| format!("label_convention_{c}")));
        for locale in [Locale::Fr, Locale::En] {
            for code in &codes {
                assert!(texts(locale).get(code.as_str()).is_some_and(|t| !t.trim().is_empty()), "{code} ({locale:?})");
            }
            let labels = texts(locale).keys().filter(|k| k.starts_with("label_")).count();
            assert_eq!(labels, codes.len(), "a label of no code ({locale:?})");
        }
        assert_eq!(texts(Locale::Fr)["label_convention_in_force"], "en vigueur");
        assert_eq!(texts(Locale::Fr)["label_role_caf_habilitation"], "habilitations Caf");
    }

    #[test]
    fn times_and_days_as_people_read_them() {
        let shown = super::local_time(Value::from("2026-12-05T16:25:37.123Z"));
        assert_eq!(shown.as_str(), Some("05/12/2026 17:25:37"));
        assert_eq!(super::local_time(Value::from("—")).as_str(), Some("—"), "anything else as it is");
        assert!(super::local_time(Value::from(())).is_none());
        assert_eq!(super::day(Value::from("2026-01-05")).as_str(), Some("05/01/2026"));
        assert_eq!(super::day(Value::from("")).as_str(), Some(""));
    }
}
