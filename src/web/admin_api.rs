//! The admin API under `/admin/api/` (R16, R18): JSON for scripts, over
//! the same domain functions as the console. Authenticated by the IdP's own
//! browser session of an account holding the role: the same gate as the
//! console's (`extract::ApiAdministrator`); state-changing requests also
//! need this browser's CSRF token in the `X-CSRF-Token` header
//! (`extract::ApiCsrf`, double submit, as the pages do). Handlers only parse
//! and call the domain; errors become responses in `error::ApiError`.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, no_store};
use super::extract::{ApiAdministrator, ApiCsrf, SourceAddress, roles};
use super::i18n::Locale;
use super::{AppState, browser};
use crate::admin::Admin;
use crate::admin::actions::{self, AlertsRead};
use crate::admin::annex1::{self, AnnexFile};
use crate::audit::export::{CsvLayout, Separator};
use crate::audit::query::{Access, LogQuery, Reader};
use crate::audit::{self, Source};
use crate::store::partners::PartnerRow;

/// The body is the file itself, held to the parser's own limit.
const MAX_ANNEX_BYTES: usize = crate::provisioning::annex1::limits::MAX_FILE_BYTES;
/// Records per page when the request does not say.
const DEFAULT_LIMIT: i64 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/api/me", get(me))
        .route("/admin/api/logs", get(logs))
        .route("/admin/api/alerts", get(alerts))
        .route("/admin/api/partners", get(partners))
        .route("/admin/api/partners/{id}", get(partner))
        .route("/admin/api/partners/{id}/accounts", get(partner_accounts))
        .route("/admin/api/partners/{id}/annex1", post(annex1).layer(DefaultBodyLimit::max(MAX_ANNEX_BYTES)))
        .route("/admin/api/accounts/{id}/resend-activation", post(resend_activation))
        .route("/admin/api/accounts/{id}/close", post(close_access))
        .route("/admin/api/review", get(review))
}

type ApiResult = Result<Response, ApiError>;

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    no_store(&mut r);
    r
}

/// The connection-log records as a CSV file for a spreadsheet (BOM, `;`,
/// headers in `locale`): what the console's export and this API's give.
pub(super) fn log_csv_response(rows: &[crate::store::events::EventRow], locale: Locale) -> Response {
    let headers = super::i18n::csv_headers(locale);
    let layout = CsvLayout { separator: Separator::Semicolon, bom: true, headers: &headers };
    csv_response(audit::export::to_csv(rows, &layout), "journal-connexions.csv")
}

fn csv_response(body: String, file_name: &str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    no_store(&mut r);
    r
}

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ApiError::InvalidParameter {
            parameter: name.to_string(),
            message: format!("{name} : « {v} » n'est pas un nombre entier / is not a whole number"),
            valid_values: None,
            expected: Some("a whole number".into()),
        }),
    }
}

/// A parameter that takes one of `valid` (the first when absent or blank).
fn one_of(params: &HashMap<String, String>, name: &str, valid: &[&'static str]) -> Result<&'static str, ApiError> {
    let given = params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    match given {
        None => Ok(valid[0]),
        Some(v) => valid.iter().copied().find(|x| *x == v).ok_or_else(|| ApiError::InvalidParameter {
            parameter: name.to_string(),
            message: format!(
                "{name} : valeur inconnue « {v} » / unknown value `{v}`. Valeurs possibles / valid values: {}",
                valid.join(", ")
            ),
            valid_values: Some(valid.iter().map(|x| x.to_string()).collect()),
            expected: None,
        }),
    }
}

/// `json` (default) or `csv`.
fn export_format(params: &HashMap<String, String>) -> Result<&'static str, ApiError> {
    one_of(params, "format", &["json", "csv"])
}

/// Refuses a parameter the endpoint does not know: a misspelt filter
/// (`evnt=`) would otherwise widen the answer silently.
fn only_known(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&String> = params.keys().filter(|k| !known.contains(&k.as_str())).collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(name) => Err(ApiError::InvalidParameter {
            parameter: name.to_string(),
            message: format!(
                "paramètre inconnu « {name} » / unknown parameter `{name}`. Paramètres possibles / valid parameters: {}",
                known.join(", ")
            ),
            valid_values: Some(known.iter().map(|k| k.to_string()).collect()),
            expected: None,
        }),
    }
}

