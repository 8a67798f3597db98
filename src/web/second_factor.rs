//! The second step of sign-in (R18) and the account's security page:
//! TOTP enrolment (QR code, manual key, first code, recovery codes shown
//! once), the code asked at each sign-in, and the opt-in for agents. Thin
//! handlers over `auth::second_factor`; no script is needed on any page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use minijinja::context;

use super::browser::PageLocale;
use super::extract::{CheckedForm, SourceAddress};
use super::i18n::{Locale, text};
use super::signin::after_sign_in;
use super::{AppState, browser, error, pages};
use crate::accounts::Account;
use crate::auth::second_factor::{self, Failure};
use crate::auth::session;
use crate::auth::totp;
use crate::config::Config;
use crate::error::AppError;
use crate::oidc::signin::{self, Browser, SecondStep, StepOutcome};
use crate::store::totp::PendingSecondFactorRow;

pub const VERIFY_PATH: &str = "/signin/otp";
pub const ENROL_PATH: &str = "/signin/otp/enrol";
pub const SECURITY_PATH: &str = "/account/security";
/// Where a step-up lands when the page it asked for cannot be returned to.
const CONSOLE_HOME: &str = "/admin";

/// The label authenticator apps show next to the code.
const ISSUER_LABEL: &str = "Coopération";

/// A cookie that carries one step of a sign-in between two requests (the
/// pending second factor, a passkey ceremony): HttpOnly, for the whole
/// site, `Secure` and named `__Host-…` under HTTPS.
pub(super) struct StepCookie {
    /// Its name under HTTPS, then under plain HTTP.
    pub(super) names: (&'static str, &'static str),
    pub(super) same_site: SameSite,
    /// `None`: it ends with the browser (the server bounds the state).
    pub(super) max_age: Option<time::Duration>,
}

impl StepCookie {
    fn name(&self, config: &Config) -> &'static str {
        if config.is_https() { self.names.0 } else { self.names.1 }
    }

    pub(super) fn cookie(&self, config: &Config, value: String) -> Cookie<'static> {
        let mut c = browser::base_cookie(config, self.name(config), value, self.same_site);
        if let Some(age) = self.max_age {
            c.set_max_age(age);
        }
        c
    }

    pub(super) fn value(&self, config: &Config, jar: &CookieJar) -> Option<String> {
        jar.get(self.name(config)).map(|c| c.value().to_string())
    }

    pub(super) fn clear(&self, config: &Config, jar: CookieJar) -> CookieJar {
        jar.remove(self.cookie(config, String::new()))
    }
}

/// The pending second-factor state rides in its own cookie, separate from
/// the session, so that no session exists before the second factor.
const PENDING: StepCookie =
    StepCookie { names: ("__Host-coop_mfa", "coop_mfa"), same_site: SameSite::Lax, max_age: None };

pub fn set_pending_cookie(config: &Config, jar: CookieJar, value: String) -> CookieJar {
    jar.add(PENDING.cookie(config, value))
}

pub(super) fn clear_pending_cookie(config: &Config, jar: CookieJar) -> CookieJar {
    PENDING.clear(config, jar)
}

/// The pending cookie's value, if the browser holds one.
pub(super) fn pending_value(app: &AppState, jar: &CookieJar) -> Option<String> {
    PENDING.value(&app.config, jar)
}

async fn load_pending(app: &AppState, jar: &CookieJar) -> Result<Option<PendingSecondFactorRow>, AppError> {
    match pending_value(app, jar) {
        Some(c) => second_factor::pending(app, &c).await,
        None => Ok(None),
    }
}

fn expired(locale: Locale) -> Response {
    pages::render(
        StatusCode::BAD_REQUEST,
        "message.html",
        locale,
        "/signin",
        context! {
            title => text(locale, "error_title"),
            message => text(locale, "err_second_factor_expired"),
            link_href => "/signin",
            link_text => text(locale, "back_to_signin"),
            is_error => true,
        },
    )
}

struct CodeView<'a> {
    error: Option<&'a str>,
    status: StatusCode,
}

/// Which second factors the verify page offers (issue 17: a passkey first
/// when the account holds one).
#[derive(Clone, Copy)]
struct Offered {
    totp: bool,
    passkey: bool,
}

async fn offered(app: &AppState, account_id: &str) -> Result<Offered, AppError> {
    let totp = app.store.totp(account_id).await?.is_some();
    let passkey = app.store.passkey_count(account_id).await? > 0;
    Ok(Offered { totp, passkey })
}

fn verify_view(app: &AppState, jar: CookieJar, locale: Locale, offered: Offered, view: CodeView<'_>) -> Response {
    let values = context! { error => view.error, totp => offered.totp, passkey => offered.passkey };
    pages::FormPage { status: view.status, template: "second_factor.html", locale, path_for_switch: VERIFY_PATH }
        .render(&app.config, jar, values)
}

