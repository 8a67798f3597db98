//! Shared counters in Redis (`redis_url`), so that several instances agree
//! without a database write per failed sign-in. Values are JSON, updated by
//! compare-and-set so the rules stay in Rust (`auth::throttle`) and run once.
//! When Redis is unreachable the caller falls back to the database for a few
//! seconds: brute-force protection never silently disappears.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::throttle::ThrottleRow;
use crate::clock::Millis;

/// How long to use the database after a Redis error before trying again.
const BACKOFF_MS: Millis = 5_000;

const COMPARE_AND_SET: &str = r#"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"#;

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct SharedError(String);

impl From<redis::RedisError> for SharedError {
    fn from(e: redis::RedisError) -> Self {
        SharedError(e.to_string())
    }
}

pub struct SharedCounters {
    client: redis::Client,
    prefix: String,
    connection: OnceCell<ConnectionManager>,
    down_until: AtomicI64,
}

/// A counter as stored, kept verbatim for the compare-and-set.
pub struct Versioned {
    pub row: Option<ThrottleRow>,
    raw: String,
}

impl SharedCounters {
    pub fn new(url: &str, prefix: &str) -> Result<Self, SharedError> {
        Ok(SharedCounters {
            client: redis::Client::open(url)?,
            prefix: prefix.to_string(),
            connection: OnceCell::new(),
            down_until: AtomicI64::new(0),
        })
    }

    /// False while a recent error says Redis is away.
    pub fn usable(&self, now: Millis) -> bool {
        self.down_until.load(Ordering::Relaxed) <= now
    }

    pub fn mark_down(&self, now: Millis) {
        self.down_until.store(now + BACKOFF_MS, Ordering::Relaxed);
    }

    async fn connection(&self) -> Result<ConnectionManager, SharedError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(Duration::from_millis(500))
            .set_number_of_retries(1);
        let c =
            self.connection.get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config)).await?;
        Ok(c.clone())
    }

    fn key(&self, key: &str) -> String {
        format!("{}throttle:{key}", self.prefix)
    }

    pub async fn get(&self, key: &str) -> Result<Versioned, SharedError> {
        let mut c = self.connection().await?;
        let raw: Option<String> = redis::cmd("GET").arg(self.key(key)).query_async(&mut c).await?;
        let raw = raw.unwrap_or_default();
        let row = if raw.is_empty() { None } else { serde_json::from_str(&raw).ok() };
        Ok(Versioned { row, raw })
    }

    /// Stores `new` if the value is still `seen`; false when someone else
    /// changed it meanwhile (the caller reads again and retries).
    pub async fn compare_and_set(
        &self,
        key: &str,
        seen: &Versioned,
        new: &ThrottleRow,
        ttl_ms: Millis,
    ) -> Result<bool, SharedError> {
        let mut c = self.connection().await?;
        let value = serde_json::to_string(new).map_err(|e| SharedError(e.to_string()))?;
        let done: i64 = redis::Script::new(COMPARE_AND_SET)
            .key(self.key(key))
            .arg(&seen.raw)
            .arg(value)
            .arg(ttl_ms.max(1))
            .invoke_async(&mut c)
            .await?;
        Ok(done == 1)
    }

    pub async fn delete(&self, key: &str) -> Result<(), SharedError> {
        let mut c = self.connection().await?;
        let _: i64 = redis::cmd("DEL").arg(self.key(key)).query_async(&mut c).await?;
        Ok(())
    }
}
