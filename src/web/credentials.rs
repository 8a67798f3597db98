//! Pages of the credential life cycle: activation, lost password, reset.
//! Link pages are never cached and send no referrer (global headers), so the
//! token in their URL does not leak.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;

use super::browser::PageLocale;
use super::extract::{CheckedForm, SourceAddress};
use super::i18n::{Locale, text};
use super::pages::FormPage;
use super::{AppState, browser, error, pages};
use crate::audit::Source;
use crate::auth::links::{self, LinkProblem, Purpose, SetPasswordError, Typed};
use crate::auth::policy::Violation;

#[derive(Deserialize)]
pub struct LinkQuery {
    token: Option<String>,
    lang: Option<String>,
}

fn purpose_page(purpose: Purpose) -> (&'static str, &'static str) {
    match purpose {
        Purpose::Activation => ("/activate", "activate_title"),
        Purpose::Reset => ("/password/reset", "reset_title"),
    }
}

fn problem_page(locale: Locale, purpose: Purpose, problem: LinkProblem) -> Response {
    let message = match problem {
        LinkProblem::Unknown => "link_unknown",
        LinkProblem::Used => "link_used",
        LinkProblem::Expired => "link_expired",
        LinkProblem::Superseded => "link_superseded",
    };
    let help = match purpose {
        Purpose::Activation => "link_help_activation",
        Purpose::Reset => "link_help_reset",
    };
    pages::message(StatusCode::GONE, locale, "error_title", message, Some(help))
}

struct FormView<'a> {
    token: &'a str,
    email: &'a str,
    violations: &'a [Violation],
}

fn render_form(app: &AppState, jar: CookieJar, locale: Locale, purpose: Purpose, view: FormView) -> Response {
    let (action, heading) = purpose_page(purpose);
    let password_errors: Vec<&str> =
        view.violations.iter().filter(|v| **v != Violation::Mismatch).map(|v| text(locale, v.key())).collect();
    let confirmation_error =
        view.violations.contains(&Violation::Mismatch).then(|| text(locale, Violation::Mismatch.key()));
    let errors: Vec<minijinja::Value> = view
        .violations
        .iter()
        .map(|v| {
            let field = if *v == Violation::Mismatch { "confirmation" } else { "password" };
            context! { field => field, message => text(locale, v.key()) }
        })
        .collect();
    let status = if view.violations.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let path = format!("{action}?token={}", view.token);
    let page = FormPage { status, template: "password_form.html", locale, path_for_switch: &path };
    page.render(
        &app.config,
        jar,
        context! {
            heading => text(locale, heading),
            action => action,
            token => view.token,
            email => view.email,
            errors => errors,
            password_errors => password_errors,
            confirmation_error => confirmation_error,
        },
    )
}

async fn show(
    app: AppState,
    peer: std::net::SocketAddr,
    headers: HeaderMap,
    jar: CookieJar,
    q: LinkQuery,
    purpose: Purpose,
) -> Response {
    let locale = browser::locale(&headers, q.lang.as_deref(), None);
    let jar = browser::remember_locale(jar, q.lang.as_deref());
    let Some(token) = q.token else { return problem_page(locale, purpose, LinkProblem::Unknown) };
    match links::inspect(&app, &token, purpose).await {
        Ok(Ok(account)) => {
            render_form(&app, jar, locale, purpose, FormView { token: &token, email: &account.email, violations: &[] })
        }
        Ok(Err(problem)) => {
            links::record_refusal(&app, &token, purpose, problem, &super::audit_source(&app, peer, &headers)).await;
            problem_page(locale, purpose, problem)
        }
        Err(e) => error::internal_page(e, locale),
    }
}

async fn submit(app: AppState, source: Source, checked: CheckedForm, purpose: Purpose) -> Response {
    let CheckedForm { form, locale, jar } = checked;
    let token = form.get("token").unwrap_or_default().to_string();
    let password = form.get("password").unwrap_or_default();
    let confirmation = form.get("confirmation").unwrap_or_default();
    match links::set_password(&app, &token, purpose, Typed { password, confirmation }, &source).await {
        Ok(Ok(_)) => {
            let (title, message) = match purpose {
                Purpose::Activation => ("activated_title", "activated_text"),
                Purpose::Reset => ("reset_done_title", "reset_done_text"),
            };
            let jar = match purpose {
                Purpose::Reset => browser::clear_session(&app.config, jar),
                Purpose::Activation => jar,
            };
            (jar, pages::message_with_link(locale, title, message, "/signin", "to_signin")).into_response()
        }
        Ok(Err(SetPasswordError::Link(problem))) => {
            links::record_refusal(&app, &token, purpose, problem, &source).await;
            problem_page(locale, purpose, problem)
        }
        Ok(Err(SetPasswordError::Policy(violations))) => {
            let email = match links::inspect(&app, &token, purpose).await {
                Ok(Ok(a)) => a.person.email,
                _ => String::new(),
            };
            render_form(&app, jar, locale, purpose, FormView { token: &token, email: &email, violations: &violations })
        }
        Err(e) => error::internal_page(e, locale),
    }
}

/// Which link a page serves, as a type: the argument of the link pages'
/// handlers, e.g. `link_page::<Activation>`.
pub trait LinkPurpose: Send + Sync + 'static {
    const PURPOSE: Purpose;
}

/// The activation link of a new account.
pub struct Activation;
/// The link of a forgotten password.
pub struct Reset;

