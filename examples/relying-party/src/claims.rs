//! What the relying party prints: every claim, as sent. The openidconnect
//! crate's standard claim types drop the claims they do not know
//! (`function`, `partner_id`, `partner_name`, `roles`, `sid`…), so the ID
//! token's payload and the userinfo answer are printed as raw JSON, after the
//! crate has verified the token. The server's test suite includes this file
//! (tests/oidc/quick_start.rs) to check that those claims are printed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The claims of a compact JWT (its middle part), as JSON. The signature is
/// not checked here: the caller has verified the token already.
pub fn id_token_payload(jwt: &str) -> Result<Value, String> {
    let payload = jwt.split('.').nth(1).ok_or("the ID token is not a compact JWT")?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|e| format!("ID token payload: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("ID token payload: {e}"))
}

/// The report printed at the end: the ID token's claims, then userinfo's.
pub fn render(id_token_claims: &Value, userinfo: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    format!("ID token verified; claims:\n{}\n\nuserinfo:\n{}\n", pretty(id_token_claims), pretty(userinfo))
}
