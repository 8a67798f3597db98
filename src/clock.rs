//! The one place that reads the time, so that tests of expiry never sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

#[derive(Clone, Default)]
pub struct Clock {
    /// Added to the system time; tests move it forward instead of sleeping.
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now_ms(&self) -> Millis {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        system + self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms() / 1000
    }

    /// Today's date, UTC.
    pub fn today(&self) -> time::Date {
        time::OffsetDateTime::from_unix_timestamp(self.now_secs()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH).date()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance_secs(&self, secs: i64) {
        self.offset_ms.fetch_add(secs * 1000, Ordering::Relaxed);
    }
}

/// RFC 3339 UTC with milliseconds, as the connection log shows time.
pub fn rfc3339_ms(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).unwrap_or_default()
}

/// How an outbox (mail, back-channel logout) retries a failed send: after
/// `first_ms`, doubled at each failure up to `max_ms`, until the row has
/// been failing for `give_up_after_ms`.
pub struct Backoff {
    pub first_ms: Millis,
    pub max_ms: Millis,
    pub give_up_after_ms: Millis,
}

impl Backoff {
    /// The delay after `attempts` failed attempts.
    pub fn delay_ms(&self, attempts: i64) -> Millis {
        (self.first_ms << attempts.clamp(0, 20) as u32).min(self.max_ms)
    }

    /// When a row queued at `created_at` is tried again after its
    /// `attempts`-th failure at `now`; `None`: given up.
    pub fn next_attempt(&self, now: Millis, created_at: Millis, attempts: i64) -> Option<Millis> {
        (now - created_at < self.give_up_after_ms).then(|| now + self.delay_ms(attempts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_then_gives_up() {
        let b = Backoff { first_ms: 1000, max_ms: 5 * 60 * 1000, give_up_after_ms: 3600 * 1000 };
        assert_eq!(b.delay_ms(0), 1000);
        assert_eq!(b.delay_ms(3), 8000);
        assert_eq!(b.delay_ms(30), b.max_ms);
        assert_eq!(b.delay_ms(-1), 1000);
        assert_eq!(b.next_attempt(10_000, 0, 2), Some(14_000));
        assert_eq!(b.next_attempt(3600 * 1000, 0, 2), None);
    }
}
