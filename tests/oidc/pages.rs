//! The look (R26) as plain HTTP sees it: each theme's stylesheet (and the
//! DSFR only in `theme = "dsfr"`) served by the server itself under the
//! unchanged Content-Security-Policy, the operator's name and logo, and the
//! accessibility hooks the browser tests (tests/browser) check in a real
//! browser. Storage plays no part: SQLite only.

use crate::common::*;

async fn fetch(url: &str) -> (u16, String, String, Vec<u8>) {
    let r = http_client().get(url).send().await.expect("GET");
    let header = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (ct, cache) = (header("content-type"), header("cache-control"));
    let status = r.status().as_u16();
    (status, ct, cache, r.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_design_system_is_served_from_the_binary() {
    let server = TestServer::start_with(Db::Sqlite, &[("theme", "dsfr")]).await;
    let page = http_client().get(server.url("/signin")).send().await.expect("sign-in page");
    let csp =
        page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let html = page.text().await.expect("html");
    assert!(csp.starts_with("default-src 'self';"), "fonts and styles come from this origin only: {csp}");
    let css_href = "/static/dsfr/1.15.3/dsfr.min.css";
    assert!(html.contains(css_href), "the page links the vendored DSFR");
    assert!(!html.contains("https://"), "no third-party resource");
    // The one script is the passkeys' (issue 17), from this origin; none inline.
    let scripts: Vec<&str> = html.match_indices("<script").map(|(i, _)| &html[i..]).collect();
    assert_eq!(scripts.len(), 1, "{html}");
    assert!(scripts[0].starts_with("<script src=\"/static/passkeys.js\" defer></script>"), "{html}");
    let (status, ct, _, body) = fetch(&server.url("/static/passkeys.js")).await;
    assert_eq!((status, ct.as_str()), (200, "text/javascript; charset=utf-8"));
    assert!(String::from_utf8_lossy(&body).contains("navigator.credentials"));

    let (status, ct, cache, body) = fetch(&server.url(css_href)).await;
    assert_eq!((status, ct.as_str()), (200, "text/css; charset=utf-8"));
    assert!(cache.contains("max-age=31536000") && cache.contains("immutable"), "{cache}");
    assert!(String::from_utf8_lossy(&body[..200]).contains("DSFR v1.15.3"));

    let (status, ct, _, body) = fetch(&server.url("/static/dsfr/1.15.3/fonts/Marianne-Regular.woff2")).await;
    assert_eq!((status, ct.as_str()), (200, "font/woff2"));
    assert_eq!(&body[..4], b"wOF2", "a real WOFF2 file");
    let (status, ct, _, _) = fetch(&server.url("/static/dsfr/1.15.3/icons/system/fr--error-fill.svg")).await;
    assert_eq!((status, ct.as_str()), (200, "image/svg+xml"));
    let (status, ct, _, _) = fetch(&server.url("/favicon.ico")).await;
    assert_eq!((status, ct.as_str()), (200, "image/x-icon"));

    // Another version, a missing file, a way out of the folder: not found.
    for path in [
        "/static/dsfr/1.0.0/dsfr.min.css",
        "/static/dsfr/1.15.3/nope.css",
        "/static/dsfr/1.15.3/../../Cargo.toml",
        "/static/dsfr/1.15.3/%2e%2e/LICENSE.md",
    ] {
        let (status, _, _, _) = fetch(&server.url(path)).await;
        assert_eq!(status, 404, "{path}");
    }
}

/// The default look is the project's own: its stylesheet, the operator's
/// name and logo, and nothing of the State's design system, which is not
/// even served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_neutral_theme_shows_the_operator_and_nothing_of_the_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logo = dir.path().join("logo.svg");
    let svg =
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"40\"><rect width=\"40\" height=\"40\"/></svg>";
    std::fs::write(&logo, svg).expect("logo");
    let logo = logo.display().to_string();
    let server =
        TestServer::start_with(Db::Sqlite, &[("brand_name", "Caf du Girou"), ("brand_logo", logo.as_str())]).await;
    let html = http_client().get(server.url("/signin")).send().await.expect("GET").text().await.expect("html");
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/static/neutral.css\">"), "{html}");
    assert!(!html.contains("/static/dsfr/") && !html.contains("République"), "nothing of the State: {html}");
    assert!(html.contains("<title>Se connecter – Caf du Girou</title>"), "{html}");
    assert!(html.contains("<p class=\"fr-header__service-title\">Caf du Girou</p>"), "{html}");
    assert!(html.contains("<img src=\"/static/logo\" alt=\"\">"), "{html}");

    let (status, ct, _, body) = fetch(&server.url("/static/neutral.css")).await;
    assert_eq!((status, ct.as_str()), (200, "text/css; charset=utf-8"));
    let css = String::from_utf8_lossy(&body);
    assert!(css.contains(":focus-visible") && !css.contains("Marianne") && !css.contains("url("), "system fonts only");
    let (status, ct, _, body) = fetch(&server.url("/static/logo")).await;
    assert_eq!((status, ct.as_str(), body.as_slice()), (200, "image/svg+xml", svg.as_bytes()));
    for path in ["/static/dsfr/1.15.3/dsfr.min.css", "/static/dsfr/1.15.3/fonts/Marianne-Regular.woff2", "/favicon.ico"]
    {
        let (status, _, _, _) = fetch(&server.url(path)).await;
        assert_eq!(status, 404, "{path}: the DSFR is not served in this theme");
    }

    // The DSFR theme: the State's block, and the operator's logo beside it.
    let dsfr = TestServer::start_with(Db::Sqlite, &[("theme", "dsfr"), ("brand_logo", logo.as_str())]).await;
    let html = http_client().get(dsfr.url("/signin")).send().await.expect("GET").text().await.expect("html");
    assert!(html.contains("République<br>Française") && !html.contains("neutral.css"), "{html}");
    assert!(html.contains("<div class=\"fr-header__operator\"><img"), "{html}");
    // Without a logo, none is served.
    let plain = TestServer::start(Db::Sqlite).await;
    let (status, _, _, _) = fetch(&plain.url("/static/logo")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_say_where_you_are_and_tie_errors_to_fields() {
    let server = TestServer::start(Db::Sqlite).await;
    let html = http_client().get(server.url("/signin")).send().await.expect("GET").text().await.expect("html");
    assert!(html.contains("<title>Se connecter – Coopération</title>"), "{html}");
    assert!(html.contains("href=\"#content\"") && html.contains("id=\"content\""), "skip link to the content");
    assert!(html.contains("<p class=\"fr-header__service-title\">Coopération</p>"), "the operator's name");
    assert!(
        html.contains("<label class=\"fr-label\" for=\"email\">") && html.contains("autocomplete=\"current-password\"")
    );
    assert!(!html.contains("fr-input-group--error"), "no error before submitting");

    let en = http_client().get(server.url("/password/forgot?lang=en")).send().await.expect("GET");
    let en = en.text().await.expect("html");
    assert!(en.contains("<title>Forgotten password – Coopération</title>"), "{en}");
    assert!(en.contains("hreflang=\"fr\" lang=\"fr\""), "the switch back to French is marked French");

    // A failed sign-in: the summary links to the field, the field points to its message.
    let r = SignIn::new("nobody@example.fr", "wrong").post(&browser(), &server.base).await;
    let html = r.text().await.expect("html");
    assert!(html.contains("<title>Erreur : Se connecter – Coopération</title>"), "{html}");
    assert!(html.contains("role=\"alert\"") && html.contains("href=\"#email\""), "{html}");
    assert!(html.contains("fr-input-group--error") && html.contains("aria-describedby=\"email-hint signin-error\""));
    assert!(html.contains("<p class=\"fr-error-text\" id=\"signin-error\">"), "{html}");
}

/// RGAA: an accessibility statement, French first with its English switch,
/// linked from the footer of every page, naming the feedback contact and
/// the recourse to the Défenseur des droits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accessibility_statement_is_linked_from_every_page() {
    let server = TestServer::start_with(Db::Sqlite, &[("accessibility_contact", "accessibilite@caf.fr")]).await;
    let link = "<a class=\"fr-footer__bottom-link\" href=\"/accessibilite\">Accessibilité : non conforme</a>";
    for path in ["/signin", "/password/forgot", "/no-such-page", "/accessibilite"] {
        let html = http_client().get(server.url(path)).send().await.expect("GET").text().await.expect("html");
        assert!(html.contains(link), "{path}: the footer links the statement: {html}");
    }
    let r = http_client().get(server.url("/accessibilite")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    assert!(html.contains("<html lang=\"fr\">"), "French first");
    assert!(html.contains("<title>Déclaration d&#x27;accessibilité – Coopération</title>"), "{html}");
    for part in ["non conforme", "axe-core", "ne couvrent pas", "Contenus non accessibles", "Défenseur des droits"] {
        assert!(html.contains(part), "the statement says {part:?}");
    }
    assert!(html.contains("href=\"mailto:accessibilite@caf.fr\""), "the configured contact");
    assert!(html.contains("accessibilite?lang=en\" hreflang=\"en\""), "the English switch");
    let en = http_client().get(server.url("/accessibilite?lang=en")).send().await.expect("GET");
    let en = en.text().await.expect("html");
    assert!(en.contains("<html lang=\"en\">") && en.contains("<title>Accessibility statement – Coopération</title>"));
    assert!(en.contains("not compliant") && en.contains("Accessibility: not compliant"), "{en}");
    assert!(!en.contains("ne couvrent pas"), "the English page is not the French one");

    // Without the setting, the contact is the sender's address.
    let plain = TestServer::start_with(Db::Sqlite, &[("mail_from", "Caf du Gers <idp@caf-gers.fr>")]).await;
    let html = http_client().get(plain.url("/accessibilite")).send().await.expect("GET").text().await.expect("html");
    assert!(html.contains("href=\"mailto:idp@caf-gers.fr\""), "{html}");
}
