//! The administration console at `/admin` (issue 6): server-rendered pages
//! working without JavaScript, over the same domain functions as the admin
//! API (`admin::require_admin` for every page, CSRF double submit on every
//! form, every action and every read of the log recorded). A session
//! without the second factor is sent to give it (step-up) rather than
//! refused. Every handler opens the same way: the [`Opening`] extractor
//! (language, cookies, the page asked for), then `Opening::page` for a
//! page or `Opening::form` / `Opening::form_with` for a form (with its CSRF
//! token), which give the administrator as a [`Console`] that renders the
//! page.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Multipart, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minijinja::{Value, context};

use super::i18n::Locale;
use super::oauth::pairs;
use super::{AppState, browser, error, pages, second_factor};
use crate::admin::{self, AccessDenied, Admin, Role, actions};
use crate::audit::query::{Access, LogQuery, QueryError, Reader};
use crate::audit::{self, Verification};
use crate::auth::session;
use crate::crypto::{hash_secret, random_token};
use crate::oidc::Params;
use crate::store::{self, ConsoleUploadRow, EventFilter};

/// Records per page of the log search.
const PAGE: i64 = 50;
/// The file, held to the parser's own limit, and the form's other fields.
const MAX_ANNEX_BYTES: usize = crate::provisioning::annex1::limits::MAX_FILE_BYTES + 64 * 1024;
/// How long an uploaded annex 1 waits for "Appliquer".
const UPLOAD_TTL_MS: i64 = 30 * 60_000;

const HABILITATION: &[Role] = &[Role::CafHabilitation, Role::PartnerHabilitation];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/logs", get(logs))
        .route("/admin/logs/export", get(logs_export))
        .route("/admin/alerts", get(alerts))
        .route("/admin/integrity", get(integrity))
        .route("/admin/purges", get(purges))
        .route("/admin/purges/{partner}/attestation.pdf", get(attestation_pdf))
        .route("/admin/purges/{partner}/attestation.jws", get(attestation_jws))
        .route("/admin/partners", get(partners))
        .route("/admin/partners/{id}", get(partner))
        .route(
            "/admin/partners/{id}/annex1",
            get(annex1_form).post(annex1_upload).layer(DefaultBodyLimit::max(MAX_ANNEX_BYTES)),
        )
        .route("/admin/partners/{id}/annex1/apply", post(annex1_apply))
        .route("/admin/accounts/{id}/resend-activation", post(resend_activation))
        .route("/admin/accounts/{id}/close", get(close_confirm).post(close_access))
        .route("/admin/review", get(review))
}

/// The administrator of this request, or the response to send instead:
/// the sign-in page without a session, the second factor for a session
/// opened without it, a 403 page for another role.
async fn gate(
    app: &AppState,
    jar: CookieJar,
    locale: Locale,
    allowed: &[Role],
    back: Option<&Uri>,
) -> Result<(Admin, CookieJar), Response> {
    let session = match browser::session_value(&app.config, &jar) {
        Some(v) => session::current(app, &v).await.map_err(|e| error::internal_page(e, locale))?,
        None => None,
    };
    // A page asked for (GET) is where the browser comes back to, after the
    // sign-in or the second factor.
    let back = back.and_then(|u| u.path_and_query()).map(|p| p.as_str());
    match admin::require_admin(app, session.as_ref(), allowed).await {
        Ok(a) => Ok((a, jar)),
        // The sign-in page checks `next` (`console_return`), as the step-up does.
        Err(AccessDenied::Unauthenticated) => Err(browser::see_other(&super::signin::signin_path(None, back))),
        Err(AccessDenied::Forbidden) => Err(pages::error_page(StatusCode::FORBIDDEN, locale, "err_forbidden")),
        Err(AccessDenied::SecondFactorRequired) => {
            let Some(s) = session else { return Err(browser::see_other("/signin")) };
            let step = async {
                let enrolled = app.store.totp(&s.account_id).await?.is_some();
                let cookie = crate::auth::second_factor::begin(app, &s.account_id, None, back).await?;
                Ok::<_, crate::error::AppError>((enrolled, cookie))
            }
            .await;
            match step {
                Ok((enrolled, cookie)) => {
                    let jar = second_factor::set_pending_cookie(&app.config, jar, cookie);
                    let to = if enrolled { second_factor::VERIFY_PATH } else { second_factor::ENROL_PATH };
                    Err((jar, browser::see_other(to)).into_response())
                }
                Err(e) => Err(error::internal_page(e, locale)),
            }
        }
        Err(AccessDenied::Internal(e)) => Err(error::internal_page(e, locale)),
    }
}

/// What every console request opens with: its language (`?lang=` on a
/// page, then the language cookie and `Accept-Language`; the forms carry no
/// `?lang=` and answer in the cookie's language, as before), the cookies,
/// and the page asked for (where a step-up comes back to).
struct Opening {
    locale: Locale,
    jar: CookieJar,
    uri: Uri,
}

