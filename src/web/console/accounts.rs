//! Actions on one access, for the Caf's habilitation managers: a fresh
//! activation link, and closing the access (after a confirmation page).

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{PageResult, refusal};
use crate::admin::actions;
use crate::audit::Source;
use crate::store::accounts::AccountRow;
use crate::web::extract::{AdminPage, Administrator, CheckedForm, SourceAddress, roles};
use crate::web::{AppState, browser};

/// Back to the account's partner, which says what was done.
fn back_to_partner(row: &AccountRow, done: &str) -> Response {
    match &row.partner_id {
        Some(p) => browser::see_other(&format!("/admin/partners/{p}?done={done}")),
        None => browser::see_other("/admin/partners"),
    }
}

/// The account concerned, when this administrator may act on it.
async fn account(app: &AppState, c: &AdminPage, id: &str) -> Result<AccountRow, Response> {
    actions::account_in_scope(app, &c.admin, id).await.map_err(|e| refusal(e, c.locale, "err_not_found"))
}

/// A Caf habilitation manager's form posted on the account of the path's
/// `{id}`: the gate, where it came from, then the form's CSRF token.
pub(super) struct AccountForm {
    c: AdminPage,
    source: Source,
    id: String,
}

impl FromRequest<AppState> for AccountForm {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let (Administrator(c, _), SourceAddress(source), Path(id), _) =
            <(Administrator<roles::CafHabilitation>, SourceAddress, Path<String>, CheckedForm)>::from_request(req, app)
                .await?;
        Ok(AccountForm { c, source, id })
    }
}

pub(super) async fn resend_activation(State(app): State<AppState>, f: AccountForm) -> PageResult {
    let row = account(&app, &f.c, &f.id).await?;
    match actions::resend_activation(&app, &f.id, &f.c.admin.email, &f.source).await {
        Ok(()) => Ok(back_to_partner(&row, "activation_sent")),
        Err(e) => Err(refusal(e, f.c.locale, "console_not_pending")),
    }
}

/// "Clôturer l'accès" asks for confirmation first: this page, then its POST.
pub(super) async fn close_confirm(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::CafHabilitation>,
    Path(id): Path<String>,
) -> PageResult {
    let row = account(&app, &c, &id).await?;
    let ctx = context! {
        account_id => row.id.clone(),
        email => row.email.clone(),
        name => format!("{} {}", row.given_name, row.family_name),
        partner_id => row.partner_id.clone(),
    };
    let path = format!("/admin/accounts/{}/close", row.id);
    Ok(c.render(&app, StatusCode::OK, "admin/close_confirm.html", &path, ctx))
}

pub(super) async fn close(State(app): State<AppState>, f: AccountForm) -> PageResult {
    let row = account(&app, &f.c, &f.id).await?;
    actions::close_access(&app, &f.id, &f.c.admin.email, &f.source)
        .await
        .map_err(|e| refusal(e, f.c.locale, "err_not_found"))?;
    Ok(back_to_partner(&row, "closed"))
}
