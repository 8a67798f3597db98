//! Passkeys (issue 17): the JSON the page's script asks for before calling
//! `navigator.credentials`, the forms that bring the browser's answer back,
//! and the passkeys part of the account's security page. Thin handlers over
//! `auth::passkeys` and `oidc::signin`. Every page keeps working without
//! the script: the password (and TOTP) forms are unchanged.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use minijinja::{Value, context};
use serde_json::json;

use super::extract::{CheckedForm, SourceAddress};
use super::i18n::{Locale, text};
use super::second_factor::{
    ENROL_PATH, SECURITY_PATH, Sent, StepCookie, VERIFY_PATH, clear_pending_cookie, next_location, pending_value,
};
use super::signin::{SigninView, after_sign_in, parked_of, render_signin};
use super::{AppState, browser, error, pages};
use crate::accounts::{Account, AccountState};
use crate::auth::passkeys::{self, FRESH_SIGNIN_MS, MAX_PER_ACCOUNT, Purpose, Refusal};
use crate::auth::second_factor::{self, Failure};
use crate::auth::session::{self, Session};
use crate::clock::rfc3339_ms;
use crate::config::Config;
use crate::error::AppError;
use crate::oidc::authorize;
use crate::oidc::signin::{self, PasskeyAnswer, PasskeyFailure, PasskeyOutcome, StepOutcome};

pub const SIGNIN_OPTIONS_PATH: &str = "/signin/passkey/options";
pub const SIGNIN_PATH: &str = "/signin/passkey";
pub const AUTOFILL_OPTIONS_PATH: &str = "/signin/passkey/autofill/options";
pub const STEP_OPTIONS_PATH: &str = "/signin/otp/passkey/options";
pub const STEP_PATH: &str = "/signin/otp/passkey";
pub const ENROL_OPTIONS_PATH: &str = "/signin/otp/enrol/passkey/options";
pub const ENROL_SUBMIT_PATH: &str = "/signin/otp/enrol/passkey";
pub const ADD_OPTIONS_PATH: &str = "/account/security/passkeys/options";
pub const ADD_PATH: &str = "/account/security/passkeys";
pub const RENAME_PATH: &str = "/account/security/passkeys/rename";
pub const REMOVE_PATH: &str = "/account/security/passkeys/remove";
pub const SCRIPT_PATH: &str = "/static/passkeys.js";

const SCRIPT: &str = include_str!("../../static/passkeys.js");

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(SCRIPT_PATH, get(script))
        .route(SIGNIN_OPTIONS_PATH, post(signin_options))
        .route(SIGNIN_PATH, post(signin_submit))
        .route(AUTOFILL_OPTIONS_PATH, post(autofill_options))
        .route(STEP_OPTIONS_PATH, post(step_options))
        .route(STEP_PATH, post(step_submit))
        .route(ENROL_OPTIONS_PATH, post(enrol_options))
        .route(ENROL_SUBMIT_PATH, post(enrol_submit))
        .route(ADD_OPTIONS_PATH, post(add_options))
        .route(ADD_PATH, post(add_submit))
        .route(RENAME_PATH, post(rename_submit))
        .route(REMOVE_PATH, post(remove_submit))
}

/// `GET /static/passkeys.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The ceremony rides in its own cookie, like the pending second factor:
/// bound to this browser, for the ceremony's few minutes.
const CEREMONY: StepCookie = StepCookie {
    names: ("__Host-coop_pk", "coop_pk"),
    same_site: SameSite::Strict,
    max_age: Some(time::Duration::milliseconds(passkeys::CEREMONY_TTL_MS)),
};

fn ceremony_cookie(config: &Config, value: String) -> Cookie<'static> {
    CEREMONY.cookie(config, value)
}

fn clear_ceremony(config: &Config, jar: CookieJar) -> CookieJar {
    CEREMONY.clear(config, jar)
}

/// The sign-in page's autofill keeps its challenge waiting while the
/// person may still ask for one after typing the address: its own cookie,
/// so that neither replaces the other.
const AUTOFILL: StepCookie = StepCookie { names: ("__Host-coop_pka", "coop_pka"), ..CEREMONY };

fn autofill_cookie(config: &Config, value: String) -> Cookie<'static> {
    AUTOFILL.cookie(config, value)
}

/// The options for the script, with the ceremony's cookie; `{}` when there
/// is nothing to ask (the script then says so and the form stays).
fn options_response(
    app: &AppState,
    jar: CookieJar,
    started: Result<Option<(serde_json::Value, String)>, AppError>,
) -> Response {
    options_response_in(app, jar, started, ceremony_cookie)
}

