//! RP-Initiated Logout 1.0. Redirects only to a post-logout URI registered
//! exactly for the client named by a valid `id_token_hint`; without a hint
//! naming the signed-in person, the user is asked to confirm (GET or POST
//! alike); with a bad hint nothing is redirected.

use serde::Deserialize;

use super::Params;
use super::clients;
use crate::app::App;
use crate::auth::session::Session;
use crate::error::AppResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutError {
    InvalidIdTokenHint,
    UnknownClient,
    ClientMismatch,
    UnregisteredPostLogoutUri,
    RepeatedParameter,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LogoutDecision {
    Error(LogoutError),
    /// Ask the user; on confirmation sign out, then go to `redirect` if any.
    Confirm {
        client_id: Option<String>,
        post_logout_redirect_uri: Option<String>,
        state: Option<String>,
    },
    /// Sign out, then redirect there (or show the signed-out page).
    SignOut {
        redirect: Option<String>,
    },
}

#[derive(Deserialize)]
struct HintClaims {
    sub: String,
    aud: Aud,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Aud {
    One(String),
    Many(Vec<String>),
}

impl Aud {
    fn first(&self) -> Option<&str> {
        match self {
            Aud::One(a) => Some(a),
            Aud::Many(v) => v.first().map(String::as_str),
        }
    }
}

pub async fn decide(app: &App, raw: Result<Params, String>, session: Option<&Session>) -> AppResult<LogoutDecision> {
    let Ok(params) = raw else { return Ok(LogoutDecision::Error(LogoutError::RepeatedParameter)) };
    let state = params.get("state").map(str::to_string);
    let hint = match params.get("id_token_hint") {
        None => None,
        Some(token) => {
            let keys = app.keys.current();
            match keys.verify_own::<HintClaims>(token, &app.config.issuer_str(), app.clock.now_ms()) {
                Some(c) => Some(c),
                None => return Ok(LogoutDecision::Error(LogoutError::InvalidIdTokenHint)),
            }
        }
    };
    let client_id = match (hint.as_ref().and_then(|h| h.aud.first()), params.get("client_id")) {
        (Some(a), Some(c)) if a != c => return Ok(LogoutDecision::Error(LogoutError::ClientMismatch)),
        (Some(a), _) => Some(a.to_string()),
        (None, c) => c.map(str::to_string),
    };
    let post_logout = params.get("post_logout_redirect_uri").map(str::to_string);
    if let Some(uri) = &post_logout {
        let Some(id) = &client_id else {
            return Ok(LogoutDecision::Error(LogoutError::UnregisteredPostLogoutUri));
        };
        let Some(client) = clients::find(app, id).await? else {
            return Ok(LogoutDecision::Error(LogoutError::UnknownClient));
        };
        if !client.has_post_logout_redirect_uri(uri) {
            return Ok(LogoutDecision::Error(LogoutError::UnregisteredPostLogoutUri));
        }
    }
    let hint_matches_session = match (&hint, session) {
        (Some(h), Some(s)) => h.sub == s.account_id,
        (Some(_), None) => true,
        (None, _) => false,
    };
    // Without a hint naming the signed-in person, the request may come from
    // any page that navigates the browser here: the user is asked first
    // (RP-Initiated Logout §2), and nothing changes until they confirm.
    if !hint_matches_session {
        return Ok(LogoutDecision::Confirm { client_id, post_logout_redirect_uri: post_logout, state });
    }
    let redirect = post_logout.map(|uri| redirect_without_iss(&uri, state.as_deref()));
    Ok(LogoutDecision::SignOut { redirect })
}

/// The post-logout redirect carries only `state` (no `iss`).
pub fn redirect_without_iss(uri: &str, state: Option<&str>) -> String {
    let Ok(mut url) = url::Url::parse(uri) else { return uri.to_string() };
    if let Some(s) = state {
        url.query_pairs_mut().append_pair("state", s);
    }
    url.to_string()
}

/// Re-checks a confirmed logout's redirect (the form could be tampered with).
pub async fn confirmed_redirect(
    app: &App,
    client_id: Option<&str>,
    uri: Option<&str>,
    state: Option<&str>,
) -> AppResult<Option<String>> {
    let (Some(id), Some(uri)) = (client_id, uri) else { return Ok(None) };
    let Some(client) = clients::find(app, id).await? else { return Ok(None) };
    Ok(client.has_post_logout_redirect_uri(uri).then(|| redirect_without_iss(uri, state)))
}
