//! Domain errors. They are mapped to HTTP responses in one place
//! (`web::error`), and to messages and exit codes in `cli`.

use crate::auth::password::HashError;
use crate::keys::KeyError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Vault(#[from] crate::auth::vault::VaultError),
    #[error("{0}")]
    Invalid(String),
}

impl AppError {
    /// See `StoreError::is_second_use`.
    pub fn is_second_use(&self) -> bool {
        matches!(self, AppError::Store(e) if e.is_second_use())
    }
}

pub type AppResult<T> = Result<T, AppError>;
