//! The quick start's relying party (examples/relying-party, README "Quick
//! start") prints every claim the server sends: its printing code, included
//! here, on the tokens of a real sign-in with the `coop` scope.

#[path = "../../examples/relying-party/src/claims.rs"]
mod claims;

use openidconnect::{OAuth2TokenResponse, TokenResponse};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(the_example_prints_the_platform_claims);

async fn the_example_prints_the_platform_claims(db: Db) {
    let (server, sub, secret) = platform_server(db).await;
    let rp = server.rp("platform", Some(&secret)).await;
    let (tokens, _) = code_flow(&server, &rp, &browser(), EMAIL, &["profile", "email", "coop"]).await;
    let id_token = tokens.id_token().expect("id_token").to_string();
    let id_claims = claims::id_token_payload(&id_token).expect("the payload is JSON");
    let info = userinfo(&server, tokens.access_token().secret()).await;
    let printed = claims::render(&id_claims, &info);
    // The claims the crate's standard types drop, in both parts of the report.
    let (id_part, info_part) = printed.split_once("userinfo:").expect("two parts");
    for name in ["function", "partner_id", "partner_name", "roles", "sid"] {
        assert!(id_part.contains(&format!("\"{name}\":")), "{name} missing from the ID token part:\n{printed}");
    }
    for name in ["function", "partner_id", "partner_name", "roles", "sub"] {
        assert!(info_part.contains(&format!("\"{name}\":")), "{name} missing from the userinfo part:\n{printed}");
    }
    assert!(printed.contains("\"CC du Girou\""), "{printed}");
    assert!(printed.contains(&sub), "{printed}");
    // A token that is not a compact JWT is refused, not printed as empty.
    assert!(claims::id_token_payload("no-dots").is_err());
}

/// `coop-idp.toml.example` names every key of the configuration, and the
/// server's own loader reads it as it stands into the defaults.
#[test]
fn the_example_configuration_is_every_key_and_loads() {
    use coop_idp::config::Config;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/coop-idp.toml.example"))
        .expect("coop-idp.toml.example");
    for key in Config::keys() {
        let set = text.lines().any(|l| l.starts_with(&format!("{} = ", key.name)));
        let shown = text.lines().any(|l| l.starts_with(&format!("# {} = ", key.name)));
        assert!(set || shown, "coop-idp.toml.example does not give `{}`", key.name);
    }
    let loaded = Config::from_sources(Some(&text), &[]).expect("the example loads");
    let defaults = Config::from_sources(None, &[]).expect("the defaults load");
    assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"), "as it stands, the example changes nothing");
    // Each commented example is a valid value of its key too.
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|rest| Config::keys().iter().any(|k| rest.starts_with(&format!("{} = ", k.name))))
                .unwrap_or(l)
        })
        .filter(|l| !l.starts_with("trusted_proxies = []"))
        // The logo's example names a file on the operator's machine, read at
        // start-up; its checks have their own tests (config::tests).
        .filter(|l| !l.starts_with("brand_logo = "))
        .collect::<Vec<_>>()
        .join("\n");
    let examples = Config::from_sources(Some(&uncommented), &[]).expect("every example value loads");
    assert_eq!(examples.smtp_url.as_deref(), Some("smtp://127.0.0.1:1025"));
    // The other side: a key the loader does not know is refused.
    assert!(Config::from_sources(Some(&format!("{text}\nno_such_key = 1\n")), &[]).is_err());
}

/// docker-compose.yml cannot be started where the tests run; its shape is
/// checked instead: the services, the published ports, and an environment
/// of known keys (`COOP_IDP_<KEY>`) shared by the instances.
#[test]
fn the_compose_file_holds_together() {
    use serde_norway::Value;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml");
    let mut compose: Value = serde_norway::from_str(&text).expect("docker-compose.yml is YAML");
    compose.apply_merge().expect("merge keys resolve");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    for name in ["postgres", "redis", "mailcatcher", "migrate", "coop-idp-1", "coop-idp-2", "proxy"] {
        assert!(names.contains(&name), "service {name} missing: {names:?}");
    }
    let ports = |s: &str| -> Vec<String> {
        compose["services"][s]["ports"]
            .as_sequence()
            .map(|p| p.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    assert!(ports("proxy").contains(&"443:443".to_string()), "{:?}", ports("proxy"));
    assert!(ports("coop-idp-1").is_empty(), "the instances are reached through the proxy only");
    let known: Vec<String> = coop_idp::config::Config::keys().iter().map(|k| k.env_var()).collect();
    for instance in ["migrate", "coop-idp-1", "coop-idp-2"] {
        let env = compose["services"][instance]["environment"].as_mapping().expect("environment");
        let vars: Vec<&str> = env.keys().filter_map(Value::as_str).collect();
        for var in &vars {
            assert!(known.iter().any(|k| k == var), "{instance}: {var} is no configuration key");
        }
        for needed in ["COOP_IDP_ISSUER", "COOP_IDP_DATABASE_URL", "COOP_IDP_KEYS_DIR", "COOP_IDP_TRUSTED_PROXIES"] {
            assert!(vars.contains(&needed), "{instance}: {needed} missing");
        }
        // The configuration the instances get is one the server accepts.
        let pairs: Vec<(String, String)> =
            env.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string()))).collect();
        coop_idp::config::Config::from_sources(None, &pairs).expect("the instances' configuration loads");
    }
    let proxy_ip = compose["services"]["proxy"]["networks"]["idp"]["ipv4_address"].as_str().expect("proxy address");
    let trusted =
        compose["services"]["coop-idp-1"]["environment"]["COOP_IDP_TRUSTED_PROXIES"].as_str().expect("trusted");
    assert_eq!(trusted, format!("{proxy_ip}/32"), "the instances believe the proxy, and it alone");
}

/// `/` says what the server is and where to go, French first, English on
/// the switch; the checklist's script is served as a file (the content
/// security policy allows no inline script).
#[tokio::test]
async fn the_home_page_says_where_to_go() {
    let server = TestServer::start(Db::Sqlite).await;
    let r = http_client().get(server.url("/")).send().await.expect("GET /");
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    assert!(html.contains("<html lang=\"fr\">"), "French first");
    assert!(html.contains("<h1>Service d&#x27;identification de Coopération</h1>"), "{html}");
    for link in ["/.well-known/openid-configuration", "/account/security", "/admin"] {
        assert!(html.contains(&format!("href=\"{link}\"")), "links {link}: {html}");
    }
    assert!(html.contains("href=\"&#x2f;?lang=en\""), "the English switch: {html}");
    let en = http_client().get(server.url("/?lang=en")).send().await.expect("GET").text().await.expect("html");
    assert!(en.contains("<html lang=\"en\">") && en.contains("<h1>Coopération sign-in service</h1>"), "{en}");
    // The other side: another path is still a 404.
    assert_eq!(http_client().get(server.url("/nothing-here")).send().await.expect("GET").status(), 404);

    let r = http_client().get(server.url("/static/password-rules.js")).send().await.expect("GET script");
    assert_eq!(r.status(), 200);
    let kind = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(kind.starts_with("text/javascript"), "{kind}");
    assert!(r.text().await.expect("script").contains("data-rule"));
}
