//! Accounts: who may sign in, identified by a professional email address.

pub mod directory;
mod email;

pub use email::{EmailError, ProfessionalEmail};

use crate::clock::Millis;
use crate::store::accounts::{AccountRow, Person};
use crate::store::partners::PartnerRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// Access opened, password not yet created.
    Pending,
    Active,
    Closed,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Pending => "pending",
            AccountState::Active => "active",
            AccountState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(AccountState::Pending),
            "active" => Some(AccountState::Active),
            "closed" => Some(AccountState::Closed),
            _ => None,
        }
    }
}

/// What the ID token and userinfo say about an account.
#[derive(Debug, Clone)]
pub struct Account {
    /// The stable, opaque subject (`sub`); never the email.
    pub id: String,
    pub person: Person,
    pub state: AccountState,
    pub updated_at_ms: i64,
}

crate::store::accounts::derefs_to_person!(Account);

impl Account {
    pub fn from_row(row: &AccountRow) -> Self {
        Account {
            id: row.id.clone(),
            person: row.person.clone(),
            state: AccountState::parse(&row.state).unwrap_or(AccountState::Closed),
            updated_at_ms: row.updated_at,
        }
    }

    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name).trim().to_string()
    }
}

/// A new `pending` account (no password yet), as it is inserted and as its
/// activation link reads it; `now` dates its creation.
pub fn pending_row(
    id: String,
    email: &ProfessionalEmail,
    names: Names<'_>,
    partner: Option<&PartnerRow>,
    now: Millis,
) -> AccountRow {
    AccountRow {
        id,
        email_normalized: email.normalized().to_string(),
        person: Person {
            email: email.as_str().to_string(),
            given_name: names.given_name.to_string(),
            family_name: names.family_name.to_string(),
            function: names.function.to_string(),
            partner_id: partner.map(|p| p.id.clone()),
            partner_name: partner.map(|p| p.name.clone()),
        },
        state: AccountState::Pending.as_str().to_string(),
        password_hash: None,
        created_at: now,
        updated_at: now,
    }
}

/// What an access shows of its holder. Typed values go through
/// [`Names::parse`]; the annex-1 parser hands them over already cleaned.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub function: &'a str,
}

impl<'a> Names<'a> {
    pub fn parse(given_name: &'a str, family_name: &'a str, function: &'a str) -> Result<Self, NameError> {
        Ok(Names {
            given_name: checked_name("prénom / given name", given_name)?,
            family_name: checked_name("nom / family name", family_name)?,
            function: checked_name("fonction / function", function)?,
        })
    }
}

/// A name, first name or function, trimmed, holding 1 to 200 bytes (the
/// forms and the annexes hold short texts; a longer one is a paste gone
/// wrong).
pub fn checked_name<'a>(field: &'static str, value: &'a str) -> Result<&'a str, NameError> {
    let value = value.trim();
    if value.is_empty() || value.len() > 200 { Err(NameError { field }) } else { Ok(value) }
}

/// `field` names the value in the user's words (« prénom / given name »).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} : 1 à 200 caractères / must hold 1 to 200 characters")]
pub struct NameError {
    pub field: &'static str,
}

/// A new opaque subject identifier: 128 random bits.
pub fn new_subject() -> String {
    crate::crypto::random_b64(16)
}