impl<S: Send + Sync> FromRequestParts<S> for Opening {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let lang = if parts.method == Method::GET || parts.method == Method::HEAD {
            parts.uri.query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k == "lang")
                    .map(|(_, v)| v.into_owned())
                    .last()
            })
        } else {
            None
        };
        let locale = browser::locale(&parts.headers, lang.as_deref(), None);
        let uri = parts.extensions.get::<OriginalUri>().map(|u| u.0.clone()).unwrap_or_else(|| parts.uri.clone());
        Ok(Opening { locale, jar: CookieJar::from_headers(&parts.headers), uri })
    }
}

/// An administrator let in, with the cookies and the language of the request.
struct Console {
    admin: Admin,
    jar: CookieJar,
    locale: Locale,
}

impl Opening {
    /// A page (GET): the administrator, or the response instead — the
    /// sign-in page, the second factor (then back to this page), a 403 page.
    async fn page(self, app: &AppState, allowed: &[Role]) -> Result<Console, Response> {
        let (admin, jar) = gate(app, self.jar, self.locale, allowed, Some(&self.uri)).await?;
        Ok(Console { admin, jar, locale: self.locale })
    }

    /// A form (POST): the same without a way back (a form is not sent again
    /// after the second factor). Its CSRF token is checked once its body is
    /// read: [`Console::csrf_refusal`], or [`Opening::form_with`] for a body read
    /// already.
    async fn form(self, app: &AppState, allowed: &[Role]) -> Result<Console, Response> {
        let (admin, jar) = gate(app, self.jar, self.locale, allowed, None).await?;
        Ok(Console { admin, jar, locale: self.locale })
    }

    /// A URL-encoded form already read: the gate, then its CSRF token.
    async fn form_with(self, app: &AppState, allowed: &[Role], form: &Params) -> Result<Console, Response> {
        let c = self.form(app, allowed).await?;
        if let Some(refusal) = c.csrf_refusal(app, form.get("csrf")) {
            return Err(refusal);
        }
        Ok(c)
    }
}

impl Console {
    /// The form's CSRF token against this browser's (double submit).
    /// The refusal of a form whose CSRF token is not this browser's
    /// (double submit); `None` when it is.
    fn csrf_refusal(&self, app: &AppState, token: Option<&str>) -> Option<Response> {
        (!browser::csrf_ok(&app.config, &self.jar, token))
            .then(|| pages::error_page(StatusCode::FORBIDDEN, self.locale, "err_csrf"))
    }

    /// Renders a console page with the administrator and this browser's
    /// CSRF token in its context.
    fn render(&self, app: &AppState, status: StatusCode, template: &str, path: &str, extra: Value) -> Response {
        let (jar, csrf) = browser::csrf_token(&app.config, self.jar.clone());
        let admin = &self.admin;
        let roles: Vec<&str> = admin.roles.iter().map(|r| r.as_str()).collect();
        let ctx = context! {
            csrf => csrf,
            admin_email => admin.email.clone(),
            roles => roles,
            is_security => admin.has(Role::CafSecurity),
            is_caf_habilitation => admin.has(Role::CafHabilitation),
            is_habilitation => admin.has(Role::CafHabilitation) || admin.has(Role::PartnerHabilitation),
            ..extra
        };
        (jar, pages::render(status, template, self.locale, path, ctx)).into_response()
    }
}

fn text(locale: Locale, key: &str) -> &'static str {
    super::i18n::text(locale, key)
}

async fn home(State(app): State<AppState>, opening: Opening) -> Response {
    let c = match opening.page(&app, &Role::ALL).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    c.render(&app, StatusCode::OK, "admin/home.html", "/admin", context! {})
}

fn log_query(q: &HashMap<String, String>) -> LogQuery {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    LogQuery {
        email: get("email"),
        partner: get("partner"),
        event: get("event"),
        outcome: get("outcome"),
        ip: get("ip"),
        since: get("since"),
        until: get("until"),
        limit: None,
        offset: get("offset").and_then(|v| v.parse().ok()),
    }
}

