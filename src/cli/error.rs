//! Why a command failed, and its exit status (README "Command line"):
//! 0 success; 2 input refused (as clap refuses a bad option: a value, a
//! file, or a request the rules forbid); 1 the work failed (database, I/O,
//! keys, an internal error).

use std::io::ErrorKind;
use std::process::ExitCode;

use crate::admin::AdminError;
use crate::audit::query::QueryError;
use crate::config::ConfigError;
use crate::error::AppError;
use crate::keys::KeyError;
use crate::store::{StoreError, transfer::TransferError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Input the command refuses, found by the command itself.
    #[error("{0}")]
    BadInput(String),
    /// A name the database does not hold, found by the command itself.
    #[error("{0}")]
    NotFound(String),
    /// Work that could not be done, found by the command itself.
    #[error("{0}")]
    Failure(String),
    /// A file or folder named on the command line, with what names it.
    #[error("{what}: {source}")]
    File { what: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::App(e.into())
    }
}

/// The exit status of a command that succeeded.
pub const SUCCESS: u8 = 0;
/// The work failed.
pub const FAILURE: u8 = 1;
/// The input was refused; clap's own usage errors exit with it too.
pub const BAD_INPUT: u8 = 2;

impl CliError {
    /// A file named by `what` (an option, or the path itself) that could not
    /// be read or written.
    pub fn file(what: impl std::fmt::Display, source: std::io::Error) -> Self {
        CliError::File { what: what.to_string(), source }
    }

    /// The one mapping of errors to exit statuses.
    pub fn exit_status(&self) -> u8 {
        let bad_input = match self {
            CliError::BadInput(_) | CliError::NotFound(_) | CliError::Config(_) => true,
            CliError::Failure(_) | CliError::Keys(_) => false,
            // A path that is not there, or not for us: the user's to fix.
            CliError::File { source, .. } => matches!(
                source.kind(),
                ErrorKind::NotFound
                    | ErrorKind::PermissionDenied
                    | ErrorKind::AlreadyExists
                    | ErrorKind::IsADirectory
                    | ErrorKind::NotADirectory
                    | ErrorKind::InvalidInput
                    | ErrorKind::InvalidData
            ),
            CliError::App(e) => app_refused(e),
            CliError::Admin(AdminError::App(e)) => app_refused(e),
            // Unknown role or account, no partner, closed, not pending, already bootstrapped.
            CliError::Admin(_) => true,
            CliError::Query(QueryError::Internal(e)) => app_refused(e),
            CliError::Query(_) => true,
            CliError::Transfer(TransferError::Store(e)) => store_refused(e),
            CliError::Transfer(TransferError::Io(_)) => false,
            // A malformed file, a database not empty, another version's file.
            CliError::Transfer(_) => true,
        };
        if bad_input { BAD_INPUT } else { FAILURE }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }

    /// A partner, account, client or link the database does not hold: the
    /// message then names the database searched (see `cli::main`). The
    /// domain words these refusals as plain text; their words are matched.
    pub fn is_not_found(&self) -> bool {
        const WORDS: [&str; 5] =
            ["unknown partner", "unknown account", "no account for", "unknown client", "no live link"];
        let said = |m: &str| WORDS.iter().any(|w| m.contains(w));
        match self {
            CliError::NotFound(_) => true,
            CliError::Admin(AdminError::UnknownAccount(_) | AdminError::UnknownPartner(_)) => true,
            CliError::Query(QueryError::UnknownPartner { .. }) => true,
            CliError::App(AppError::Invalid(m)) | CliError::Admin(AdminError::App(AppError::Invalid(m))) => said(m),
            _ => false,
        }
    }
}

/// A domain refusal (a rule, an unknown name) as opposed to a failure.
fn app_refused(e: &AppError) -> bool {
    match e {
        AppError::Invalid(_) => true,
        AppError::Store(e) => store_refused(e),
        AppError::Keys(_) | AppError::Failure(_) => false,
    }
}

/// Only "already exists" is the input's doing.
fn store_refused(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "test")
    }

    #[test]
    fn refused_input_exits_2() {
        let refused = [
            CliError::BadInput("--transmitted".into()),
            CliError::Config(ConfigError::Invalid { key: "listen".into(), reason: "x".into() }),
            CliError::App(AppError::Invalid("unknown partner".into())),
            CliError::App(AppError::Store(StoreError::Conflict("partner".into()))),
            CliError::Admin(AdminError::UnknownRole("superuser".into())),
            CliError::Admin(AdminError::UnknownAccount("personne@caf.fr".into())),
            CliError::Admin(AdminError::AlreadyBootstrapped),
            CliError::Admin(AdminError::App(AppError::Invalid("x".into()))),
            CliError::Query(QueryError::BadIp { value: "203.0.113".into() }),
            CliError::Transfer(TransferError::Format { line: 3, reason: "x".into() }),
            CliError::Transfer(TransferError::NotEmpty { table: "accounts".into(), rows: 1 }),
            CliError::file("--jwks jwks.json", io(ErrorKind::NotFound)),
            CliError::file("export.jsonl", io(ErrorKind::AlreadyExists)),
        ];
        for e in refused {
            assert_eq!(e.exit_status(), BAD_INPUT, "{e:?}");
        }
    }

    #[test]
    fn failed_work_exits_1() {
        let failed = [
            CliError::Failure("connection log broken at record 3".into()),
            CliError::App(AppError::Store(StoreError::Corrupt("x".into()))),
            CliError::App(AppError::Keys(KeyError::Generation)),
            CliError::Admin(AdminError::App(AppError::Store(StoreError::Corrupt("x".into())))),
            CliError::Query(QueryError::Internal(AppError::Store(StoreError::Corrupt("x".into())))),
            CliError::Transfer(TransferError::Io(io(ErrorKind::BrokenPipe))),
            CliError::Keys(KeyError::Generation),
            CliError::file("attestation.pdf", io(ErrorKind::StorageFull)),
            StoreError::Corrupt("x".into()).into(),
        ];
        for e in failed {
            assert_eq!(e.exit_status(), FAILURE, "{e:?}");
        }
    }

    #[test]
    fn names_not_found_are_told_apart_from_other_refusals() {
        let not_found = [
            CliError::NotFound("unknown partner `x`".into()),
            CliError::App(AppError::Invalid("unknown partner `cc-x`".into())),
            CliError::App(AppError::Invalid("aucun compte pour « a@b.fr » / no account for `a@b.fr`".into())),
            CliError::Admin(AdminError::UnknownAccount("a@b.fr".into())),
            CliError::Admin(AdminError::UnknownPartner("cc-x".into())),
            CliError::Query(QueryError::UnknownPartner { value: "cc-x".into(), known: vec![] }),
        ];
        for e in not_found {
            assert!(e.is_not_found(), "{e:?}");
        }
        let other = [
            CliError::BadInput("--transmitted".into()),
            CliError::App(AppError::Invalid("motif / reason : ne doit pas être vide".into())),
            CliError::Admin(AdminError::UnknownRole("superuser".into())),
            CliError::Failure("x".into()),
        ];
        for e in other {
            assert!(!e.is_not_found(), "{e:?}");
        }
    }

    #[test]
    fn messages_are_the_errors_own() {
        let e = CliError::from(AdminError::UnknownRole("superuser".into()));
        assert!(e.to_string().starts_with("rôle inconnu « superuser »"), "{e}");
        let e = CliError::file("--out /x", io(ErrorKind::PermissionDenied));
        assert_eq!(e.to_string(), "--out /x: test");
    }
}
