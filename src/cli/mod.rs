//! The command line (PRODUCT.md "Command line"). Commands are thin: they
//! parse arguments into domain calls and print results. `args` holds what
//! users type; one file per group of commands does the work; `open` is the
//! one way a command gets the application; `error` maps every failure to
//! its exit status.

mod accounts;
mod admin;
mod args;
mod error;
mod operations;
mod partners;
mod retention;
mod security;
mod serve;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::app::App;
use crate::clock::Clock;
use crate::config::{Config, LogFormat};

pub use args::Cli;
use args::Command;
pub use error::{BAD_INPUT, CliError, FAILURE, SUCCESS};

pub async fn main() -> ExitCode {
    // Usage errors exit here with clap's status 2, help and version with 0.
    let cli = Cli::parse();
    match Config::load(cli.config.as_deref()).map_err(CliError::from) {
        Ok(config) => {
            init_tracing(config.log_format);
            let database = config.database_shown();
            match run(cli.command, config).await {
                Ok(()) => ExitCode::from(SUCCESS),
                Err(e) if e.is_not_found() => {
                    // A name not found may be a name in another database:
                    // say which one was searched.
                    eprintln!("coop-idp: {e} (base de données / database: {database})");
                    e.exit_code()
                }
                Err(e) => report(e),
            }
        }
        Err(e) => report(e),
    }
}

fn report(e: CliError) -> ExitCode {
    eprintln!("coop-idp: {e}");
    e.exit_code()
}

/// Logs go to stderr; colour codes only when it is a terminal, so that a
/// log file or a journal holds plain text.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("COOP_IDP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn run(command: Command, config: Config) -> Result<(), CliError> {
    match command {
        Command::Serve => serve::serve(config).await,
        Command::Migrate => serve::migrate(config).await,
        Command::Client(c) => operations::client(c, config).await,
        Command::Keys(c) => operations::keys(c, config).await,
        Command::Mail(c) => operations::mail(c, config).await,
        Command::Export { file } => operations::export(&file, config).await,
        Command::Import { file } => operations::import(&file, config).await,
        Command::Partner(c) => partners::partner(c, config).await,
        Command::Convention(c) => partners::convention(c, config).await,
        Command::Annex1(c) => on_worker(partners::annex1(c, config)).await,
        Command::Annex2(c) => partners::annex2(c, config).await,
        Command::Annex3(c) => partners::annex3(c, config).await,
        Command::Review(c) => partners::review(c, config).await,
        Command::Account(c) => accounts::account(c, config).await,
        Command::Logs(c) => security::logs(c, config).await,
        Command::Alerts(c) => security::alerts(c, config).await,
        Command::Admin(c) => admin::admin(c, config).await,
        Command::Purge { dry_run } => retention::purge(dry_run, config).await,
        Command::Attestation { partner, email, out } => {
            retention::attestation(&partner, email.as_deref(), &out, config).await
        }
    }
}

/// Runs `work` on a worker thread of the runtime rather than on the main
/// thread that `block_on` polls: the worker that polls the I/O driver then
/// runs the task itself, where the main thread was woken from another
/// thread at each socket's readiness (an annex's emails over SMTP, several
/// times a message: a tenth of the main thread's samples were context
/// switches).
async fn on_worker(work: impl Future<Output = Result<(), CliError>> + Send + 'static) -> Result<(), CliError> {
    match tokio::spawn(work).await {
        Ok(outcome) => outcome,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Opens the application (migrations applied) on the system clock: the one
/// way a command reaches the database.
async fn open(config: Config) -> Result<Arc<App>, CliError> {
    Ok(crate::startup::open(config, Clock::system()).await?)
}

/// Prints a result on one line (the shape scripts read).
fn print_line(value: serde_json::Value) {
    println!("{value}");
}

/// Prints a result indented, for reading.
fn print_pretty(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// A table for reading: a header, then one row a line, each column as wide
/// as its widest cell (in characters).
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![vec!["élodie@x.fr".to_string(), "active".to_string()], vec!["a@b.fr".into(), "-".into()]];
        assert_eq!(
            super::table(&["email", "state"], rows),
            "email        state\nélodie@x.fr  active\na@b.fr       -\n"
        );
    }
}
