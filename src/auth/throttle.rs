//! Restriction of repeated failed sign-ins (R6; CNIL recommendation
//! 2022-100, which accepts an 8-character policy only with such a mechanism).
//!
//! Per address (the email typed, whether or not an account exists, so the
//! behaviour tells nothing): the first 5 consecutive failures are free; then
//! every attempt is refused — even with the right password — for a delay that
//! starts at 1 minute and doubles, capped at `throttle_max_delay_secs`; and at
//! most 25 failures per 24 hours. A success resets the counter. Delays end on
//! their own and the reset link keeps working during them, so the owner is
//! never locked out for long.
//!
//! Per source address: at most `throttle_ip_max_failures` failures per
//! 15 minutes across all accounts (password spraying).
//!
//! Counters live in the database, which every instance shares, or in Redis
//! when `redis_url` is set; when Redis is away they fall back to the
//! database, so the restriction never silently disappears.

use crate::app::App;
use crate::clock::Millis;
use crate::error::AppResult;
use crate::store::{self, throttle::ThrottleRow};

pub const FREE_FAILURES: i64 = 5;
pub const FIRST_DELAY_MS: Millis = 60_000;
pub const DAILY_MAX_FAILURES: i64 = 25;
const DAY_MS: Millis = 86_400_000;
pub const IP_WINDOW_MS: Millis = 15 * 60_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_delay_ms: Millis,
    pub ip_max_failures: i64,
}

