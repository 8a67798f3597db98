//! HTTP: thin handlers over the domain functions, plus the cross-cutting
//! layers (security headers, size limits, timeouts, client address).

mod admin_api;
mod assets;
mod browser;
mod console;
mod credentials;
mod error;
mod extract;
mod home;
pub mod i18n;
mod logout;
mod oauth;
mod pages;
mod passkeys;
#[cfg(test)]
mod render_tests;
mod second_factor;
mod signin;
mod statement;
mod texts;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::app::App;
use crate::config::Theme;

pub type AppState = Arc<App>;

/// Request bodies larger than this are refused (forms and token requests
/// are small).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Sum of header names and values above which a request is refused with 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// `/readyz` answers "not ready" when the database takes longer than this.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(app: AppState) -> Router {
    let https = app.config.is_https();
    // Requests are counted only for the `metrics_listen` listener: without
    // it nobody could read the counts, so the middleware is left out.
    let counted = app.config.metrics_listen.is_some();
    let look = Arc::new(pages::Look::of(&app.config));
    let router = Router::new()
        .route("/", get(home::home))
        .route("/.well-known/openid-configuration", get(oauth::discovery))
        .route("/.well-known/oauth-authorization-server", get(oauth::discovery))
        .route("/jwks", get(oauth::jwks))
        .route("/authorize", get(signin::authorize).post(signin::authorize))
        .route("/signin", get(signin::signin_page).post(signin::signin_submit))
        .route(second_factor::VERIFY_PATH, get(second_factor::verify_page).post(second_factor::verify_submit))
        .route(second_factor::ENROL_PATH, get(second_factor::enrol_page).post(second_factor::enrol_submit))
        .route(second_factor::SECURITY_PATH, get(second_factor::security_page))
        .route("/account/security/totp", axum::routing::post(second_factor::security_enable))
        .merge(passkeys::routes())
        .route("/token", axum::routing::post(oauth::token))
        .route("/userinfo", get(oauth::userinfo).post(oauth::userinfo_post))
        .route("/revoke", axum::routing::post(oauth::revoke))
        .route("/introspect", axum::routing::post(oauth::introspect))
        .route("/logout", get(logout::logout).post(logout::logout))
        .route("/logout/confirm", axum::routing::post(logout::logout_confirm))
        .route(
            "/activate",
            get(credentials::link_page::<credentials::Activation>)
                .post(credentials::link_submit::<credentials::Activation>),
        )
        .route("/password/forgot", get(credentials::forgot_page).post(credentials::forgot_submit))
        .route(
            "/password/reset",
            get(credentials::link_page::<credentials::Reset>).post(credentials::link_submit::<credentials::Reset>),
        )
        .route("/password/change", get(credentials::change_page).post(credentials::change_submit))
        .route(statement::PATH, get(statement::accessibility))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/static/neutral.css", get(assets::neutral))
        .route(pages::LOGO_PATH, get(assets::logo))
        .route(credentials::RULES_SCRIPT_PATH, get(credentials::rules_script))
        .merge(admin_api::routes())
        .merge(console::routes());
    // The State's design system is served only where a page may use it.
    let router = match app.config.theme {
        Theme::Dsfr => router
            .route("/static/style.css", get(assets::style))
            .route("/static/dsfr/{version}/{*path}", get(assets::dsfr))
            .route("/favicon.ico", get(assets::favicon)),
        Theme::Neutral => router,
    };
    let edge = Arc::new(Edge { https, counted, look });
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(middleware::from_fn(move |req, next| self::edge(edge.clone(), req, next)))
        .with_state(app)
}

/// What the edge layer needs of the configuration.
struct Edge {
    https: bool,
    /// Requests are counted only for the `metrics_listen` listener.
    counted: bool,
    look: Arc<pages::Look>,
}

/// What every request goes through, in one layer rather than four: each
/// `from_fn` layer clones the boxed service below it for every request
/// (about 5,000 instructions and a dozen allocations a layer under
/// callgrind, docs/benchmarks/history.md).
/// Outermost first: the count by route, the header size limit (431), the
/// look of the pages, the security headers of the answer.
async fn edge(edge: Arc<Edge>, req: Request, next: Next) -> Response {
    if edge.counted { track(req, |req| answer(&edge, req, next)).await } else { answer(&edge, req, next).await }
}

async fn answer(edge: &Edge, req: Request, next: Next) -> Response {
    let size: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if size > MAX_HEADER_BYTES {
        return (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large").into_response();
    }
    let mut response = pages::with_look(edge.look.clone(), next.run(req)).await;
    security_headers(edge.https, &mut response);
    response
}

/// Counts every request by matched route (`/token`, never the raw URL: the
/// label set stays small whatever clients send) and status, with its latency.
async fn track<F: Future<Output = Response>>(req: Request, answer: impl FnOnce(Request) -> F) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = answer(req).await;
    let route = route.as_deref().unwrap_or("unmatched");
    crate::metrics::request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// `/metrics` alone, for the `metrics_listen` listener: kept off the public
/// one, where it would tell anyone the traffic and the outbox backlog.
pub async fn serve_metrics(
    app: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new().route("/metrics", get(metrics)).with_state(app);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::metrics::render(&app.store, app.clock.now_ms()).await,
    )
        .into_response()
}

/// Serves until `shutdown` completes; in-flight requests then finish.
pub async fn serve(
    app: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers within 2 s: a load balancer's health
/// check gives up sooner than the pool's 5 s wait for a connection.
async fn readyz(State(app): State<AppState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: the database did not answer within 2 s");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn not_found(headers: HeaderMap) -> Response {
    let locale = browser::locale(&headers, None, None);
    pages::error_page(StatusCode::NOT_FOUND, locale, "err_not_found")
}

fn security_headers(https: bool, response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; img-src 'self' data:",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if https {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
}

/// Where a request came from, for the connection log.
pub(crate) fn audit_source(app: &App, peer: SocketAddr, headers: &HeaderMap) -> crate::audit::Source {
    crate::audit::Source {
        ip: Some(client_ip(peer.ip(), headers, &app.config.trusted_proxies).to_string()),
        user_agent: browser::user_agent(headers),
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the right-most address in `X-Forwarded-For` that is not itself trusted.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    forwarded.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 10.0.0.2"));
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(client_ip(proxy, &h, &trusted), "203.0.113.9".parse::<IpAddr>().expect("ip"));
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        assert_eq!(client_ip(proxy, &h, &[]), proxy);
    }
}
