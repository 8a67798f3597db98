//! For the security officer: `logs query`, `logs verify`, `alerts list`.
//! Every read is itself recorded in the connection log.

use serde_json::json;

use super::args::{AlertsCommand, LogsCommand, QueryArgs};
use super::{CliError, open, print_line};
use crate::audit::export::{CsvLayout, Separator};
use crate::audit::query::{Access, LogQuery, Param, Reader};
use crate::audit::{Event, Outcome, Source, Verification, kind};
use crate::config::Config;

pub(super) async fn logs(command: LogsCommand, config: Config) -> Result<(), CliError> {
    match command {
        LogsCommand::Query(args) => query(*args, config).await,
        LogsCommand::Verify => verify(config).await,
    }
}

async fn query(args: QueryArgs, config: Config) -> Result<(), CliError> {
    let QueryArgs { email, partner, event, outcome, ip, since, until, format, separator, limit, offset } = args;
    let layout = match (format.as_str(), separator.as_deref()) {
        (_, None) | ("csv", Some("comma")) => CsvLayout::FIELDS,
        // For a French spreadsheet, which also needs the BOM to read UTF-8.
        ("csv", Some(_)) => CsvLayout { separator: Separator::Semicolon, bom: true, ..CsvLayout::FIELDS },
        (_, Some(_)) => {
            return Err(CliError::BadInput(
                "--separator ne s'applique qu'à --format csv / applies to --format csv only".into(),
            ));
        }
    };
    let app = open(config).await?;
    let query = LogQuery { email, partner, event, outcome, ip, since, until, limit: Some(limit), offset: Some(offset) };
    let filter = query.validate(&app.store, 1000).await?;
    let access = if format == "csv" { Access::Export } else { Access::Read };
    let source = Source::default();
    let reader = Reader { actor: "cli", source: &source, format: &format };
    let rows = crate::audit::query::read(&app.store, &app.clock, &query, &filter, access, reader).await?;
    let output = match format.as_str() {
        "csv" => crate::audit::export::to_csv(&rows, &layout),
        "json" => crate::audit::export::to_json(&rows),
        _ => crate::audit::export::to_table(&rows),
    };
    print!("{output}");
    if format == "json" {
        println!();
    }
    Ok(())
}

/// A broken chain is reported on stdout and exits 1: the log failed, not
/// the input.
async fn verify(config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    match crate::audit::verify(&app.store, &app.keys).await? {
        Verification::Intact { records } => {
            let checkpoints = app.store.checkpoints().await?;
            let purged = app.store.last_log_purge().await?;
            print_line(json!({
                "status": "intact",
                "records": records,
                "checkpoints": checkpoints.len(),
                "latest_checkpoint": checkpoints.last().map(|c| json!({
                    "seq": c.seq, "time": crate::clock::rfc3339_ms(c.time_ms), "kid": c.kid, "jws": c.jws,
                })),
                "purged_up_to": purged.map(|p| p.up_to_seq),
            }));
            Ok(())
        }
        Verification::Broken { seq, reason } => {
            print_line(json!({"status": "broken", "first_broken_record": seq, "reason": reason}));
            Err(CliError::Failure(format!("connection log broken at record {seq}: {reason}")))
        }
    }
}

pub(super) async fn alerts(command: AlertsCommand, config: Config) -> Result<(), CliError> {
    let AlertsCommand::List { since, format, limit, offset } = command;
    let app = open(config).await?;
    let since_ms = since.as_deref().map(|t| crate::audit::query::parse_time(Param::Since, t)).transpose()?;
    let alerts = crate::alerts::list(&app.store, since_ms, limit, offset).await?;
    let read = if format == "csv" { kind::LOG_EXPORTED } else { kind::LOG_READ };
    let e = Event::new(read, Outcome::Success, "cli")
        .details(json!({"alerts": true, "since": since, "format": format, "records": alerts.len()}));
    crate::audit::record(&app.store, &app.clock, vec![e]).await;
    match format.as_str() {
        "csv" => print!("{}", crate::alerts::to_csv(&alerts)),
        "json" => println!("{}", serde_json::to_string_pretty(&alerts).unwrap_or_else(|_| "[]".into())),
        _ => print!("{}", crate::alerts::to_table(&alerts)),
    }
    Ok(())
}
