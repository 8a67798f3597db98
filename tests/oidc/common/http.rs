//! HTTP as the tests speak it: the relying party's client, a browser that
//! keeps cookies, a page's form filled and sent back, and the documents the
//! provider publishes (discovery, JWKS).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

/// The RP's HTTP client: no redirects (OAuth clients must not follow them).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
}

/// A browser: keeps cookies, does not follow redirects (tests look at them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("browser")
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The value of a hidden form field in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&#x2f;", "/").replace("&amp;", "&"))
}

/// Query parameters of a URL, as a map.
pub fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default()
}

/// The form of a page, as a browser holds it between showing and sending:
/// the hidden fields it sends back (its CSRF token always, the parked
/// authorization request and the emailed link's token when the page has
/// them) and the page itself.
pub struct Form {
    hidden: Vec<(&'static str, String)>,
    pub html: String,
}

impl Form {
    /// The form of the page at `page`, which must answer 200.
    pub async fn of(browser: &reqwest::Client, page: &str) -> Form {
        let r = browser.get(page).send().await.expect("form page");
        let status = r.status();
        let html = r.text().await.expect("form page body");
        assert_eq!(status, 200, "{page}: {html}");
        let hidden = ["csrf", "request", "token"].iter().filter_map(|n| hidden(&html, n).map(|v| (*n, v))).collect();
        let form = Form { hidden, html };
        assert!(form.field("csrf").is_some(), "{page}: a form with its CSRF token: {}", form.html);
        form
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.hidden.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn csrf(&self) -> &str {
        self.field("csrf").unwrap_or_default()
    }

    /// Sends the form to `action` with `fields` and the extra `headers` (a
    /// forwarded address, a user agent).
    pub async fn submit(
        &self,
        browser: &reqwest::Client,
        action: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut sent: Vec<(&str, &str)> = self.hidden.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sent.extend_from_slice(fields);
        let mut request = browser.post(action).form(&sent).timeout(Duration::from_secs(30));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("form submitted")
    }
}

/// Shows the page at `page` and sends its form to `action`.
pub async fn submit_form(
    browser: &reqwest::Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    Form::of(browser, page).await.submit(browser, action, fields, headers).await
}

/// A JSON document served with 200 as `application/json`: its headers and
/// its body.
pub async fn get_json(url: &str) -> (reqwest::header::HeaderMap, Value) {
    let r = http_client().get(url).send().await.expect("GET");
    assert_eq!(r.status(), 200, "{url}");
    let headers = r.headers().clone();
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{url}: {ct}");
    (headers, r.json().await.expect("JSON"))
}

/// The discovery document of the provider at `base`.
pub async fn discovery(base: &str) -> Value {
    get_json(&format!("{base}/.well-known/openid-configuration")).await.1
}

/// The JWKS the provider at `base` publishes.
pub async fn jwks(base: &str) -> Value {
    get_json(&format!("{base}/jwks")).await.1
}
