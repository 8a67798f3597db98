//! The connection log: its search (every filter of `logs query`, 50
//! records a page), its CSV export, and its integrity.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use minijinja::{Value, context};

use super::{PageResult, internal};
use crate::audit::query::{Access, LogQuery, Param, QueryError, Reader};
use crate::audit::{self, Source, Verification};
use crate::store::events::{EventFilter, EventRow};
use crate::web::error::internal_page;
use crate::web::extract::{AdminPage, Administrator, SourceAddress, roles};
use crate::web::i18n::{Locale, text};
use crate::web::{AppState, browser};

/// Records per page of the log search.
const PAGE: i64 = 50;

/// A security officer's reading of the log: the gate, where the request
/// came from, and the filters of the query string as `logs query` takes
/// them.
pub(super) struct LogSearch {
    c: AdminPage,
    source: Source,
    query: LogQuery,
}

impl FromRequestParts<AppState> for LogSearch {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let (Administrator(c, _), SourceAddress(source), Query(q)) =
            <(Administrator<roles::Security>, SourceAddress, Query<HashMap<String, String>>)>::from_request_parts(
                parts, app,
            )
            .await?;
        Ok(LogSearch { c, source, query: log_query(&q) })
    }
}

impl LogSearch {
    /// The records `filter` selects, read as `access` (which the log
    /// records with `format`).
    async fn read(
        &self,
        app: &AppState,
        filter: &EventFilter,
        access: Access,
        format: &str,
    ) -> Result<Vec<EventRow>, Response> {
        let reader = Reader { actor: &self.c.admin.email, source: &self.source, format };
        audit::query::read(&app.store, &app.clock, &self.query, filter, access, reader)
            .await
            .map_err(internal(self.c.locale))
    }
}

fn log_query(q: &HashMap<String, String>) -> LogQuery {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    LogQuery { offset: get("offset").and_then(|v| v.parse().ok()), ..LogQuery::of_filters(get) }
}

/// The filters as a query string (for the pagination and export links),
/// with the separator to append one more parameter.
fn filter_query(q: &LogQuery) -> (String, &'static str) {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in q.given_filters() {
        s.append_pair(k, v);
    }
    let filters = s.finish();
    let sep = if filters.is_empty() { "" } else { "&" };
    (filters, sep)
}

/// The search page. Each page shown is a `log_read`.
pub(super) async fn search(State(app): State<AppState>, mut search: LogSearch) -> PageResult {
    search.query.limit = Some(PAGE);
    let LogSearch { c, query, .. } = &search;
    let (filters, sep) = filter_query(query);
    let base = context! {
        f => context! {
            email => query.email.clone(), partner => query.partner.clone(), event => query.event.clone(),
            outcome => query.outcome.clone(), ip => query.ip.clone(), since => query.since.clone(),
            until => query.until.clone(),
        },
        kinds => audit::kind::ALL,
        // The file's headers follow the page's language.
        export_href => format!("/admin/logs/export?{filters}{sep}lang={}", c.locale.code()),
    };
    let filter = match query.validate(&app.store, PAGE).await {
        Ok(f) => f,
        Err(QueryError::Internal(e)) => return Err(internal_page(e, c.locale)),
        Err(e) => {
            let ctx = context! { error => filter_error(c.locale, &e), searched => false, ..base };
            return Ok(c.render(&app, StatusCode::BAD_REQUEST, "admin/logs.html", "/admin/logs", ctx));
        }
    };
    let rows = search.read(&app, &filter, Access::Read, "console").await?;
    let records: Vec<serde_json::Value> = rows.iter().map(audit::public_record).collect();
    let prev =
        (filter.offset > 0).then(|| format!("/admin/logs?{filters}{sep}offset={}", (filter.offset - PAGE).max(0)));
    let next =
        (rows.len() as i64 == PAGE).then(|| format!("/admin/logs?{filters}{sep}offset={}", filter.offset + PAGE));
    let ctx = context! {
        searched => true,
        records => Value::from_serialize(&records),
        first => filter.offset + 1,
        last => filter.offset + rows.len() as i64,
        page_number => filter.offset / PAGE + 1,
        prev_href => prev,
        next_href => next,
        ..base
    };
    Ok(c.render(&app, StatusCode::OK, "admin/logs.html", "/admin/logs", ctx))
}

