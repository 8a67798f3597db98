//! Start-up, beside the faces (`cli`, `web`): opening the application and
//! running its background jobs. It is the one place that wires the domain
//! into the running context, so that `app` itself imports no domain module.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::app::App;
use crate::clock::Clock;
use crate::config::{Config, Theme, is_under_gouv_fr};
use crate::error::{AppError, AppResult};
use crate::store::Store;

/// Creates `data_dir`, connects and migrates the database, and loads (or
/// generates) the signing keys.
pub async fn open(config: Config, clock: Clock) -> AppResult<Arc<App>> {
    crate::keys::create_private_dir(&config.data_dir)
        .map_err(|e| AppError::Invalid(format!("data_dir {}: {e}", config.data_dir.display())))?;
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    // Housekeeping: a failure leaves the WAL to the next start or to the
    // server's job, and must not stop the command.
    if let Err(e) = store.checkpoint_left_wal().await {
        tracing::warn!(error = %e, "copying back the WAL left by an earlier process");
    }
    let app = App::with_store(config, store, clock)?;
    // The TOTP sealing key is made now, like the signing keys (so that
    // `migrate` makes it before instances start), and secrets kept in
    // clear by an earlier version are sealed.
    crate::auth::vault::load_key(&app).map_err(AppError::from)?;
    crate::auth::vault::seal_clear_secrets(&app).await?;
    Ok(app)
}

/// Warns when `theme = "dsfr"` and the issuer is not under `.gouv.fr`: the
/// DSFR's terms of use (static/dsfr/LICENSE.md) reserve the State's visual
/// identity to the State administration and limit it to `.gouv.fr` domains.
/// Says whether it warned. `serve` calls it once, at start.
pub fn warn_about_the_look(config: &Config) -> bool {
    let outside = config.theme == Theme::Dsfr && !is_under_gouv_fr(&config.issuer);
    if outside {
        tracing::warn!(
            issuer = %config.issuer_str(),
            "theme = \"dsfr\" outside .gouv.fr: the DSFR's terms of use reserve it to the State administration \
             and .gouv.fr domains; use theme = \"neutral\" (the default) unless this service is the State's"
        );
    }
    outside
}

/// What `serve` checks before it listens: settings that work but are
/// probably not what was meant (each a warning, logged), and its claim on a
/// SQLite database (held while it serves).
pub struct StartUpChecks {
    pub warnings: Vec<String>,
    pub sqlite_claim: Option<std::fs::File>,
}

/// The checks of `serve`'s start (README "Configuration"): `listen` and a
/// loopback `issuer` on different ports; a second server on one SQLite
/// database.
pub fn start_up_checks(config: &Config) -> StartUpChecks {
    let mut warnings = Vec::new();
    warnings.extend(config.listen_issuer_mismatch());
    let sqlite_claim = match config.sqlite_file() {
        Some(db) => match claim_sqlite(&db, config) {
            Ok(claim) => Some(claim),
            Err(w) => {
                warnings.push(w);
                None
            }
        },
        None => None,
    };
    StartUpChecks { warnings, sqlite_claim }
}

/// The lock file beside a SQLite database that its server holds.
pub fn sqlite_lock_file(db: &std::path::Path) -> std::path::PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".serve-lock");
    db.with_file_name(name)
}

/// Takes the advisory lock (flock) of `<database>.serve-lock`, and writes
/// who holds it. SQLite is for one server (several instances run on
/// PostgreSQL): a second server on the same file still works, slower, and
/// is warned with the holder's process id; the operating system releases
/// the lock when the holder ends, however it ends. The warning when the
/// lock cannot be taken.
fn claim_sqlite(db: &std::path::Path, config: &Config) -> Result<std::fs::File, String> {
    use std::io::Write;
    let path = sqlite_lock_file(db);
    let shown = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
    let opened = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
    let mut file = opened.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let holder = format!("pid {}, listen {}\n", std::process::id(), config.listen);
            let _ = file.set_len(0).and_then(|_| file.write_all(holder.as_bytes()));
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(format!(
                "another coop-idp server ({}) already serves the SQLite database {}: SQLite is meant for one \
                 server; run several instances on PostgreSQL (README \"Running several instances\")",
                holder.trim(),
                shown.display()
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
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
                // A pass takes a batch: go on at once while there is more.
                Ok(Ok(done)) if done > 0 => continue,
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the log says while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = sink.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn config(theme: &str, issuer: &str) -> Config {
        let env = [("COOP_IDP_THEME", theme), ("COOP_IDP_ISSUER", issuer)];
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(None, &env).expect("config")
    }

    #[test]
    fn the_dsfr_outside_gouv_fr_is_warned_about() {
        let mut warned = false;
        let log = logged(|| warned = warn_about_the_look(&config("dsfr", "https://ctg.caf.fr")));
        assert!(warned, "a Caf's domain is outside the DSFR's perimeter");
        assert!(log.contains("WARN") && log.contains("theme = \"dsfr\" outside .gouv.fr"), "{log}");
        assert!(log.contains("issuer=https://ctg.caf.fr"), "{log}");

        for (theme, issuer) in [("dsfr", "https://connexion.travail.gouv.fr"), ("neutral", "https://ctg.caf.fr")] {
            let mut warned = true;
            let log = logged(|| warned = warn_about_the_look(&config(theme, issuer)));
            assert!(!warned && log.is_empty(), "{theme} on {issuer}: {log}");
        }
    }
}
