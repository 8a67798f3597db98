//! `serve` and `migrate`.

use tokio::sync::watch;

use super::{CliError, open};
use crate::config::Config;

pub(super) async fn migrate(config: Config) -> Result<(), CliError> {
    open(config).await?;
    println!("migrations applied");
    Ok(())
}

pub(super) async fn serve(config: Config) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let listen = config.listen;
    let app = open(config).await?;
    crate::startup::warn_about_the_look(&app.config);
    // Held until the server stops.
    let checks = crate::startup::start_up_checks(&app.config);
    for warning in &checks.warnings {
        tracing::warn!("{warning}");
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| CliError::Failure(format!("listen {listen}: {e}")))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(address) = app.config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| CliError::Failure(format!("metrics_listen {address}: {e}")))?;
        let mut stop = stop_rx.clone();
        let served = app.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::web::serve_metrics(served, metrics, shutdown).await {
                tracing::error!(error = %e, "metrics listener");
            }
        });
        tracing::info!(address = %address, "metrics listening");
    }
    crate::startup::spawn_jobs(&app, stop_rx);
    tracing::info!(address = %listen, issuer = %app.config.issuer_str(), ready_ms = started.elapsed().as_millis() as u64, "coop-idp listening");
    // What a newcomer does next (README "Quick start"), where they look.
    tracing::info!(
        home = %app.config.url("/"),
        discovery = %app.config.url("/.well-known/openid-configuration"),
        "next: in another terminal, `coop-idp partner add`, `account invite` and `client add` (README \"Quick start\")"
    );
    let shutdown = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    };
    crate::web::serve(app.clone(), listener, shutdown).await.map_err(|e| CliError::Failure(e.to_string()))?;
    app.store.close().await;
    drop(checks.sqlite_claim);
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