/// [`options_response`] with the ceremony in the cookie `cookie` makes.
fn options_response_in(
    app: &AppState,
    jar: CookieJar,
    started: Result<Option<(serde_json::Value, String)>, AppError>,
    cookie: fn(&Config, String) -> Cookie<'static>,
) -> Response {
    let mut response = match started {
        Ok(Some((options, value))) => {
            let jar = jar.remove(cookie(&app.config, String::new())).add(cookie(&app.config, value));
            (jar, axum::Json(options)).into_response()
        }
        Ok(None) => axum::Json(json!({})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "passkey options");
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "internal"}))).into_response()
        }
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What a passkey form brings: the ceremony's cookie and the browser's
/// answer; `None` without the cookie (expired, or never asked).
/// `autofill`: the answer to the sign-in page's autofill, behind its cookie.
fn read_answer(app: &AppState, jar: &CookieJar, form: &crate::oidc::Params) -> Option<Sent> {
    let cookie = if form.get("autofill").is_some() { &AUTOFILL } else { &CEREMONY };
    Sent::read(app, jar, cookie, form, ("credential", passkeys::ANSWER_MAX_BYTES + 1))
}

fn answer<'a>(sent: &'a Sent, source: &'a crate::audit::Source) -> PasskeyAnswer<'a> {
    PasskeyAnswer { ceremony_cookie: &sent.cookie, answer: &sent.value, browser: sent.browser(source) }
}

/// `POST /signin/passkey/options`: the typed address's passkey challenge.
pub async fn signin_options(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, jar, .. }: CheckedForm,
) -> Response {
    let email: String = form.get("email").unwrap_or("").chars().take(254).collect();
    let started = signin::passkey_signin_options(&app, &email, source.ip.as_deref()).await;
    options_response(&app, jar, started)
}

/// `POST /signin/passkey/autofill/options`: the challenge of the sign-in
/// page's passkey autofill, tied to no account.
pub async fn autofill_options(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { jar, .. }: CheckedForm,
) -> Response {
    let started = signin::passkey_autofill_options(&app, source.ip.as_deref()).await;
    options_response_in(&app, jar, started, autofill_cookie)
}

/// `POST /signin/passkey`: an agent's passkey instead of the password
/// (`autofill=1`: chosen from the sign-in page's autofill).
pub async fn signin_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let handle = form.get("request").map(str::to_string);
    let parked = match parked_of(&app, handle.as_deref()).await {
        Ok(p) => p,
        Err(unparked) => return unparked.page(locale),
    };
    let next = if handle.is_none() { form.get("next").and_then(second_factor::console_return) } else { None };
    let Some(sent) = read_answer(&app, &jar, &form) else {
        let failure = PasskeyFailure::Refused;
        return signin_refused(&app, jar, locale, handle.as_deref(), parked.as_ref(), next.as_deref(), failure).await;
    };
    match signin::with_passkey(&app, answer(&sent, &source), handle.as_deref().zip(parked.as_ref())).await {
        Ok(PasskeyOutcome::SignedIn(done)) => {
            let jar = clear_ceremony(&app.config, AUTOFILL.clear(&app.config, jar));
            let jar = browser::set_session(&app.config, jar, done.cookie);
            (jar, after_sign_in(locale, done.location.or(next))).into_response()
        }
        Ok(PasskeyOutcome::Refused(failure)) => {
            tracing::info!(reason = ?failure, "passkey sign-in refused");
            let jar = clear_ceremony(&app.config, AUTOFILL.clear(&app.config, jar));
            signin_refused(&app, jar, locale, handle.as_deref(), parked.as_ref(), next.as_deref(), failure).await
        }
        Err(e) => error::internal_page(e, locale),
    }
}

async fn signin_refused(
    app: &AppState,
    jar: CookieJar,
    locale: Locale,
    request: Option<&str>,
    parked: Option<&authorize::AuthorizationRequest>,
    next: Option<&str>,
    failure: PasskeyFailure,
) -> Response {
    let (message, status, retry_after) = match failure {
        PasskeyFailure::Throttled { retry_after_secs } => {
            (text(locale, "signin_throttled"), StatusCode::TOO_MANY_REQUESTS, Some(retry_after_secs))
        }
        PasskeyFailure::TwoFactorsAsked => (text(locale, "two_factors_asked"), StatusCode::UNAUTHORIZED, None),
        PasskeyFailure::Refused | PasskeyFailure::Expired => {
            (text(locale, "passkey_signin_failed"), StatusCode::UNAUTHORIZED, None)
        }
    };
    let view = SigninView { request, next, parked, email: "", error: Some(message), status };
    browser::with_retry_after(render_signin(app, jar, locale, view).await, retry_after)
}

