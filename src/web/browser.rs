//! Cookies, CSRF tokens and language choice for browser-facing pages.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::i18n::Locale;
use crate::config::Config;
use crate::crypto::{constant_time_eq, random_token};

/// `__Host-` cookies require `Secure`, so the prefix is used only over https.
pub fn session_cookie_name(config: &Config) -> &'static str {
    if config.is_https() { "__Host-coop_session" } else { "coop_session" }
}

fn csrf_cookie_name(config: &Config) -> &'static str {
    if config.is_https() { "__Host-coop_csrf" } else { "coop_csrf" }
}

pub(super) const LANG_COOKIE: &str = "coop_lang";

pub(super) fn base_cookie(config: &Config, name: &'static str, value: String, same_site: SameSite) -> Cookie<'static> {
    let mut c = Cookie::new(name, value);
    c.set_http_only(true);
    c.set_secure(config.is_https());
    c.set_same_site(same_site);
    c.set_path("/");
    c
}

pub fn session_value(config: &Config, jar: &CookieJar) -> Option<String> {
    jar.get(session_cookie_name(config)).map(|c| c.value().to_string())
}

/// A session cookie without `Max-Age`: it ends with the browser; the server
/// enforces the inactivity and absolute timeouts.
pub fn set_session(config: &Config, jar: CookieJar, value: String) -> CookieJar {
    jar.add(base_cookie(config, session_cookie_name(config), value, SameSite::Lax))
}

pub fn clear_session(config: &Config, jar: CookieJar) -> CookieJar {
    jar.remove(base_cookie(config, session_cookie_name(config), String::new(), SameSite::Lax))
}

/// The CSRF token of this browser (double-submit: cookie and form field must
/// match); created when absent.
pub fn csrf_token(config: &Config, jar: CookieJar) -> (CookieJar, String) {
    if let Some(c) = jar.get(csrf_cookie_name(config)) {
        let value = c.value().to_string();
        if value.len() >= 32 {
            return (jar, value);
        }
    }
    let value = random_token();
    (jar.add(base_cookie(config, csrf_cookie_name(config), value.clone(), SameSite::Strict)), value)
}

pub fn csrf_ok(config: &Config, jar: &CookieJar, submitted: Option<&str>) -> bool {
    match (jar.get(csrf_cookie_name(config)), submitted) {
        (Some(c), Some(s)) if c.value().len() >= 32 => constant_time_eq(c.value().as_bytes(), s.as_bytes()),
        _ => false,
    }
}

pub fn locale(headers: &HeaderMap, switch: Option<&str>, ui_locales: Option<&str>) -> Locale {
    let cookie = CookieJar::from_headers(headers).get(LANG_COOKIE).map(|c| c.value().to_string());
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    Locale::choose(switch, cookie.as_deref(), ui_locales, accept)
}

/// Where the page handlers not yet on `extract` find it.
pub use super::extract::PageLocale;

/// Remembers an explicit language switch.
pub fn remember_locale(jar: CookieJar, switch: Option<&str>) -> CookieJar {
    match switch.and_then(Locale::parse) {
        Some(l) => {
            let mut c = Cookie::new(LANG_COOKIE, l.code());
            c.set_path("/");
            c.set_same_site(SameSite::Lax);
            c.set_http_only(true);
            jar.add(c)
        }
        None => jar,
    }
}

pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect())
}

/// 303 See Other: after a form POST the browser must GET the target
/// (RFC 9700 §4.12).
pub fn see_other(location: &str) -> Response {
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = axum::http::StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A refusal's page with `Retry-After`, when the refusal names a delay.
pub fn with_retry_after(mut page: Response, retry_after_secs: Option<i64>) -> Response {
    if let Some(secs) = retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        page.headers_mut().insert(header::RETRY_AFTER, v);
    }
    page
}
