//! Domain errors. They are mapped to HTTP responses in one place
//! (`web::error`), and to messages and exit codes in `cli`.

use crate::keys::KeyError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A failure of a domain module (password hashing, the TOTP vault…),
    /// converted where its type is defined so that this module imports
    /// nothing above it.
    #[error(transparent)]
    Failure(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Invalid(String),
}

impl AppError {
    /// See `StoreError::is_second_use`.
    pub fn is_second_use(&self) -> bool {
        matches!(self, AppError::Store(e) if e.is_second_use())
    }

    /// See `StoreError::is_session_gone`.
    pub fn is_session_gone(&self) -> bool {
        matches!(self, AppError::Store(e) if e.is_session_gone())
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// `failure_from!(E)`: `E` converts into [`AppError::Failure`]; written
/// where `E` is defined, so that this module imports nothing above it.
#[macro_export]
macro_rules! failure_from {
    ($error:ty) => {
        impl From<$error> for $crate::error::AppError {
            fn from(e: $error) -> Self {
                $crate::error::AppError::Failure(Box::new(e))
            }
        }
    };
}
