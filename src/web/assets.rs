//! The vendored French State design system (DSFR, `@gouvfr/dsfr`), served
//! from the binary: no CDN, no third-party request. Its CSS refers to its
//! fonts and icons by relative URLs, so the files keep the package's
//! `dist/` layout under one versioned prefix; the version in the URL lets
//! browsers keep them for a year (a new DSFR is a new URL).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The vendored `@gouvfr/dsfr` release (static/dsfr/LICENSE.md, banner of
/// dsfr.min.css). Templates link `/static/dsfr/<version>/dsfr.min.css`.
pub const DSFR_VERSION: &str = "1.15.3";

/// (path under static/dsfr/, bytes), sorted by path; written by build.rs.
static DSFR_FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/dsfr_files.rs"));

const STYLE_CSS: &str = include_str!("../../static/style.css");
/// The project's own look (`theme = "neutral"`).
const NEUTRAL_CSS: &str = include_str!("../../static/neutral.css");

/// The embedded file at `path` (relative to static/dsfr/), if any.
pub fn dsfr_file(path: &str) -> Option<&'static [u8]> {
    DSFR_FILES.binary_search_by(|(p, _)| (*p).cmp(path)).ok().map(|i| DSFR_FILES[i].1)
}

pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /static/dsfr/{version}/{*path}`.
pub async fn dsfr(Path((version, path)): Path<(String, String)>) -> Response {
    if version != DSFR_VERSION {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match dsfr_file(&path) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path))),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /favicon.ico`: browsers ask for it whatever the page says.
pub async fn favicon() -> Response {
    match dsfr_file("favicon/favicon.ico") {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/x-icon")),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /static/style.css`: the few rules the DSFR leaves to its script.
/// Not versioned, so kept for an hour only.
pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLE_CSS)
        .into_response()
}

/// `GET /static/neutral.css`: the neutral theme's one stylesheet; not
/// versioned, so kept for an hour only.
pub async fn neutral() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], NEUTRAL_CSS)
        .into_response()
}

/// `GET /static/logo`: the operator's `brand_logo`, read at start-up (its
/// type and size were checked then); not found without one.
pub async fn logo(State(app): State<AppState>) -> Response {
    match &app.config.brand_logo {
        Some(logo) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(logo.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
            ],
            Bytes::copy_from_slice(&logo.bytes),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_css_is_the_version_the_urls_name() {
        let css = std::str::from_utf8(dsfr_file("dsfr.min.css").expect("dsfr.min.css embedded")).expect("utf-8");
        assert!(
            css.lines().take(4).any(|l| l.contains(&format!("DSFR v{DSFR_VERSION} "))),
            "banner names another version"
        );
        let base = include_str!("../../templates/base.html");
        assert!(base.contains(&format!("/static/dsfr/{DSFR_VERSION}/dsfr.min.css")), "base.html links another version");
        assert!(dsfr_file("LICENSE.md").is_some(), "the licence travels with the files");
    }

    #[test]
    fn every_font_and_icon_the_css_refers_to_is_embedded() {
        let css = std::str::from_utf8(dsfr_file("dsfr.min.css").expect("css")).expect("utf-8");
        let mut checked = 0;
        for piece in css.split("url(").skip(1) {
            let Some(end) = piece.find(')') else { continue };
            let url = piece[..end].trim_matches(['"', '\'']);
            if url.starts_with("data:") {
                continue;
            }
            // Browsers take the first format they know: woff2 is enough.
            if url.ends_with(".woff") {
                assert!(dsfr_file(&format!("{url}2")).is_some(), "{url}2 missing");
            } else {
                assert!(dsfr_file(url).is_some(), "{url} missing");
            }
            checked += 1;
        }
        assert!(checked > 50, "the CSS refers to its fonts and icons ({checked})");
        assert!(dsfr_file("../Cargo.toml").is_none() && dsfr_file("nope.css").is_none());
    }

    #[test]
    fn content_types_follow_the_extension() {
        for (path, kind) in [
            ("fonts/Marianne-Bold.woff2", "font/woff2"),
            ("icons/system/close-line.svg", "image/svg+xml"),
            ("dsfr.min.css", "text/css; charset=utf-8"),
            ("x", "application/octet-stream"),
        ] {
            assert_eq!(content_type(path), kind, "{path}");
        }
    }
}
