//! RFC 7636 with S256 only (RFC 9700 §2.1.1: PKCE for every client).

use crate::crypto::{b64url, constant_time_eq, sha256};

/// A `code_challenge` as sent with the authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Accepts `method` S256 only; an absent method means `plain`, refused.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, &'static str> {
        let challenge = challenge.ok_or("code_challenge is required (PKCE, S256)")?;
        match method {
            Some("S256") => {}
            Some(_) | None => return Err("code_challenge_method must be S256"),
        }
        // base64url of a SHA-256: exactly 43 characters.
        if challenge.len() != 43 || !challenge.bytes().all(is_b64url) {
            return Err("code_challenge is not a base64url SHA-256");
        }
        Ok(CodeChallenge(challenge.to_string()))
    }

    pub fn from_stored(s: String) -> Self {
        CodeChallenge(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn verify(&self, verifier: &CodeVerifier) -> bool {
        constant_time_eq(b64url(&sha256(verifier.0.as_bytes())).as_bytes(), self.0.as_bytes())
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A `code_verifier`: 43 to 128 unreserved characters (RFC 7636 §4.1).
#[derive(Debug, Clone)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (43..=128).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        ok.then(|| CodeVerifier(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn s256_accepted_with_rfc_example() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).expect("S256");
        assert!(c.verify(&CodeVerifier::parse(VERIFIER).expect("verifier")));
        let other = CodeVerifier::parse(&"a".repeat(43)).expect("verifier");
        assert!(!c.verify(&other));
    }

    #[test]
    fn plain_and_missing_refused() {
        assert!(CodeChallenge::parse(Some(CHALLENGE), Some("plain")).is_err());
        assert!(CodeChallenge::parse(Some(CHALLENGE), None).is_err());
        assert!(CodeChallenge::parse(None, Some("S256")).is_err());
        assert!(CodeChallenge::parse(Some("short"), Some("S256")).is_err());
    }

    #[test]
    fn verifier_length_bounds() {
        assert!(CodeVerifier::parse(&"a".repeat(42)).is_none());
        assert!(CodeVerifier::parse(&"a".repeat(43)).is_some());
        assert!(CodeVerifier::parse(&"a".repeat(128)).is_some());
        assert!(CodeVerifier::parse(&"a".repeat(129)).is_none());
        assert!(CodeVerifier::parse(&format!("{}+", "a".repeat(43))).is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}", m in "\\PC{0,10}") {
            let _ = CodeChallenge::parse(Some(&s), Some(&m));
            let _ = CodeVerifier::parse(&s);
        }
    }
}
