//! The connection log (R15, convention art. 2 and 2.1): every
//! security-relevant event, in one append-only table whose records are
//! chained by SHA-256, so that an edit, a deletion or a reordering is found by
//! `coop-idp logs verify`. This is the one place that writes events: domain
//! functions append inside their own transaction (`append`), handlers call
//! `record` after the fact. Details never hold a password, code or token.

pub mod checkpoint;
pub mod export;
pub mod query;

use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::{Clock, rfc3339_ms};
use crate::crypto::{b64url, sha256};
use crate::error::AppResult;
use crate::keys::KeyManager;
use crate::store::{self, Store, WriteTx, events::EventRow};

/// The documented kinds (PRODUCT.md "Connection-log records").
pub mod kind {
    pub const SIGNIN: &str = "signin";
    pub const SIGNIN_FAILED: &str = "signin_failed";
    pub const SIGNOUT: &str = "signout";
    pub const SESSION_EXPIRED: &str = "session_expired";
    pub const TOKEN_ISSUED: &str = "token_issued";
    pub const TOKEN_REFRESHED: &str = "token_refreshed";
    pub const REFRESH_REUSE_DETECTED: &str = "refresh_reuse_detected";
    pub const TOKEN_REVOKED: &str = "token_revoked";
    pub const ACTIVATION_SENT: &str = "activation_sent";
    pub const PASSWORD_CREATED: &str = "password_created";
    pub const RESET_REQUESTED: &str = "reset_requested";
    pub const RESET_SENT: &str = "reset_sent";
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const PASSWORD_CHANGED: &str = "password_changed";
    pub const THROTTLED: &str = "throttled";
    pub const ACCESS_OPENED: &str = "access_opened";
    pub const ACCESS_REOPENED: &str = "access_reopened";
    pub const ACCESS_CLOSED: &str = "access_closed";
    pub const ACCESS_UPDATED: &str = "access_updated";
    pub const ANNEX1_DRY_RUN: &str = "annex1_dry_run";
    pub const ANNEX1_APPLIED: &str = "annex1_applied";
    pub const CONVENTION_CHANGED: &str = "convention_changed";
    pub const BACKCHANNEL_LOGOUT_SENT: &str = "backchannel_logout_sent";
    pub const BACKCHANNEL_LOGOUT_FAILED: &str = "backchannel_logout_failed";
    pub const LOG_READ: &str = "log_read";
    pub const LOG_EXPORTED: &str = "log_exported";
    pub const PURGE: &str = "purge";
    /// Added to PRODUCT.md's minimum list (issue 5: introspection denials,
    /// links refused).
    pub const INTROSPECTION_DENIED: &str = "introspection_denied";
    pub const LINK_REFUSED: &str = "link_refused";
    pub const ALERT: &str = "alert";
    /// Administrative roles (not in PRODUCT.md's minimum list; added).
    pub const ROLE_GRANTED: &str = "role_granted";
    pub const ROLE_REVOKED: &str = "role_revoked";
    /// Second factor (R18; added): enrolment, each check, recovery codes.
    pub const TOTP_ENROLLED: &str = "totp_enrolled";
    pub const SECOND_FACTOR: &str = "second_factor";
    pub const SECOND_FACTOR_FAILED: &str = "second_factor_failed";
    pub const RECOVERY_CODE_USED: &str = "recovery_code_used";
    pub const SECOND_FACTOR_RESET: &str = "second_factor_reset";
    /// Passkeys (issue 17; added): each addition and removal.
    pub const PASSKEY_REGISTERED: &str = "passkey_registered";
    pub const PASSKEY_REMOVED: &str = "passkey_removed";

    /// Every kind above: what a query's `event` filter accepts and what an
    /// unknown kind's error lists. A kind declared above and left out here
    /// fails `every_kind_constant_is_listed` (and `Event::new` in debug builds).
    pub const ALL: &[&str] = &[
        SIGNIN,
        SIGNIN_FAILED,
        SIGNOUT,
        SESSION_EXPIRED,
        TOKEN_ISSUED,
        TOKEN_REFRESHED,
        REFRESH_REUSE_DETECTED,
        TOKEN_REVOKED,
        ACTIVATION_SENT,
        PASSWORD_CREATED,
        RESET_REQUESTED,
        RESET_SENT,
        PASSWORD_RESET,
        PASSWORD_CHANGED,
        THROTTLED,
        ACCESS_OPENED,
        ACCESS_REOPENED,
        ACCESS_CLOSED,
        ACCESS_UPDATED,
        ANNEX1_DRY_RUN,
        ANNEX1_APPLIED,
        CONVENTION_CHANGED,
        BACKCHANNEL_LOGOUT_SENT,
        BACKCHANNEL_LOGOUT_FAILED,
        LOG_READ,
        LOG_EXPORTED,
        PURGE,
        INTROSPECTION_DENIED,
        LINK_REFUSED,
        ALERT,
        ROLE_GRANTED,
        ROLE_REVOKED,
        TOTP_ENROLLED,
        SECOND_FACTOR,
        SECOND_FACTOR_FAILED,
        RECOVERY_CODE_USED,
        SECOND_FACTOR_RESET,
        PASSKEY_REGISTERED,
        PASSKEY_REMOVED,
    ];

