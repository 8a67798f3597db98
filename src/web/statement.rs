//! The accessibility statement (`/accessibilite`), which RGAA requires of
//! every public service and which every page links from its footer. Its
//! content lives in the template, French and English side by side; the
//! feedback address is the `accessibility_contact` setting.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;

use super::extract::PageLocale;
use super::{AppState, pages};

pub const PATH: &str = "/accessibilite";

pub async fn accessibility(State(app): State<AppState>, PageLocale { locale, jar }: PageLocale) -> Response {
    let page = pages::render(
        StatusCode::OK,
        "accessibility.html",
        locale,
        PATH,
        context! { contact => app.config.accessibility_contact.clone() },
    );
    (jar, page).into_response()
}