/// The filters as a query string (for the pagination and export links).
fn filter_query(q: &LogQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("email", &q.email),
        ("partner", &q.partner),
        ("event", &q.event),
        ("outcome", &q.outcome),
        ("ip", &q.ip),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// The connection-log search: every filter of `logs query`, 50 records a
/// page, a CSV export of the same filters. Each page shown is a `log_read`.
async fn logs(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    opening: Opening,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match opening.page(&app, &[Role::CafSecurity]).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut query = log_query(&q);
    query.limit = Some(PAGE);
    let filters = filter_query(&query);
    let sep = if filters.is_empty() { "" } else { "&" };
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
    let filter = match query.validate(&app, PAGE).await {
        Ok(f) => f,
        Err(QueryError::Internal(e)) => return error::internal_page(e, c.locale),
        Err(e) => {
            let ctx = context! { error => filter_error(c.locale, &e), searched => false, ..base };
            return c.render(&app, StatusCode::BAD_REQUEST, "admin/logs.html", "/admin/logs", ctx);
        }
    };
    let source = super::audit_source(&app, peer, &headers);
    let reader = Reader { actor: &c.admin.email, source: &source, format: "console" };
    let rows = match audit::query::read(&app, &query, &filter, Access::Read, reader).await {
        Ok(r) => r,
        Err(e) => return error::internal_page(e, c.locale),
    };
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
    c.render(&app, StatusCode::OK, "admin/logs.html", "/admin/logs", ctx)
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
    context! {
        field => e.param().map(|p| p.name()),
        message => text(locale, key),
        value => value,
        valid => e.valid_values(),
    }
}

/// The same filters as a CSV file (a `log_exported` record).
async fn logs_export(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    opening: Opening,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match opening.page(&app, &[Role::CafSecurity]).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut query = log_query(&q);
    query.offset = None;
    let filter = match query.validate(&app, audit::query::MAX_LIMIT).await {
        Ok(f) => f,
        Err(QueryError::Internal(e)) => return error::internal_page(e, c.locale),
        // Back to the search form, which says what is wrong with what was typed.
        Err(_) => {
            let filters = filter_query(&query);
            let sep = if filters.is_empty() { "" } else { "&" };
            return browser::see_other(&format!("/admin/logs?{filters}{sep}lang={}", c.locale.code()));
        }
    };
    let source = super::audit_source(&app, peer, &headers);
    let reader = Reader { actor: &c.admin.email, source: &source, format: "csv" };
    match audit::query::read(&app, &query, &filter, Access::Export, reader).await {
        Ok(rows) => super::admin_api::log_csv_response(&rows, c.locale),
        Err(e) => error::internal_page(e, c.locale),
    }
}

async fn alerts(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    opening: Opening,
) -> Response {
    let c = match opening.page(&app, &[Role::CafSecurity]).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let list = match crate::alerts::list(&app, None, 1000, 0).await {
        Ok(l) => l,
        Err(e) => return error::internal_page(e, c.locale),
    };
    let e = audit::Event::new(audit::kind::LOG_READ, audit::Outcome::Success, c.admin.email.clone())
        .source(&super::audit_source(&app, peer, &headers))
        .details(serde_json::json!({"alerts": true, "format": "console", "records": list.len()}));
    audit::record(&app, vec![e]).await;
    let ctx = context! { alerts => Value::from_serialize(&list) };
    c.render(&app, StatusCode::OK, "admin/alerts.html", "/admin/alerts", ctx)
}

/// The log's integrity: the chain walked now, the signed checkpoints, the
/// last purge.
async fn integrity(State(app): State<AppState>, opening: Opening) -> Response {
    let c = match opening.page(&app, &[Role::CafSecurity]).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let loaded = async {
        let verification = audit::verify(&app).await?;
        let checkpoints = app.store.checkpoints().await?;
        let purge = app.store.last_log_purge().await?;
        Ok::<_, crate::error::AppError>((verification, checkpoints, purge))
    }
    .await;
    let (verification, checkpoints, purge) = match loaded {
        Ok(x) => x,
        Err(e) => return error::internal_page(e, c.locale),
    };
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
    c.render(&app, StatusCode::OK, "admin/integrity.html", "/admin/integrity", ctx)
}

/// Purge history (the `purge` records of the log) and, per partner, the
/// destructions recorded with the attestation to download.
async fn purges(State(app): State<AppState>, opening: Opening) -> Response {
    let c = match opening.page(&app, &[Role::CafSecurity]).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let loaded = async {
        let filter = EventFilter { kind: Some(audit::kind::PURGE.into()), limit: 500, ..Default::default() };
        let runs: Vec<serde_json::Value> = app
            .store
            .query_events(&filter)
            .await?
            .iter()
            .map(|r| {
                let mut v = audit::public_record(r);
                v["details_text"] = serde_json::Value::String(r.details.clone());
                v
            })
            .collect();
        let mut partners = Vec::new();
        for p in app.store.partners().await? {
            let n = app.store.destructions(&p.id, None).await?.len();
            if n > 0 {
                partners.push(serde_json::json!({"id": p.id, "name": p.name, "destructions": n}));
            }
        }
        Ok::<_, crate::error::AppError>((runs, partners))
    }
    .await;
    let (runs, partners) = match loaded {
        Ok(x) => x,
        Err(e) => return error::internal_page(e, c.locale),
    };
    let ctx = context! { runs => Value::from_serialize(&runs), partners => Value::from_serialize(&partners) };
    c.render(&app, StatusCode::OK, "admin/purges.html", "/admin/purges", ctx)
}

async fn attestation(app: &AppState, opening: Opening, partner: &str, pdf: bool) -> Response {
    let locale = match opening.page(app, &[Role::CafSecurity]).await {
        Ok(c) => c.locale,
        Err(r) => return r,
    };
    match app.store.partner(partner).await {
        Ok(Some(_)) => {}
        Ok(None) => return pages::error_page(StatusCode::NOT_FOUND, locale, "err_not_found"),
        Err(e) => return error::internal_page(e.into(), locale),
    }
    let a = match crate::retention::attestation::build(app, partner, None).await {
        Ok(a) => a,
        Err(e) => return error::internal_page(e, locale),
    };
    let (body, kind, name) = if pdf {
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
    r
}

async fn attestation_pdf(State(app): State<AppState>, opening: Opening, Path(partner): Path<String>) -> Response {
    attestation(&app, opening, &partner, true).await
}

async fn attestation_jws(State(app): State<AppState>, opening: Opening, Path(partner): Path<String>) -> Response {
    attestation(&app, opening, &partner, false).await
}

/// The partner, when this administrator may see it.
async fn visible_partner(
    app: &AppState,
    admin: &Admin,
    id: &str,
    locale: Locale,
) -> Result<crate::store::PartnerRow, Response> {
    if !admin.may_see_partner(id) {
        return Err(pages::error_page(StatusCode::FORBIDDEN, locale, "err_forbidden"));
    }
    match app.store.partner(id).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(pages::error_page(StatusCode::NOT_FOUND, locale, "err_not_found")),
        Err(e) => Err(error::internal_page(e.into(), locale)),
    }
}

async fn partners(State(app): State<AppState>, opening: Opening) -> Response {
    let c = match opening.page(&app, HABILITATION).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let loaded = async {
        let mut out = Vec::new();
        for p in app.store.partners().await? {
            if c.admin.may_see_partner(&p.id) {
                out.push(actions::partner_summary(&app, &p).await?);
            }
        }
        Ok::<_, crate::error::AppError>(out)
    }
    .await;
    match loaded {
        Ok(list) => {
            let ctx = context! { partners => Value::from_serialize(&list) };
            c.render(&app, StatusCode::OK, "admin/partners.html", "/admin/partners", ctx)
        }
        Err(e) => error::internal_page(e, c.locale),
    }
}

async fn partner(
    State(app): State<AppState>,
    opening: Opening,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match opening.page(&app, HABILITATION).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let p = match visible_partner(&app, &c.admin, &id, c.locale).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let loaded = async {
        let summary = actions::partner_summary(&app, &p).await?;
        let accounts = actions::partner_accounts(&app, &p.id).await?;
        Ok::<_, crate::error::AppError>((summary, accounts))
    }
    .await;
    match loaded {
        Ok((summary, accounts)) => {
            let ctx = context! {
                partner => Value::from_serialize(&summary),
                accounts => Value::from_serialize(&accounts),
                done => q.get("done").cloned(),
            };
            let path = format!("/admin/partners/{}", p.id);
            c.render(&app, StatusCode::OK, "admin/partner.html", &path, ctx)
        }
        Err(e) => error::internal_page(e, c.locale),
    }
}

async fn annex1_form(State(app): State<AppState>, opening: Opening, Path(id): Path<String>) -> Response {
    let c = match opening.page(&app, HABILITATION).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let p = match visible_partner(&app, &c.admin, &id, c.locale).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ctx = context! { partner_id => p.id.clone(), partner_name => p.name.clone(), error => None::<String> };
    let path = format!("/admin/partners/{}/annex1", p.id);
    c.render(&app, StatusCode::OK, "admin/annex1.html", &path, ctx)
}

/// The parts of the upload form.
struct Upload {
    csrf: Option<String>,
    file_name: String,
    transmitted: Option<String>,
    bytes: Vec<u8>,
}

async fn read_upload(mut form: Multipart) -> Result<Upload, String> {
    let mut up = Upload { csrf: None, file_name: "annexe1.csv".into(), transmitted: None, bytes: Vec::new() };
    while let Some(field) = form.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "csrf" => up.csrf = Some(field.text().await.map_err(|e| e.to_string())?),
            "transmitted" => {
                let t = field.text().await.map_err(|e| e.to_string())?;
                up.transmitted = Some(t.trim().to_string()).filter(|t| !t.is_empty());
            }
            "file" => {
                if let Some(n) = field.file_name().filter(|n| !n.is_empty()) {
                    up.file_name = n.chars().take(200).collect();
                }
                up.bytes = field.bytes().await.map_err(|e| e.to_string())?.to_vec();
            }
            _ => {}
        }
    }
    Ok(up)
}

