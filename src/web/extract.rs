//! What handlers open with, in one place: the page's language
//! ([`PageLocale`]), a form read and checked against CSRF ([`CheckedForm`]),
//! where the request came from ([`SourceAddress`]), and the administrator
//! gate of the console ([`Administrator`]) and of the admin API
//! ([`ApiAdministrator`], [`ApiCsrf`]). Each runs before the handler's body:
//! a handler that names one in its arguments cannot forget its check.

use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;

use super::error::{ApiError, internal_page};
use super::i18n::Locale;
use super::oauth::{self, pairs};
use super::{AppState, browser, pages, second_factor};
use crate::admin::{self, AccessDenied, Admin, Role};
use crate::auth::session::{self, Session};
use crate::oidc::Params;

/// The explicit language switch of a page (`?lang=`), if any.
fn lang_switch(uri: &Uri) -> Option<String> {
    uri.query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lang").map(|(_, v)| v.into_owned()))
}

/// A page's language (`?lang=`, then the language cookie, then
/// `Accept-Language`) and the cookie jar, which remembers an explicit
/// switch: what every page handler without parameters of its own opens with.
pub struct PageLocale {
    pub locale: Locale,
    pub jar: CookieJar,
}

impl<S: Send + Sync> FromRequestParts<S> for PageLocale {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let switch = lang_switch(&parts.uri);
        let locale = browser::locale(&parts.headers, switch.as_deref(), None);
        let jar = browser::remember_locale(CookieJar::from_headers(&parts.headers), switch.as_deref());
        Ok(PageLocale { locale, jar })
    }
}

/// The refusal of a form whose CSRF token is not this browser's (double
/// submit); `None` when it is.
pub fn csrf_refusal(app: &AppState, jar: &CookieJar, locale: Locale, token: Option<&str>) -> Option<Response> {
    (!browser::csrf_ok(&app.config, jar, token)).then(|| pages::error_page(StatusCode::FORBIDDEN, locale, "err_csrf"))
}

/// A URL-encoded form whose CSRF token is this browser's, with the cookies
/// and the language to answer in (the language cookie, then
/// `Accept-Language`: a form carries no `?lang=`). Refused with a 403 page.
/// As it reads the body, it comes last among a handler's arguments.
pub struct CheckedForm {
    pub form: Params,
    pub locale: Locale,
    pub jar: CookieJar,
}

impl FromRequest<AppState> for CheckedForm {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let locale = browser::locale(req.headers(), None, None);
        let jar = CookieJar::from_headers(req.headers());
        let body = Bytes::from_request(req, app).await.map_err(IntoResponse::into_response)?;
        let form = Params::from_pairs(pairs(&body)).unwrap_or_default();
        match csrf_refusal(app, &jar, locale, form.get("csrf")) {
            Some(refusal) => Err(refusal),
            None => Ok(CheckedForm { form, locale, jar }),
        }
    }
}

/// Where the request came from, for the connection log: the client's
/// address (through trusted proxies) and its user agent.
pub struct SourceAddress(pub crate::audit::Source);

impl FromRequestParts<AppState> for SourceAddress {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) =
            ConnectInfo::<SocketAddr>::from_request_parts(parts, app).await.map_err(IntoResponse::into_response)?;
        Ok(SourceAddress(super::audit_source(app, peer, &parts.headers)))
    }
}

/// A client's call to a protocol endpoint (token, revocation,
/// introspection): where it came from, then its form, then its credentials
/// as presented. A form or credentials that cannot be read are answered with
/// the endpoint's OAuth error, the form's first.
pub struct ClientCall {
    pub source: crate::audit::Source,
    pub form: Params,
    pub presented: crate::oidc::client_auth::Presented,
}

impl FromRequest<AppState> for ClientCall {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let SourceAddress(source) = SourceAddress::from_request_parts(&mut parts, app).await?;
        // Taken, not cloned: reading the body needs no header.
        let headers = std::mem::take(&mut parts.headers);
        let body =
            Bytes::from_request(Request::from_parts(parts, body), app).await.map_err(IntoResponse::into_response)?;
        let form = oauth::form_params(&headers, &body).map_err(IntoResponse::into_response)?;
        let presented = oauth::presented(&headers).map_err(IntoResponse::into_response)?;
        Ok(ClientCall { source, form, presented })
    }
}

/// The parameters of an endpoint that takes them either way (authorization,
/// logout): a POST's body, else the query string, raw.
struct QueryOrBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for QueryOrBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.method() == Method::POST {
            Ok(QueryOrBody(Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?))
        } else {
            Ok(QueryOrBody(Bytes::from(req.uri().query().unwrap_or_default().to_owned())))
        }
    }
}

/// A call to an endpoint that takes its parameters either way
/// (authorization, logout): the parameters (repeats refused) and their raw
/// length, the language of its pages (the browser's, unless `ui_locales`
/// names one we have), the browser's cookies, and where it came from.
pub struct ProtocolCall {
    pub params: Result<Params, String>,
    pub raw_len: usize,
    pub locale: Locale,
    pub jar: CookieJar,
    pub peer: SocketAddr,
    pub headers: axum::http::HeaderMap,
}

impl FromRequest<AppState> for ProtocolCall {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let QueryOrBody(raw) = QueryOrBody::from_request(Request::from_parts(parts, body), app).await?;
        let params = Params::from_pairs(pairs(&raw));
        let locale = browser::locale(&headers, None, params.as_ref().ok().and_then(|p| p.get("ui_locales")));
        let jar = CookieJar::from_headers(&headers);
        Ok(ProtocolCall { params, raw_len: raw.len(), locale, jar, peer, headers })
    }
}

