//! Partners, for habilitation managers (the Caf's see every partner, a
//! partner's only its own): the list, one partner with its accounts, and
//! the yearly review of accesses.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Serialize;

use super::{PageResult, internal, refusal};
use crate::admin::actions;
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::extract::{AdminPage, Administrator, roles};

/// What a partner's page may say was just done (the `done` of the
/// redirection after an action): one text each.
const DONE: &[&str] = &["activation_sent", "closed"];

/// The page `template` at `path`, listing `partners` (those this
/// administrator may see).
fn partners_page<T: Serialize>(
    app: &AppState,
    c: &AdminPage,
    partners: AppResult<T>,
    template: &str,
    path: &str,
) -> Response {
    match partners {
        Ok(partners) => {
            let ctx = context! { partners => Value::from_serialize(&partners) };
            c.render(app, StatusCode::OK, template, path, ctx)
        }
        Err(e) => internal(c.locale)(e),
    }
}

pub(super) async fn list(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
) -> PageResult {
    let partners = actions::visible_partners(&app, &c.admin).await;
    Ok(partners_page(&app, &c, partners, "admin/partners.html", "/admin/partners"))
}

pub(super) async fn one(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let p = actions::visible_partner(&app, &c.admin, &id).await.map_err(|e| refusal(e, c.locale, "err_not_found"))?;
    let summary = actions::partner_summary(&app, &p).await.map_err(internal(c.locale))?;
    let accounts = actions::partner_accounts(&app, &p.id).await.map_err(internal(c.locale))?;
    let ctx = context! {
        partner => Value::from_serialize(&summary),
        accounts => Value::from_serialize(&accounts),
        // Anything else typed in the address says nothing.
        done => q.get("done").filter(|d| DONE.contains(&d.as_str())).cloned(),
    };
    let path = format!("/admin/partners/{}", p.id);
    Ok(c.render(&app, StatusCode::OK, "admin/partner.html", &path, ctx))
}

pub(super) async fn review(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
) -> PageResult {
    Ok(partners_page(&app, &c, actions::review_board(&app, &c.admin).await, "admin/review.html", "/admin/review"))
}