/// The plan page: the dry run's table, problems by line, and — for a Caf
/// habilitation manager, when the plan has no error — "Appliquer", which
/// applies the same file kept under a single-use handle.
#[allow(clippy::too_many_arguments)]
fn show_plan(
    app: &AppState,
    c: &Console,
    p: &crate::store::PartnerRow,
    plan: &crate::provisioning::annex1::plan::Plan,
    handle: Option<String>,
    applied: bool,
) -> Response {
    let ctx = context! {
        partner_id => p.id.clone(),
        partner_name => p.name.clone(),
        plan => Value::from_serialize(plan),
        changes => plan.changes(),
        handle => handle,
        applied => applied,
    };
    let path = format!("/admin/partners/{}/annex1", p.id);
    let status = if !plan.errors.is_empty() && applied { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    c.render(app, status, "admin/annex1_plan.html", &path, ctx)
}

async fn annex1_upload(
    State(app): State<AppState>,
    opening: Opening,
    Path(id): Path<String>,
    form: Multipart,
) -> Response {
    let c = match opening.form(&app, HABILITATION).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (admin, locale) = (&c.admin, c.locale);
    let p = match visible_partner(&app, admin, &id, locale).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format!("/admin/partners/{}/annex1", p.id);
    let up = match read_upload(form).await {
        Ok(u) => u,
        Err(_) => return pages::error_page(StatusCode::BAD_REQUEST, locale, "err_bad_upload"),
    };
    if let Some(r) = c.csrf_refusal(&app, up.csrf.as_deref()) {
        return r;
    }
    let form_error_text = |error: String| {
        let ctx = context! { partner_id => p.id.clone(), partner_name => p.name.clone(), error => error };
        c.render(&app, StatusCode::BAD_REQUEST, "admin/annex1.html", &path, ctx)
    };
    let form_error = |key: &str| form_error_text(text(locale, key).to_string());
    if up.bytes.is_empty() {
        return form_error("console_file_missing");
    }
    let transmitted = match &up.transmitted {
        Some(t) => match crate::dates::parse_iso(t) {
            Some(d) => Some(d),
            None => return form_error("console_bad_date"),
        },
        None => None,
    };
    let import = crate::provisioning::annex1::apply::Import {
        partner_id: &p.id,
        file_name: &up.file_name,
        bytes: &up.bytes,
        transmitted,
        apply: false,
        operator: &admin.email,
    };
    let outcome = match crate::provisioning::annex1::apply::import(&app, import).await {
        Ok(o) => o,
        // A file that cannot be read (format, limits, header): said on the
        // form, which stays there for the corrected file.
        Err(crate::error::AppError::Invalid(message)) => return form_error_text(message),
        Err(e) => return error::internal_page(e, locale),
    };
    // Only a Caf habilitation manager may apply, and only a plan without
    // errors: keep the file for that case alone.
    let handle = if admin.has(Role::CafHabilitation) && outcome.plan.errors.is_empty() {
        let handle = random_token();
        let now = app.clock.now_ms();
        let row = ConsoleUploadRow {
            handle_hash: hash_secret(&handle),
            account_id: admin.account_id.clone(),
            partner_id: p.id.clone(),
            file_name: up.file_name.clone(),
            transmitted: up.transmitted.clone(),
            content: STANDARD.encode(&up.bytes),
            expires_at: now + UPLOAD_TTL_MS,
        };
        let kept = async {
            let mut tx = app.store.begin_write().await?;
            store::insert_console_upload(&mut tx, &row, now).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = kept {
            return error::internal_page(e.into(), locale);
        }
        Some(handle)
    } else {
        None
    };
    show_plan(&app, &c, &p, &outcome.plan, handle, false)
}

async fn annex1_apply(
    State(app): State<AppState>,
    opening: Opening,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Params::from_pairs(pairs(&body)).unwrap_or_default();
    let c = match opening.form_with(&app, &[Role::CafHabilitation], &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (admin, locale) = (&c.admin, c.locale);
    let p = match visible_partner(&app, admin, &id, locale).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let handle = form.get("handle").unwrap_or("");
    let taken = async {
        let mut tx = app.store.begin_write().await?;
        let row = store::take_console_upload(&mut tx, &hash_secret(handle), app.clock.now_ms()).await?;
        tx.commit().await?;
        Ok::<_, crate::store::StoreError>(row)
    }
    .await;
    let row = match taken {
        Ok(Some(r)) if r.partner_id == p.id && r.account_id == admin.account_id => r,
        Ok(_) => return pages::error_page(StatusCode::BAD_REQUEST, locale, "console_upload_expired"),
        Err(e) => return error::internal_page(e.into(), locale),
    };
    let Ok(bytes) = STANDARD.decode(&row.content) else {
        return pages::error_page(StatusCode::BAD_REQUEST, locale, "console_upload_expired");
    };
    let transmitted = row.transmitted.as_deref().and_then(crate::dates::parse_iso);
    let import = crate::provisioning::annex1::apply::Import {
        partner_id: &p.id,
        file_name: &row.file_name,
        bytes: &bytes,
        transmitted,
        apply: true,
        operator: &admin.email,
    };
    match crate::provisioning::annex1::apply::import(&app, import).await {
        Ok(outcome) => show_plan(&app, &c, &p, &outcome.plan, None, outcome.applied),
        Err(e) => error::internal_page(e, locale),
    }
}

/// What a POST on an account (resend, close) checks first: the
/// habilitation role, the CSRF token, and that the account is one this
/// manager may act on.
async fn confirmed_account_action(
    app: &AppState,
    opening: Opening,
    body: &[u8],
    id: &str,
) -> Result<(Console, crate::store::AccountRow), Response> {
    let form = Params::from_pairs(pairs(body)).unwrap_or_default();
    let c = opening.form_with(app, &[Role::CafHabilitation], &form).await?;
    let row = account_for_action(app, &c.admin, id, c.locale).await?;
    Ok((c, row))
}

/// The account concerned by an action, when this administrator may act on
/// its partner.
async fn account_for_action(
    app: &AppState,
    admin: &Admin,
    id: &str,
    locale: Locale,
) -> Result<crate::store::AccountRow, Response> {
    let row = match app.store.account_by_id(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(pages::error_page(StatusCode::NOT_FOUND, locale, "err_not_found")),
        Err(e) => return Err(error::internal_page(e.into(), locale)),
    };
    // Caf staff belong to no partner: only the Caf's managers act on them.
    let allowed = match &row.partner_id {
        Some(p) => admin.may_see_partner(p),
        None => admin.has(Role::CafHabilitation),
    };
    if allowed { Ok(row) } else { Err(pages::error_page(StatusCode::FORBIDDEN, locale, "err_forbidden")) }
}

fn back_to_partner(row: &crate::store::AccountRow, done: &str) -> Response {
    match &row.partner_id {
        Some(p) => browser::see_other(&format!("/admin/partners/{p}?done={done}")),
        None => browser::see_other("/admin/partners"),
    }
}

async fn resend_activation(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    opening: Opening,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (c, row) = match confirmed_account_action(&app, opening, &body, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let locale = c.locale;
    let source = super::audit_source(&app, peer, &headers);
    match actions::resend_activation(&app, &id, &c.admin.email, &source).await {
        Ok(()) => back_to_partner(&row, "activation_sent"),
        Err(admin::AdminError::App(e)) => error::internal_page(e, locale),
        Err(_) => pages::error_page(StatusCode::CONFLICT, locale, "console_not_pending"),
    }
}

/// "Clôturer l'accès" asks for confirmation first: this page, then its POST.
async fn close_confirm(State(app): State<AppState>, opening: Opening, Path(id): Path<String>) -> Response {
    let c = match opening.page(&app, &[Role::CafHabilitation]).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let row = match account_for_action(&app, &c.admin, &id, c.locale).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let ctx = context! {
        account_id => row.id.clone(),
        email => row.email.clone(),
        name => format!("{} {}", row.given_name, row.family_name),
        partner_id => row.partner_id.clone(),
    };
    let path = format!("/admin/accounts/{}/close", row.id);
    c.render(&app, StatusCode::OK, "admin/close_confirm.html", &path, ctx)
}

async fn close_access(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    opening: Opening,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (c, row) = match confirmed_account_action(&app, opening, &body, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let locale = c.locale;
    let source = super::audit_source(&app, peer, &headers);
    match actions::close_access(&app, &id, &c.admin.email, &source).await {
        Ok(_) => back_to_partner(&row, "closed"),
        Err(admin::AdminError::App(e)) => error::internal_page(e, locale),
        Err(_) => pages::error_page(StatusCode::CONFLICT, locale, "err_not_found"),
    }
}

async fn review(State(app): State<AppState>, opening: Opening) -> Response {
    let c = match opening.page(&app, HABILITATION).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match crate::provisioning::review::review(&app).await {
        Ok(list) => {
            let list: Vec<_> = list.into_iter().filter(|r| c.admin.may_see_partner(&r.partner_id)).collect();
            let ctx = context! { partners => Value::from_serialize(&list) };
            c.render(&app, StatusCode::OK, "admin/review.html", "/admin/review", ctx)
        }
        Err(e) => error::internal_page(e, c.locale),
    }
}

/// (key, French, English) of the console pages, chained to the shared texts.
pub(super) const TEXTS: &[(&str, &str, &str)] = &[
    ("console_title", "Console d'administration", "Administration console"),
    ("console_nav_label", "Menu de la console", "Console menu"),
    ("console_home", "Accueil", "Home"),
    ("console_signed_in_as", "Connecté(e) en tant que", "Signed in as"),
    ("console_sign_out", "Se déconnecter", "Sign out"),
    ("console_logs", "Journal des connexions", "Connection log"),
    ("console_logs_intro", "recherche, pagination, export CSV", "search, pages, CSV export"),
    ("console_alerts", "Alertes de sécurité", "Security alerts"),
    ("console_integrity", "Intégrité du journal", "Log integrity"),
    ("console_purges", "Purges et attestations", "Purges and attestations"),
    ("console_partners", "Partenaires", "Partners"),
    ("console_partners_intro", "conventions, comptes, annexe 1", "conventions, accounts, annex 1"),
    ("console_review", "Revue annuelle des habilitations", "Yearly review of accesses"),
    ("console_filters", "Filtres", "Filters"),
    ("console_partner_id", "Partenaire (identifiant)", "Partner (identifier)"),
    ("console_event", "Type d'événement", "Event kind"),
    ("console_event_hint", "Par exemple signin_failed", "For example signin_failed"),
    ("console_outcome", "Résultat", "Outcome"),
    ("console_outcome_any", "Tous", "Any"),
    ("console_outcome_success", "Succès (success)", "Success"),
    ("console_outcome_failure", "Échec (failure)", "Failure"),
    ("console_err_event", "Type d'événement inconnu :", "Unknown event kind:"),
    ("console_err_outcome", "Résultat inconnu :", "Unknown outcome:"),
    ("console_err_partner", "Partenaire inconnu :", "Unknown partner:"),
    ("console_err_ip", "Ce n'est pas une adresse IPv4 ou IPv6 :", "Not an IPv4 or IPv6 address:"),
    (
        "console_err_time",
        "Date non reconnue (saisissez AAAA-MM-JJ ou une date RFC 3339) :",
        "Date not recognised (type YYYY-MM-DD or an RFC 3339 time):",
    ),
    (
        "console_err_period",
        "La période est vide : « Jusqu'à » doit être postérieur à « Depuis ».",
        "The period is empty: “Until” must come after “Since”.",
    ),
    ("console_err_page", "Numéro de page hors limites :", "Page number out of range:"),
    ("console_valid_values", "Valeurs possibles :", "Valid values:"),
    ("console_no_partner", "aucun partenaire n'est enregistré.", "no partner is registered."),
    ("console_ip", "Adresse IP", "IP address"),
    ("console_since", "Depuis", "Since"),
    ("console_until", "Jusqu'à (exclu)", "Until (excluded)"),
    ("console_time_hint", "AAAA-MM-JJ ou date RFC 3339", "YYYY-MM-DD or an RFC 3339 time"),
    ("console_search", "Rechercher", "Search"),
    ("console_export_csv", "Exporter en CSV", "Export as CSV"),
    ("console_logs_caption", "Enregistrements", "Records"),
    ("console_col_time", "Date (UTC)", "Time (UTC)"),
    ("console_col_outcome", "Résultat", "Outcome"),
    ("console_col_actor", "Auteur", "Actor"),
    ("console_col_detector", "Détecteur", "Detector"),
    ("console_col_subject", "Sujet", "Subject"),
    ("console_col_message", "Message", "Message"),
    ("console_col_details", "Détails", "Details"),
    ("console_col_name", "Nom", "Name"),
    ("console_col_state", "État", "State"),
    ("console_col_last_signin", "Dernière connexion", "Last sign-in"),
    ("console_col_actions", "Actions", "Actions"),
    ("console_col_line", "Ligne", "Line"),
    ("console_col_code", "Code", "Code"),
    ("console_col_action", "Action", "Action"),
    ("console_col_function", "Fonction", "Function"),
    ("console_none", "Aucun élément.", "Nothing."),
    ("console_page", "Page", "Page"),
    ("console_pagination", "Pagination", "Pages"),
    ("console_prev", "Page précédente", "Previous page"),
    ("console_next", "Page suivante", "Next page"),
    ("console_intact", "La chaîne du journal est intacte", "The log chain is intact"),
    ("console_records", "enregistrements vérifiés", "records checked"),
    ("console_broken", "La chaîne est rompue à l'enregistrement", "The chain is broken at record"),
    ("console_verified_at", "Vérifié le", "Checked at"),
    ("console_checkpoints", "Points de contrôle signés", "Signed checkpoints"),
    ("console_latest_checkpoint", "Dernier point de contrôle", "Latest checkpoint"),
    ("console_last_purge", "Dernière purge du journal", "Last purge of the log"),
    ("console_purge_runs", "Purges effectuées", "Purges run"),
    ("console_attestations", "Attestations de destruction", "Attestations of destruction"),
    ("console_partner", "Partenaire", "Partner"),
    ("console_destructions", "Destructions enregistrées", "Destructions recorded"),
    ("console_download", "Télécharger", "Download"),
    ("console_convention", "Convention", "Convention"),
    ("console_term", "Échéance", "Term"),
    ("console_annex1", "Annexe 1", "Annex 1"),
    ("console_annex2", "Annexe 2 (contacts)", "Annex 2 (contacts)"),
    ("console_accounts_of", "Comptes de", "Accounts of"),
    ("console_resend", "Renvoyer l'activation", "Resend activation"),
    ("console_close", "Clôturer l'accès", "Close the access"),
    ("console_done_activation_sent", "Un nouveau lien d'activation a été envoyé.", "A new activation link was sent."),
    ("console_done_closed", "L'accès a été clôturé.", "The access was closed."),
    ("console_annex1_upload", "Importer une annexe 1", "Import an annex 1"),
    ("console_annex1_propose", "Proposer une annexe 1", "Propose an annex 1"),
    (
        "console_annex1_intro",
        "Le fichier est d'abord analysé sans rien changer : le plan s'affiche, avec les problèmes ligne par ligne.",
        "The file is first checked without changing anything: the plan is shown, with the problems line by line.",
    ),
    ("console_file", "Fichier de l'annexe 1", "Annex-1 file"),
    ("console_file_hint", "CSV, XLSX ou ODS, 10 Mo au plus", "CSV, XLSX or ODS, at most 10 MB"),
    ("console_transmitted", "Date de transmission", "Transmission date"),
    ("console_date_hint", "Facultative ; par défaut aujourd'hui", "Optional; today by default"),
    ("console_dry_run", "Analyser (sans appliquer)", "Check (without applying)"),
    ("console_plan", "Plan de l'annexe 1", "Annex-1 plan"),
    ("console_applied", "Annexe 1 appliquée", "Annex 1 applied"),
    ("console_applied_text", "Les changements ci-dessous ont été appliqués.", "The changes below were applied."),
    (
        "console_plan_has_errors",
        "Le fichier contient des erreurs : rien ne peut être appliqué. Corrigez-les et importez-le de nouveau.",
        "The file has errors: nothing can be applied. Correct them and import it again.",
    ),
    ("console_errors", "Erreurs, par ligne", "Errors, by line"),
    ("console_warnings", "Avertissements, par ligne", "Warnings, by line"),
    ("console_changes", "Changements prévus", "Planned changes"),
    ("console_unchanged", "Accès inchangés", "Accesses unchanged"),
    ("console_action_open", "ouverture", "open"),
    ("console_action_reopen", "réouverture", "reopen"),
    ("console_action_update", "mise à jour", "update"),
    ("console_action_close", "clôture", "close"),
    (
        "console_apply_confirm",
        "Appliquer ce plan ouvre, modifie et clôture les accès listés, sans autre confirmation.",
        "Applying this plan opens, updates and closes the accesses listed, without further confirmation.",
    ),
    ("console_apply", "Appliquer", "Apply"),
    (
        "console_proposal_only",
        "Ce plan est une proposition : le responsable des habilitations de la Caf l'appliquera.",
        "This plan is a proposal: the Caf's habilitation manager will apply it.",
    ),
    ("console_back_to_partner", "Retour au partenaire", "Back to the partner"),
    ("console_close_title", "Clôturer l'accès", "Close the access"),
    (
        "console_close_warning",
        "La clôture met fin à toutes les sessions et à tous les jetons de cette personne, tout de suite.",
        "Closing ends all of this person's sessions and tokens, at once.",
    ),
    ("console_close_confirm", "Confirmer la clôture", "Confirm the closure"),
    ("console_cancel", "Annuler", "Cancel"),
    ("console_deadline", "Date limite", "Deadline"),
    ("console_review_up_to_date", "à jour", "up to date"),
    ("console_review_due_soon", "à faire bientôt", "due soon"),
    ("console_review_overdue", "en retard", "overdue"),
    (
        "err_forbidden",
        "Votre rôle ne permet pas d'accéder à cette page.",
        "Your role does not give access to this page.",
    ),
    ("err_bad_upload", "Le fichier envoyé n'a pas pu être lu.", "The file sent could not be read."),
    ("console_file_missing", "Choisissez un fichier.", "Choose a file."),
    (
        "console_bad_date",
        "La date de transmission doit être au format AAAA-MM-JJ.",
        "The transmission date must be YYYY-MM-DD.",
    ),
    (
        "console_upload_expired",
        "Ce plan a expiré ou a déjà été appliqué : importez le fichier de nouveau.",
        "This plan expired or was already applied: import the file again.",
    ),
    ("console_not_pending", "Cet accès n'attend pas d'activation.", "This access is not awaiting activation."),
];