pub async fn verify_page(State(app): State<AppState>, PageLocale { locale, jar }: PageLocale) -> Response {
    let pending = match load_pending(&app, &jar).await {
        Ok(Some(p)) => p,
        Ok(None) => return expired(locale),
        Err(e) => return error::internal_page(e, locale),
    };
    match offered(&app, &pending.account_id).await {
        Ok(o) if o.totp || o.passkey => {
            verify_view(&app, jar, locale, o, CodeView { error: None, status: StatusCode::OK })
        }
        Ok(_) => browser::see_other(ENROL_PATH),
        Err(e) => error::internal_page(e, locale),
    }
}

/// The status and message of a refused code.
fn refusal(locale: Locale, failure: Failure) -> (StatusCode, &'static str, Option<i64>) {
    match failure {
        Failure::Throttled { retry_after_secs } => {
            (StatusCode::TOO_MANY_REQUESTS, text(locale, "second_factor_throttled"), Some(retry_after_secs))
        }
        _ => (StatusCode::UNAUTHORIZED, text(locale, "second_factor_failed"), None),
    }
}

/// What a sign-in step's form brings: the step's cookie (the pending second
/// factor, a passkey ceremony), the one field the step reads, and the
/// session cookie the browser may still hold.
pub(super) struct Sent {
    /// The value of the step's cookie.
    pub(super) cookie: String,
    /// The one field the step reads, cut at its bound.
    pub(super) value: String,
    previous: Option<String>,
}

impl Sent {
    /// `None` when the browser does not hold the step's cookie.
    pub(super) fn read(
        app: &AppState,
        jar: &CookieJar,
        cookie: &StepCookie,
        form: &crate::oidc::Params,
        (field, max_chars): (&str, usize),
    ) -> Option<Sent> {
        Some(Sent {
            cookie: cookie.value(&app.config, jar)?,
            value: form.get(field).unwrap_or("").chars().take(max_chars).collect(),
            previous: browser::session_value(&app.config, jar),
        })
    }

    pub(super) fn browser<'a>(&'a self, source: &'a crate::audit::Source) -> Browser<'a> {
        Browser { previous_cookie: self.previous.as_deref(), source }
    }

    /// The code of a second-step form, behind the pending cookie.
    fn code(app: &AppState, jar: &CookieJar, form: &crate::oidc::Params) -> Option<Sent> {
        Sent::read(app, jar, &PENDING, form, ("code", 64))
    }

    fn step<'a>(&'a self, source: &'a crate::audit::Source) -> SecondStep<'a> {
        SecondStep { pending_cookie: &self.cookie, code: &self.value, browser: self.browser(source) }
    }
}

pub async fn verify_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let Some(sent) = Sent::code(&app, &jar, &form) else { return expired(locale) };
    let step = sent.step(&source);
    match signin::with_code(&app, step).await {
        Ok(StepOutcome::SignedIn { completed, return_to, .. }) => {
            let jar = browser::set_session(&app.config, clear_pending_cookie(&app.config, jar), completed.cookie);
            (jar, after_sign_in(locale, next_location(completed.location, return_to))).into_response()
        }
        Ok(StepOutcome::Expired) => expired(locale),
        Ok(StepOutcome::Refused(failure)) => {
            let (status, message, retry_after) = refusal(locale, failure);
            let o = match load_pending(&app, &jar).await {
                Ok(Some(p)) => offered(&app, &p.account_id).await.unwrap_or(Offered { totp: true, passkey: false }),
                _ => Offered { totp: true, passkey: false },
            };
            let page = verify_view(&app, jar, locale, o, CodeView { error: Some(message), status });
            browser::with_retry_after(page, retry_after)
        }
        Err(e) => error::internal_page(e, locale),
    }
}

/// Where the browser goes once the second factor is given: the relying
/// party when an authorization request waited; else, after a step-up, the
/// console page asked for (`/admin` when the stored path is not a console
/// path); else `None` (the page of each step decides).
pub(super) fn next_location(location: Option<String>, return_to: Option<String>) -> Option<String> {
    location.or_else(|| {
        let target = return_to.as_deref()?;
        Some(second_factor::console_return(target).unwrap_or_else(|| CONSOLE_HOME.to_string()))
    })
}

async fn enrol_view(
    app: &AppState,
    jar: CookieJar,
    locale: Locale,
    pending: &PendingSecondFactorRow,
    account: &Account,
    view: CodeView<'_>,
) -> Response {
    let secret = match second_factor::enrolment_secret(app, pending).await {
        Ok(s) => s,
        Err(e) => return error::internal_page(e, locale),
    };
    let uri = totp::otpauth_uri(ISSUER_LABEL, &account.email, &secret);
    let values = context! {
        error => view.error,
        qr => totp::qr_data_uri(&uri),
        key => totp::grouped(&secret),
        email => account.email.clone(),
    };
    pages::FormPage { status: view.status, template: "second_factor_enrol.html", locale, path_for_switch: ENROL_PATH }
        .render(&app.config, jar, values)
}