    /// The kind named `text`, as listed.
    pub fn parse(text: &str) -> Option<&'static str> {
        ALL.iter().copied().find(|k| *k == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Success, Outcome::Failure];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// Where a request came from; `None` for the command line and jobs.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// An event to record. `actor` is who acted: the account's own email, an
/// administrator's email, `cli` or `system`.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub outcome: Outcome,
    pub email: Option<String>,
    pub account_id: Option<String>,
    pub partner_id: Option<String>,
    pub client_id: Option<String>,
    pub source: Source,
    pub actor: String,
    pub session_hash: Option<String>,
    pub details: Value,
}

impl Event {
    pub fn new(kind: &'static str, outcome: Outcome, actor: impl Into<String>) -> Self {
        // A kind missing from `kind::ALL` could be recorded but never queried.
        debug_assert!(kind::ALL.contains(&kind), "connection-log kind `{kind}` is missing from audit::kind::ALL");
        Event {
            kind,
            outcome,
            email: None,
            account_id: None,
            partner_id: None,
            client_id: None,
            source: Source::default(),
            actor: actor.into(),
            session_hash: None,
            details: json!({}),
        }
    }
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }
    pub fn account(mut self, id: impl Into<String>) -> Self {
        self.account_id = Some(id.into());
        self
    }
    pub fn partner(mut self, id: Option<impl Into<String>>) -> Self {
        self.partner_id = id.map(Into::into);
        self
    }
    pub fn client(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }
    pub fn source(mut self, source: &Source) -> Self {
        self.source = source.clone();
        self
    }
    /// The session, as a hash of its public id (never the cookie value).
    pub fn session(mut self, sid: &str) -> Self {
        self.session_hash = Some(crate::crypto::hash_secret(sid));
        self
    }
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// The hash of a record: SHA-256 over the previous hash and the record's
/// content, in a fixed order.
///
/// The content is a JSON array, written straight from the row's fields (a
/// tuple serialises as an array, byte for byte as the `json!` array the
/// chain was first written with: the test below holds the two together).
pub fn record_hash(row: &EventRow) -> String {
    let content = (
        row.seq,
        row.time_ms,
        &row.kind,
        &row.outcome,
        &row.email,
        &row.email_normalized,
        &row.account_id,
        &row.partner_id,
        &row.client_id,
        &row.ip,
        &row.user_agent,
        &row.actor,
        &row.session_hash,
        &row.details,
    );
    let mut hashed = Vec::with_capacity(row.prev_hash.len() + 1 + 512);
    hashed.extend_from_slice(row.prev_hash.as_bytes());
    hashed.push(b'|');
    // Writing to a Vec fails only on a serialiser error, which these plain
    // fields cannot raise.
    let _ = serde_json::to_writer(&mut hashed, &content);
    b64url(&sha256(&hashed))
}

/// Appends events inside the caller's transaction; call it last, just before
/// committing (see `store::events::chain_head`).
pub async fn append(clock: &Clock, tx: &mut WriteTx, events: Vec<Event>) -> AppResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let now = clock.now_ms();
    let kinds: Vec<&'static str> = events.iter().map(|e| e.kind).collect();
    // Counted once written: a rolled-back append is not an event.
    tx.after_commit(move || kinds.into_iter().for_each(count));
    let rows: Vec<EventRow> = events.into_iter().map(|e| row_of(e, now)).collect();
    store::events::append(tx, rows, record_hash).await?;
    Ok(())
}

/// The metrics kept from the connection log's own kinds.
fn count(kind: &str) {
    match kind {
        kind::SIGNIN => crate::metrics::signin(true),
        kind::SIGNIN_FAILED => crate::metrics::signin(false),
        kind::THROTTLED => crate::metrics::throttled(),
        _ => {}
    }
}

