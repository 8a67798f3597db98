//! Reading the connection log (R16): the filters of `logs query`, checked
//! the same way for the command line, the admin API and the console, and
//! the one function that reads and records the read.
//!
//! A filter value that cannot match anything as typed (an unknown kind, a
//! malformed address or date, a partner never registered, an empty period)
//! is refused with the valid values rather than answered with an empty
//! list: a typo must never read as "nothing happened".

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::json;

use super::{Event, Outcome, Source, kind};
use crate::clock::{Clock, Millis};
use crate::error::{AppError, AppResult};
use crate::store::Store;
use crate::store::events::{EventFilter, EventRow};

/// Largest page a single read returns.
pub const MAX_LIMIT: i64 = 100_000;

/// The filters of `logs query`, as typed (PRODUCT.md "Command line").
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogQuery {
    pub email: Option<String>,
    pub partner: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<String>,
    pub ip: Option<String>,
    /// RFC 3339 time, local time or day (inclusive).
    pub since: Option<String>,
    /// RFC 3339 time, local time or day (exclusive).
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// A filter of [`LogQuery`], named as the admin API and the console name
/// it (the command line puts `--` in front).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Partner,
    Event,
    Outcome,
    Ip,
    Since,
    Until,
    Limit,
    Offset,
}

impl Param {
    pub fn name(self) -> &'static str {
        match self {
            Param::Partner => "partner",
            Param::Event => "event",
            Param::Outcome => "outcome",
            Param::Ip => "ip",
            Param::Since => "since",
            Param::Until => "until",
            Param::Limit => "limit",
            Param::Offset => "offset",
        }
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What makes a query unanswerable. Every variant but `Internal` is bad
/// input: exit status 2, HTTP 400, a message on the console's form.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "event : type d'événement inconnu « {value} » / unknown event kind `{value}`. Valeurs possibles / valid values: {}",
        kind::ALL.join(", ")
    )]
    UnknownKind { value: String },
    #[error(
        "outcome : résultat inconnu « {value} » / unknown outcome `{value}`. Valeurs possibles / valid values: {}",
        outcome_names().join(", ")
    )]
    UnknownOutcome { value: String },
    #[error(
        "partner : partenaire inconnu « {value} » / unknown partner `{value}`. Partenaires enregistrés / registered partners: {}",
        if known.is_empty() { "(aucun / none)".to_string() } else { known.join(", ") }
    )]
    UnknownPartner { value: String, known: Vec<String> },
    #[error("ip : « {value} » n'est pas une adresse IPv4 ou IPv6 / is not an IPv4 or IPv6 address")]
    BadIp { value: String },
    #[error(
        "{param} : « {value} » n'est ni une date (JJ/MM/AAAA ou AAAA-MM-JJ), ni une heure JJ/MM/AAAA HH:MM, ni une date RFC 3339 / is neither a date (DD/MM/YYYY or YYYY-MM-DD), nor a time DD/MM/YYYY HH:MM, nor an RFC 3339 time"
    )]
    BadTime { param: Param, value: String },
    #[error(
        "until : la période est vide, « until » ({until}) doit suivre « since » ({since}) / the period is empty: until ({until}) must come after since ({since})"
    )]
    EmptyPeriod { since: String, until: String },
    #[error("{param} : « {value} » hors des bornes {min} à {max} / out of bounds {min} to {max}")]
    OutOfRange { param: Param, value: i64, min: i64, max: i64 },
    #[error("{param} : « {value} » doit être positif ou nul / must be zero or more")]
    Negative { param: Param, value: i64 },
    #[error(transparent)]
    Internal(#[from] AppError),
}

fn outcome_names() -> Vec<&'static str> {
    Outcome::ALL.iter().map(|o| o.as_str()).collect()
}

impl QueryError {
    /// The filter at fault; `None` for an internal failure.
    pub fn param(&self) -> Option<Param> {
        Some(match self {
            QueryError::UnknownKind { .. } => Param::Event,
            QueryError::UnknownOutcome { .. } => Param::Outcome,
            QueryError::UnknownPartner { .. } => Param::Partner,
            QueryError::BadIp { .. } => Param::Ip,
            QueryError::BadTime { param, .. }
            | QueryError::OutOfRange { param, .. }
            | QueryError::Negative { param, .. } => *param,
            QueryError::EmptyPeriod { .. } => Param::Until,
            QueryError::Internal(_) => return None,
        })
    }

