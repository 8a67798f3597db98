//! The authorization endpoint and the sign-in page.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;

use super::i18n::{Locale, text};
use super::oauth::pairs;
use super::{AppState, browser, error, pages};
use crate::accounts::Account;
use crate::audit;
use crate::auth::session::{self, ACR_PASSWORD, AMR_PASSWORD};
use crate::auth::{self as authn, second_factor};
use crate::oidc::authorize::{self, AuthorizationRequest, AuthorizeError, Decision, PageError};
use crate::oidc::{Params, clients};

pub async fn authorize_get(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    RawQuery(q): RawQuery,
) -> Response {
    let q = q.unwrap_or_default();
    authorize(app, peer, headers, jar, q.as_bytes()).await
}

pub async fn authorize_post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    authorize(app, peer, headers, jar, &body).await
}

async fn authorize(app: AppState, peer: SocketAddr, headers: HeaderMap, jar: CookieJar, raw: &[u8]) -> Response {
    let params = Params::from_pairs(pairs(raw));
    let ui_locales = params.as_ref().ok().and_then(|p| p.get("ui_locales").map(str::to_string));
    let locale = browser::locale(&headers, None, ui_locales.as_deref());
    let outcome = async {
        let (request, client) = authorize::validate(&app, params, raw.len()).await?;
        let session = match browser::session_value(&app.config, &jar) {
            Some(v) => session::current(&app, &v).await?,
            None => None,
        };
        let decision = request.decide(&app.config.issuer_str(), session.as_ref(), app.clock.now_ms())?;
        match (decision, session) {
            (Decision::IssueCode, Some(session)) => Ok(authorize::issue_code(&app, &request, &session).await?),
            _ => {
                let ip = super::client_ip(peer.ip(), &headers, &app.config.trusted_proxies);
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

struct SigninView<'a> {
    request: Option<&'a str>,
    /// A console path, already accepted by `console_return`.
    next: Option<&'a str>,
    parked: Option<&'a AuthorizationRequest>,
    email: &'a str,
    error: Option<&'a str>,
    status: StatusCode,
}

async fn render_signin(app: &AppState, jar: CookieJar, locale: Locale, view: SigninView<'_>) -> Response {
    let (jar, csrf) = browser::csrf_token(&app.config, jar);
    let client_name = match view.parked {
        Some(p) => clients::find(app, &p.client_id).await.ok().flatten().map(|c| c.name),
        None => None,
    };
    let switch = signin_path(view.request, view.next);
    let page = pages::render(
        view.status,
        "signin.html",
        locale,
        &switch,
        context! {
            csrf => csrf,
            request => view.request,
            next => view.next,
            email => view.email,
            error => view.error,
            client_name => client_name,
        },
    );
    (jar, page).into_response()
}

pub async fn signin_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(q): Query<SigninQuery>,
) -> Response {
    let parked = match &q.request {
        Some(handle) => match authorize::parked(&app, handle).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                let locale = browser::locale(&headers, q.lang.as_deref(), None);
                return pages::error_page(StatusCode::BAD_REQUEST, locale, "err_request_expired");
            }
            Err(e) => return error::internal_page(e, browser::locale(&headers, q.lang.as_deref(), None)),
        },
        None => None,
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
    let parked = match &handle {
        Some(h) => authorize::parked(&app, h).await.ok().flatten(),
        None => None,
    };
    let locale = browser::locale(&headers, None, parked.as_ref().and_then(|p| p.ui_locale.as_deref()));
    if handle.is_some() && parked.is_none() {
        return pages::error_page(StatusCode::BAD_REQUEST, locale, "err_request_expired");
    }
    let next = if handle.is_none() { form.get("next").and_then(second_factor::console_return) } else { None };
    if !browser::csrf_ok(&app.config, &jar, form.get("csrf")) {
        return pages::error_page(StatusCode::FORBIDDEN, locale, "err_csrf");
    }
    let email = form.get("email").unwrap_or("").chars().take(254).collect::<String>();
    let password = form.get("password").unwrap_or("");
    let source = super::audit_source(&app, peer, &headers);
    let ip = source.ip.clone().unwrap_or_default();
    let client_id = parked.as_ref().map(|p| p.client_id.clone());
    let outcome = match authn::sign_in_with_password(&app, &email, password, Some(&ip)).await {
        Ok(o) => o,
        Err(e) => return error::internal_page(e, locale),
    };
    let account = match outcome {
        Ok(a) => a,
        Err(authn::Refused { failure: reason, account: known }) => {
            tracing::info!(reason = ?reason, "sign-in refused");
            let (kind, why) = match reason {
                authn::SignInFailure::Throttled { retry_after_secs } => (
                    audit::kind::THROTTLED,
                    serde_json::json!({"reason": "throttled", "retry_after_secs": retry_after_secs}),
                ),
                authn::SignInFailure::UnknownAccount => {
                    (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "unknown_account"}))
                }
                authn::SignInFailure::WrongPassword => {
                    (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "wrong_password"}))
                }
                authn::SignInFailure::Pending => (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "pending"})),
                authn::SignInFailure::Closed => (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "closed"})),
            };
            let mut event = audit::Event::new(kind, audit::Outcome::Failure, email.clone())
                .email(email.clone())
                .source(&source)
                .details(why);
            if let Some(c) = &client_id {
                event = event.client(c.clone());
            }
            // Read only by the Caf's security staff: naming the account
            // reveals nothing to the person typing.
            if let Some(a) = known {
                event = event.account(a.id).partner(a.partner_id);
            }
            audit::record(&app, vec![event]).await;
            let (message, status, retry_after) = match reason {
                authn::SignInFailure::Throttled { retry_after_secs } => {
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
            let mut page = render_signin(&app, jar, locale, view).await;
            if let Some(secs) = retry_after
                && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
            {
                page.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return page;
        }
    };
    let requirement = match second_factor::requirement(&app, &account.id).await {
        Ok(r) => r,
        Err(e) => return error::internal_page(e, locale),
    };
    let step_page = match requirement {
        second_factor::Requirement::None => None,
        second_factor::Requirement::Verify => Some(super::second_factor::VERIFY_PATH),
        second_factor::Requirement::Enrol => Some(super::second_factor::ENROL_PATH),
    };
    if let Some(path) = step_page {
        // The password was right; the session waits for the second factor.
        return match second_factor::begin(&app, &account.id, handle.as_deref(), next.as_deref()).await {
            Ok(cookie) => {
                let jar = super::second_factor::set_pending_cookie(&app.config, jar, cookie);
                (jar, browser::see_other(path)).into_response()
            }
            Err(e) => error::internal_page(e, locale),
        };
    }
    // The request was read above: not read again.
    let parked = handle.as_deref().zip(parked.as_ref());
    match complete(&app, jar, &headers, &source, &account, &[AMR_PASSWORD], ACR_PASSWORD, parked).await {
        Ok((jar, location)) => (jar, after_sign_in(locale, location.or(next))).into_response(),
        Err(e) => error::internal_page(e, locale),
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

/// Opens the session of an authenticated account (password, and second
/// factor when `amr` says so) through the domain's one-transaction use case
/// (`auth::signin::complete`). Returns the cookie jar holding the new
/// session and the redirect to the relying party.
#[allow(clippy::too_many_arguments)]
pub(super) async fn establish(
    app: &AppState,
    jar: CookieJar,
    headers: &HeaderMap,
    source: &audit::Source,
    account: &Account,
    amr: &[&str],
    acr: &str,
    handle: Option<&str>,
) -> Result<(CookieJar, Option<String>), crate::error::AppError> {
    let parked = match handle {
        Some(h) => authorize::parked(app, h).await?,
        None => None,
    };
    complete(app, jar, headers, source, account, amr, acr, handle.zip(parked.as_ref())).await
}

/// [`establish`] with the parked request already read by the caller.
#[allow(clippy::too_many_arguments)]
async fn complete(
    app: &AppState,
    jar: CookieJar,
    headers: &HeaderMap,
    source: &audit::Source,
    account: &Account,
    amr: &[&str],
    acr: &str,
    parked: Option<(&str, &AuthorizationRequest)>,
) -> Result<(CookieJar, Option<String>), crate::error::AppError> {
    let previous = browser::session_value(&app.config, &jar);
    let ua = browser::user_agent(headers);
    let done = authn::signin::complete(
        app,
        authn::signin::Completion {
            account,
            amr,
            acr,
            previous_cookie: previous.as_deref(),
            parked,
            source,
            user_agent: ua.as_deref(),
        },
    )
    .await?;
    Ok((browser::set_session(&app.config, jar, done.cookie), done.location))
}