/// `POST /signin/otp/passkey/options`: an administrator's passkey challenge
/// after the password.
pub async fn step_options(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { jar, .. }: CheckedForm,
) -> Response {
    let started = match pending_value(&app, &jar) {
        Some(p) => signin::passkey_second_factor_options(&app, &p, source.ip.as_deref()).await,
        None => Ok(None),
    };
    options_response(&app, jar, started)
}

/// `POST /signin/otp/enrol/passkey/options`: registering an administrator's
/// first passkey at enrolment.
pub async fn enrol_options(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { jar, .. }: CheckedForm,
) -> Response {
    let started = match pending_value(&app, &jar) {
        Some(p) => signin::passkey_enrolment_options(&app, &p, source.ip.as_deref()).await,
        None => Ok(None),
    };
    options_response(&app, jar, started)
}

/// `POST /signin/otp/passkey`: the passkey as second factor.
pub async fn step_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let (Some(pending), Some(sent)) = (pending_value(&app, &jar), read_answer(&app, &jar, &form)) else {
        return refused_step(locale, VERIFY_PATH, Failure::Expired);
    };
    let outcome = signin::with_passkey_second_factor(&app, &pending, answer(&sent, &source)).await;
    step_done(&app, jar, locale, outcome, VERIFY_PATH, None)
}

/// `POST /signin/otp/enrol/passkey`: an administrator's first passkey.
pub async fn enrol_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let (Some(pending), Some(sent)) = (pending_value(&app, &jar), read_answer(&app, &jar, &form)) else {
        return refused_step(locale, ENROL_PATH, Failure::Expired);
    };
    let Some(name) = passkeys::clean_name(form.get("name").unwrap_or("")) else {
        return refused_page(locale, ENROL_PATH, StatusCode::BAD_REQUEST, "passkey_name_invalid");
    };
    let outcome = signin::with_passkey_enrolment(&app, &pending, answer(&sent, &source), &name).await;
    step_done(&app, jar, locale, outcome, ENROL_PATH, Some(SECURITY_PATH))
}

fn step_done(
    app: &AppState,
    jar: CookieJar,
    locale: Locale,
    outcome: Result<StepOutcome<()>, AppError>,
    back: &str,
    otherwise: Option<&str>,
) -> Response {
    match outcome {
        Ok(StepOutcome::SignedIn { completed, return_to, .. }) => {
            let jar = clear_pending_cookie(&app.config, clear_ceremony(&app.config, jar));
            let jar = browser::set_session(&app.config, jar, completed.cookie);
            let next = next_location(completed.location, return_to).or(otherwise.map(str::to_string));
            (jar, after_sign_in(locale, next)).into_response()
        }
        Ok(StepOutcome::Refused(failure)) => {
            (clear_ceremony(&app.config, jar), refused_step(locale, back, failure)).into_response()
        }
        Ok(StepOutcome::Expired) => refused_step(locale, "/signin", Failure::Expired),
        Err(e) => error::internal_page(e, locale),
    }
}

fn refused_step(locale: Locale, back: &str, failure: Failure) -> Response {
    let (status, key, retry) = match failure {
        Failure::Throttled { retry_after_secs } => {
            (StatusCode::TOO_MANY_REQUESTS, "second_factor_throttled", Some(retry_after_secs))
        }
        Failure::Expired => (StatusCode::BAD_REQUEST, "err_second_factor_expired", None),
        Failure::WrongCode => (StatusCode::UNAUTHORIZED, "passkey_step_failed", None),
    };
    let back = if failure == Failure::Expired { "/signin" } else { back };
    browser::with_retry_after(refused_page(locale, back, status, key), retry)
}

fn refused_page(locale: Locale, back: &str, status: StatusCode, key: &str) -> Response {
    pages::render(
        status,
        "message.html",
        locale,
        back,
        context! {
            title => text(locale, "error_title"),
            message => text(locale, key),
            link_href => back,
            link_text => text(locale, "passkey_try_again"),
            is_error => true,
        },
    )
}

/// The signed-in session and its account, for the security page's forms.
async fn signed_in(app: &AppState, jar: &CookieJar) -> Result<Option<(Session, Account)>, AppError> {
    let Some(value) = browser::session_value(&app.config, jar) else { return Ok(None) };
    let Some(s) = session::current(app, &value).await? else { return Ok(None) };
    let Some(row) = app.store.account_by_id(&s.account_id).await? else { return Ok(None) };
    let account = Account::from_row(&row);
    if account.state != AccountState::Active {
        return Ok(None);
    }
    Ok(Some((s, account)))
}

fn fresh(app: &AppState, s: &Session) -> bool {
    app.clock.now_ms() - s.auth_time_ms < FRESH_SIGNIN_MS
}

