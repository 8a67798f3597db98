//! Reading the connection log (R16): the filters of `logs query`, parsed the
//! same way for the command line and the admin API, and the one function
//! that reads and records the read.

use serde::Deserialize;
use serde_json::json;

use super::{Event, Outcome, Source, kind};
use crate::app::App;
use crate::clock::Millis;
use crate::error::AppResult;
use crate::store::{EventFilter, EventRow};

/// Largest page a single read returns.
pub const MAX_LIMIT: i64 = 100_000;

/// The filters of `logs query`, as typed (PRODUCT.md "Command line").
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogQuery {
    pub email: Option<String>,
    pub partner: Option<String>,
    pub event: Option<String>,
    pub ip: Option<String>,
    /// RFC 3339 time or YYYY-MM-DD (inclusive).
    pub since: Option<String>,
    /// RFC 3339 time or YYYY-MM-DD (exclusive).
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "{flag} : « {value} » n'est ni une date RFC 3339 ni une date AAAA-MM-JJ / is neither an RFC 3339 time nor a date (YYYY-MM-DD)"
    )]
    BadTime { flag: &'static str, value: String },
}

/// RFC 3339, or a date (midnight UTC), as milliseconds.
pub fn parse_time(flag: &'static str, text: &str) -> Result<Millis, QueryError> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    crate::provisioning::convention::parse_date(text)
        .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
        .ok_or_else(|| QueryError::BadTime { flag, value: text.to_string() })
}

fn non_blank(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl LogQuery {
    /// The store filter; `default_limit` applies when no limit was given.
    pub fn filter(&self, default_limit: i64) -> Result<EventFilter, QueryError> {
        Ok(EventFilter {
            email_normalized: non_blank(&self.email).map(|e| e.to_lowercase()),
            partner_id: non_blank(&self.partner),
            kind: non_blank(&self.event),
            ip: non_blank(&self.ip),
            since_ms: non_blank(&self.since).map(|t| parse_time("--since", &t)).transpose()?,
            until_ms: non_blank(&self.until).map(|t| parse_time("--until", &t)).transpose()?,
            limit: self.limit.unwrap_or(default_limit).clamp(1, MAX_LIMIT),
            offset: self.offset.unwrap_or(0).max(0),
        })
    }
}

/// How the records leave: shown (`log_read`) or exported as a file
/// (`log_exported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Export,
}

/// Who reads: `cli` or an administrator's email, and from where.
pub struct Reader<'a> {
    pub actor: &'a str,
    pub source: &'a Source,
    pub format: &'a str,
}

/// Runs a query and records the read itself (R16: reads are logged).
pub async fn read(
    app: &App,
    query: &LogQuery,
    filter: &EventFilter,
    access: Access,
    reader: Reader<'_>,
) -> AppResult<Vec<EventRow>> {
    let rows = app.store.query_events(filter).await?;
    let kind = match access {
        Access::Read => kind::LOG_READ,
        Access::Export => kind::LOG_EXPORTED,
    };
    let e = Event::new(kind, Outcome::Success, reader.actor).source(reader.source).details(json!({
        "email": query.email, "partner_id": filter.partner_id, "event": filter.kind, "ip": filter.ip,
        "since": query.since, "until": query.until, "format": reader.format,
        "limit": filter.limit, "offset": filter.offset, "records": rows.len(),
    }));
    super::record(app, vec![e]).await;
    Ok(rows)
}
