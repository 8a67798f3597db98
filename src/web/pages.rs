//! Server-rendered pages (minijinja, templates compiled into the binary).

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::i18n::{Locale, text, texts};
use crate::config::{Config, Theme};

/// What every page shows of the operator (`theme`, `brand_name`,
/// `brand_logo`).
#[derive(Debug, Clone)]
pub struct Look {
    pub theme: Theme,
    pub brand_name: String,
    pub has_logo: bool,
}

impl Default for Look {
    fn default() -> Self {
        Look { theme: Theme::Neutral, brand_name: "Coopération".into(), has_logo: false }
    }
}

impl Look {
    pub fn of(config: &Config) -> Look {
        Look { theme: config.theme, brand_name: config.brand_name.clone(), has_logo: config.brand_logo.is_some() }
    }
}

/// Where the operator's logo is served.
pub const LOGO_PATH: &str = "/static/logo";

tokio::task_local! {
    // The server's look, for the request being answered. Pages are rendered
    // from some forty places that have only a locale at hand; a server's look
    // never changes, and several servers with different looks share one
    // process in the tests, so it travels with the request (set by the
    // edge layer, `with_look`) rather than in a global or in every signature.
    static LOOK: std::sync::Arc<Look>;
}

/// Answers a request with `look` as the look of every page it renders
/// (`web::edge`, the layer every request goes through).
pub async fn with_look(look: std::sync::Arc<Look>, answer: impl std::future::Future<Output = Response>) -> Response {
    LOOK.scope(look, answer).await
}

/// Runs `f` with `look` as the current look (rendering outside a request).
#[cfg(test)]
pub(super) fn in_look<R>(look: Look, f: impl FnOnce() -> R) -> R {
    LOOK.sync_scope(std::sync::Arc::new(look), f)
}

/// Every page template, compiled into the binary.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("signin.html", include_str!("../../templates/signin.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("logout_confirm.html", include_str!("../../templates/logout_confirm.html")),
    ("password_form.html", include_str!("../../templates/password_form.html")),
    ("forgot.html", include_str!("../../templates/forgot.html")),
    ("second_factor.html", include_str!("../../templates/second_factor.html")),
    ("second_factor_enrol.html", include_str!("../../templates/second_factor_enrol.html")),
    ("second_factor_codes.html", include_str!("../../templates/second_factor_codes.html")),
    ("account_security.html", include_str!("../../templates/account_security.html")),
    ("_passkey_forms.html", include_str!("../../templates/_passkey_forms.html")),
    ("_passkey_security.html", include_str!("../../templates/_passkey_security.html")),
    ("accessibility.html", include_str!("../../templates/accessibility.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("admin/_nav.html", include_str!("../../templates/admin/_nav.html")),
    ("admin/home.html", include_str!("../../templates/admin/home.html")),
    ("admin/logs.html", include_str!("../../templates/admin/logs.html")),
    ("admin/alerts.html", include_str!("../../templates/admin/alerts.html")),
    ("admin/integrity.html", include_str!("../../templates/admin/integrity.html")),
    ("admin/purges.html", include_str!("../../templates/admin/purges.html")),
    ("admin/partners.html", include_str!("../../templates/admin/partners.html")),
    ("admin/partner.html", include_str!("../../templates/admin/partner.html")),
    ("admin/annex1.html", include_str!("../../templates/admin/annex1.html")),
    ("admin/annex1_plan.html", include_str!("../../templates/admin/annex1_plan.html")),
    ("admin/close_confirm.html", include_str!("../../templates/admin/close_confirm.html")),
    ("admin/review.html", include_str!("../../templates/admin/review.html")),
    ("admin/account_passkeys.html", include_str!("../../templates/admin/account_passkeys.html")),
];

pub(super) fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Printing or iterating over something undefined — `{{ t.typo }}`, a
        // text no catalogue has — fails the page instead of showing nothing;
        // an `{% if x %}` on a value a page does not pass stays false (the
        // templates rely on it for optional parts: `error`, `admin_email`).
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.add_filter("local_time", super::console::local_time);
        env.add_filter("day", super::console::day);
        // The templates are part of the binary; a broken one is a build bug
        // caught by the rendering tests, never an input.
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        env
    })
}

/// The HTML of `template` in `locale`, with the texts and the language
/// switch (to `path_for_switch`) added to `extra`.
pub(super) fn html(
    template: &str,
    locale: Locale,
    path_for_switch: &str,
    extra: Value,
) -> Result<String, minijinja::Error> {
    let other = locale.other();
    let sep = if path_for_switch.contains('?') { '&' } else { '?' };
    // Outside a request (only tests render there): the default look.
    let look = LOOK.try_with(|l| l.clone()).unwrap_or_default();
    let ctx = context! {
        theme => look.theme.code(),
        brand_name => look.brand_name.as_str(),
        // Our own constant: marked safe so that its slashes stay as written.
        brand_logo => look.has_logo.then(|| Value::from_safe_string(LOGO_PATH.to_string())),
        lang => locale.code(),
        other_lang => other.code(),
        t => texts(locale),
        switch_href => format!("{path_for_switch}{sep}lang={}", other.code()),
        ..extra
    };
    environment().get_template(template).and_then(|t| t.render(ctx))
}

/// Renders a page; `path_for_switch` is where the language switch points.
pub fn render(status: StatusCode, template: &str, locale: Locale, path_for_switch: &str, extra: Value) -> Response {
    let body = html(template, locale, path_for_switch, extra);
    match body {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(template, error = %e, "rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page holding a form: rendered with this browser's CSRF token as
/// `csrf`, and the cookie that holds it when it is new.
pub struct FormPage<'a> {
    pub status: StatusCode,
    pub template: &'a str,
    pub locale: Locale,
    pub path_for_switch: &'a str,
}

impl FormPage<'_> {
    pub fn render(&self, config: &Config, jar: CookieJar, extra: Value) -> Response {
        let (jar, csrf) = super::browser::csrf_token(config, jar);
        let page =
            render(self.status, self.template, self.locale, self.path_for_switch, context! { csrf => csrf, ..extra });
        (jar, page).into_response()
    }
}

/// A page with a title and one message, e.g. an error or "signed out".
pub fn message(
    status: StatusCode,
    locale: Locale,
    title_key: &str,
    message_key: &str,
    hint_key: Option<&str>,
) -> Response {
    message_page(status, locale, [title_key, message_key], hint_key, None)
}

/// A message page with one link (e.g. "signed in" → change password).
pub fn message_with_link(locale: Locale, title_key: &str, message_key: &str, href: &str, link_key: &str) -> Response {
    message_page(StatusCode::OK, locale, [title_key, message_key], None, Some((href, link_key)))
}

/// `message.html`: a title and a message, a hint, a link (href, text key);
/// an error's look follows the status.
fn message_page(
    status: StatusCode,
    locale: Locale,
    [title_key, message_key]: [&str; 2],
    hint_key: Option<&str>,
    link: Option<(&str, &str)>,
) -> Response {
    let ctx = context! {
        title => text(locale, title_key),
        message => text(locale, message_key),
        hint => hint_key.map(|k| text(locale, k)),
        link_href => link.map(|(href, _)| href),
        link_text => link.map(|(_, key)| text(locale, key)),
        is_error => status.is_client_error() || status.is_server_error(),
    };
    render(status, "message.html", locale, "", ctx)
}

pub fn error_page(status: StatusCode, locale: Locale, message_key: &str) -> Response {
    message(status, locale, "error_title", message_key, Some("error_back"))
}
