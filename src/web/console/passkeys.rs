//! An account's passkeys in the console (issue 17): listed for the
//! habilitation managers who may see the account, each removable (the
//! account is told by email and the removal recorded as `passkey_removed`,
//! the manager as actor).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use minijinja::context;

use super::{PageResult, internal, refusal};
use crate::accounts::Account;
use crate::admin::actions;
use crate::auth::passkeys;
use crate::clock::rfc3339_ms;
use crate::web::AppState;
use crate::web::browser;
use crate::web::extract::{Administrator, CheckedForm, SourceAddress, roles};

#[derive(serde::Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

pub(super) async fn list(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Done>,
) -> PageResult {
    let row =
        actions::account_in_scope(&app, &c.admin, &id).await.map_err(|e| refusal(e, c.locale, "err_not_found"))?;
    let keys = app.store.passkeys_of_account(&row.id).await.map_err(internal(c.locale))?;
    let keys: Vec<_> = keys
        .iter()
        .map(|k| {
            context! {
                id => k.id.clone(),
                name => k.name.clone(),
                created_at => rfc3339_ms(k.created_at),
                last_used_at => k.last_used_at.map(rfc3339_ms),
            }
        })
        .collect();
    let ctx = context! {
        account_id => row.id.clone(),
        email => row.email.clone(),
        name => format!("{} {}", row.given_name, row.family_name),
        partner_id => row.partner_id.clone(),
        passkeys => keys,
        removed => q.done.as_deref() == Some("removed"),
    };
    let path = format!("/admin/accounts/{}/passkeys", row.id);
    Ok(c.render(&app, StatusCode::OK, "admin/account_passkeys.html", &path, ctx))
}

pub(super) async fn remove(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
    SourceAddress(source): SourceAddress,
    Path((id, passkey)): Path<(String, String)>,
    _: CheckedForm,
) -> PageResult {
    let row =
        actions::account_in_scope(&app, &c.admin, &id).await.map_err(|e| refusal(e, c.locale, "err_not_found"))?;
    let account = Account::from_row(&row);
    passkeys::remove(&app, &account, &passkey, &c.admin.email, &source).await.map_err(internal(c.locale))?;
    Ok(browser::see_other(&format!("/admin/accounts/{}/passkeys?done=removed", row.id)))
}
