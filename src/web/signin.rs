//! The authorization endpoint and the sign-in page.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;

use super::extract::ProtocolCall;
use super::i18n::{Locale, text};
use super::oauth::pairs;
use super::{AppState, browser, error, pages};
use crate::auth::SignInFailure;
use crate::auth::second_factor::{self, Requirement};
use crate::auth::session;
use crate::error::{AppError, AppResult};
use crate::oidc::authorize::{self, AuthorizationRequest, AuthorizeError, Decision, PageError};
use crate::oidc::signin::{self, PasswordOutcome};
use crate::oidc::{Params, clients};

/// GET or POST (OpenID Connect Core §3.1.2.1): the same request either way.
pub async fn authorize(State(app): State<AppState>, call: ProtocolCall) -> Response {
    let locale = call.locale;
    let outcome = async {
        let (request, client) = authorize::validate(&app, call.params, call.raw_len).await?;
        let session = current_session(&app, &call.jar).await?;
        let decision = authorize::decision(&app, &request, session.as_ref()).await?;
        match (decision, session) {
            (Decision::IssueCode, Some(session)) => Ok(authorize::issue_code(&app, &request, &session).await?),
            _ => {
                let ip = super::client_ip(call.peer.ip(), &call.headers, &app.config.trusted_proxies);
                let handle = authorize::park(&app, &request, &client, ip).await?;
                Ok(format!("/signin?request={handle}"))
            }
        }
    }
    .await;
    match outcome {
        Ok(location) => browser::see_other(&location),
        Err(AuthorizeError::Redirect(location)) => browser::see_other(&location),
        Err(AuthorizeError::Page(e)) => pages::error_page(StatusCode::BAD_REQUEST, locale, page_error_key(e)),
        Err(AuthorizeError::Internal(e)) => error::internal_page(e, locale),
    }
}

/// The live session behind the browser's cookie, if any.
pub(super) async fn current_session(app: &AppState, jar: &CookieJar) -> AppResult<Option<session::Session>> {
    match browser::session_value(&app.config, jar) {
        Some(v) => session::current(app, &v).await,
        None => Ok(None),
    }
}

fn page_error_key(e: PageError) -> &'static str {
    match e {
        PageError::RepeatedParameter => "err_repeated_parameter",
        PageError::MissingClientId => "err_missing_client_id",
        PageError::UnknownClient => "err_unknown_client",
        PageError::MissingRedirectUri => "err_missing_redirect_uri",
        PageError::UnregisteredRedirectUri => "err_unregistered_redirect_uri",
        PageError::ParameterTooLong => "err_parameter_too_long",
    }
}

#[derive(Deserialize)]
pub struct SigninQuery {
    request: Option<String>,
    lang: Option<String>,
    /// The console page that sent the browser here (see `console_return`).
    next: Option<String>,
}

/// The sign-in page's address, keeping what it carries (for the language
/// switch, and for the console's redirect to it).
pub(super) fn signin_path(request: Option<&str>, next: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(r) = request {
        query.append_pair("request", r);
    }
    if let Some(n) = next {
        query.append_pair("next", n);
    }
    let query = query.finish();
    if query.is_empty() { "/signin".to_string() } else { format!("/signin?{query}") }
}

pub(super) struct SigninView<'a> {
    pub(super) request: Option<&'a str>,
    /// A console path, already accepted by `console_return`.
    pub(super) next: Option<&'a str>,
    pub(super) parked: Option<&'a AuthorizationRequest>,
    pub(super) email: &'a str,
    pub(super) error: Option<&'a str>,
    pub(super) status: StatusCode,
}

pub(super) async fn render_signin(app: &AppState, jar: CookieJar, locale: Locale, view: SigninView<'_>) -> Response {
    let client_name = match view.parked {
        Some(p) => clients::find(app, &p.client_id).await.ok().flatten().map(|c| c.name),
        None => None,
    };
    let switch = signin_path(view.request, view.next);
    let values = context! {
        request => view.request,
        next => view.next,
        email => view.email,
        error => view.error,
        client_name => client_name,
    };
    pages::FormPage { status: view.status, template: "signin.html", locale, path_for_switch: &switch }.render(
        &app.config,
        jar,
        values,
    )
}

