//! The security alerts, for the Caf's security officers; reading them is a
//! `log_read`, as through the admin API.

use axum::extract::State;
use axum::http::StatusCode;
use minijinja::{Value, context};

use super::{PageResult, internal};
use crate::admin::actions::{self, AlertsRead};
use crate::web::AppState;
use crate::web::extract::{Administrator, SourceAddress, roles};

/// The latest alerts shown at once: far more than a day brings.
const SHOWN: i64 = 1000;

pub(super) async fn list(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Security>,
    SourceAddress(source): SourceAddress,
) -> PageResult {
    let read = AlertsRead { since: None, since_ms: None, limit: SHOWN, offset: 0, format: "console" };
    let list = actions::read_alerts(&app, &c.admin.email, &source, read).await.map_err(internal(c.locale))?;
    let ctx = context! { alerts => Value::from_serialize(&list) };
    Ok(c.render(&app, StatusCode::OK, "admin/alerts.html", "/admin/alerts", ctx))
}
