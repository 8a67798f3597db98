//! The running context: configuration, storage, keys, clock and outgoing
//! transports, shared by every request and job. It imports no domain module;
//! opening the application and running its jobs live in `startup`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::AppResult;
use crate::keys::KeyManager;
use crate::mail_transport::MailTransport;
use crate::password::PasswordHasher;
use crate::store::Store;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub keys: KeyManager,
    pub clock: Clock,
    pub hasher: PasswordHasher,
    /// Outgoing calls (back-channel logout). Never follows redirects.
    pub http: reqwest::Client,
    /// Wakes the back-channel sender as soon as something is queued.
    pub backchannel_wake: Notify,
    pub mail: MailTransport,
    /// Wakes the mail sender as soon as a message is queued.
    pub mail_wake: Notify,
    /// Shared counters in Redis when `redis_url` is set.
    pub shared: Option<crate::store::shared::SharedCounters>,
}

impl App {
    pub fn with_store(config: Config, store: Store, clock: Clock) -> AppResult<Arc<App>> {
        let keys = KeyManager::open(&config.keys_dir, config.max_signed_token_ttl_secs(), clock.now_ms())?;
        let hasher = PasswordHasher::new(&config.argon2)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::error::AppError::Invalid(format!("http client: {e}")))?;
        let shared = match &config.redis_url {
            Some(url) => Some(
                crate::store::shared::SharedCounters::new(url, &config.redis_key_prefix)
                    .map_err(|e| crate::error::AppError::Invalid(format!("redis_url: {e}")))?,
            ),
            None => None,
        };
        let mail = MailTransport::from_config(&config).map_err(|e| crate::error::AppError::Invalid(e.to_string()))?;
        Ok(Arc::new(App {
            config,
            store,
            keys,
            clock,
            hasher,
            http,
            backchannel_wake: Notify::new(),
            mail,
            mail_wake: Notify::new(),
            shared,
        }))
    }
}
