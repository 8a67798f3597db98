//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA-1,
//! 6 digits, 30-second steps, one step of drift either way — the profile
//! every authenticator app reads from an `otpauth://` QR code.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::clock::Millis;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps of clock drift accepted either side of the current one.
pub const DRIFT_STEPS: i64 = 1;
/// 160-bit secrets, the size of the SHA-1 output (RFC 4226 §4).
pub const SECRET_BYTES: usize = 20;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh random secret, base32 (RFC 4648, no padding) as apps expect.
pub fn new_secret() -> String {
    let mut buf = [0u8; SECRET_BYTES];
    // The OS generator failing is not recoverable: nothing secret can be made.
    aws_lc_rs::rand::fill(&mut buf).expect("operating system random generator");
    base32_encode(&buf)
}

pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes base32, ignoring case, spaces and padding; `None` on any other
/// character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = BASE32.iter().position(|&x| x as char == c.to_ascii_uppercase())? as u32;
        acc = ((acc << 5) | v) & 0xFFFF;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The step a time falls in.
pub fn step_at(now_ms: Millis) -> i64 {
    now_ms.div_euclid(STEP_SECS * 1000)
}

/// HOTP value of `counter` (RFC 4226 §5.3), zero-padded to 6 digits.
pub fn hotp(secret: &[u8], counter: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(mac[offset]) & 0x7f) << 24
        | u32::from(mac[offset + 1]) << 16
        | u32::from(mac[offset + 2]) << 8
        | u32::from(mac[offset + 3]);
    format!("{:0width$}", bin % 10u32.pow(DIGITS), width = DIGITS as usize)
}

/// The code an app shows at `now_ms` for a base32 secret.
pub fn code_at(secret_b32: &str, now_ms: Millis) -> Option<String> {
    Some(hotp(&base32_decode(secret_b32)?, step_at(now_ms)))
}

/// The step a submitted code belongs to, if it is the code of the current
/// step or of one step either side and that step is later than
/// `last_step` (each code is accepted once). Spaces in the input are
/// ignored; the comparison is constant-time.
pub fn verify(secret_b32: &str, submitted: &str, now_ms: Millis, last_step: i64) -> Option<i64> {
    let code: String = submitted.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secret = base32_decode(secret_b32)?;
    let now = step_at(now_ms);
    (now - DRIFT_STEPS..=now + DRIFT_STEPS)
        .filter(|s| *s > last_step)
        .find(|s| crate::crypto::constant_time_eq(hotp(&secret, *s).as_bytes(), code.as_bytes()))
}

/// The `otpauth://` URI of the Key Uri Format that authenticator apps read.
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20");
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={}&period={}",
        enc(issuer),
        enc(account),
        secret_b32,
        enc(issuer),
        DIGITS,
        STEP_SECS
    )
}

/// The QR code of `text` as an SVG `data:` URI for an `<img>` (the page's
/// content security policy admits `data:` images, and no script is needed).
pub fn qr_data_uri(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).ok()?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build();
    Some(format!("data:image/svg+xml;base64,{}", STANDARD.encode(svg)))
}

/// The secret grouped by four for reading and typing.
pub fn grouped(secret_b32: &str) -> String {
    secret_b32.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8-digit values; their last 6 digits are
    /// the 6-digit codes, since both are the same number modulo 10^6).
    #[test]
    fn rfc6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, expected8) in [
            (59i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(hotp(secret, step_at(t * 1000)), expected8[2..], "t = {t}");
        }
    }

    #[test]
    fn base32_round_trip_and_rfc4648_vector() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("mzxw 6ytb oi======"), Some(b"foobar".to_vec()));
        assert_eq!(base32_decode("MZ1W"), None);
        let s = new_secret();
        assert_eq!(s.len(), 32);
        assert_eq!(base32_decode(&s).map(|v| v.len()), Some(SECRET_BYTES));
    }

    #[test]
    fn one_step_of_drift_each_way_and_never_twice() {
        let s = base32_encode(b"12345678901234567890");
        let now = 1_111_111_111_000;
        let step = step_at(now);
        let current = hotp(b"12345678901234567890", step);
        let before = hotp(b"12345678901234567890", step - 1);
        let after = hotp(b"12345678901234567890", step + 1);
        let too_old = hotp(b"12345678901234567890", step - 2);
        assert_eq!(verify(&s, &current, now, 0), Some(step));
        assert_eq!(verify(&s, &before, now, 0), Some(step - 1));
        assert_eq!(verify(&s, &after, now, 0), Some(step + 1));
        assert_eq!(verify(&s, &too_old, now, 0), None);
        // Replay: the step was already used.
        assert_eq!(verify(&s, &current, now, step), None);
        assert_eq!(verify(&s, "12345", now, 0), None);
        assert_eq!(verify(&s, "abcdef", now, 0), None);
    }

    #[test]
    fn qr_code_and_uri() {
        let uri = otpauth_uri("Coopération", "rssi@caf.fr", "JBSWY3DPEHPK3PXP");
        assert!(uri.starts_with("otpauth://totp/Coop%C3%A9ration:rssi%40caf.fr?secret=JBSWY3DPEHPK3PXP"), "{uri}");
        assert!(qr_data_uri(&uri).is_some_and(|d| d.starts_with("data:image/svg+xml;base64,")));
    }
}
