//! The authorization endpoint (OIDC Core §3.1.2, RFC 6749 §4.1, RFC 9700).
//!
//! Validation order, each a named step below: `client_id` known, then
//! `redirect_uri` registered exactly (until both hold, errors are pages,
//! never redirects); then the bounds of `limits.rs`, request objects
//! refused, `response_type=code`, `response_mode`, `scope` with `openid`,
//! PKCE S256, `prompt`, `max_age`, `claims`, `id_token_hint`.

use std::net::IpAddr;

use serde::Deserialize;
use url::Url;

use super::claims::ClaimsRequest;
use super::clients::{self, Client};
use super::limits::{self, MAX_HINT_SUB_BYTES, PARKED_PER_SOURCE};
use super::parked::{self, known_subset};
use super::pkce::CodeChallenge;
use super::{ACR_VALUES_SUPPORTED, PROMPT_VALUES, Params, SUPPORTED_SCOPES, UI_LOCALES_SUPPORTED, split_spaces};
use crate::app::App;
use crate::auth::factors;
use crate::auth::second_factor;
use crate::auth::session::Session;
use crate::auth::throttle::source_of;
use crate::clock::Millis;
use crate::crypto::{hash_secret, random_token};
use crate::error::{AppError, AppResult};
use crate::store::{self, grants::CodeRow};

/// How long a parked request waits for the user to sign in.
const PARKED_TTL_MS: Millis = 30 * 60 * 1000;

/// A validated authorization request, reduced to what the code needs: the
/// lists hold only the values we know, in their table's order; parked in
/// the compact form of `parked.rs` while the user signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub code_challenge: String,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub id_token_hint_sub: Option<String>,
    pub login_hint: Option<String>,
    /// The first of `ui_locales` that we have a language for.
    pub ui_locale: Option<String>,
    pub claims: Option<ClaimsRequest>,
    pub acr_values: Vec<String>,
}

/// Errors that cannot be sent to the client: its redirect URI is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    RepeatedParameter,
    MissingClientId,
    UnknownClient,
    MissingRedirectUri,
    UnregisteredRedirectUri,
    /// `client_id` or `redirect_uri` beyond its bound.
    ParameterTooLong,
}

#[derive(Debug)]
pub enum AuthorizeError {
    Page(PageError),
    /// Redirect the browser there (error, state and iss already added).
    Redirect(String),
    Internal(crate::error::AppError),
}

impl From<crate::error::AppError> for AuthorizeError {
    fn from(e: crate::error::AppError) -> Self {
        AuthorizeError::Internal(e)
    }
}

impl From<crate::store::StoreError> for AuthorizeError {
    fn from(e: crate::store::StoreError) -> Self {
        AuthorizeError::Internal(e.into())
    }
}

/// Builds the redirect back to the client with response parameters, adding
/// `state` and `iss` (RFC 9207).
pub fn redirect_with(issuer: &str, redirect_uri: &str, state: Option<&str>, params: &[(&str, &str)]) -> String {
    let Ok(mut url) = Url::parse(redirect_uri) else { return redirect_uri.to_string() };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    url.to_string()
}

struct Redirector<'a> {
    issuer: String,
    redirect_uri: &'a str,
    state: Option<&'a str>,
}

impl Redirector<'_> {
    fn error(&self, code: &str, description: &str) -> AuthorizeError {
        AuthorizeError::Redirect(redirect_with(
            &self.issuer,
            self.redirect_uri,
            self.state,
            &[("error", code), ("error_description", description)],
        ))
    }
}

