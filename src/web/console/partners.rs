//! Partners, for habilitation managers (the Caf's see every partner, a
//! partner's only its own): the list, one partner with its accounts, and
//! the yearly review of accesses.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use minijinja::{Value, context};

use super::{PageResult, internal, refusal};
use crate::admin::actions;
use crate::web::AppState;
use crate::web::extract::{Administrator, roles};

/// What a partner's page may say was just done (the `done` of the
/// redirection after an action): one text each.
const DONE: &[&str] = &["activation_sent", "closed"];

pub(super) async fn list(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
) -> PageResult {
    let list = actions::visible_partners(&app, &c.admin).await.map_err(internal(c.locale))?;
    let ctx = context! { partners => Value::from_serialize(&list) };
    Ok(c.render(&app, StatusCode::OK, "admin/partners.html", "/admin/partners", ctx))
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
    let list = actions::review_board(&app, &c.admin).await.map_err(internal(c.locale))?;
    let ctx = context! { partners => Value::from_serialize(&list) };
    Ok(c.render(&app, StatusCode::OK, "admin/review.html", "/admin/review", ctx))
}
