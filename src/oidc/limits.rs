//! The bounds of an authorization request, in one table: README "Input
//! limits" → "Authorization requests" lists it.
//!
//! Lengths are bytes of the decoded value. Anyone can send a request, and
//! what a request carries may be parked in the database until its user
//! signs in (`parked.rs`), so nothing is read, let alone kept, without a
//! bound. A parameter the endpoint does not read is only counted in the
//! whole request's bound.

use super::Params;

/// Characters a parameter may hold, besides the syntax its own step checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// The parameter's own step checks its syntax, or it is not kept.
    Any,
    /// Kept as sent: a control character is never meaningful there, and
    /// the parked form uses one as its separator.
    NoControl,
    /// RFC 6749 appendix A.5 (`%x20-7E`), which also rules out control
    /// characters.
    Vschar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub name: &'static str,
    pub max_bytes: usize,
    /// Space-separated lists: the most values.
    pub max_values: Option<usize>,
    pub charset: Charset,
}

const fn bound(name: &'static str, max_bytes: usize, max_values: Option<usize>, charset: Charset) -> Bound {
    Bound { name, max_bytes, max_values, charset }
}

/// Every parameter the endpoint reads. The first two are checked before the
/// client is trusted (an error page); the others are refused with
/// `invalid_request` sent back to the client.
pub const BOUNDS: [Bound; 18] = [
    // As long as `client add` allows.
    bound("client_id", 128, None, Charset::Any),
    // `client add` refuses longer ones. Not kept: a parked request keeps its
    // index among the client's registered URIs.
    bound("redirect_uri", 512, None, Charset::Any),
    // Random states are 22 to 64 characters; room for one that also encodes
    // a short return path.
    bound("state", 512, None, Charset::Vschar),
    // Only `code` is accepted; room for the multi-valued types we refuse by name.
    bound("response_type", 32, None, Charset::Any),
    bound("response_mode", 16, None, Charset::Any),
    bound("scope", 256, Some(16), Charset::Any),
    // RFC 7636 §4.1 caps a verifier (and so a plain challenge) at 128; S256
    // then needs exactly 43.
    bound("code_challenge", 128, None, Charset::Any),
    bound("code_challenge_method", 16, None, Charset::Any),
    // Relying-party libraries send 22 to 115 characters.
    bound("nonce", 128, None, Charset::NoControl),
    // `none`, `login`, `consent`, `select_account`.
    bound("prompt", 64, Some(4), Charset::Any),
    // Seconds; ten digits are three centuries, and keep `max_age * 1000` far
    // from overflowing.
    bound("max_age", 10, None, Charset::Any),
    bound("ui_locales", 128, Some(16), Charset::Any),
    bound("claims_locales", 128, Some(16), Charset::Any),
    // Only prefills the email field; longer addresses are vanishingly rare.
    bound("login_hint", 128, None, Charset::NoControl),
    // Our own ID tokens, with every claim and an RS256 signature, stay
    // under 2 KiB.
    bound("id_token_hint", 4096, None, Charset::Any),
    bound("acr_values", 256, Some(8), Charset::Any),
    // See also `CLAIMS_MAX_DEPTH`.
    bound("claims", 2048, None, Charset::Any),
    // `page`, `popup`, `touch`, `wap`.
    bound("display", 16, None, Charset::Any),
];

/// The whole query string (GET) or body (POST), as sent (percent-encoded):
/// above the sum of the bounds above once encoded, far below the 64 KiB of
/// any body.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Nesting of arrays and objects in `claims`: the deepest meaningful
/// request is `{"userinfo":{"name":{"values":["a"]}}}`, four.
pub const CLAIMS_MAX_DEPTH: usize = 4;

/// Parked requests a source (an IPv4 address, an IPv6 /64) may have
/// waiting at once; past it the oldest is dropped (`authorize::park` says
/// why). Sixty-four leaves room for an office behind one address.
pub const PARKED_PER_SOURCE: i64 = 64;

/// Redirect URIs a client may register (`client add`); with the bound on
/// each, a parked request's index into them stays two digits.
pub const MAX_REDIRECT_URIS: usize = 16;

