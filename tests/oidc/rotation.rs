//! `oidcc-server-rotate-keys` (RFC 9700 on top): after a rotation the JWKS
//! holds the new signing key and still the old one until every token the old
//! one signed has expired; new ID tokens are signed with the new key.

use std::collections::HashSet;

use openidconnect::TokenResponse;

use crate::common::*;
use crate::on_both_databases;

const EMAIL: &str = "marie.dupont@cc-girou.fr";

on_both_databases!(oidcc_server_rotate_keys);

async fn jwks_kids(server: &TestServer) -> HashSet<String> {
    let jwks = jwks(&server.base).await;
    let keys = jwks["keys"].as_array().expect("keys");
    for k in keys {
        assert!(k.get("d").is_none(), "public keys only: {k}");
    }
    let kids: HashSet<String> = keys.iter().map(|k| k["kid"].as_str().expect("kid").to_string()).collect();
    assert_eq!(kids.len(), keys.len(), "distinct kids");
    kids
}

fn kid(id_token: &str) -> String {
    jwt_part(id_token, 0)["kid"].as_str().expect("kid").to_string()
}

async fn oidcc_server_rotate_keys(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account(EMAIL, None).await;
    let secret = server.add_client("platform").await;
    let browser = browser();
    let rp = server.rp("platform", Some(&secret)).await;
    let (tokens, old_nonce) = code_flow(&server, &rp, &browser, EMAIL, &[]).await;
    let old_token = tokens.id_token().expect("id_token").clone();
    let old_kid = kid(&old_token.to_string());
    let before = jwks_kids(&server).await;
    assert!(before.contains(&old_kid));

    // `coop-idp keys rotate`, then the server picks the folder up.
    let retention = server.app.config.max_signed_token_ttl_secs();
    let new_kids =
        coop_idp::keys::rotate(&server.app.config.keys_dir, retention, server.clock.now_ms()).expect("rotate");
    assert!(server.app.keys.reload_if_changed().expect("reload"), "the key folder changed");
    let after = jwks_kids(&server).await;
    assert!(after.contains(&old_kid), "old key still published");
    assert!(before.is_subset(&after));
    for k in &new_kids {
        assert!(after.contains(k), "new key {k} published");
        assert!(!before.contains(k));
    }

    // A relying party that re-reads the JWKS verifies both the old token and
    // a new one, signed with the new key.
    let rp = server.rp("platform", Some(&secret)).await;
    old_token.claims(&rp.id_token_verifier(), &old_nonce).expect("old ID token still verifies");
    let (tokens, nonce) = code_flow(&server, &rp, &browser, EMAIL, &[]).await;
    let new_token = tokens.id_token().expect("id_token");
    let new_kid = kid(&new_token.to_string());
    assert_ne!(new_kid, old_kid, "signed with the new key");
    assert!(new_kids.contains(&new_kid));
    new_token.claims(&rp.id_token_verifier(), &nonce).expect("new ID token verifies");

    // Just before the retention ends the old key is still there; after it, gone.
    server.clock.advance_secs(retention - 5);
    assert!(jwks_kids(&server).await.contains(&old_kid), "published until its tokens expired");
    server.clock.advance_secs(10);
    let later = jwks_kids(&server).await;
    assert!(!later.contains(&old_kid), "old key withdrawn after the retention");
    assert!(later.contains(&new_kid), "new key stays");
    assert_eq!(later.len(), new_kids.len(), "only the current keys remain");
}