impl Limits {
    pub fn from_app(app: &App) -> Self {
        Limits {
            max_delay_ms: app.config.throttle_max_delay_secs * 1000,
            ip_max_failures: app.config.throttle_ip_max_failures,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused without checking the password; retry after this many seconds.
    Blocked {
        retry_after_secs: i64,
    },
}

pub fn email_key(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

/// The per-source budget's key: an IPv6 address counts as its /64, like
/// the parked requests (see [`source_of`]), or a /64 would hold 2^64 budgets.
pub fn ip_key(ip: &str) -> String {
    format!("ip:{}", source_key(ip))
}

/// An address as its source ([`source_of`]); text that is not an address
/// is its own source.
pub fn source_key(ip: &str) -> String {
    ip.parse::<std::net::IpAddr>().map(source_of).unwrap_or_else(|_| ip.to_string())
}

/// The source that anonymous requests are counted against: an IPv4
/// address, or an IPv6 /64. One subscriber (and one attacker) holds a whole
/// /64, so counting its addresses one by one would count nothing. An
/// IPv4-mapped IPv6 address is its IPv4 address.
pub fn source_of(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::MAX >> 64);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

fn verdict(row: Option<&ThrottleRow>, now: Millis) -> Verdict {
    match row {
        Some(r) if r.blocked_until > now => Verdict::Blocked { retry_after_secs: (r.blocked_until - now + 999) / 1000 },
        _ => Verdict::Allowed,
    }
}

/// The counter with one more failure counted, its window restarted first
/// when `window_ms` has passed since it opened.
fn one_more_failure(row: Option<ThrottleRow>, key: &str, now: Millis, window_ms: Millis) -> ThrottleRow {
    let mut r = row.unwrap_or_else(|| ThrottleRow { key: key.to_string(), window_start: now, ..Default::default() });
    if now - r.window_start >= window_ms {
        r.window_start = now;
        r.window_failures = 0;
    }
    r.consecutive_failures += 1;
    r.window_failures += 1;
    r
}

/// The per-address counter after one more failure.
pub fn after_account_failure(row: Option<ThrottleRow>, key: &str, now: Millis, limits: Limits) -> ThrottleRow {
    let mut r = one_more_failure(row, key, now, DAY_MS);
    if r.consecutive_failures >= FREE_FAILURES {
        let doublings = (r.consecutive_failures - FREE_FAILURES).clamp(0, 30) as u32;
        let delay = FIRST_DELAY_MS.saturating_mul(1i64 << doublings).min(limits.max_delay_ms);
        r.blocked_until = r.blocked_until.max(now + delay);
    }
    if r.window_failures >= DAILY_MAX_FAILURES {
        r.blocked_until = r.blocked_until.max(r.window_start + DAY_MS);
    }
    r
}

/// The per-source counter after one more failure.
pub fn after_ip_failure(row: Option<ThrottleRow>, key: &str, now: Millis, limits: Limits) -> ThrottleRow {
    let mut r = one_more_failure(row, key, now, IP_WINDOW_MS);
    if r.window_failures >= limits.ip_max_failures {
        r.blocked_until = r.blocked_until.max(r.window_start + IP_WINDOW_MS);
    }
    r
}

/// Redis when configured and not known to be away.
fn shared(app: &App) -> Option<&crate::store::shared::SharedCounters> {
    app.shared.as_ref().filter(|s| s.usable(app.clock.now_ms()))
}

fn redis_failed(app: &App, e: &crate::store::shared::SharedError) {
    tracing::warn!(error = %e, "Redis unreachable: failed sign-in counters fall back to the database");
    if let Some(s) = &app.shared {
        s.mark_down(app.clock.now_ms());
    }
}

/// Counters outlive the longest window (24 h) by an hour.
const SHARED_TTL_MS: Millis = DAY_MS + 3_600_000;

/// What a transition makes of a counter: a new value to store, or a
/// verdict that leaves it as it is.
type Step = Result<ThrottleRow, Verdict>;

/// Applies `next` to a counter atomically: the check and the increment are
/// one step, so concurrent attempts on any instance each see the previous
/// one's increment.
async fn update(app: &App, key: &str, next: impl Fn(Option<ThrottleRow>) -> Step) -> AppResult<Step> {
    if let Some(s) = shared(app) {
        let attempt = async {
            // Compare-and-set: retried when another instance changed it meanwhile.
            for _ in 0..CAS_ATTEMPTS {
                let seen = s.get(key).await?;
                let row = match next(seen.row.clone()) {
                    Ok(row) => row,
                    Err(verdict) => return Ok(Some(Err(verdict))),
                };
                if s.compare_and_set(key, &seen, &row, SHARED_TTL_MS).await? {
                    return Ok(Some(Ok(row)));
                }
            }
            Ok::<_, crate::store::shared::SharedError>(None)
        }
        .await;
        match attempt {
            Ok(Some(step)) => return Ok(step),
            // A counter this contended is a burst: falling back to the
            // database would let it through on a second counter, so the
            // attempt is refused for a second instead.
            Ok(None) => {
                tracing::warn!(key = %key, "failed sign-in counter contended; attempt refused");
                return Ok(Err(Verdict::Blocked { retry_after_secs: 1 }));
            }
            Err(e) => redis_failed(app, &e),
        }
    }
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await?;
    let step = next(store::throttle::for_update(&mut tx, key).await?);
    if let Ok(row) = &step {
        store::throttle::save(&mut tx, row, now).await?;
    }
    tx.commit().await?;
    Ok(step)
}

/// Compare-and-set rounds before a contended Redis counter refuses the attempt.
const CAS_ATTEMPTS: usize = 32;

async fn clear(app: &App, key: &str) -> AppResult<()> {
    if let Some(s) = shared(app) {
        match s.delete(key).await {
            Ok(()) => return Ok(()),
            Err(e) => redis_failed(app, &e),
        }
    }
    let mut tx = app.store.begin_write().await?;
    store::throttle::clear(&mut tx, key).await?;
    tx.commit().await?;
    Ok(())
}

/// Counts an attempt before its password is checked: it is recorded as a
/// failure up front, in the same atomic step that checks the limit, so that
/// a burst of concurrent attempts gets at most the free allowance evaluated
/// (the old read, Argon2, then write let every attempt of a burst through).
/// A success then clears the count ([`Success`]). The source is checked
/// first, so that attempts from a blocked source never lengthen an
/// account's delay; an attempt refused here changes no counter.
///
/// With the counters in the database this is one write transaction (both
/// rows locked, checked and counted, source first); with Redis, two
/// compare-and-set steps. A process that dies between the reservation and
/// the answer leaves the attempt counted as a failure: the safe side.
pub async fn reserve(app: &App, email: &str, ip: Option<&str>) -> AppResult<Verdict> {
    let now = app.clock.now_ms();
    let limits = Limits::from_app(app);
    let email_key = email_key(email);
    let ip_key = ip.map(ip_key);
    let by_source = |r: Option<ThrottleRow>, key: &str| match verdict(r.as_ref(), now) {
        Verdict::Allowed => Ok(after_ip_failure(r, key, now, limits)),
        blocked => Err(blocked),
    };
    let by_address = |r: Option<ThrottleRow>| match verdict(r.as_ref(), now) {
        Verdict::Allowed => Ok(after_account_failure(r, &email_key, now, limits)),
        blocked => Err(blocked),
    };
    if shared(app).is_none() {
        let mut tx = app.store.begin_write().await?;
        let mut rows = Vec::with_capacity(2);
        if let Some(key) = &ip_key {
            match by_source(store::throttle::for_update(&mut tx, key).await?, key) {
                Ok(row) => rows.push(row),
                Err(blocked) => return Ok(blocked),
            }
        }
        match by_address(store::throttle::for_update(&mut tx, &email_key).await?) {
            Ok(row) => rows.push(row),
            // Refused unchecked: not a failure of the source either.
            Err(blocked) => return Ok(blocked),
        }
        for row in &rows {
            store::throttle::save(&mut tx, row, now).await?;
        }
        tx.commit().await?;
        warn_when_blocking(&rows, now);
        return Ok(Verdict::Allowed);
    }
    let mut rows = Vec::with_capacity(2);
    if let Some(key) = &ip_key {
        match update(app, key, |r| by_source(r, key)).await? {
            Err(blocked) => return Ok(blocked),
            Ok(row) => rows.push(row),
        }
    }
    match update(app, &email_key, by_address).await? {
        Err(blocked) => {
            release_source(app, ip).await?;
            Ok(blocked)
        }
        Ok(row) => {
            rows.push(row);
            warn_when_blocking(&rows, now);
            Ok(Verdict::Allowed)
        }
    }
}

fn warn_when_blocking(rows: &[ThrottleRow], now: Millis) {
    for row in rows.iter().filter(|r| r.blocked_until > now) {
        if row.key.starts_with("ip:") {
            tracing::warn!(source = %row.key, "source address blocked after failed sign-ins across accounts");
        } else {
            tracing::warn!(
                retry_after_secs = (row.blocked_until - now) / 1000,
                failures = row.consecutive_failures,
                "sign-in delayed after repeated failures"
            );
        }
    }
}

/// What a successful attempt owes the counters its reservation spent: the
/// address's count cleared, the source's failure given back (the source
/// budget counts failures, not sign-ins). With the counters in the
/// database it is written in the sign-in's own transaction ([`Self::in_tx`]);
/// with Redis, after that transaction commits ([`Self::after_commit`]).
#[must_use = "a success must clear the counters its reservation spent"]
pub struct Success {
    key: String,
    ip: Option<String>,
    shared: bool,
}

impl Success {
    pub fn of(app: &App, email: &str, ip: Option<&str>) -> Self {
        Success { key: email_key(email), ip: ip.map(str::to_string), shared: shared(app).is_some() }
    }

    /// Queues the clearing in the caller's transaction (database counters).
    pub fn in_tx(&self, app: &App, tx: &mut store::WriteTx) {
        if self.shared {
            return;
        }
        // Source first, then address: the order `reserve` locks them in,
        // so two transactions never wait on each other (PostgreSQL).
        if let Some(ip) = &self.ip {
            store::throttle::give_back_queued(tx, &ip_key(ip), app.clock.now_ms());
        }
        store::throttle::clear_queued(tx, &self.key);
    }

    /// Clears Redis counters once the sign-in committed. A Redis outage
    /// here leaves the attempt counted: the safe side.
    pub async fn after_commit(self, app: &App) -> AppResult<()> {
        if !self.shared {
            return Ok(());
        }
        clear(app, &self.key).await?;
        release_source(app, self.ip.as_deref()).await
    }
}

/// A successful attempt gives back the source budget its reservation
/// spent: the source budget counts failures, not sign-ins.
pub async fn release_source(app: &App, ip: Option<&str>) -> AppResult<()> {
    let Some(ip) = ip else { return Ok(()) };
    let key = ip_key(ip);
    // Nothing to report: a counter already gone needs no giving back.
    let _ = update(app, &key, |r| match r {
        Some(mut r) => {
            r.window_failures = (r.window_failures - 1).max(0);
            r.consecutive_failures = (r.consecutive_failures - 1).max(0);
            Ok(r)
        }
        None => Err(Verdict::Allowed),
    })
    .await?;
    Ok(())
}

/// Lost-password requests allowed per source address per 15 minutes.
pub const RESET_REQUESTS_PER_SOURCE: i64 = 10;

/// Spends one lost-password request of a source address's budget; false
/// when the budget is spent (the request is then silently dropped: the page
/// answers the same either way).
pub async fn spend_reset_budget(app: &App, ip: &str) -> AppResult<bool> {
    let now = app.clock.now_ms();
    let key = format!("reset-ip:{}", source_key(ip));
    let limits = Limits { max_delay_ms: IP_WINDOW_MS, ip_max_failures: RESET_REQUESTS_PER_SOURCE + 1 };
    // A contended Redis counter stores nothing: the request is dropped.
    let row = update(app, &key, |r| Ok(after_ip_failure(r, &key, now, limits))).await?.ok();
    Ok(row.is_some_and(|r| r.window_failures <= RESET_REQUESTS_PER_SOURCE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_budget_covers_an_ipv6_64_and_one_ipv4_address() {
        assert_eq!(ip_key("2001:db8:1:2::1"), ip_key("2001:db8:1:2:ffff::9"));
        assert_ne!(ip_key("2001:db8:1:2::1"), ip_key("2001:db8:1:3::1"));
        assert_eq!(ip_key("192.0.2.7"), "ip:192.0.2.7");
        assert_ne!(ip_key("192.0.2.7"), ip_key("192.0.2.8"));
        assert_eq!(ip_key("::ffff:192.0.2.7"), ip_key("192.0.2.7"));
    }

    const LIMITS: Limits = Limits { max_delay_ms: 3_600_000, ip_max_failures: 50 };

    fn fail(n: usize, start: Millis, step: Millis) -> ThrottleRow {
        let mut row = None;
        for i in 0..n {
            row = Some(after_account_failure(row, "email:x", start + i as i64 * step, LIMITS));
        }
        row.expect("at least one failure")
    }

    #[test]
    fn four_failures_are_free_and_the_fifth_starts_a_one_minute_delay() {
        let four = fail(4, 0, 1000);
        assert_eq!(verdict(Some(&four), 3001), Verdict::Allowed);
        let five = fail(5, 0, 1000);
        assert_eq!(verdict(Some(&five), 4001), Verdict::Blocked { retry_after_secs: 60 });
        assert_eq!(verdict(Some(&five), 4000 + 60_000), Verdict::Allowed, "the delay ends on its own");
    }

    #[test]
    fn delays_double_and_are_capped() {
        let six = fail(6, 0, 0);
        assert_eq!(six.blocked_until, 120_000);
        let many = fail(20, 0, 0);
        assert_eq!(many.blocked_until, LIMITS.max_delay_ms);
    }

    #[test]
    fn twenty_five_failures_a_day_block_until_the_window_ends() {
        // Spread out so the doubling delay never reaches the day's end.
        let limits = Limits { max_delay_ms: 60_000, ip_max_failures: 50 };
        let mut row = None;
        for i in 0..25 {
            row = Some(after_account_failure(row, "email:x", i * 120_000, limits));
        }
        let row = row.expect("row");
        assert_eq!(row.blocked_until, DAY_MS);
        let mut row24 = None;
        for i in 0..24 {
            row24 = Some(after_account_failure(row24, "email:x", i * 120_000, limits));
        }
        assert!(row24.expect("row").blocked_until < DAY_MS);
    }

    #[test]
    fn sources_group_ipv6_by_64_and_keep_ipv4_whole() {
        let source = |s: &str| source_of(s.parse().expect("ip"));
        assert_eq!(source("203.0.113.9"), "203.0.113.9");
        assert_ne!(source("203.0.113.9"), source("203.0.113.10"));
        assert_eq!(source("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(source("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(source("2001:db8:1:2:ffff:ffff:ffff:ffff"), source("2001:db8:1:2::1"));
        assert_ne!(source("2001:db8:1:3::1"), source("2001:db8:1:2::1"));
        // The longest key a parked request keeps.
        assert_eq!(source("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "ffff:ffff:ffff:ffff::/64");
    }

    #[test]
    fn source_budget_blocks_spraying() {
        let limits = Limits { max_delay_ms: 3_600_000, ip_max_failures: 3 };
        let mut row = None;
        for i in 0..2 {
            row = Some(after_ip_failure(row, "ip:x", i, limits));
        }
        assert_eq!(verdict(row.as_ref(), 5), Verdict::Allowed);
        let row = after_ip_failure(row, "ip:x", 3, limits);
        assert!(matches!(verdict(Some(&row), 5), Verdict::Blocked { .. }));
        assert_eq!(verdict(Some(&row), IP_WINDOW_MS), Verdict::Allowed);
    }
}
