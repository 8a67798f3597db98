//! The compact form of an authorization request parked while its user signs
//! in: what anyone can make the server store, so only what the code will
//! need, each field bounded (`limits.rs`), nothing written as sent that the
//! server can rebuild.
//!
//! One line of fields separated by U+001F (the unit separator, which no kept
//! string may hold, so nothing is escaped), in this order:
//!
//! | # | field | form |
//! |---|---|---|
//! | 0 | format | `1` |
//! | 1 | redirect URI | its index among the client's registered URIs |
//! | 2, 3 | state, nonce | as sent, empty when absent |
//! | 4 | code challenge | 43 characters |
//! | 5, 6 | scopes, prompt | bit sets over `SUPPORTED_SCOPES`, `PROMPT_VALUES` |
//! | 7 | max_age | decimal, empty when absent |
//! | 8 | the `sub` of `id_token_hint` | empty when absent |
//! | 9 | login_hint | as sent, empty when absent |
//! | 10 | ui_locales | the first tag we have a language for (`fr`, `en`) |
//! | 11, 12 | claims for userinfo, for the ID token | bit sets over `ALL_CLAIMS`, both empty without `claims` |
//! | 13 | acr_values | bit set over `ACR_VALUES_SUPPORTED` |
//!
//! A request parked by another format (an older version) does not decode
//! and is answered as expired: its user starts again.

use super::authorize::AuthorizationRequest;
use super::claims::{ALL_CLAIMS, ClaimsRequest};
use super::clients::Client;
use super::{ACR_VALUES_SUPPORTED, PROMPT_VALUES, SUPPORTED_SCOPES};

const FORMAT: &str = "1";
const SEP: char = '\u{1f}';
const FIELDS: usize = 14;

/// The most bytes of the compact form, every field at its bound; computed
/// in the tests below and stated in README "Input limits".
pub const MAX_ENCODED_BYTES: usize = 916;

/// The names of `table` that `names` holds, in the table's order and once
/// each; the others are dropped.
pub fn known_subset(names: &[String], table: &[&str]) -> Vec<String> {
    table.iter().filter(|t| names.iter().any(|n| n == *t)).map(|t| t.to_string()).collect()
}

fn bits(names: &[String], table: &[&str]) -> u32 {
    table.iter().enumerate().filter(|(_, t)| names.iter().any(|n| n == *t)).fold(0, |acc, (i, _)| acc | 1 << i)
}

fn names(bits: u32, table: &[&str]) -> Option<Vec<String>> {
    if table.len() < 32 && bits >> table.len() != 0 {
        return None;
    }
    Some(table.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, t)| t.to_string()).collect())
}

/// The compact form; `None` if the request names a redirect URI the client
/// does not have, or a kept string holds the separator (validation rules
/// both out first).
pub fn encode(request: &AuthorizationRequest, client: &Client) -> Option<String> {
    let index = client.redirect_uris.iter().position(|u| *u == request.redirect_uri)?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (userinfo, id_token) = match &request.claims {
        Some(c) => (bits(&c.userinfo, &ALL_CLAIMS).to_string(), bits(&c.id_token, &ALL_CLAIMS).to_string()),
        None => (String::new(), String::new()),
    };
    let fields = [
        FORMAT.to_string(),
        index.to_string(),
        text(&request.state),
        text(&request.nonce),
        request.code_challenge.clone(),
        bits(&request.scopes, &SUPPORTED_SCOPES).to_string(),
        bits(&request.prompt, &PROMPT_VALUES).to_string(),
        request.max_age.map(|m| m.to_string()).unwrap_or_default(),
        text(&request.id_token_hint_sub),
        text(&request.login_hint),
        text(&request.ui_locale),
        userinfo,
        id_token,
        bits(&request.acr_values, &ACR_VALUES_SUPPORTED).to_string(),
    ];
    if fields.iter().any(|f| f.contains(SEP)) {
        return None;
    }
    Some(fields.join(&SEP.to_string()))
}