    /// The value as typed.
    pub fn value(&self) -> String {
        match self {
            QueryError::UnknownKind { value }
            | QueryError::UnknownOutcome { value }
            | QueryError::UnknownPartner { value, .. }
            | QueryError::BadIp { value }
            | QueryError::BadTime { value, .. } => value.clone(),
            QueryError::EmptyPeriod { until, .. } => until.clone(),
            QueryError::OutOfRange { value, .. } | QueryError::Negative { value, .. } => value.to_string(),
            QueryError::Internal(_) => String::new(),
        }
    }

    /// Every value the filter accepts, when they can be listed: all the
    /// kinds, both outcomes, the registered partners.
    pub fn valid_values(&self) -> Option<Vec<String>> {
        match self {
            QueryError::UnknownKind { .. } => Some(kind::ALL.iter().map(|k| k.to_string()).collect()),
            QueryError::UnknownOutcome { .. } => Some(outcome_names().into_iter().map(String::from).collect()),
            QueryError::UnknownPartner { known, .. } => Some(known.clone()),
            _ => None,
        }
    }

    /// What the filter expects, when its values cannot be listed.
    pub fn expected(&self) -> Option<String> {
        match self {
            QueryError::BadIp { .. } => Some("an IPv4 or IPv6 address".into()),
            QueryError::BadTime { .. } => Some("a date (DD/MM/YYYY or YYYY-MM-DD, midnight Europe/Paris), a time DD/MM/YYYY HH:MM[:SS] (Europe/Paris) or an RFC 3339 time".into()),
            QueryError::EmptyPeriod { .. } => Some("a time after since".into()),
            QueryError::OutOfRange { min, max, .. } => Some(format!("a whole number from {min} to {max}")),
            QueryError::Negative { .. } => Some("a whole number, 0 or more".into()),
            _ => None,
        }
    }

    pub fn is_bad_input(&self) -> bool {
        !matches!(self, QueryError::Internal(_))
    }
}

/// RFC 3339, a local time or a day (midnight, local time), as
/// milliseconds: the spellings of `dates::parse_instant`.
pub fn parse_time(param: Param, text: &str) -> Result<Millis, QueryError> {
    crate::dates::parse_instant(text).ok_or_else(|| QueryError::BadTime { param, value: text.to_string() })
}

