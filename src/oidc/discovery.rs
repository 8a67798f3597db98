//! OpenID Provider metadata (OIDC Discovery §3, RFC 8414).

use serde_json::{Value, json};

use super::claims::ALL_CLAIMS;
use super::{ACR_VALUES_SUPPORTED, PROMPT_VALUES, SUPPORTED_SCOPES, UI_LOCALES_SUPPORTED};
use crate::config::Config;

pub fn metadata(config: &Config) -> Value {
    let url = |p: &str| config.url(p);
    json!({
        "issuer": config.issuer_str(),
        "authorization_endpoint": url("/authorize"),
        "token_endpoint": url("/token"),
        "userinfo_endpoint": url("/userinfo"),
        "jwks_uri": url("/jwks"),
        "revocation_endpoint": url("/revoke"),
        "introspection_endpoint": url("/introspect"),
        "end_session_endpoint": url("/logout"),
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ALL_CLAIMS.iter().copied().chain(["iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "at_hash"]).collect::<Vec<_>>(),
        "claims_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "acr_values_supported": ACR_VALUES_SUPPORTED,
        "prompt_values_supported": PROMPT_VALUES,
        "ui_locales_supported": UI_LOCALES_SUPPORTED,
        "claims_locales_supported": ["fr"],
        "display_values_supported": ["page"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
    })
}