/// The passkeys part of the security page: the list, whether this sign-in
/// is recent enough to add one, and what the last action said.
pub async fn security_context(app: &AppState, s: &Session, notice: Option<&str>) -> Result<Value, AppError> {
    let rows = app.store.passkeys_of_account(&s.account_id).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            context! {
                id => r.id.clone(),
                name => r.name.clone(),
                created_at => rfc3339_ms(r.created_at),
                last_used_at => r.last_used_at.map(rfc3339_ms),
            }
        })
        .collect();
    let notice = notice.filter(|n| NOTICES.contains(n)).map(|n| format!("passkey_notice_{n}"));
    let is_error = notice_is_error(notice.as_deref());
    Ok(context! {
        passkeys => list,
        passkey_fresh => fresh(app, s),
        passkey_room => rows.len() < MAX_PER_ACCOUNT,
        passkey_max => MAX_PER_ACCOUNT,
        passkey_notice => notice,
        passkey_notice_error => is_error,
    })
}

/// What an action on the security page says after it (`?passkey=…`).
const NOTICES: &[&str] = &["added", "renamed", "removed", "refused", "stale", "name", "limit"];

fn notice_is_error(notice: Option<&str>) -> bool {
    matches!(
        notice,
        Some("passkey_notice_refused" | "passkey_notice_stale" | "passkey_notice_name" | "passkey_notice_limit")
    )
}

fn back_to_security(notice: &str) -> Response {
    browser::see_other(&format!("{SECURITY_PATH}?passkey={notice}"))
}

/// `POST /account/security/passkeys/options`: the challenge to add one.
pub async fn add_options(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { jar, .. }: CheckedForm,
) -> Response {
    let started = async {
        let Some((s, account)) = signed_in(&app, &jar).await? else { return Ok(None) };
        if !fresh(&app, &s) {
            return Ok(None);
        }
        passkeys::start_registration(&app, &account, source.ip.as_deref()).await
    }
    .await;
    options_response(&app, jar, started)
}

/// `POST /account/security/passkeys`: the new passkey, named.
pub async fn add_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let outcome = async {
        let Some((s, account)) = signed_in(&app, &jar).await? else { return Ok(None) };
        if !fresh(&app, &s) {
            return Ok(Some("stale"));
        }
        let Some(name) = passkeys::clean_name(form.get("name").unwrap_or("")) else { return Ok(Some("name")) };
        let Some(sent) = read_answer(&app, &jar, &form) else { return Ok(Some("refused")) };
        let Some(ceremony) = passkeys::ceremony(&app, &sent.cookie, Purpose::Register).await? else {
            return Ok(Some("refused"));
        };
        Ok::<_, AppError>(Some(match passkeys::add(&app, &ceremony, &account, &sent.value, &name, &source).await? {
            Ok(()) => "added",
            Err(Refusal::TooMany) => "limit",
            Err(_) => "refused",
        }))
    }
    .await;
    let jar = clear_ceremony(&app.config, jar);
    match outcome {
        Ok(Some(notice)) => (jar, back_to_security(notice)).into_response(),
        Ok(None) => browser::see_other("/signin"),
        Err(e) => error::internal_page(e, locale),
    }
}

/// `POST /account/security/passkeys/rename`.
pub async fn rename_submit(State(app): State<AppState>, CheckedForm { form, locale, jar }: CheckedForm) -> Response {
    let outcome = async {
        let Some((_, account)) = signed_in(&app, &jar).await? else { return Ok(None) };
        let Some(name) = passkeys::clean_name(form.get("name").unwrap_or("")) else { return Ok(Some("name")) };
        let id = form.get("id").unwrap_or("");
        Ok::<_, AppError>(Some(if passkeys::rename(&app, &account, id, &name).await? { "renamed" } else { "refused" }))
    }
    .await;
    match outcome {
        Ok(Some(notice)) => back_to_security(notice),
        Ok(None) => browser::see_other("/signin"),
        Err(e) => error::internal_page(e, locale),
    }
}

/// `POST /account/security/passkeys/remove`.
pub async fn remove_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let outcome = async {
        let Some((_, account)) = signed_in(&app, &jar).await? else { return Ok(None) };
        let id = form.get("id").unwrap_or("");
        let removed = passkeys::remove(&app, &account, id, &account.email, &source).await?;
        Ok::<_, AppError>(Some(if removed { "removed" } else { "refused" }))
    }
    .await;
    match outcome {
        Ok(Some(notice)) => back_to_security(notice),
        Ok(None) => browser::see_other("/signin"),
        Err(e) => error::internal_page(e, locale),
    }
}