/// The language of a CSV export's headers: `lang` (`fr` or `en`), then the
/// language cookie and `Accept-Language`; French by default.
fn export_locale(headers: &HeaderMap, params: &HashMap<String, String>) -> Result<Locale, ApiError> {
    let lang = params.get("lang").map(|v| v.trim()).filter(|v| !v.is_empty());
    if lang.is_some() {
        one_of(params, "lang", &["fr", "en"])?;
    }
    Ok(browser::locale(headers, lang, None))
}

/// Who is signed in, with the CSRF token that state-changing requests must
/// send back in `X-CSRF-Token`.
async fn me(
    State(app): State<AppState>,
    ApiAdministrator(admin, _): ApiAdministrator<roles::Any>,
    jar: CookieJar,
) -> ApiResult {
    let (jar, csrf) = browser::csrf_token(&app.config, jar);
    let body = json!({
        "account_id": admin.account_id,
        "email": admin.email,
        "partner_id": admin.partner_id,
        "roles": admin.roles,
        "csrf_token": csrf,
    });
    Ok((jar, json_response(StatusCode::OK, body)).into_response())
}

/// The connection log with the filters of `logs query`, paginated
/// (`limit`, `offset`), as JSON or as a CSV export.
async fn logs(
    State(app): State<AppState>,
    ApiAdministrator(admin, _): ApiAdministrator<roles::Security>,
    SourceAddress(source): SourceAddress,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    only_known(
        &params,
        &["email", "partner", "event", "outcome", "ip", "since", "until", "limit", "offset", "format", "lang"],
    )?;
    let format = export_format(&params)?;
    let locale = export_locale(&headers, &params)?;
    let query = LogQuery {
        limit: number(&params, "limit")?,
        offset: number(&params, "offset")?,
        ..LogQuery::of_filters(|name| params.get(name).cloned())
    };
    let filter = query.validate(&app.store, DEFAULT_LIMIT).await?;
    let access = if format == "csv" { Access::Export } else { Access::Read };
    let reader = Reader { actor: &admin.email, source: &source, format };
    let rows = audit::query::read(&app.store, &app.clock, &query, &filter, access, reader).await?;
    if format == "csv" {
        return Ok(log_csv_response(&rows, locale));
    }
    let next = (rows.len() as i64 == filter.limit).then(|| filter.offset + filter.limit);
    let records: Vec<Value> = rows.iter().map(audit::public_record).collect();
    Ok(json_response(
        StatusCode::OK,
        json!({"records": records, "limit": filter.limit, "offset": filter.offset, "next_offset": next}),
    ))
}

async fn alerts(
    State(app): State<AppState>,
    ApiAdministrator(admin, _): ApiAdministrator<roles::Security>,
    SourceAddress(source): SourceAddress,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let format = export_format(&params)?;
    let since = params.get("since").map(|s| s.trim()).filter(|s| !s.is_empty());
    let since_ms = since.map(|t| audit::query::parse_time(audit::query::Param::Since, t)).transpose()?;
    let limit = number(&params, "limit")?.unwrap_or(DEFAULT_LIMIT);
    let offset = number(&params, "offset")?.unwrap_or(0);
    let read = AlertsRead { since, since_ms, limit, offset, format };
    let list = actions::read_alerts(&app, &admin.email, &source, read).await?;
    if format == "csv" {
        return Ok(csv_response(crate::alerts::to_csv(&list), "alertes.csv"));
    }
    Ok(json_response(StatusCode::OK, json!({"alerts": list})))
}

/// A list of partners (those this administrator may see).
fn partners_response(partners: impl Serialize) -> ApiResult {
    Ok(json_response(StatusCode::OK, json!({ "partners": partners })))
}

