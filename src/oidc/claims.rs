//! What the ID token and userinfo say about the user (PRODUCT.md "Claims").

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::accounts::Account;

/// Claim names that each scope releases.
pub fn claims_of_scope(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => &["name", "given_name", "family_name", "updated_at"],
        "email" => &["email", "email_verified"],
        "coop" => &["function", "partner_id", "partner_name", "roles"],
        _ => &[],
    }
}

pub const ALL_CLAIMS: [&str; 11] = [
    "name",
    "given_name",
    "family_name",
    "updated_at",
    "email",
    "email_verified",
    "function",
    "partner_id",
    "partner_name",
    "roles",
    "sub",
];

/// The `claims` request parameter (OIDC Core §5.5), reduced to the names
/// asked for in each place that we can release (`ALL_CLAIMS`, in its order):
/// the others would be ignored anyway, and this is kept until the code is
/// exchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    pub userinfo: Vec<String>,
    pub id_token: Vec<String>,
}

impl ClaimsRequest {
    /// `text` is within its byte bound (`limits.rs`) already.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let value: Value = serde_json::from_str(text).map_err(|_| "claims is not valid JSON")?;
        if super::limits::json_depth(&value) > super::limits::CLAIMS_MAX_DEPTH {
            return Err("claims is nested too deeply (at most 4 levels of objects and arrays)");
        }
        let obj = value.as_object().ok_or("claims must be a JSON object")?;
        let names = |member: &str| -> Result<Vec<String>, &'static str> {
            match obj.get(member) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Object(m)) => {
                    Ok(ALL_CLAIMS.iter().filter(|c| m.contains_key(**c)).map(|c| c.to_string()).collect())
                }
                Some(_) => Err("claims members must be objects"),
            }
        };
        Ok(ClaimsRequest { userinfo: names("userinfo")?, id_token: names("id_token")? })
    }
}

/// The claims released for `scopes` plus the individually requested ones.
pub fn user_claims(account: &Account, roles: &[String], scopes: &[String], requested: &[String]) -> Map<String, Value> {
    let mut wanted: Vec<&str> = scopes.iter().flat_map(|s| claims_of_scope(s).iter().copied()).collect();
    wanted.extend(requested.iter().map(String::as_str));
    let mut out = Map::new();
    for name in wanted {
        if out.contains_key(name) {
            continue;
        }
        let value = match name {
            "name" => json!(account.display_name()),
            "given_name" => json!(account.given_name),
            "family_name" => json!(account.family_name),
            "updated_at" => json!(account.updated_at_ms / 1000),
            "email" => json!(account.email),
            // The address is verified: the activation link was sent to it.
            "email_verified" => json!(true),
            "function" => json!(account.function),
            "partner_id" => match &account.partner_id {
                Some(p) => json!(p),
                None => continue,
            },
            "partner_name" => match &account.partner_name {
                Some(p) => json!(p),
                None => continue,
            },
            "roles" => json!(roles),
            _ => continue,
        };
        out.insert(name.to_string(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::AccountState;
    use crate::store::accounts::Person;

    fn account() -> Account {
        Account {
            id: "sub1".into(),
            person: Person {
                email: "Marie.Dupont@cc-girou.fr".into(),
                given_name: "Marie".into(),
                family_name: "Dupont".into(),
                function: "Coordinatrice CTG".into(),
                partner_id: Some("cc-girou".into()),
                partner_name: Some("CC du Girou".into()),
            },
            state: AccountState::Active,
            updated_at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn each_scope_releases_its_claims_only() {
        let a = account();
        let none = user_claims(&a, &[], &["openid".into()], &[]);
        assert!(none.is_empty());
        let profile = user_claims(&a, &[], &["openid".into(), "profile".into()], &[]);
        assert_eq!(profile["name"], "Marie Dupont");
        assert_eq!(profile["updated_at"], 1_700_000_000);
        assert!(profile.get("email").is_none());
        let coop = user_claims(&a, &["caf_security".into()], &["coop".into()], &[]);
        assert_eq!(coop["partner_id"], "cc-girou");
        assert_eq!(coop["partner_name"], "CC du Girou");
        assert_eq!(coop["function"], "Coordinatrice CTG");
        assert_eq!(coop["roles"], json!(["caf_security"]));
        let email = user_claims(&a, &[], &["email".into()], &[]);
        assert_eq!(email["email"], "Marie.Dupont@cc-girou.fr");
        assert_eq!(email["email_verified"], true);
    }

    #[test]
    fn individually_requested_claims_are_added() {
        let c = user_claims(&account(), &[], &["openid".into()], &["name".into(), "unknown".into()]);
        assert_eq!(c.len(), 1);
        assert_eq!(c["name"], "Marie Dupont");
    }

    #[test]
    fn claims_parameter_parsing() {
        let r = ClaimsRequest::parse(r#"{"userinfo":{"name":{"essential":true}},"id_token":{"email":null}}"#)
            .expect("claims");
        assert_eq!(r.userinfo, vec!["name"]);
        assert_eq!(r.id_token, vec!["email"]);
        assert!(ClaimsRequest::parse("not json").is_err());
        assert!(ClaimsRequest::parse("[1]").is_err());
        assert!(ClaimsRequest::parse(r#"{"userinfo":3}"#).is_err());
    }

    #[test]
    fn claims_parameter_is_reduced_to_known_names_and_bounded_in_depth() {
        let r = ClaimsRequest::parse(r#"{"userinfo":{"x-unknown":null,"email":null,"name":null,"email":null}}"#)
            .expect("claims");
        assert_eq!(r.userinfo, vec!["name", "email"], "known names only, once, in ALL_CLAIMS order");
        let four = r#"{"userinfo":{"name":{"values":["a"]}}}"#;
        assert!(ClaimsRequest::parse(four).is_ok());
        let five = r#"{"userinfo":{"name":{"values":[["a"]]}}}"#;
        assert!(ClaimsRequest::parse(five).is_err());
        assert!(
            format!("{:?}", ClaimsRequest::parse(five)).contains(&super::super::limits::CLAIMS_MAX_DEPTH.to_string())
        );
    }
}
