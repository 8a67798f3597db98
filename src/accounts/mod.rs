//! Accounts: who may sign in, identified by a professional email address.

mod email;
pub mod invite;

pub use email::{EmailError, ProfessionalEmail};

use crate::store::AccountRow;

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
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub function: String,
    pub partner_id: Option<String>,
    pub partner_name: Option<String>,
    pub state: AccountState,
    pub updated_at_ms: i64,
}

impl Account {
    pub fn from_row(row: &AccountRow) -> Self {
        Account {
            id: row.id.clone(),
            email: row.email.clone(),
            given_name: row.given_name.clone(),
            family_name: row.family_name.clone(),
            function: row.function.clone(),
            partner_id: row.partner_id.clone(),
            partner_name: row.partner_name.clone(),
            state: AccountState::parse(&row.state).unwrap_or(AccountState::Closed),
            updated_at_ms: row.updated_at,
        }
    }

    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name).trim().to_string()
    }
}

/// A new opaque subject identifier: 128 random bits.
pub fn new_subject() -> String {
    crate::crypto::random_b64(16)
}