/// The request back, for `client`; `None` for anything that `encode` did
/// not write (another format, a redirect URI the client no longer has).
pub fn decode(text: &str, client: &Client) -> Option<AuthorizationRequest> {
    let f: Vec<&str> = text.split(SEP).collect();
    if f.len() != FIELDS || f[0] != FORMAT {
        return None;
    }
    let optional = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let set = |s: &str, table: &[&str]| names(s.parse().ok()?, table);
    let claims = match (f[11], f[12]) {
        ("", "") => None,
        (u, i) => Some(ClaimsRequest { userinfo: set(u, &ALL_CLAIMS)?, id_token: set(i, &ALL_CLAIMS)? }),
    };
    Some(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: client.redirect_uris.get(f[1].parse::<usize>().ok()?)?.clone(),
        state: optional(f[2]),
        nonce: optional(f[3]),
        code_challenge: f[4].to_string(),
        scopes: set(f[5], &SUPPORTED_SCOPES)?,
        prompt: set(f[6], &PROMPT_VALUES)?,
        max_age: match f[7] {
            "" => None,
            m => Some(m.parse().ok()?),
        },
        id_token_hint_sub: optional(f[8]),
        login_hint: optional(f[9]),
        ui_locale: optional(f[10]),
        claims,
        acr_values: set(f[13], &ACR_VALUES_SUPPORTED)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::limits::{MAX_HINT_SUB_BYTES, bound_of};
    use crate::store::clients::ClientRow;
    use proptest::prelude::*;

    fn client(uris: usize) -> Client {
        Client::from_row(ClientRow {
            id: "platform".into(),
            name: "Platform".into(),
            secret_hash: None,
            auth_method: "none".into(),
            redirect_uris: (0..uris).map(|i| format!("https://rp.example.fr/cb{i}")).collect(),
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            id_token_alg: "RS256".into(),
            jwks: None,
        })
        .expect("client")
    }

    fn max(name: &str) -> usize {
        bound_of(name).expect("bound").max_bytes
    }

    /// Every field at its bound; sixteen URIs (what `client add` allows)
    /// make a two-digit index.
    fn largest(c: &Client) -> AuthorizationRequest {
        let all = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AuthorizationRequest {
            client_id: c.id.clone(),
            redirect_uri: c.redirect_uris[15].clone(),
            state: Some("s".repeat(max("state"))),
            nonce: Some("n".repeat(max("nonce"))),
            code_challenge: "c".repeat(43),
            scopes: all(&SUPPORTED_SCOPES),
            // `none` cannot be combined.
            prompt: all(&PROMPT_VALUES[1..]),
            max_age: Some(9_999_999_999),
            id_token_hint_sub: Some("u".repeat(MAX_HINT_SUB_BYTES)),
            login_hint: Some("l".repeat(max("login_hint"))),
            ui_locale: Some("en".into()),
            claims: Some(ClaimsRequest { userinfo: all(&ALL_CLAIMS), id_token: all(&ALL_CLAIMS) }),
            acr_values: all(&ACR_VALUES_SUPPORTED),
        }
    }

    #[test]
    fn the_largest_request_is_the_documented_size_and_comes_back() {
        let c = client(16);
        let r = largest(&c);
        let text = encode(&r, &c).expect("encoded");
        assert_eq!(text.len(), MAX_ENCODED_BYTES);
        assert_eq!(decode(&text, &c), Some(r));
    }

    #[test]
    fn a_typical_request_is_small() {
        let c = client(1);
        let mut r = largest(&client(16));
        r.redirect_uri = c.redirect_uris[0].clone();
        r.state = Some("x".repeat(43));
        r.nonce = Some("y".repeat(43));
        r.scopes = vec!["openid".into(), "profile".into(), "email".into()];
        (r.prompt, r.max_age, r.id_token_hint_sub, r.login_hint, r.ui_locale, r.claims) =
            (vec![], None, None, None, None, None);
        r.acr_values = vec![];
        let text = encode(&r, &c).expect("encoded");
        assert!(text.len() <= 150, "{} bytes", text.len());
        assert_eq!(decode(&text, &c), Some(r));
    }

    #[test]
    fn what_encode_did_not_write_does_not_decode() {
        let c = client(2);
        let text = encode(&largest(&client(16)), &client(16)).expect("encoded");
        assert_eq!(decode(&text, &c), None, "index 15 of a client with two URIs");
        assert_eq!(decode(r#"{"client_id":"platform"}"#, &c), None, "the JSON of earlier versions");
        let mut r = largest(&client(16));
        r.redirect_uri = "https://elsewhere.example/cb".into();
        assert_eq!(encode(&r, &client(16)), None);
        r.redirect_uri = client(16).redirect_uris[0].clone();
        r.state = Some(format!("a{SEP}b"));
        assert_eq!(encode(&r, &client(16)), None);
        let bad_bits = format!("1{SEP}0{SEP}{SEP}{SEP}c{SEP}32{SEP}0{SEP}{SEP}{SEP}{SEP}{SEP}{SEP}{SEP}0");
        assert_eq!(decode(&bad_bits, &c), None, "a scope bit beyond the table");
    }

    #[test]
    fn subsets_keep_table_order_once() {
        let names = ["consent", "x", "login", "login"].map(String::from);
        assert_eq!(known_subset(&names, &PROMPT_VALUES), vec!["login", "consent"]);
        assert_eq!(bits(&names, &PROMPT_VALUES), 0b0110);
        assert_eq!(self::names(0b0110, &PROMPT_VALUES), Some(vec!["login".into(), "consent".into()]));
        assert_eq!(self::names(0b10000, &PROMPT_VALUES), None);
    }

    fn subset_of(table: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        proptest::sample::subsequence(table.to_vec(), 0..=table.len())
            .prop_map(|v| v.into_iter().map(String::from).collect())
    }

    /// Up to `max` bytes, some of them two-byte characters.
    fn kept_text(max: usize) -> impl Strategy<Value = Option<String>> {
        let ascii = proptest::string::string_regex(&format!("[ -~]{{1,{max}}}")).expect("regex");
        let accented = proptest::string::string_regex(&format!("[ -~é]{{1,{}}}", max / 2)).expect("regex");
        proptest::option::of(prop_oneof![ascii, accented])
    }

    prop_compose! {
        fn request()(
            index in 0usize..16,
            state in kept_text(512),
            nonce in kept_text(128),
            scopes in subset_of(&SUPPORTED_SCOPES),
            prompt in subset_of(&PROMPT_VALUES),
            max_age in proptest::option::of(0i64..10_000_000_000),
            sub in proptest::option::of("[A-Za-z0-9_-]{1,64}"),
            login_hint in kept_text(128),
            ui_locale in proptest::option::of(proptest::sample::select(vec!["fr".to_string(), "en".to_string()])),
            claims in proptest::option::of((subset_of(&ALL_CLAIMS), subset_of(&ALL_CLAIMS))),
            acr_values in subset_of(&ACR_VALUES_SUPPORTED),
        ) -> AuthorizationRequest {
            AuthorizationRequest {
                client_id: "platform".into(),
                redirect_uri: format!("https://rp.example.fr/cb{index}"),
                state, nonce, scopes, prompt, max_age,
                code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
                id_token_hint_sub: sub, login_hint, ui_locale,
                claims: claims.map(|(userinfo, id_token)| ClaimsRequest { userinfo, id_token }),
                acr_values,
            }
        }
    }

    proptest! {
        #[test]
        fn every_valid_request_comes_back_within_the_bound(r in request()) {
            let c = client(16);
            let text = encode(&r, &c).expect("encoded");
            prop_assert!(text.len() <= MAX_ENCODED_BYTES);
            prop_assert_eq!(decode(&text, &c), Some(r));
        }

        #[test]
        fn decoding_anything_never_panics(text in "(\\PC|\\x1f){0,300}", digits in "[0-9]{0,25}") {
            let c = client(3);
            let _ = decode(&text, &c);
            let fields: Vec<&str> = std::iter::repeat_n(digits.as_str(), FIELDS).collect();
            let _ = decode(&format!("1{SEP}{}", fields[1..].join(&SEP.to_string())), &c);
        }
    }
}
