//! Start-up, beside the faces (`cli`, `web`): opening the application and
//! running its background jobs. It is the one place that wires the domain
//! into the running context, so that `app` itself imports no domain module.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::app::App;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::store::Store;

/// Creates `data_dir`, connects and migrates the database, and loads (or
/// generates) the signing keys.
pub async fn open(config: Config, clock: Clock) -> AppResult<Arc<App>> {
    crate::keys::create_private_dir(&config.data_dir)
        .map_err(|e| AppError::Invalid(format!("data_dir {}: {e}", config.data_dir.display())))?;
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    let app = App::with_store(config, store, clock)?;
    // The TOTP sealing key is made now, like the signing keys (so that
    // `migrate` makes it before instances start), and secrets kept in
    // clear by an earlier version are sealed.
    crate::auth::vault::load_key(&app).map_err(AppError::from)?;
    crate::auth::vault::seal_clear_secrets(&app).await?;
    Ok(app)
}

/// Runs `job` every `period`, the first time after `first`, until `stop`
/// turns true. A run that outlasts the period delays the next one.
fn every<F, Fut>(mut stop: watch::Receiver<bool>, first: Duration, period: Duration, mut job: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            job().await;
        }
    });
}

/// Drains an outbox with `pass`: as soon as `wake` is notified, every half
/// second otherwise, until `stop` turns true. Each pass runs as its own
/// task: a panic in a transport ends that pass, not the sender (the message
/// it claimed is tried again once its lease ends). `job` names it in the
/// metrics, `what` in the logs.
fn drain<F, Fut>(
    app: &Arc<App>,
    mut stop: watch::Receiver<bool>,
    (job, what): (&'static str, &'static str),
    wake: fn(&App) -> &Notify,
    pass: F,
) where
    F: Fn(Arc<App>) -> Fut + Send + 'static,
    Fut: Future<Output = AppResult<usize>> + Send + 'static,
{
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            let outcome = tokio::spawn(pass(app.clone())).await;
            crate::metrics::job_run(job, matches!(outcome, Ok(Ok(_))));
            match outcome {
                Ok(Err(e)) => tracing::warn!(error = %e, "{what}"),
                Err(e) => tracing::error!(error = %e, "{what} pass crashed"),
                Ok(Ok(_)) => {}
            }
            tokio::select! {
                _ = wake(&app).notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
            }
        }
    });
}

/// Starts the background jobs; they stop when `shutdown` turns true.
pub fn spawn_jobs(app: &Arc<App>, shutdown: watch::Receiver<bool>) {
    drain(
        app,
        shutdown.clone(),
        ("backchannel", "back-channel logout sender"),
        |app| &app.backchannel_wake,
        |app| async move { crate::oidc::backchannel::send_due(&app).await },
    );
    drain(
        app,
        shutdown.clone(),
        ("mail", "mail sender"),
        |app| &app.mail_wake,
        |app| async move { crate::mail::send_due(&app.store, &app.clock, &app.mail, &app.config).await },
    );
    // Security alerts: detectors on the connection log (once across instances).
    tokio::spawn(crate::alerts::run(app.clone(), shutdown.clone()));
    // SQLite: the WAL goes back into the database file here, outside the
    // write gate (see `store::pool_of`).
    let a = app.clone();
    every(shutdown.clone(), Duration::ZERO, Duration::from_secs(1), move || {
        let app = a.clone();
        async move {
            if let Err(e) = app.store.checkpoint_wal().await {
                tracing::warn!(error = %e, "checkpointing the SQLite WAL");
            }
        }
    });
    let a = app.clone();
    every(shutdown.clone(), Duration::ZERO, Duration::from_secs(2), move || {
        let app = a.clone();
        async move {
            if let Err(e) = app.keys.reload_if_changed() {
                tracing::error!(error = %e, "reloading signing keys");
            }
        }
    });
    let a = app.clone();
    every(shutdown.clone(), Duration::ZERO, Duration::from_secs(60), move || minute_jobs(a.clone()));
    // Checkpoints and purges, once across instances (leases), from one
    // period after start on: nothing needs them at the very start. The
    // period is a minute, or the checkpoint interval when it is shorter.
    let a = app.clone();
    let holder = Arc::new(crate::crypto::random_b64(9));
    let period = Duration::from_secs(app.config.log_checkpoint_interval_secs.clamp(1, 60) as u64);
    every(shutdown, period, period, move || {
        let (app, holder) = (a.clone(), holder.clone());
        async move { crate::retention::run_scheduled(&app, &holder).await }
    });
    let a = app.clone();
    tokio::spawn(async move { a.hasher.warm_up().await });
}

/// The housekeeping run once a minute on every instance.
async fn minute_jobs(app: Arc<App>) {
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