impl LinkPurpose for Activation {
    const PURPOSE: Purpose = Purpose::Activation;
}

impl LinkPurpose for Reset {
    const PURPOSE: Purpose = Purpose::Reset;
}

pub async fn link_page<P: LinkPurpose>(
    State(app): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(q): Query<LinkQuery>,
) -> Response {
    show(app, peer, headers, jar, q, P::PURPOSE).await
}

pub async fn link_submit<P: LinkPurpose>(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    form: CheckedForm,
) -> Response {
    submit(app, source, form, P::PURPOSE).await
}

/// The set-password checklist's script (`static/password-rules.js`): a
/// file, as the content security policy allows no inline script.
pub const RULES_SCRIPT_PATH: &str = "/static/password-rules.js";

pub async fn rules_script() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/password-rules.js"),
    )
        .into_response()
}

fn forgot_view(app: &AppState, jar: CookieJar, locale: Locale, sent: bool) -> Response {
    let page =
        FormPage { status: StatusCode::OK, template: "forgot.html", locale, path_for_switch: "/password/forgot" };
    page.render(&app.config, jar, context! { sent => sent })
}

pub async fn forgot_page(State(app): State<AppState>, PageLocale { locale, jar }: PageLocale) -> Response {
    forgot_view(&app, jar, locale, false)
}

/// Answers at once and the same way whatever the address: the look-up and
/// the email happen after the response, so neither content nor timing tells
/// whether an account exists (R4).
pub async fn forgot_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let email = form.get("email").unwrap_or_default().chars().take(254).collect::<String>();
    if let Err(e) = links::record_reset_request(&app, &email, &source).await {
        return error::internal_page(e, locale);
    }
    let background = app.clone();
    tokio::spawn(async move {
        if let Err(e) = links::request_reset(&background, &email, source.ip.as_deref()).await {
            tracing::error!(error = %e, "reset request failed");
        }
    });
    forgot_view(&app, jar, locale, true)
}

/// The signed-in account, if any.
async fn signed_in(app: &AppState, jar: &CookieJar) -> Option<crate::store::accounts::AccountRow> {
    let value = browser::session_value(&app.config, jar)?;
    let session = crate::auth::session::current(app, &value).await.ok().flatten()?;
    app.store.account_by_id(&session.account_id).await.ok().flatten()
}

struct ChangeView<'a> {
    email: &'a str,
    violations: &'a [Violation],
    current_error: Option<&'a str>,
}

fn render_change(app: &AppState, jar: CookieJar, locale: Locale, view: ChangeView) -> Response {
    let password_errors: Vec<&str> =
        view.violations.iter().filter(|v| **v != Violation::Mismatch).map(|v| text(locale, v.key())).collect();
    let confirmation_error =
        view.violations.contains(&Violation::Mismatch).then(|| text(locale, Violation::Mismatch.key()));
    let mut errors: Vec<minijinja::Value> = Vec::new();
    if let Some(e) = view.current_error {
        errors.push(context! { field => "current", message => e });
    }
    for v in view.violations {
        let field = if *v == Violation::Mismatch { "confirmation" } else { "password" };
        errors.push(context! { field => field, message => text(locale, v.key()) });
    }
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = FormPage { status, template: "password_form.html", locale, path_for_switch: "/password/change" };
    page.render(
        &app.config,
        jar,
        context! {
            heading => text(locale, "change_title"),
            action => "/password/change",
            email => view.email,
            ask_current => true,
            current_error => view.current_error,
            errors => errors,
            password_errors => password_errors,
            confirmation_error => confirmation_error,
        },
    )
}

pub async fn change_page(State(app): State<AppState>, PageLocale { locale, jar }: PageLocale) -> Response {
    match signed_in(&app, &jar).await {
        Some(account) => {
            render_change(&app, jar, locale, ChangeView { email: &account.email, violations: &[], current_error: None })
        }
        None => pages::message(StatusCode::UNAUTHORIZED, locale, "error_title", "err_signin_first", None),
    }
}

pub async fn change_submit(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let Some(account) = signed_in(&app, &jar).await else {
        return pages::message(StatusCode::UNAUTHORIZED, locale, "error_title", "err_signin_first", None);
    };
    let typed = Typed {
        password: form.get("password").unwrap_or_default(),
        confirmation: form.get("confirmation").unwrap_or_default(),
    };
    let outcome =
        links::change_password(&app, &account.id, form.get("current").unwrap_or_default(), typed, &source).await;
    match outcome {
        Ok(Ok(())) => {
            let jar = browser::clear_session(&app.config, jar);
            let done = pages::message_with_link(locale, "changed_title", "reset_done_text", "/signin", "to_signin");
            (jar, done).into_response()
        }
        Ok(Err(links::ChangePasswordError::CurrentPassword(failure))) => {
            let key = match failure {
                crate::auth::SignInFailure::Throttled { .. } => "signin_throttled",
                _ => "pw_current_wrong",
            };
            let view = ChangeView { email: &account.email, violations: &[], current_error: Some(text(locale, key)) };
            render_change(&app, jar, locale, view)
        }
        Ok(Err(links::ChangePasswordError::Policy(violations))) => render_change(
            &app,
            jar,
            locale,
            ChangeView { email: &account.email, violations: &violations, current_error: None },
        ),
        Err(e) => error::internal_page(e, locale),
    }
}