fn non_blank(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl LogQuery {
    /// A query of the text filters (all but the page) that `value` gives
    /// by the names the admin API and the console give them (the command
    /// line puts `--` in front).
    pub fn of_filters(mut value: impl FnMut(&str) -> Option<String>) -> LogQuery {
        LogQuery {
            email: value("email"),
            partner: value("partner"),
            event: value("event"),
            outcome: value("outcome"),
            ip: value("ip"),
            since: value("since"),
            until: value("until"),
            limit: None,
            offset: None,
        }
    }

    /// The text filters given, by those names, in that order.
    pub fn given_filters(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("email", &self.email),
            ("partner", &self.partner),
            ("event", &self.event),
            ("outcome", &self.outcome),
            ("ip", &self.ip),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_deref()?)))
    }

    /// The store filter, every value checked; `default_limit` applies when
    /// no limit was given. A partner is checked against the registered
    /// ones (partners are never deleted, so a partner of an old record is
    /// still one of them).
    pub async fn validate(&self, store: &Store, default_limit: i64) -> Result<EventFilter, QueryError> {
        let filter = self.filter(default_limit)?;
        if let Some(p) = &filter.partner_id
            && store.partner(p).await.map_err(AppError::from)?.is_none()
        {
            let known = store.partners().await.map_err(AppError::from)?.into_iter().map(|p| p.id).collect();
            return Err(QueryError::UnknownPartner { value: p.clone(), known });
        }
        Ok(filter)
    }

    /// The checks that need no database: kinds, outcomes, addresses,
    /// times, bounds.
    pub fn filter(&self, default_limit: i64) -> Result<EventFilter, QueryError> {
        let kind = match non_blank(&self.event) {
            Some(v) => Some(kind::parse(&v).ok_or(QueryError::UnknownKind { value: v })?.to_string()),
            None => None,
        };
        let outcome = match non_blank(&self.outcome) {
            Some(v) => Some(Outcome::parse(&v).ok_or(QueryError::UnknownOutcome { value: v })?.as_str().to_string()),
            None => None,
        };
        // Stored addresses are `IpAddr`'s canonical text: "2001:DB8::1"
        // must find "2001:db8::1".
        let ip = match non_blank(&self.ip) {
            Some(v) => Some(v.parse::<IpAddr>().map_err(|_| QueryError::BadIp { value: v })?.to_string()),
            None => None,
        };
        let since_ms = non_blank(&self.since).map(|t| parse_time(Param::Since, &t)).transpose()?;
        let until_ms = non_blank(&self.until).map(|t| parse_time(Param::Until, &t)).transpose()?;
        if let (Some(s), Some(u)) = (since_ms, until_ms)
            && u <= s
        {
            return Err(QueryError::EmptyPeriod {
                since: non_blank(&self.since).unwrap_or_default(),
                until: non_blank(&self.until).unwrap_or_default(),
            });
        }
        let limit = self.limit.unwrap_or(default_limit);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::OutOfRange { param: Param::Limit, value: limit, min: 1, max: MAX_LIMIT });
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(QueryError::Negative { param: Param::Offset, value: offset });
        }
        Ok(EventFilter {
            email_normalized: non_blank(&self.email).map(|e| e.to_lowercase()),
            partner_id: non_blank(&self.partner),
            kind,
            outcome,
            ip,
            since_ms,
            until_ms,
            limit,
            offset,
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
    store: &Store,
    clock: &Clock,
    query: &LogQuery,
    filter: &EventFilter,
    access: Access,
    reader: Reader<'_>,
) -> AppResult<Vec<EventRow>> {
    let rows = store.query_events(filter).await?;
    let kind = match access {
        Access::Read => kind::LOG_READ,
        Access::Export => kind::LOG_EXPORTED,
    };
    let e = Event::new(kind, Outcome::Success, reader.actor).source(reader.source).details(json!({
        "email": query.email, "partner_id": filter.partner_id, "event": filter.kind, "outcome": filter.outcome,
        "ip": filter.ip, "since": query.since, "until": query.until, "format": reader.format,
        "limit": filter.limit, "offset": filter.offset, "records": rows.len(),
    }));
    super::record(store, clock, vec![e]).await;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(f: impl FnOnce(&mut LogQuery)) -> Result<EventFilter, QueryError> {
        let mut q = LogQuery::default();
        f(&mut q);
        q.filter(1000)
    }

    #[test]
    fn a_typo_is_an_error_listing_every_valid_value() {
        let e = query(|q| q.event = Some("signin_fail".into())).expect_err("unknown kind");
        assert_eq!(e.param(), Some(Param::Event));
        assert_eq!(e.valid_values().map(|v| v.len()), Some(kind::ALL.len()));
        let text = e.to_string();
        assert!(text.contains("signin_fail") && text.contains("signin_failed") && text.contains("second_factor_reset"));
        let e = query(|q| q.outcome = Some("failed".into())).expect_err("unknown outcome");
        assert_eq!(e.valid_values(), Some(vec!["success".to_string(), "failure".to_string()]));
        assert!(e.is_bad_input());
        // The other side: listed values pass, trimmed.
        let f = query(|q| {
            q.event = Some(" signin_failed ".into());
            q.outcome = Some("failure".into());
        })
        .expect("valid");
        assert_eq!((f.kind.as_deref(), f.outcome.as_deref()), (Some("signin_failed"), Some("failure")));
    }

    #[test]
    fn addresses_times_and_bounds_are_checked() {
        assert!(matches!(query(|q| q.ip = Some("10.0.0".into())), Err(QueryError::BadIp { .. })));
        assert!(matches!(query(|q| q.ip = Some("10.0.0.1/8".into())), Err(QueryError::BadIp { .. })));
        let f = query(|q| q.ip = Some("2001:DB8::0:1".into())).expect("IPv6");
        assert_eq!(f.ip.as_deref(), Some("2001:db8::1"), "canonical, as stored");
        assert!(matches!(
            query(|q| q.since = Some("hier".into())),
            Err(QueryError::BadTime { param: Param::Since, .. })
        ));
        assert!(matches!(
            query(|q| {
                q.since = Some("2026-02-01".into());
                q.until = Some("2026-01-01".into());
            }),
            Err(QueryError::EmptyPeriod { .. })
        ));
        assert!(matches!(
            query(|q| {
                q.since = Some("2026-01-01".into());
                q.until = Some("2026-01-01".into());
            }),
            Err(QueryError::EmptyPeriod { .. })
        ));
        query(|q| {
            q.since = Some("2026-01-01".into());
            q.until = Some("2026-01-01T00:00:00.001Z".into());
        })
        .expect("a one-millisecond period");
        for limit in [0, -1, MAX_LIMIT + 1] {
            let e = query(|q| q.limit = Some(limit)).expect_err("out of bounds");
            assert_eq!(e.param(), Some(Param::Limit));
        }
        assert_eq!(query(|q| q.limit = Some(MAX_LIMIT)).expect("the maximum").limit, MAX_LIMIT);
        assert_eq!(query(|q| q.offset = Some(-1)).expect_err("negative").param(), Some(Param::Offset));
        assert_eq!(query(|_| {}).expect("no filter").limit, 1000);
    }
}