/// Steps 1–12: turns raw parameters (the query or body was `raw_bytes`
/// long) into a request, or an error to show or to redirect.
pub async fn validate(
    app: &App,
    raw: Result<Params, String>,
    raw_bytes: usize,
) -> Result<(AuthorizationRequest, Client), AuthorizeError> {
    let params = raw.map_err(|_| AuthorizeError::Page(PageError::RepeatedParameter))?;
    let client = step_client(app, &params).await?;
    let redirect_uri = step_redirect_uri(&client, &params)?;
    // A state beyond its bound is not sent back, not even with the error.
    let state = params.get("state").filter(|_| limits::within(&params, "state"));
    let r = Redirector { issuer: app.config.issuer_str(), redirect_uri, state };
    limits::check_request(&params, raw_bytes).map_err(|v| r.error("invalid_request", &v.to_string()))?;
    step_no_request_object(&params, &r)?;
    step_response_type(&params, &r)?;
    step_response_mode(&params, &r)?;
    let scopes = step_scope(&params, &r)?;
    let challenge = CodeChallenge::parse(params.get("code_challenge"), params.get("code_challenge_method"))
        .map_err(|d| r.error("invalid_request", d))?;
    let prompt = step_prompt(&params, &r)?;
    let max_age = step_max_age(&params, &r)?;
    let claims = match params.get("claims") {
        Some(text) => Some(ClaimsRequest::parse(text).map_err(|d| r.error("invalid_request", d))?),
        None => None,
    };
    let id_token_hint_sub = step_id_token_hint(app, &params, &r)?;
    let request = AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state: state.map(str::to_string),
        nonce: params.get("nonce").map(str::to_string),
        scopes,
        code_challenge: challenge.as_str().to_string(),
        prompt,
        max_age,
        id_token_hint_sub,
        login_hint: params.get("login_hint").map(str::to_string),
        ui_locale: params.get("ui_locales").and_then(first_supported_locale),
        claims,
        acr_values: known_subset(
            &params.get("acr_values").map(split_spaces).unwrap_or_default(),
            &ACR_VALUES_SUPPORTED,
        ),
    };
    Ok((request, client))
}

/// The primary subtag of the first tag we have a language for (`en-GB` is
/// `en`): all that the pages use.
fn first_supported_locale(ui_locales: &str) -> Option<String> {
    ui_locales.split(' ').find_map(|tag| {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        UI_LOCALES_SUPPORTED.contains(&primary.as_str()).then_some(primary)
    })
}

/// Within its bound before it is looked up, so that an oversized one costs
/// no query.
fn bounded<'p>(params: &'p Params, name: &str) -> Result<Option<&'p str>, AuthorizeError> {
    if !limits::within(params, name) {
        return Err(AuthorizeError::Page(PageError::ParameterTooLong));
    }
    Ok(params.get(name))
}

async fn step_client(app: &App, params: &Params) -> Result<Client, AuthorizeError> {
    let id = bounded(params, "client_id")?.ok_or(AuthorizeError::Page(PageError::MissingClientId))?;
    clients::find(app, id).await?.ok_or(AuthorizeError::Page(PageError::UnknownClient))
}

fn step_redirect_uri<'p>(client: &Client, params: &'p Params) -> Result<&'p str, AuthorizeError> {
    let uri = bounded(params, "redirect_uri")?.ok_or(AuthorizeError::Page(PageError::MissingRedirectUri))?;
    if !client.has_redirect_uri(uri) {
        return Err(AuthorizeError::Page(PageError::UnregisteredRedirectUri));
    }
    Ok(uri)
}

fn step_no_request_object(params: &Params, r: &Redirector) -> Result<(), AuthorizeError> {
    if params.has("request") {
        return Err(r.error("request_not_supported", "request objects are not supported"));
    }
    if params.has("request_uri") {
        return Err(r.error("request_uri_not_supported", "request_uri is not supported"));
    }
    Ok(())
}

fn step_response_type(params: &Params, r: &Redirector) -> Result<(), AuthorizeError> {
    match params.get("response_type") {
        None => Err(r.error("invalid_request", "response_type is required")),
        Some("code") => Ok(()),
        Some(_) => Err(r.error("unsupported_response_type", "only response_type=code is supported")),
    }
}

fn step_response_mode(params: &Params, r: &Redirector) -> Result<(), AuthorizeError> {
    match params.get("response_mode") {
        None | Some("query") => Ok(()),
        Some(_) => Err(r.error("invalid_request", "only response_mode=query is supported")),
    }
}

