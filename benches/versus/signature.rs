//! The physical limit of the RS256 SSO round trip: each round trip signs one
//! ID token with RSA-2048, so no deployment on these cores can go faster
//! than cores ÷ the time of one signature.

use std::time::Instant;

use coop_idp::keys::{ID_TOKEN_TYP, KeyManager};
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::BenchResult;

const SIGNATURES: usize = 51;
const WARM_UP: usize = 5;

/// Median time of one RS256 ID-token signature, ms, timed the way the server
/// signs: `KeySet::sign` (src/keys.rs), that is aws-lc-rs's RSA PKCS#1 v1.5
/// SHA-256 over a key parsed once, on a freshly generated key of the
/// server's size, over the claims of a typical ID token (src/oidc/token.rs).
pub fn rs256_signature_ms() -> BenchResult<f64> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let now = coop_idp::clock::Clock::system().now_ms();
    let keys = KeyManager::open(&dir.path().join("keys"), 86_400, now).map_err(|e| format!("keys: {e}"))?;
    let set = keys.current();
    let now_secs = now / 1000;
    let claims = json!({
        "iss": "http://localhost:8080",
        "sub": "0f6a8c1e-4b7d-4c2a-9e3f-5d1b2a7c8e90",
        "aud": "bench-rs256",
        "azp": "bench-rs256",
        "iat": now_secs,
        "exp": now_secs + 600,
        "auth_time": now_secs - 30,
        "amr": ["pwd"],
        "acr": "urn:coop-idp:pwd",
        "sid": "Yk3q9r0bW1n2Z5xJ8cV4tL7hQ6pD0sAe",
        "at_hash": "x4Qm1Zk7b0Yp2Rt9Wn5Lhg",
        "email": "marie.dupont@cc-girou.fr",
        "email_verified": true,
        "given_name": "Marie",
        "family_name": "Dupont",
        "name": "Marie Dupont",
    });
    let mut times = Vec::with_capacity(SIGNATURES);
    for i in 0..WARM_UP + SIGNATURES {
        let t = Instant::now();
        let token = set.sign(Algorithm::RS256, ID_TOKEN_TYP, &claims).map_err(|e| format!("signing: {e}"))?;
        let took = t.elapsed().as_secs_f64() * 1000.0;
        std::hint::black_box(token);
        if i >= WARM_UP {
            times.push(took);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
