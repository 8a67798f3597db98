//! Random secrets, their hashes and constant-time comparison.
//!
//! Every code, token and link secret is 256 bits from the OS generator and is
//! stored only as its SHA-256: high-entropy secrets need no slow hash.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// 256 random bits, base64url without padding (43 characters).
pub fn random_token() -> String {
    random_b64(32)
}

/// `n` random bytes, base64url without padding.
pub fn random_b64(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS generator failing is not recoverable: nothing secret can be made.
    aws_lc_rs::rand::fill(&mut buf).expect("operating system random generator");
    URL_SAFE_NO_PAD.encode(buf)
}

/// What the database stores in place of a secret.
pub fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, secret.as_bytes()))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

pub fn sha512(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA512, data).as_ref().to_vec()
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(data: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(data).ok()
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(b64url_decode(&a).map(|v| v.len()), Some(32));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_stable_and_not_the_secret() {
        let t = random_token();
        assert_eq!(hash_secret(&t), hash_secret(&t));
        assert_ne!(hash_secret(&t), t);
        assert_ne!(hash_secret("a"), hash_secret("b"));
    }

    #[test]
    fn constant_time_eq_both_sides() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
