//! `GET /`: what this server is and where to go, instead of a 404 for
//! whoever types the bare address (a newcomer, an agent, a Caf employee).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;

use super::extract::PageLocale;
use super::pages;

pub async fn home(PageLocale { locale, jar }: PageLocale) -> Response {
    (jar, pages::render(StatusCode::OK, "home.html", locale, "/", context! {})).into_response()
}