fn step_scope(params: &Params, r: &Redirector) -> Result<Vec<String>, AuthorizeError> {
    let requested = params.get("scope").map(split_spaces).unwrap_or_default();
    if !requested.iter().any(|s| s == "openid") {
        return Err(r.error("invalid_scope", "scope must contain openid"));
    }
    let mut scopes: Vec<String> =
        SUPPORTED_SCOPES.iter().filter(|s| requested.iter().any(|r| r == *s)).map(|s| s.to_string()).collect();
    scopes.dedup();
    Ok(scopes)
}

fn step_prompt(params: &Params, r: &Redirector) -> Result<Vec<String>, AuthorizeError> {
    let prompt = params.get("prompt").map(split_spaces).unwrap_or_default();
    if prompt.iter().any(|p| !PROMPT_VALUES.contains(&p.as_str())) {
        return Err(r.error("invalid_request", "unknown prompt value"));
    }
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(r.error("invalid_request", "prompt=none cannot be combined"));
    }
    Ok(known_subset(&prompt, &PROMPT_VALUES))
}

fn step_max_age(params: &Params, r: &Redirector) -> Result<Option<i64>, AuthorizeError> {
    match params.get("max_age") {
        None => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(r.error("invalid_request", "max_age must be a non-negative integer")),
        },
    }
}

#[derive(Deserialize)]
struct HintClaims {
    sub: String,
}

fn step_id_token_hint(app: &App, params: &Params, r: &Redirector) -> Result<Option<String>, AuthorizeError> {
    let Some(hint) = params.get("id_token_hint") else { return Ok(None) };
    let keys = app.keys.current();
    keys.verify_own::<HintClaims>(hint, &app.config.issuer_str(), app.clock.now_ms())
        .filter(|c| c.sub.len() <= MAX_HINT_SUB_BYTES && !c.sub.contains(char::is_control))
        .map(|c| Some(c.sub))
        .ok_or_else(|| r.error("invalid_request", "id_token_hint is not a valid ID token of this provider"))
}

/// What to do with a valid request given the browser's session.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    IssueCode,
    SignIn,
}

impl AuthorizationRequest {
    pub fn has_prompt(&self, p: &str) -> bool {
        self.prompt.iter().any(|x| x == p)
    }

    /// Whether the relying party asks for a second factor (`acr_values`
    /// naming `urn:coop-idp:acr:mfa` alone; see `factors::mfa_requested`).
    pub fn mfa_requested(&self) -> bool {
        factors::mfa_requested(&self.acr_values)
    }

    fn error_redirect(&self, issuer: &str, code: &str, description: &str) -> String {
        redirect_with(
            issuer,
            &self.redirect_uri,
            self.state.as_deref(),
            &[("error", code), ("error_description", description)],
        )
    }

    /// OIDC Core §3.1.2.3: sign in again for `prompt=login`, an exceeded
    /// `max_age`, a hint naming another user, or a step-up the session
    /// owes (`step_up`: see [`decision`]); never show a page for
    /// `prompt=none`.
    pub fn decide(
        &self,
        issuer: &str,
        session: Option<&Session>,
        now: Millis,
        step_up: bool,
    ) -> Result<Decision, AuthorizeError> {
        let needs_sign_in = match session {
            None => true,
            Some(s) => {
                self.has_prompt("login")
                    || self.max_age.is_some_and(|m| now - s.auth_time_ms > m * 1000)
                    || self.id_token_hint_sub.as_deref().is_some_and(|sub| sub != s.account_id)
                    || step_up
            }
        };
        match (needs_sign_in, self.has_prompt("none")) {
            (false, _) => Ok(Decision::IssueCode),
            (true, true) => {
                Err(AuthorizeError::Redirect(self.error_redirect(issuer, "login_required", "the user must sign in")))
            }
            (true, false) => Ok(Decision::SignIn),
        }
    }
}

