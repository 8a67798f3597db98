//! Purges: the history (the `purge` records of the log) and, per partner,
//! the destructions recorded with the attestation to download.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use minijinja::{Value, context};

use super::{PageResult, internal};
use crate::audit;
use crate::store::events::EventFilter;
use crate::web::extract::{Administrator, roles};
use crate::web::{AppState, pages};

/// The `purge` records listed at most.
const RUNS_SHOWN: i64 = 500;

pub(super) async fn history(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Security>,
) -> PageResult {
    let filter = EventFilter { kind: Some(audit::kind::PURGE.into()), limit: RUNS_SHOWN, ..Default::default() };
    let runs: Vec<serde_json::Value> = app
        .store
        .query_events(&filter)
        .await
        .map_err(internal(c.locale))?
        .iter()
        .map(|r| {
            let mut v = audit::public_record(r);
            v["details_text"] = serde_json::Value::String(r.details.clone());
            v
        })
        .collect();
    let mut partners = Vec::new();
    for p in app.store.partners().await.map_err(internal(c.locale))? {
        let n = app.store.destructions(&p.id, None).await.map_err(internal(c.locale))?.len();
        if n > 0 {
            partners.push(serde_json::json!({"id": p.id, "name": p.name, "destructions": n}));
        }
    }
    let ctx = context! { runs => Value::from_serialize(&runs), partners => Value::from_serialize(&partners) };
    Ok(c.render(&app, StatusCode::OK, "admin/purges.html", "/admin/purges", ctx))
}

/// A partner's attestation of destruction, signed: as PDF or as JWS, as
/// the path's extension asks (`attestation.pdf`, `attestation.jws`).
pub(super) async fn attestation(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Security>,
    Path(partner): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    if app.store.partner(&partner).await.map_err(internal(c.locale))?.is_none() {
        return Err(pages::error_page(StatusCode::NOT_FOUND, c.locale, "err_not_found"));
    }
    let a = crate::retention::attestation::build(&app, &partner, None).await.map_err(internal(c.locale))?;
    let (body, kind, name) = if uri.path().ends_with(".pdf") {
        (a.pdf, "application/pdf", format!("attestation-destruction-{partner}.pdf"))
    } else {
        (a.jws.into_bytes(), "application/jose", format!("attestation-destruction-{partner}.jws"))
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
