//! The running application: configuration, storage, keys and background jobs,
//! shared by every request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::auth::password::PasswordHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AppResult;
use crate::keys::KeyManager;
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
    pub mail: crate::mail::MailTransport,
    /// Wakes the mail sender as soon as a message is queued.
    pub mail_wake: Notify,
    /// Shared counters in Redis when `redis_url` is set.
    pub shared: Option<crate::store::shared::SharedCounters>,
}

impl App {
    /// Creates `data_dir`, connects and migrates the database, and loads (or
    /// generates) the signing keys.
    pub async fn open(config: Config, clock: Clock) -> AppResult<Arc<App>> {
        crate::keys::create_private_dir(&config.data_dir)
            .map_err(|e| crate::error::AppError::Invalid(format!("data_dir {}: {e}", config.data_dir.display())))?;
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        let app = App::with_store(config, store, clock)?;
        // The TOTP sealing key is made now, like the signing keys (so that
        // `migrate` makes it before instances start), and secrets kept in
        // clear by an earlier version are sealed.
        crate::auth::vault::load_key(&app).map_err(crate::error::AppError::from)?;
        crate::auth::vault::seal_clear_secrets(&app).await?;
        Ok(app)
    }

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
        let mail = crate::mail::MailTransport::from_config(&config)
            .map_err(|e| crate::error::AppError::Invalid(e.to_string()))?;
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

    /// Starts the background jobs; they stop when `shutdown` turns true.
    pub fn spawn_jobs(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let app = self.clone();
        tokio::spawn(crate::oidc::backchannel::run_sender(app, shutdown.clone()));
        tokio::spawn(crate::mail::run_sender(self.clone(), shutdown.clone()));
        // Security alerts: detectors on the connection log (once across instances).
        tokio::spawn(crate::alerts::run(self.clone(), shutdown.clone()));
        // SQLite: the WAL goes back into the database file here, outside the
        // write gate (see `store::pool_of`).
        let app = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                if let Err(e) = app.store.checkpoint_wal().await {
                    tracing::warn!(error = %e, "checkpointing the SQLite WAL");
                }
            }
        });
        let app = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                if let Err(e) = app.keys.reload_if_changed() {
                    tracing::error!(error = %e, "reloading signing keys");
                }
            }
        });
        let app = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let now = app.clock.now_ms();
                let result = async {
                    let mut tx = app.store.begin_write().await?;
                    let n = crate::store::grants::delete_expired(&mut tx, now).await?
                        + crate::store::throttle::delete_stale(&mut tx, now).await?;
                    tx.commit().await?;
                    Ok::<u64, crate::store::StoreError>(n)
                }
                .await;
                crate::metrics::job("cleanup", &result);
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cleaning expired grants");
                }
                let outcome = crate::provisioning::close_ended_conventions(&app).await;
                crate::metrics::job("convention_closures", &outcome);
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "closing accesses of ended conventions");
                }
                let outcome = crate::provisioning::review::send_reminders(&app).await;
                crate::metrics::job("review_reminders", &outcome);
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "yearly review reminders");
                }
                let outcome = crate::auth::session::sweep_expired(&app).await;
                crate::metrics::job("session_sweep", &outcome);
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "ending expired sessions");
                }
            }
        });
        // Checkpoints and purges, once across instances (leases), from one
        // period after start on: nothing needs them at the very start. The
        // period is a minute, or the checkpoint interval when it is shorter.
        let app = self.clone();
        let mut stop = shutdown;
        let holder = crate::crypto::random_b64(9);
        let period = Duration::from_secs(self.config.log_checkpoint_interval_secs.clamp(1, 60) as u64);
        tokio::spawn(async move {
            let first = tokio::time::Instant::now() + period;
            let mut tick = tokio::time::interval_at(first, period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                crate::retention::run_scheduled(&app, &holder).await;
            }
        });
        let app = self.clone();
        tokio::spawn(async move { app.hasher.warm_up().await });
    }
}