/// A refused filter, for the form: which field, why (in the page's
/// language), what was typed, and what would be accepted.
fn filter_error(locale: Locale, e: &QueryError) -> Value {
    let key = match e {
        QueryError::UnknownKind { .. } => "console_err_event",
        QueryError::UnknownOutcome { .. } => "console_err_outcome",
        QueryError::UnknownPartner { .. } => "console_err_partner",
        QueryError::BadIp { .. } => "console_err_ip",
        QueryError::BadTime { .. } => "console_err_time",
        QueryError::EmptyPeriod { .. } => "console_err_period",
        QueryError::OutOfRange { .. } | QueryError::Negative { .. } | QueryError::Internal(_) => "console_err_page",
    };
    let value = (!matches!(e, QueryError::EmptyPeriod { .. })).then(|| e.value());
    // A date names its field as the form labels it ("Date de début"), so
    // that the two date fields cannot be confused.
    let colon = if locale == Locale::Fr { " : " } else { ": " };
    let message = match e {
        QueryError::BadTime { param, .. } => {
            let field = if *param == Param::Since { "console_since" } else { "console_until" };
            format!("{}{colon}{}", text(locale, field), text(locale, key))
        }
        _ => text(locale, key).to_string(),
    };
    context! {
        field => e.param().map(|p| p.name()),
        message => message,
        value => value,
        valid => e.valid_values(),
    }
}

/// The same filters as a CSV file (a `log_exported` record).
pub(super) async fn export(State(app): State<AppState>, mut search: LogSearch) -> PageResult {
    search.query.offset = None;
    let LogSearch { c, query, .. } = &search;
    let filter = match query.validate(&app.store, audit::query::MAX_LIMIT).await {
        Ok(f) => f,
        Err(QueryError::Internal(e)) => return Err(internal_page(e, c.locale)),
        // Back to the search form, which says what is wrong with what was typed.
        Err(_) => {
            let (filters, sep) = filter_query(query);
            return Ok(browser::see_other(&format!("/admin/logs?{filters}{sep}lang={}", c.locale.code())));
        }
    };
    let rows = search.read(&app, &filter, Access::Export, "csv").await?;
    Ok(crate::web::admin_api::log_csv_response(&rows, c.locale))
}

/// The log's integrity: the chain walked now, the signed checkpoints, the
/// last purge.
pub(super) async fn integrity(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Security>,
) -> PageResult {
    let verification = audit::verify(&app.store, &app.keys).await.map_err(internal(c.locale))?;
    let checkpoints = app.store.checkpoints().await.map_err(internal(c.locale))?;
    let purge = app.store.last_log_purge().await.map_err(internal(c.locale))?;
    let (intact, records, broken_seq, broken_reason) = match verification {
        Verification::Intact { records } => (true, records, None, None),
        Verification::Broken { seq, reason } => (false, 0, Some(seq), Some(reason)),
    };
    let latest = checkpoints.iter().max_by_key(|c| c.seq);
    let ctx = context! {
        verified_at => crate::clock::rfc3339_ms(app.clock.now_ms()),
        intact => intact,
        records => records,
        broken_seq => broken_seq,
        broken_reason => broken_reason,
        checkpoints => checkpoints.len(),
        latest_seq => latest.map(|c| c.seq),
        latest_time => latest.map(|c| crate::clock::rfc3339_ms(c.time_ms)),
        purge_up_to => purge.as_ref().map(|p| p.up_to_seq),
        purge_time => purge.as_ref().map(|p| crate::clock::rfc3339_ms(p.purged_at)),
    };
    Ok(c.render(&app, StatusCode::OK, "admin/integrity.html", "/admin/integrity", ctx))
}
