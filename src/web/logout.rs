//! RP-initiated logout pages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;

use super::extract::{CheckedForm, ProtocolCall, SourceAddress};
use super::i18n::Locale;
use super::signin::current_session;
use super::{AppState, browser, error, pages};
use crate::auth::signout;
use crate::oidc::logout::{self, LogoutDecision, LogoutError};

pub async fn logout(State(app): State<AppState>, call: ProtocolCall) -> Response {
    let ProtocolCall { params, locale, jar, peer, headers, .. } = call;
    let decided = async {
        let current = current_session(&app, &jar).await?;
        logout::decide(&app, params, current.as_ref()).await
    };
    let decision = match decided.await {
        Ok(d) => d,
        Err(e) => return error::internal_page(e, locale),
    };
    match decision {
        LogoutDecision::Error(e) => pages::error_page(StatusCode::BAD_REQUEST, locale, logout_error_key(e)),
        LogoutDecision::Confirm { client_id, post_logout_redirect_uri, state } => {
            let values = context! { client_id => client_id, post_logout_redirect_uri => post_logout_redirect_uri, state => state };
            pages::FormPage { status: StatusCode::OK, template: "logout_confirm.html", locale, path_for_switch: "" }
                .render(&app.config, jar, values)
        }
        LogoutDecision::SignOut { redirect } => {
            sign_out(&app, jar, locale, redirect, super::audit_source(&app, peer, &headers)).await
        }
    }
}

pub async fn logout_confirm(
    State(app): State<AppState>,
    SourceAddress(source): SourceAddress,
    CheckedForm { form, locale, jar }: CheckedForm,
) -> Response {
    let redirect = match logout::confirmed_redirect(
        &app,
        form.get("client_id"),
        form.get("post_logout_redirect_uri"),
        form.get("state"),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return error::internal_page(e, locale),
    };
    sign_out(&app, jar, locale, redirect, source).await
}

async fn sign_out(
    app: &AppState,
    jar: CookieJar,
    locale: Locale,
    redirect: Option<String>,
    source: crate::audit::Source,
) -> Response {
    if let Some(value) = browser::session_value(&app.config, &jar)
        && let Err(e) = signout::sign_out(app, &value, &source).await
    {
        return error::internal_page(e, locale);
    }
    let jar = browser::clear_session(&app.config, jar);
    match redirect {
        Some(location) => (jar, browser::see_other(&location)).into_response(),
        None => {
            (jar, pages::message(StatusCode::OK, locale, "signed_out_title", "signed_out_text", None)).into_response()
        }
    }
}

fn logout_error_key(e: LogoutError) -> &'static str {
    match e {
        LogoutError::InvalidIdTokenHint => "err_invalid_id_token_hint",
        LogoutError::UnknownClient => "err_unknown_client",
        LogoutError::ClientMismatch => "err_client_mismatch",
        LogoutError::UnregisteredPostLogoutUri => "err_unregistered_post_logout_uri",
        LogoutError::RepeatedParameter => "err_repeated_parameter",
    }
}