/// The pending state and account of an enrolment, or the page to show
/// instead: an account that already enrolled gives its code (a password
/// alone must never replace an enrolled factor).
async fn enrolment(
    app: &AppState,
    jar: &CookieJar,
    locale: Locale,
) -> Result<(PendingSecondFactorRow, Account), Response> {
    let loaded = async {
        let Some(cookie) = pending_value(app, jar) else { return Ok(None) };
        let Some((pending, account)) = signin::pending_account(app, &cookie).await? else { return Ok(None) };
        let enrolled = second_factor::held(app, &account.id).await?;
        Ok::<_, AppError>(Some((pending, account, enrolled)))
    }
    .await;
    match loaded {
        Ok(Some((_, _, true))) => Err(browser::see_other(VERIFY_PATH)),
        Ok(Some((p, a, false))) => Ok((p, a)),
        Ok(None) => Err(expired(locale)),
        Err(e) => Err(error::internal_page(e, locale)),
    }
}

pub async fn enrol_page(State(app): State<AppState>, PageLocale { locale, jar }: PageLocale) -> Response {
    match enrolment(&app, &jar, locale).await {
        Ok((pending, account)) => {
            enrol_view(&app, jar, locale, &pending, &account, CodeView { error: None, status: StatusCode::OK }).await
        }
        Err(page) => page,
    }
}

pub async fn enrol_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let (pending, account) = match enrolment(&app, &jar, locale).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let Some(sent) = Sent::code(&app, &jar, &form) else { return expired(locale) };
    let step = sent.step(&source);
    match signin::with_enrolment(&app, step).await {
        Ok(StepOutcome::SignedIn { completed, return_to, value: codes }) => {
            let jar = browser::set_session(&app.config, clear_pending_cookie(&app.config, jar), completed.cookie);
            // The recovery codes are shown this once; the page then leads on
            // to the relying party, or to the account's security page.
            let next = next_location(completed.location, return_to).unwrap_or_else(|| SECURITY_PATH.to_string());
            let page = pages::render(
                StatusCode::OK,
                "second_factor_codes.html",
                locale,
                "",
                context! { codes => codes, next => next },
            );
            (jar, page).into_response()
        }
        Ok(StepOutcome::Expired) => expired(locale),
        Ok(StepOutcome::Refused(failure)) => {
            let (status, message, retry_after) = refusal(locale, failure);
            let page =
                enrol_view(&app, jar, locale, &pending, &account, CodeView { error: Some(message), status }).await;
            browser::with_retry_after(page, retry_after)
        }
        Err(e) => error::internal_page(e, locale),
    }
}

/// The signed-in account's security page: whether the second factor is on,
/// recovery codes left, and the opt-in.
pub async fn security_page(
    State(app): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<SecurityQuery>,
    PageLocale { locale, jar }: PageLocale,
) -> Response {
    let loaded = async {
        let Some(value) = browser::session_value(&app.config, &jar) else { return Ok(None) };
        let Some(s) = session::current(&app, &value).await? else { return Ok(None) };
        let enrolled = app.store.totp(&s.account_id).await?;
        let left = app.store.recovery_codes_left(&s.account_id).await?;
        let passkeys = super::passkeys::security_context(&app, &s, q.passkey.as_deref()).await?;
        Ok::<_, AppError>(Some((s, enrolled, left, passkeys)))
    }
    .await;
    let (s, enrolled, left, passkeys) = match loaded {
        Ok(Some(x)) => x,
        Ok(None) => return browser::see_other("/signin"),
        Err(e) => return error::internal_page(e, locale),
    };
    let values = context! {
        enrolled => enrolled.is_some(),
        enrolled_at => enrolled.map(|e| crate::clock::rfc3339_ms(e.enrolled_at)),
        codes_left => left,
        session_mfa => s.has_second_factor(),
        ..passkeys
    };
    pages::FormPage {
        status: StatusCode::OK,
        template: "account_security.html",
        locale,
        path_for_switch: SECURITY_PATH,
    }
    .render(&app.config, jar, values)
}

/// What the security page's address may carry: the notice of a passkey action.
#[derive(serde::Deserialize)]
pub struct SecurityQuery {
    passkey: Option<String>,
}

/// Opt-in: the signed-in account starts an enrolment (the same pages as an
/// administrator's first sign-in). An account already enrolled keeps its
/// factor: replacing it is not offered here.
pub async fn security_enable(State(app): State<AppState>, CheckedForm { locale, jar, .. }: CheckedForm) -> Response {
    let started = async {
        let Some(value) = browser::session_value(&app.config, &jar) else { return Ok(None) };
        let Some(s) = session::current(&app, &value).await? else { return Ok(None) };
        if app.store.totp(&s.account_id).await?.is_some() {
            return Ok(Some(None));
        }
        Ok::<_, AppError>(Some(Some(second_factor::begin(&app, &s.account_id, None, None).await?)))
    }
    .await;
    match started {
        Ok(None) => browser::see_other("/signin"),
        Ok(Some(None)) => browser::see_other(SECURITY_PATH),
        Ok(Some(Some(cookie))) => {
            let jar = set_pending_cookie(&app.config, jar, cookie);
            (jar, browser::see_other(ENROL_PATH)).into_response()
        }
        Err(e) => error::internal_page(e, locale),
    }
}