/// The `sub` of an `id_token_hint`, which a parked request keeps: ours are
/// 22 characters.
pub const MAX_HINT_SUB_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the request is too large (at most {max} bytes)")]
    RequestTooLarge { max: usize },
    #[error("{name} is too long (at most {max} bytes)")]
    TooLong { name: &'static str, max: usize },
    #[error("{name} has too many values (at most {max})")]
    TooManyValues { name: &'static str, max: usize },
    #[error("{name} contains a character it may not hold")]
    BadCharacter { name: &'static str },
}

/// The bound of a parameter (every name in `BOUNDS`).
pub fn bound_of(name: &str) -> Option<&'static Bound> {
    BOUNDS.iter().find(|b| b.name == name)
}

/// Whether `value` keeps within `b`.
pub fn check(b: &Bound, value: &str) -> Result<(), Violation> {
    if value.len() > b.max_bytes {
        return Err(Violation::TooLong { name: b.name, max: b.max_bytes });
    }
    if let Some(max) = b.max_values
        && value.split(' ').filter(|v| !v.is_empty()).count() > max
    {
        return Err(Violation::TooManyValues { name: b.name, max });
    }
    let allowed = match b.charset {
        Charset::Any => true,
        Charset::NoControl => !value.chars().any(char::is_control),
        Charset::Vschar => value.bytes().all(|c| (0x20..=0x7e).contains(&c)),
    };
    if !allowed {
        return Err(Violation::BadCharacter { name: b.name });
    }
    Ok(())
}

/// Whether the named parameter is absent or within its bound.
pub fn within(params: &Params, name: &str) -> bool {
    match (params.get(name), bound_of(name)) {
        (Some(value), Some(b)) => check(b, value).is_ok(),
        _ => true,
    }
}

/// The whole request, then every bounded parameter in table order.
pub fn check_request(params: &Params, raw_bytes: usize) -> Result<(), Violation> {
    if raw_bytes > MAX_REQUEST_BYTES {
        return Err(Violation::RequestTooLarge { max: MAX_REQUEST_BYTES });
    }
    for b in &BOUNDS {
        if let Some(value) = params.get(b.name) {
            check(b, value)?;
        }
    }
    Ok(())
}

/// Nesting depth of arrays and objects (a scalar is 0). `serde_json`
/// refuses more than 128 levels while parsing, so this recursion is short.
pub fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).expect("params")
    }

    #[test]
    fn every_name_is_bounded_once() {
        let mut names: Vec<_> = BOUNDS.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BOUNDS.len());
    }

    #[test]
    fn length_at_the_bound_passes_and_one_byte_more_fails() {
        for b in &BOUNDS {
            let at = "a".repeat(b.max_bytes);
            assert_eq!(check(b, &at), Ok(()), "{}", b.name);
            let over = "a".repeat(b.max_bytes + 1);
            assert_eq!(check(b, &over), Err(Violation::TooLong { name: b.name, max: b.max_bytes }), "{}", b.name);
        }
    }

    #[test]
    fn lengths_are_bytes_not_characters() {
        let b = bound_of("login_hint").expect("bound");
        assert!(check(b, &"é".repeat(64)).is_ok());
        assert!(check(b, &format!("{}a", "é".repeat(64))).is_err());
    }

    #[test]
    fn value_counts_both_sides() {
        let scope = bound_of("scope").expect("bound");
        let sixteen = vec!["a"; 16].join(" ");
        assert_eq!(check(scope, &sixteen), Ok(()));
        assert_eq!(check(scope, &format!("{sixteen} a")), Err(Violation::TooManyValues { name: "scope", max: 16 }));
        // Extra spaces are no values.
        assert_eq!(check(scope, &format!("  {sixteen}   ")), Ok(()));
    }

    #[test]
    fn charsets_both_sides() {
        let state = bound_of("state").expect("bound");
        assert!(check(state, " !~azAZ09\"\\").is_ok());
        for bad in ["a\u{7f}", "a\u{1f}", "é", "a\n"] {
            assert_eq!(check(state, bad), Err(Violation::BadCharacter { name: "state" }), "{bad:?}");
        }
        let nonce = bound_of("nonce").expect("bound");
        assert!(check(nonce, "é ü \"x\"").is_ok());
        for bad in ["a\u{1f}b", "a\u{0}", "a\u{85}"] {
            assert_eq!(check(nonce, bad), Err(Violation::BadCharacter { name: "nonce" }), "{bad:?}");
        }
    }

    #[test]
    fn the_whole_request_is_bounded_first() {
        let p = params(&[("state", "s")]);
        assert_eq!(check_request(&p, MAX_REQUEST_BYTES), Ok(()));
        assert_eq!(
            check_request(&p, MAX_REQUEST_BYTES + 1),
            Err(Violation::RequestTooLarge { max: MAX_REQUEST_BYTES })
        );
        let long_nonce = "n".repeat(129);
        let p = params(&[("nonce", &long_nonce), ("unknown", &"x".repeat(5000))]);
        assert_eq!(check_request(&p, 100), Err(Violation::TooLong { name: "nonce", max: 128 }));
        assert!(!within(&p, "nonce"));
        assert!(within(&p, "state"), "absent is within");
        assert!(within(&p, "unknown"), "unbounded names are the whole request's business");
    }

    #[test]
    fn depth_counts_containers() {
        let depth = |s: &str| json_depth(&serde_json::from_str(s).expect("json"));
        assert_eq!(depth("1"), 0);
        assert_eq!(depth(r#"{"userinfo":{"name":{"essential":true}}}"#), 3);
        assert_eq!(depth(r#"{"userinfo":{"name":{"values":["a"]}}}"#), 4);
        assert_eq!(depth(r#"{"userinfo":{"name":{"values":[["a"]]}}}"#), 5);
        assert_eq!(depth("[[],[[{}]]]"), 4);
    }

    proptest! {
        /// `check` agrees with the plain reading of the table.
        #[test]
        fn check_matches_its_definition(index in 0..BOUNDS.len(), value in "(\\PC|[ \\t\\x00\\x1f\\x7f]){0,600}") {
            let b = &BOUNDS[index];
            let values = value.split(' ').filter(|v| !v.is_empty()).count();
            let chars_ok = match b.charset {
                Charset::Any => true,
                Charset::NoControl => value.chars().all(|c| !c.is_control()),
                Charset::Vschar => value.chars().all(|c| (' '..='~').contains(&c)),
            };
            let expected = value.len() <= b.max_bytes && b.max_values.is_none_or(|m| values <= m) && chars_ok;
            prop_assert_eq!(check(b, &value).is_ok(), expected);
        }
    }
}
