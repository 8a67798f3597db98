//! Config OP plan (`oidcc-discovery-endpoint-verification`) and the JWKS
//! checks made on every sign-in.

use std::collections::HashSet;

use openidconnect::IssuerUrl;
use openidconnect::core::CoreProviderMetadata;
use serde_json::{Value, json};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    oidcc_discovery_endpoint_verification,
    discovery_endpoints_https_when_issuer_is,
    jwks_holds_public_keys_with_distinct_kids,
);

fn strings(v: &Value, name: &str) -> Vec<String> {
    v[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

async fn oidcc_discovery_endpoint_verification(db: Db) {
    let server = TestServer::start(db).await;
    let discovery_url = server.url("/.well-known/openid-configuration");
    let (_, d) = get_json(&discovery_url).await;
    assert_eq!(
        d["issuer"].as_str(),
        discovery_url.strip_suffix("/.well-known/openid-configuration"),
        "issuer is the discovery URL minus the well-known suffix"
    );
    assert_eq!(d["issuer"], server.base.as_str());
    assert!(strings(&d, "response_types_supported").contains(&"code".to_string()));
    assert!(strings(&d, "subject_types_supported").contains(&"public".to_string()));
    let algs = strings(&d, "id_token_signing_alg_values_supported");
    assert!(algs.contains(&"RS256".to_string()), "{algs:?}");
    assert!(!algs.iter().any(|a| a.eq_ignore_ascii_case("none")), "{algs:?}");
    assert!(strings(&d, "scopes_supported").contains(&"openid".to_string()));
    let claims = strings(&d, "claims_supported");
    for c in ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "email"] {
        assert!(claims.contains(&c.to_string()), "claims_supported lacks {c}");
    }
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert!(strings(&d, "token_endpoint_auth_methods_supported").contains(&"client_secret_basic".to_string()));
    assert!(strings(&d, "token_endpoint_auth_methods_supported").contains(&"client_secret_post".to_string()));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true, "RFC 9207");
    // Every endpoint lives under the issuer and answers.
    for name in ["authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "revocation_endpoint"] {
        let url = d[name].as_str().unwrap_or_else(|| panic!("{name} missing"));
        assert!(url.starts_with(&server.base), "{name}: {url}");
        assert!(url::Url::parse(url).is_ok(), "{name}: {url}");
    }
    let (_, jwks) = get_json(d["jwks_uri"].as_str().expect("jwks_uri")).await;
    assert!(!jwks["keys"].as_array().expect("keys").is_empty());
    // RFC 8414 metadata at its own well-known address says the same.
    let (_, oauth) = get_json(&server.url("/.well-known/oauth-authorization-server")).await;
    assert_eq!(oauth, d);
    // The RP library accepts it (it validates the issuer against the URL).
    let http = http_client();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).expect("issuer"), &http)
        .await
        .expect("discovery by the RP library");
    assert_eq!(metadata.issuer().as_str(), server.base);
    // An issuer differing from the one announced (here by a trailing slash)
    // is refused by the library: the check is real.
    let wrong = IssuerUrl::new(format!("{}/", server.base)).expect("issuer");
    let wrong_discovery = CoreProviderMetadata::discover_async(wrong, &http).await;
    assert!(wrong_discovery.is_err(), "issuer mismatch must be detected");
}

async fn discovery_endpoints_https_when_issuer_is(db: Db) {
    // http issuer (loopback, for development): http endpoints.
    let plain = TestServer::start(db.clone()).await;
    let (_, d) = get_json(&plain.url("/.well-known/openid-configuration")).await;
    let endpoints = |d: &Value| -> Vec<String> {
        d.as_object()
            .expect("object")
            .iter()
            .filter(|(k, _)| k.ends_with("_endpoint") || k.as_str() == "jwks_uri")
            .map(|(_, v)| v.as_str().expect("URL").to_string())
            .collect()
    };
    let plain_endpoints = endpoints(&d);
    assert!(plain_endpoints.len() >= 6, "{plain_endpoints:?}");
    assert!(plain_endpoints.iter().all(|e| e.starts_with("http://127.0.0.1")), "{plain_endpoints:?}");
    // https issuer (behind a TLS proxy): every endpoint https, whatever the
    // request's Host.
    let tls = TestServer::start_with(db, &[("issuer", "https://idp.example.fr")]).await;
    let (_, d) = get_json(&tls.url("/.well-known/openid-configuration")).await;
    assert_eq!(d["issuer"], "https://idp.example.fr");
    let tls_endpoints = endpoints(&d);
    assert_eq!(tls_endpoints.len(), plain_endpoints.len());
    for e in &tls_endpoints {
        assert!(e.starts_with("https://idp.example.fr/"), "{e}");
    }
}

async fn jwks_holds_public_keys_with_distinct_kids(db: Db) {
    let server = TestServer::start(db).await;
    let (headers, jwks) = get_json(&server.url("/jwks")).await;
    assert!(headers.get("cache-control").is_some(), "JWKS caching is bounded");
    let keys = jwks["keys"].as_array().expect("keys");
    let kids: HashSet<&str> = keys.iter().map(|k| k["kid"].as_str().expect("every key has a kid")).collect();
    assert_eq!(kids.len(), keys.len(), "kids are distinct");
    let ktys: HashSet<&str> = keys.iter().map(|k| k["kty"].as_str().expect("kty")).collect();
    assert_eq!(ktys, HashSet::from(["RSA", "EC", "OKP"]), "one key per signing algorithm");
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(k.get(private).is_none(), "private member {private} published: {k}");
        }
        assert_eq!(k["use"], "sig");
        assert!(k["alg"].is_string());
    }
    // Published keys are the ones the discovery document's algorithms need.
    let (_, d) = get_json(&server.url("/.well-known/openid-configuration")).await;
    let algs: HashSet<String> = strings(&d, "id_token_signing_alg_values_supported").into_iter().collect();
    let published: HashSet<String> = keys.iter().map(|k| k["alg"].as_str().expect("alg").to_string()).collect();
    assert_eq!(algs, published);
}