pub async fn signin_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(q): Query<SigninQuery>,
) -> Response {
    let parked = match parked_of(&app, q.request.as_deref()).await {
        Ok(p) => p,
        Err(unparked) => return unparked.page(browser::locale(&headers, q.lang.as_deref(), None)),
    };
    let locale = browser::locale(&headers, q.lang.as_deref(), parked.as_ref().and_then(|p| p.ui_locale.as_deref()));
    let jar = browser::remember_locale(jar, q.lang.as_deref());
    let email = parked.as_ref().and_then(|p| p.login_hint.clone()).unwrap_or_default();
    // A relying party's request, when there is one, decides where the
    // browser goes next; a console page only otherwise.
    let next = if parked.is_none() { q.next.as_deref().and_then(second_factor::console_return) } else { None };
    let view = SigninView {
        request: q.request.as_deref(),
        next: next.as_deref(),
        parked: parked.as_ref(),
        email: &email,
        error: None,
        status: StatusCode::OK,
    };
    render_signin(&app, jar, locale, view).await
}

pub async fn signin_submit(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    let form = Params::from_pairs(pairs(&body)).unwrap_or_default();
    let handle = form.get("request").map(str::to_string);
    let parked = match parked_of(&app, handle.as_deref()).await {
        Ok(p) => p,
        Err(unparked) => return unparked.page(browser::locale(&headers, None, None)),
    };
    let locale = browser::locale(&headers, None, parked.as_ref().and_then(|p| p.ui_locale.as_deref()));
    let next = if handle.is_none() { form.get("next").and_then(second_factor::console_return) } else { None };
    if !browser::csrf_ok(&app.config, &jar, form.get("csrf")) {
        return pages::error_page(StatusCode::FORBIDDEN, locale, "err_csrf");
    }
    let email = form.get("email").unwrap_or("").chars().take(254).collect::<String>();
    let source = super::audit_source(&app, peer, &headers);
    let previous = browser::session_value(&app.config, &jar);
    let attempt = signin::PasswordSignIn {
        email: &email,
        password: form.get("password").unwrap_or(""),
        parked: handle.as_deref().zip(parked.as_ref()),
        return_to: next.as_deref(),
        browser: signin::Browser { previous_cookie: previous.as_deref(), source: &source },
    };
    match signin::with_password(&app, attempt).await {
        Ok(PasswordOutcome::SignedIn(done)) => {
            let jar = browser::set_session(&app.config, jar, done.cookie);
            (jar, after_sign_in(locale, done.location.or(next))).into_response()
        }
        Ok(PasswordOutcome::SecondFactor { step, pending_cookie }) => {
            let path = match step {
                Requirement::Enrol => super::second_factor::ENROL_PATH,
                _ => super::second_factor::VERIFY_PATH,
            };
            let jar = super::second_factor::set_pending_cookie(&app.config, jar, pending_cookie);
            (jar, browser::see_other(path)).into_response()
        }
        Ok(PasswordOutcome::Refused(failure)) => {
            tracing::info!(reason = ?failure, "sign-in refused");
            let (message, status, retry_after) = match failure {
                SignInFailure::Throttled { retry_after_secs } => {
                    (text(locale, "signin_throttled"), StatusCode::TOO_MANY_REQUESTS, Some(retry_after_secs))
                }
                _ => (text(locale, "signin_failed"), StatusCode::UNAUTHORIZED, None),
            };
            let view = SigninView {
                request: handle.as_deref(),
                next: next.as_deref(),
                parked: parked.as_ref(),
                email: &email,
                error: Some(message),
                status,
            };
            browser::with_retry_after(render_signin(&app, jar, locale, view).await, retry_after)
        }
        Err(e) => error::internal_page(e, locale),
    }
}

/// Why the request a sign-in page or form names cannot be answered.
pub(super) enum Unparked {
    /// Expired, used, or never parked: the user starts again.
    Expired,
    /// The store failed: an internal error, never "expired".
    Failed(AppError),
}

impl Unparked {
    pub(super) fn page(self, locale: Locale) -> Response {
        match self {
            Unparked::Expired => pages::error_page(StatusCode::BAD_REQUEST, locale, "err_request_expired"),
            Unparked::Failed(e) => error::internal_page(e, locale),
        }
    }
}

/// The parked request behind the handle a sign-in page or form carries.
pub(super) async fn parked_of(app: &AppState, handle: Option<&str>) -> Result<Option<AuthorizationRequest>, Unparked> {
    let Some(handle) = handle else { return Ok(None) };
    match authorize::parked(app, handle).await {
        Ok(Some(p)) => Ok(Some(p)),
        Ok(None) => Err(Unparked::Expired),
        Err(e) => Err(Unparked::Failed(e)),
    }
}

/// Where a completed sign-in leads: back to the relying party, or a
/// "signed in" page when the sign-in page was opened directly.
pub(super) fn after_sign_in(locale: Locale, location: Option<String>) -> Response {
    match location {
        Some(l) => browser::see_other(&l),
        None => {
            pages::message_with_link(locale, "signed_in_title", "signed_in_text", "/password/change", "change_title")
        }
    }
}