/// What to do with a valid request given the browser's session: a session
/// opened with one factor does not answer a request for `mfa` when its
/// account holds a second factor (the sign-in then asks for it, and
/// `prompt=none` gets `login_required`); one whose account holds none is
/// answered with the `acr` it has.
pub async fn decision(
    app: &App,
    request: &AuthorizationRequest,
    session: Option<&Session>,
) -> Result<Decision, AuthorizeError> {
    let step_up = match session {
        Some(s) if request.mfa_requested() && !s.has_second_factor() => {
            factors::step_up_needed(true, false, second_factor::held(app, &s.account_id).await?)
        }
        _ => false,
    };
    request.decide(&app.config.issuer_str(), session, app.clock.now_ms(), step_up)
}

/// Issues a single-use code bound to client, redirect URI, PKCE and session,
/// and returns the redirect carrying it.
pub async fn issue_code(app: &App, request: &AuthorizationRequest, session: &Session) -> AppResult<String> {
    let mut tx = app.store.begin_batched_write().await?;
    let location = issue_code_in(app, &mut tx, request, session).await?;
    tx.commit().await?;
    Ok(location)
}

/// [`issue_code`] inside the caller's transaction (a sign-in's).
pub async fn issue_code_in(
    app: &App,
    tx: &mut crate::store::WriteTx,
    request: &AuthorizationRequest,
    session: &Session,
) -> AppResult<String> {
    let now = app.clock.now_ms();
    let code = random_token();
    let row = CodeRow {
        code_hash: hash_secret(&code),
        client_id: request.client_id.clone(),
        account_id: session.account_id.clone(),
        session_id_hash: session.id_hash.clone(),
        sid: session.sid.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: request.scopes.join(" "),
        nonce: request.nonce.clone(),
        claims: request.claims.as_ref().and_then(|c| serde_json::to_string(c).ok()),
        auth_time: session.auth_time_ms,
        acr: session.acr.clone(),
        amr: session.amr.join(" "),
        created_at: now,
        expires_at: now + app.config.code_ttl_secs * 1000,
        used_at: None,
        family_id: None,
    };
    store::grants::insert_code(tx, &row).await?;
    store::sessions::add_client(tx, &session.id_hash, &request.client_id).await?;
    Ok(redirect_with(&app.config.issuer_str(), &request.redirect_uri, request.state.as_deref(), &[("code", &code)]))
}

/// Parks a request while the user signs in; returns its handle.
///
/// Each source (`source_of`: an IPv4 address, an IPv6 /64) keeps at most
/// `PARKED_PER_SOURCE` requests waiting: past that, its oldest is dropped
/// rather than the new one refused. A Caf office signs in from behind one
/// address; refusing would let anyone there (or a morning's abandoned tabs)
/// block every sign-in from it for the 30 minutes a request waits, whereas
/// dropping the oldest ends only the requests that have waited longest; the
/// table stays as bounded either way: at most `PARKED_PER_SOURCE` rows of
/// at most 1.1 KiB per source (README "Input limits").
pub async fn park(app: &App, request: &AuthorizationRequest, client: &Client, ip: IpAddr) -> AppResult<String> {
    let now = app.clock.now_ms();
    let handle = random_token();
    let params = parked::encode(request, client)
        .ok_or_else(|| AppError::Invalid("an authorization request that validation should have refused".into()))?;
    let mut tx = app.store.begin_batched_write().await?;
    store::grants::park_auth_request(
        &mut tx,
        &hash_secret(&handle),
        &request.client_id,
        &source_of(ip),
        &params,
        now,
        now + PARKED_TTL_MS,
        PARKED_PER_SOURCE,
    )
    .await?;
    tx.commit().await?;
    Ok(handle)
}

/// The parked request behind a handle, if it has not expired (nor been
/// dropped for a newer one of its source).
pub async fn parked(app: &App, handle: &str) -> AppResult<Option<AuthorizationRequest>> {
    let Some((client_id, params)) = app.store.auth_request(&hash_secret(handle), app.clock.now_ms()).await? else {
        return Ok(None);
    };
    let Some(client) = clients::find(app, &client_id).await? else { return Ok(None) };
    Ok(parked::decode(&params, &client))
}

