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

const LANG_COOKIE: &str = "coop_lang";

fn base_cookie(config: &Config, name: &'static str, value: String, same_site: SameSite) -> Cookie<'static> {
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

/// A page's language (`?lang=`, then the language cookie, then
/// `Accept-Language`) and the cookie jar, which remembers an explicit
/// switch: what every page handler without parameters of its own opens with.
pub struct PageLocale {
    pub locale: Locale,
    pub jar: CookieJar,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageLocale {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let switch = parts.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lang").map(|(_, v)| v.into_owned())
        });
        let locale = locale(&parts.headers, switch.as_deref(), None);
        let jar = remember_locale(CookieJar::from_headers(&parts.headers), switch.as_deref());
        Ok(PageLocale { locale, jar })
    }
}

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

#[cfg(test)]
mod tests {
    use axum::extract::FromRequestParts;

    use super::*;

    async fn page_locale(uri: &str, accept: &str) -> PageLocale {
        let request =
            axum::http::Request::builder().uri(uri).header(header::ACCEPT_LANGUAGE, accept).body(()).expect("request");
        let (mut parts, ()) = request.into_parts();
        match PageLocale::from_request_parts(&mut parts, &()).await {
            Ok(p) => p,
            Err(never) => match never {},
        }
    }

    #[tokio::test]
    async fn a_page_takes_the_switch_first_and_remembers_it_only_then() {
        let switched = page_locale("/password/forgot?x=1&lang=en", "fr-FR,fr;q=0.9").await;
        assert_eq!(switched.locale, Locale::En);
        assert_eq!(switched.jar.get(LANG_COOKIE).map(|c| c.value().to_string()), Some("en".into()));

        let browser_language = page_locale("/password/forgot", "en-GB").await;
        assert_eq!(browser_language.locale, Locale::En);
        assert!(browser_language.jar.get(LANG_COOKIE).is_none(), "nothing to remember without a switch");

        let unknown = page_locale("/password/forgot?lang=xx", "fr").await;
        assert_eq!(unknown.locale, Locale::Fr);
        assert!(unknown.jar.get(LANG_COOKIE).is_none());
    }
}
