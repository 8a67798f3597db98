//! Signing in as a person does: the sign-in page's form, with or without a
//! relying party's request, the second factor when the account has one, and
//! the lost-password page.

use super::PASSWORD;
use super::http::{Form, browser, location, submit_form};
use super::server::TestServer;

/// What a sign-in form sends, and from where.
#[derive(Clone, Copy)]
pub struct SignIn<'a> {
    pub email: &'a str,
    pub password: &'a str,
    /// The page the form is on: `/signin`, or `/signin?request=…` for a
    /// relying party's request (sent back with the form).
    pub page: &'a str,
    /// An address forwarded by the trusted proxy.
    pub forwarded_for: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl<'a> SignIn<'a> {
    /// On the sign-in page alone, from the test's own address.
    pub fn new(email: &'a str, password: &'a str) -> SignIn<'a> {
        SignIn { email, password, page: "/signin", forwarded_for: None, user_agent: None }
    }

    pub fn on(self, page: &'a str) -> SignIn<'a> {
        SignIn { page, ..self }
    }

    pub fn from(self, forwarded_for: &'a str) -> SignIn<'a> {
        SignIn { forwarded_for: Some(forwarded_for), ..self }
    }

    pub fn with_user_agent(self, user_agent: &'a str) -> SignIn<'a> {
        SignIn { user_agent: Some(user_agent), ..self }
    }

    /// Fills the form on the provider at `base`; the answer to the post
    /// (200 signed in, 303 onwards, 401 refused, 429 delayed, 503 away).
    pub async fn post(self, browser: &reqwest::Client, base: &str) -> reqwest::Response {
        self.send(&Form::of(browser, &format!("{base}{}", self.page)).await, browser, base).await
    }

    /// The same with the form already shown.
    pub async fn send(self, form: &Form, browser: &reqwest::Client, base: &str) -> reqwest::Response {
        let mut headers = Vec::new();
        if let Some(ip) = self.forwarded_for {
            headers.push(("x-forwarded-for", ip));
        }
        if let Some(ua) = self.user_agent {
            headers.push(("user-agent", ua));
        }
        let fields = [("email", self.email), ("password", self.password)];
        form.submit(browser, &format!("{base}/signin"), &fields, &headers).await
    }
}

/// A sign-in on the page alone at `base`, in a fresh browser: its status.
pub async fn attempt_at(base: &str, email: &str, password: &str) -> u16 {
    SignIn::new(email, password).post(&browser(), base).await.status().as_u16()
}

/// Follows an authorization URL through the sign-in page; returns the final
/// redirect to the client (its `Location`).
pub async fn sign_in(server: &TestServer, browser: &reqwest::Client, authorize_url: &str, email: &str) -> String {
    let r = browser.get(authorize_url).send().await.expect("authorize");
    assert_eq!(r.status(), 303, "authorize should redirect to the sign-in page");
    let signin = location(&r);
    assert!(signin.starts_with("/signin?request="), "{signin}");
    submit_sign_in(server, browser, &signin, email, PASSWORD).await
}

/// Signs in on the sign-in page `signin` (with its parked request), giving
/// the second factor when asked; returns where the browser goes next.
pub async fn submit_sign_in(
    server: &TestServer,
    browser: &reqwest::Client,
    signin: &str,
    email: &str,
    password: &str,
) -> String {
    let r = SignIn::new(email, password).on(signin).post(browser, &server.base).await;
    assert_eq!(r.status(), 303, "sign-in should succeed");
    // An administrator gives the second factor (enrolling the first time);
    // either way the browser then goes back to the client.
    match location(&r).as_str() {
        "/signin/otp/enrol" => crate::second_step::enrol(server, browser, email).await.1,
        "/signin/otp" => {
            let r = crate::second_step::second_step(server, browser, email, "/signin/otp").await;
            assert_eq!(r.status(), 303, "second factor accepted");
            location(&r)
        }
        other => other.to_string(),
    }
}

/// Signs `email` in on the page alone; the returned browser holds the
/// session and CSRF cookies, and the CSRF token to send back.
pub async fn signed_in(server: &TestServer, email: &str) -> (reqwest::Client, String) {
    signed_in_as(server, SignIn::new(email, PASSWORD)).await
}

/// The same from a forwarded address and with a user agent of its own.
pub async fn signed_in_from(
    server: &TestServer,
    email: &str,
    forwarded_for: Option<&str>,
    user_agent: Option<&str>,
) -> (reqwest::Client, String) {
    let form = SignIn { forwarded_for, user_agent, ..SignIn::new(email, PASSWORD) };
    signed_in_as(server, form).await
}

async fn signed_in_as(server: &TestServer, form: SignIn<'_>) -> (reqwest::Client, String) {
    let b = browser();
    let shown = Form::of(&b, &server.url(form.page)).await;
    let r = form.send(&shown, &b, &server.base).await;
    // Administrators give their second factor (enrolling the first time).
    let r = if r.status() == 303 {
        crate::second_step::second_step(server, &b, form.email, &location(&r)).await
    } else {
        r
    };
    assert_eq!(r.status(), 200, "sign-in of {}", form.email);
    (b, shown.csrf().to_string())
}

/// A failed sign-in (a wrong password) for `email` from `ip` (forwarded by
/// the trusted proxy) with `user_agent`; its status.
pub async fn failed_sign_in(server: &TestServer, email: &str, ip: &str, user_agent: &str) -> reqwest::StatusCode {
    let form = SignIn::new(email, "Wrong-Password-1").from(ip).with_user_agent(user_agent);
    form.post(&browser(), &server.base).await.status()
}

/// Asks for a reset link on the lost-password page at `base`; the status.
pub async fn forgot_at(base: &str, email: &str, forwarded_for: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = forwarded_for.map(|ip| ("x-forwarded-for", ip)).into_iter().collect();
    let page = format!("{base}/password/forgot");
    submit_form(&browser(), &page, &page, &[("email", email)], &headers).await.status().as_u16()
}