fn row_of(e: Event, now: crate::clock::Millis) -> EventRow {
    EventRow {
        seq: 0,
        time_ms: now,
        kind: e.kind.to_string(),
        outcome: e.outcome.as_str().to_string(),
        email_normalized: e.email.as_deref().map(|m| m.trim().to_lowercase()),
        email: e.email,
        account_id: e.account_id,
        partner_id: e.partner_id,
        client_id: e.client_id,
        ip: e.source.ip,
        user_agent: e.source.user_agent.map(|u| u.chars().take(512).collect()),
        actor: e.actor,
        session_hash: e.session_hash,
        details: e.details.to_string(),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Records events in a transaction of their own. A failure to record is
/// logged loudly; it does not undo the action, which already happened.
pub async fn record(store: &Store, clock: &Clock, events: Vec<Event>) {
    let result = async {
        let mut tx = store.begin_write().await?;
        append(clock, &mut tx, events).await?;
        tx.commit().await?;
        Ok::<_, crate::error::AppError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not record a connection-log event");
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    Intact {
        records: i64,
    },
    /// The first record whose sequence, link or content does not hold.
    Broken {
        seq: i64,
        reason: String,
    },
}

/// Walks the whole chain, from the end of the last purged range (whose
/// removal a `purge` record in the chain must confirm), then compares every
/// signed checkpoint with the record at its seq: a checkpoint past the last
/// record means the tail was deleted.
pub async fn verify(store: &Store, keys: &KeyManager) -> AppResult<Verification> {
    let purged = store.last_log_purge().await?;
    let (first_seq, first_prev) = match &purged {
        Some(p) => (p.up_to_seq + 1, p.last_hash.clone()),
        None => (1, String::new()),
    };
    let mut checkpoints = std::collections::BTreeMap::new();
    for row in store.checkpoints().await? {
        if let Err(reason) = checkpoint::check_row(keys, &row) {
            return Ok(Verification::Broken { seq: row.seq, reason });
        }
        if row.seq >= first_seq {
            checkpoints.insert(row.seq, row.hash);
        }
    }
    if let Some(r) = store.events_after(0, 1).await?.first()
        && r.seq < first_seq
    {
        return Ok(Verification::Broken { seq: r.seq, reason: "record present inside a purged range".into() });
    }
    let mut purge_confirmed = purged.is_none();
    let mut expected_seq = first_seq;
    let mut prev = first_prev;
    loop {
        let page = store.events_after(expected_seq - 1, 5_000).await?;
        if page.is_empty() {
            // A gap after the last read record would show as a missing seq.
            let tail = store.events_after(expected_seq - 1, 1).await?;
            if let Some(r) = tail.first() {
                return Ok(Verification::Broken { seq: r.seq, reason: format!("record {expected_seq} is missing") });
            }
            break;
        }
        for row in page {
            if row.seq != expected_seq {
                return Ok(Verification::Broken { seq: row.seq, reason: format!("record {expected_seq} is missing") });
            }
            if row.prev_hash != prev {
                return Ok(Verification::Broken { seq: row.seq, reason: "link to the previous record broken".into() });
            }
            if record_hash(&row) != row.hash {
                return Ok(Verification::Broken { seq: row.seq, reason: "content altered".into() });
            }
            if checkpoints.get(&row.seq).is_some_and(|signed| *signed != row.hash) {
                return Ok(Verification::Broken {
                    seq: row.seq,
                    reason: "differs from the signed checkpoint at this record".into(),
                });
            }
            if let Some(p) = &purged
                && row.kind == kind::PURGE
                && confirms_purge(&row.details, p.up_to_seq, &p.last_hash)
            {
                purge_confirmed = true;
            }
            prev = row.hash.clone();
            expected_seq += 1;
        }
    }
    let last_seq = expected_seq - 1;
    if let Some((&signed_seq, _)) = checkpoints.range(expected_seq..).next_back() {
        return Ok(Verification::Broken {
            seq: expected_seq,
            reason: format!(
                "records {expected_seq} to {signed_seq} deleted: a signed checkpoint covers record {signed_seq}"
            ),
        });
    }
    if !purge_confirmed {
        return Ok(Verification::Broken {
            seq: first_seq,
            reason: format!("records up to {} removed without a purge record in the chain", first_seq - 1),
        });
    }
    Ok(Verification::Intact { records: last_seq - first_seq + 1 })
}

/// Whether a purge record's details state the removal of records up to
/// `up_to_seq`, the last of which had `last_hash`.
fn confirms_purge(details: &str, up_to_seq: i64, last_hash: &str) -> bool {
    serde_json::from_str::<Value>(details).is_ok_and(|d| {
        d["events"]["to_seq"].as_i64() == Some(up_to_seq) && d["events"]["last_hash"].as_str() == Some(last_hash)
    })
}

/// A record as shown to the security officer (PRODUCT.md fields).
pub fn public_record(row: &EventRow) -> Value {
    json!({
        "seq": row.seq,
        "time": rfc3339_ms(row.time_ms),
        "kind": row.kind,
        "outcome": row.outcome,
        "email": row.email,
        "account_id": row.account_id,
        "partner_id": row.partner_id,
        "client_id": row.client_id,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "actor": row.actor,
        "details": serde_json::from_str::<Value>(&row.details).unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `pub const NAME: &str = "value";` of `mod kind`, read from this
    /// file's source: a constant added without its entry in `kind::ALL`
    /// fails here rather than in the security officer's query.
    #[test]
    fn every_kind_constant_is_listed() {
        let source = include_str!("mod.rs");
        let start = source.find("pub mod kind {").expect("mod kind");
        let end = start + source[start..].find("pub const ALL").expect("kind::ALL");
        let declared: Vec<&str> = source[start..end]
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \""))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert!(declared.len() >= 37, "the constants were read: {declared:?}");
        for k in &declared {
            assert!(kind::ALL.contains(k), "kind `{k}` is declared but missing from kind::ALL");
        }
        assert_eq!(declared.len(), kind::ALL.len(), "kind::ALL lists something declared nowhere else, or twice");
        let distinct: std::collections::BTreeSet<_> = kind::ALL.iter().collect();
        assert_eq!(distinct.len(), kind::ALL.len(), "a kind is listed twice");
    }

    /// The hash as the chain's first records were written: through a
    /// `json!` array. Logs written then must still verify.
    fn record_hash_as_first_written(row: &EventRow) -> String {
        let content = json!([
            row.seq,
            row.time_ms,
            row.kind,
            row.outcome,
            row.email,
            row.email_normalized,
            row.account_id,
            row.partner_id,
            row.client_id,
            row.ip,
            row.user_agent,
            row.actor,
            row.session_hash,
            row.details,
        ]);
        b64url(&sha256(format!("{}|{}", row.prev_hash, content).as_bytes()))
    }

    fn row_with(text: String, some: Option<String>, seq: i64, time_ms: i64) -> EventRow {
        EventRow {
            seq,
            time_ms,
            kind: text.clone(),
            outcome: "success".into(),
            email: some.clone(),
            email_normalized: None,
            account_id: some.clone(),
            partner_id: Some(text.clone()),
            client_id: None,
            ip: some.clone(),
            user_agent: some,
            actor: text.clone(),
            session_hash: None,
            details: format!("{{\"scope\":{text:?}}}"),
            prev_hash: text,
            hash: String::new(),
        }
    }

    #[test]
    fn a_record_hashes_as_it_was_first_written() {
        let row = row_with("openid é \" \\ \u{1}\u{7f}\u{2028}".into(), Some("<a>\n\t".into()), 42, -1);
        assert_eq!(record_hash(&row), record_hash_as_first_written(&row));
        let mut other = row.clone();
        other.seq = 43;
        assert_ne!(record_hash(&other), record_hash(&row), "the content is hashed");
    }

    proptest::proptest! {
        #[test]
        fn any_record_hashes_as_it_was_first_written(
            text in "\\PC*",
            some in proptest::option::of(proptest::prelude::any::<String>()),
            seq in proptest::prelude::any::<i64>(),
            time_ms in proptest::prelude::any::<i64>(),
        ) {
            let row = row_with(text, some, seq, time_ms);
            proptest::prop_assert_eq!(record_hash(&row), record_hash_as_first_written(&row));
        }
    }

    #[test]
    fn kinds_and_outcomes_parse_only_as_listed() {
        assert_eq!(kind::parse("signin_failed"), Some(kind::SIGNIN_FAILED));
        assert_eq!(kind::parse("signin_fail"), None);
        assert_eq!(kind::parse("SIGNIN"), None);
        assert_eq!(Outcome::parse("failure"), Some(Outcome::Failure));
        assert_eq!(Outcome::parse("failed"), None);
    }
}
