//! The accessibility statement (`/accessibilite`), which RGAA requires of
//! every public service and which every page links from its footer. Its
//! content lives in the template, French and English side by side; the
//! feedback address is the `accessibility_contact` setting.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;

use super::{AppState, browser, pages};

pub const PATH: &str = "/accessibilite";

#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

pub async fn accessibility(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(q): Query<LangQuery>,
) -> Response {
    let locale = browser::locale(&headers, q.lang.as_deref(), None);
    let jar = browser::remember_locale(jar, q.lang.as_deref());
    let page = pages::render(
        StatusCode::OK,
        "accessibility.html",
        locale,
        PATH,
        context! { contact => app.config.accessibility_contact.clone() },
    );
    (jar, page).into_response()
}

/// (key, French, English) of the statement's title and footer link.
pub(super) const TEXTS: &[(&str, &str, &str)] = &[
    ("a11y_title", "Déclaration d'accessibilité", "Accessibility statement"),
    ("footer_a11y", "Accessibilité : non conforme", "Accessibility: not compliant"),
];