pub async fn forget_parked(app: &App, handle: &str) -> AppResult<()> {
    let mut tx = app.store.begin_write().await?;
    store::grants::delete_auth_request(&mut tx, &hash_secret(handle)).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: &[&str], max_age: Option<i64>, hint: Option<&str>) -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "c".into(),
            redirect_uri: "https://rp.example.fr/cb?x=1".into(),
            state: Some("st".into()),
            nonce: None,
            scopes: vec!["openid".into()],
            code_challenge: "x".into(),
            prompt: prompt.iter().map(|s| s.to_string()).collect(),
            max_age,
            id_token_hint_sub: hint.map(str::to_string),
            login_hint: None,
            ui_locale: None,
            claims: None,
            acr_values: vec![],
        }
    }

    fn session(auth_time_ms: Millis) -> Session {
        Session {
            id_hash: "h".into(),
            sid: "sid".into(),
            account_id: "alice".into(),
            auth_time_ms,
            amr: vec!["pwd".into()],
            acr: "a".into(),
        }
    }

    #[test]
    fn live_session_gets_a_code_and_none_gets_sign_in() {
        let r = request(&[], None, None);
        assert_eq!(r.decide("https://idp", Some(&session(0)), 1_000, false).expect("decision"), Decision::IssueCode);
        assert_eq!(r.decide("https://idp", None, 1_000, false).expect("decision"), Decision::SignIn);
    }

    #[test]
    fn prompt_none_without_session_is_login_required_with_state_and_iss() {
        let r = request(&["none"], None, None);
        match r.decide("https://idp", None, 0, false) {
            Err(AuthorizeError::Redirect(url)) => {
                assert!(url.starts_with("https://rp.example.fr/cb?x=1&error=login_required"), "{url}");
                assert!(url.contains("state=st") && url.contains("iss=https%3A%2F%2Fidp"), "{url}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn prompt_login_and_max_age_force_sign_in_both_sides() {
        let s = session(10_000);
        assert_eq!(request(&["login"], None, None).decide("i", Some(&s), 10_500, false).expect("d"), Decision::SignIn);
        assert_eq!(request(&[], Some(1), None).decide("i", Some(&s), 11_001, false).expect("d"), Decision::SignIn);
        assert_eq!(request(&[], Some(1), None).decide("i", Some(&s), 10_900, false).expect("d"), Decision::IssueCode);
        assert_eq!(
            request(&[], Some(10_000), None).decide("i", Some(&s), 20_000, false).expect("d"),
            Decision::IssueCode
        );
    }

    #[test]
    fn hint_for_another_user_forces_sign_in() {
        let s = session(0);
        assert_eq!(request(&[], None, Some("bob")).decide("i", Some(&s), 1, false).expect("d"), Decision::SignIn);
        assert_eq!(request(&[], None, Some("alice")).decide("i", Some(&s), 1, false).expect("d"), Decision::IssueCode);
        assert!(matches!(
            request(&["none"], None, Some("bob")).decide("i", Some(&s), 1, false),
            Err(AuthorizeError::Redirect(_))
        ));
    }

    #[test]
    fn a_step_up_owed_forces_sign_in_and_prompt_none_is_refused() {
        let s = session(0);
        assert_eq!(request(&[], None, None).decide("i", Some(&s), 1, true).expect("d"), Decision::SignIn);
        assert_eq!(request(&[], None, None).decide("i", Some(&s), 1, false).expect("d"), Decision::IssueCode);
        match request(&["none"], None, None).decide("https://idp", Some(&s), 1, true) {
            Err(AuthorizeError::Redirect(url)) => assert!(url.contains("error=login_required"), "{url}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn only_mfa_alone_asks_for_a_second_factor() {
        let mut r = request(&[], None, None);
        assert!(!r.mfa_requested());
        r.acr_values = vec![crate::auth::session::ACR_MFA.into()];
        assert!(r.mfa_requested());
        r.acr_values.insert(0, crate::auth::session::ACR_PASSWORD.into());
        assert!(!r.mfa_requested(), "a preference among several values");
    }
}