async fn partners(
    State(app): State<AppState>,
    ApiAdministrator(admin, _): ApiAdministrator<roles::Habilitation>,
) -> ApiResult {
    partners_response(actions::visible_partners(&app, &admin).await?)
}

/// The partner of the path's `{id}`, for a habilitation manager who may see
/// it: 403 for another (before saying whether it exists), 404 when it does
/// not exist.
struct VisiblePartner(PartnerRow);

impl FromRequestParts<AppState> for VisiblePartner {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let (ApiAdministrator(admin, _), Path(id)) =
            <(ApiAdministrator<roles::Habilitation>, Path<String>)>::from_request_parts(parts, app).await?;
        match actions::visible_partner(app, &admin, &id).await {
            Ok(p) => Ok(VisiblePartner(p)),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

async fn partner(State(app): State<AppState>, VisiblePartner(p): VisiblePartner) -> ApiResult {
    Ok(json_response(StatusCode::OK, actions::partner_summary(&app, &p).await?))
}

async fn partner_accounts(State(app): State<AppState>, VisiblePartner(p): VisiblePartner) -> ApiResult {
    let accounts = actions::partner_accounts(&app, &p.id).await?;
    Ok(json_response(StatusCode::OK, json!({"partner_id": p.id, "accounts": accounts})))
}

/// Annex-1 upload: the body is the file (CSV, XLSX or ODS; `file_name` says
/// which). Without `apply=true`: a dry run, the plan of PRODUCT.md. With it
/// (Caf habilitation managers only): applied all or nothing; 422 and the
/// plan when it has errors. A partner's manager may only dry-run (propose)
/// for its own partner.
async fn annex1(
    State(app): State<AppState>,
    ApiAdministrator(admin, _): ApiAdministrator<roles::Habilitation>,
    _: ApiCsrf,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    let apply = match params.get("apply").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::Invalid(format!("apply : « {other} » (true ou false / true or false)"))),
    };
    let p = actions::visible_partner(&app, &admin, &id).await?;
    let file = AnnexFile {
        file_name: params.get("file_name").map(String::as_str).unwrap_or("annexe1.csv"),
        bytes: &body,
        transmitted: params.get("transmitted").map(|s| s.trim()).filter(|s| !s.is_empty()),
    };
    let outcome = annex1::import(&app, &admin, &p, &file, apply).await?;
    let status = if apply && !outcome.applied { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(json_response(status, serde_json::to_value(&outcome.plan).unwrap_or_default()))
}

/// A Caf habilitation manager's action on the account of the path's
/// `{id}`: the gate, then the CSRF header, then where it came from.
struct AccountAction(Admin, Source, String);

impl FromRequestParts<AppState> for AccountAction {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let (ApiAdministrator(admin, _), ApiCsrf, SourceAddress(source), Path(id)) =
            <(ApiAdministrator<roles::CafHabilitation>, ApiCsrf, SourceAddress, Path<String>)>::from_request_parts(
                parts, app,
            )
            .await?;
        Ok(AccountAction(admin, source, id))
    }
}

async fn resend_activation(State(app): State<AppState>, AccountAction(admin, source, id): AccountAction) -> ApiResult {
    actions::resend_activation(&app, &id, &admin.email, &source).await?;
    Ok(json_response(StatusCode::OK, json!({"account_id": id, "activation_sent": true})))
}

async fn close_access(State(app): State<AppState>, AccountAction(admin, source, id): AccountAction) -> ApiResult {
    let closed = actions::close_access(&app, &id, &admin.email, &source).await?;
    Ok(json_response(StatusCode::OK, json!({"account_id": id, "closed": closed})))
}

/// The yearly review board (R13): every partner for the Caf, its own for a
/// partner's manager.
async fn review(
    State(app): State<AppState>,
    ApiAdministrator(admin, _): ApiAdministrator<roles::Habilitation>,
) -> ApiResult {
    partners_response(actions::review_board(&app, &admin).await?)
}