/// The roles a console page or admin endpoint admits, as a type: the
/// gate's argument, e.g. `Administrator<roles::Security>`.
pub mod roles {
    use crate::admin::Role;

    pub trait Allowed: Send + Sync + 'static {
        const ROLES: &'static [Role];
    }

    /// Any administrative role (the console's home, `me`).
    pub struct Any;
    /// The Caf's security officers: the log, the alerts, the purges.
    pub struct Security;
    /// Habilitation managers, the Caf's and the partners': partners, annex 1, review.
    pub struct Habilitation;
    /// The Caf's habilitation managers alone: applying, resending, closing.
    pub struct CafHabilitation;

    impl Allowed for Any {
        const ROLES: &'static [Role] = &Role::ALL;
    }
    impl Allowed for Security {
        const ROLES: &'static [Role] = &[Role::CafSecurity];
    }
    impl Allowed for Habilitation {
        const ROLES: &'static [Role] = &[Role::CafHabilitation, Role::PartnerHabilitation];
    }
    impl Allowed for CafHabilitation {
        const ROLES: &'static [Role] = &[Role::CafHabilitation];
    }
}

/// The one check behind both faces: the session behind the cookie and
/// `admin::require_admin` on it. The session comes back too, for the
/// console's step-up.
async fn admin_of(app: &AppState, jar: &CookieJar, allowed: &[Role]) -> (Option<Session>, Result<Admin, AccessDenied>) {
    let session = match browser::session_value(&app.config, jar) {
        Some(v) => match session::current(app, &v).await {
            Ok(s) => s,
            Err(e) => return (None, Err(AccessDenied::Internal(e))),
        },
        None => None,
    };
    let admin = admin::require_admin(app, session.as_ref(), allowed).await;
    (session, admin)
}

/// An administrator let into the console, with the cookies and the
/// language of the request.
pub struct AdminPage {
    pub admin: Admin,
    pub jar: CookieJar,
    pub locale: Locale,
}

/// The console's gate. A page (GET) takes `?lang=`, then the language
/// cookie and `Accept-Language`, and is where the browser comes back to
/// after the sign-in or the second factor; a form (POST) answers in the
/// cookie's language and is not sent again (its CSRF token is checked by
/// [`CheckedForm`], which follows). Instead of the page: the sign-in page
/// without a session, the second factor for a session opened without it, a
/// 403 page for another role.
pub struct Administrator<R>(pub AdminPage, pub PhantomData<R>);

impl<R: roles::Allowed> FromRequestParts<AppState> for Administrator<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let page = parts.method == Method::GET || parts.method == Method::HEAD;
        let locale =
            browser::locale(&parts.headers, if page { lang_switch(&parts.uri) } else { None }.as_deref(), None);
        let jar = CookieJar::from_headers(&parts.headers);
        let uri = parts.extensions.get::<OriginalUri>().map(|u| u.0.clone()).unwrap_or_else(|| parts.uri.clone());
        let back = if page { uri.path_and_query().map(|p| p.as_str()) } else { None };
        let (session, admin) = admin_of(app, &jar, R::ROLES).await;
        let refused = match admin {
            Ok(admin) => return Ok(Administrator(AdminPage { admin, jar, locale }, PhantomData)),
            Err(refused) => refused,
        };
        Err(match refused {
            // The sign-in page checks `next` (`console_return`), as the step-up does.
            AccessDenied::Unauthenticated => browser::see_other(&super::signin::signin_path(None, back)),
            AccessDenied::Forbidden => pages::error_page(StatusCode::FORBIDDEN, locale, "err_forbidden"),
            AccessDenied::SecondFactorRequired => match session {
                Some(s) => step_up(app, jar, locale, &s, back).await,
                None => browser::see_other("/signin"),
            },
            AccessDenied::Internal(e) => internal_page(e, locale),
        })
    }
}

/// Sends a session opened without the second factor to give it, then back
/// to `back`.
async fn step_up(app: &AppState, jar: CookieJar, locale: Locale, s: &Session, back: Option<&str>) -> Response {
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
            (jar, browser::see_other(to)).into_response()
        }
        Err(e) => internal_page(e, locale),
    }
}

/// The admin API's gate: the same check, refused as JSON (401, or 403 for
/// another role or a session without the second factor).
pub struct ApiAdministrator<R>(pub Admin, pub PhantomData<R>);

impl<R: roles::Allowed> FromRequestParts<AppState> for ApiAdministrator<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let (_, admin) = admin_of(app, &jar, R::ROLES).await;
        Ok(ApiAdministrator(admin?, PhantomData))
    }
}

/// A state-changing admin API request: the `X-CSRF-Token` header must
/// repeat this browser's CSRF cookie (double submit). Placed after the
/// gate, so that a stranger learns 401 first.
pub struct ApiCsrf;

impl FromRequestParts<AppState> for ApiCsrf {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let submitted = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if browser::csrf_ok(&app.config, &jar, submitted) { Ok(ApiCsrf) } else { Err(ApiError::Csrf) }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header;

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
        assert_eq!(switched.jar.get(browser::LANG_COOKIE).map(|c| c.value().to_string()), Some("en".into()));

        let browser_language = page_locale("/password/forgot", "en-GB").await;
        assert_eq!(browser_language.locale, Locale::En);
        assert!(browser_language.jar.get(browser::LANG_COOKIE).is_none(), "nothing to remember without a switch");

        let unknown = page_locale("/password/forgot?lang=xx", "fr").await;
        assert_eq!(unknown.locale, Locale::Fr);
        assert!(unknown.jar.get(browser::LANG_COOKIE).is_none());
    }
}
