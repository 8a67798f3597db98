//! The coop-idp targets: one instance on SQLite, two on PostgreSQL + Redis.

use std::path::Path;
use std::time::{Duration, Instant};

use coop_idp::crypto::random_token;

use crate::support::*;
use crate::{Cleanup, Settings, Started};

fn coop_env(
    dir: &Path,
    issuer: &str,
    port: u16,
    database_url: &str,
    metrics: bool,
) -> BenchResult<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = vec![
        ("COOP_IDP_ISSUER".into(), issuer.into()),
        ("COOP_IDP_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("COOP_IDP_DATA_DIR".into(), dir.join(format!("data-{port}")).display().to_string()),
        ("COOP_IDP_KEYS_DIR".into(), dir.join("keys").display().to_string()),
        ("COOP_IDP_DATABASE_URL".into(), database_url.into()),
    ];
    env.extend(argon2_env());
    if metrics {
        // As a production deployment (docker-compose.yml) runs it.
        env.push(("COOP_IDP_METRICS_LISTEN".into(), format!("127.0.0.1:{}", free_port()?)));
    }
    Ok(env)
}

/// Account and clients on the database `env` names; the clients' secrets.
async fn coop_setup(bin: &Path, env: &[(String, String)]) -> BenchResult<(String, String)> {
    add_account(env).await?;
    let es256 = add_client(bin, env, "bench-es256", "ES256")?;
    let rs256 = add_client(bin, env, "bench-rs256", "RS256")?;
    Ok((es256, rs256))
}

async fn coop_rps(
    issuer: &str,
    backends: Vec<String>,
    secrets: &(String, String),
    workers: usize,
) -> BenchResult<(Rp, Rp, String)> {
    let http = http_client(workers)?;
    let cookies = ["coop_session"];
    let es256 = Rp::discover(issuer, backends.clone(), http.clone(), "bench-es256", &secrets.0, &[], &cookies).await?;
    let rs256 = Rp::discover(issuer, backends, http, "bench-rs256", &secrets.1, &[], &cookies).await?;
    let (session, _) = rs256.sign_in().await?;
    Ok((es256, rs256, session))
}

pub async fn start_sqlite(settings: &Settings, metrics: bool) -> BenchResult<Started> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let db = format!("sqlite://{}/coop-idp.db", dir.path().join("db").display());
    std::fs::create_dir_all(dir.path().join("db")).map_err(|e| e.to_string())?;
    let env = coop_env(dir.path(), &base, port, &db, metrics)?;
    let secrets = coop_setup(&settings.bin, &env).await?;
    let mut server = Server::coop(&settings.bin, &env, dir.path().join(format!("server-{port}.log")), &base);
    server.spawn()?;
    server.wait_ready(Instant::now()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (es256, rs256, session) = coop_rps(&base, vec![base.clone()], &secrets, 64).await?;
    Ok(Started { servers: vec![server], es256, rs256, session, cleanup: Cleanup::default(), _dir: dir })
}

/// Two instances on one PostgreSQL schema, one Redis prefix and one keys
/// folder, configured as docker-compose.yml and the multi-instance tests
/// configure theirs; both publish the same issuer (the load balancer's).
pub async fn start_pair(settings: &Settings, postgres: &str, redis: &str) -> BenchResult<Started> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let (db, schema) = postgres_schema(postgres).await?;
    let prefix = format!("bench-{}:", &random_token()[..10]);
    let mut cleanup =
        Cleanup { postgres: Some((postgres.into(), schema)), redis: Some((redis.into(), prefix.clone())) };
    let issuer = "http://localhost:8080";
    let result = async {
        let mut servers = Vec::new();
        let mut backends = Vec::new();
        let mut secrets = None;
        for _ in 0..2 {
            let port = free_port()?;
            let mut env = coop_env(dir.path(), issuer, port, &db, true)?;
            env.push(("COOP_IDP_REDIS_URL".into(), redis.into()));
            env.push(("COOP_IDP_REDIS_KEY_PREFIX".into(), prefix.clone()));
            if secrets.is_none() {
                secrets = Some(coop_setup(&settings.bin, &env).await?);
            }
            let base = format!("http://127.0.0.1:{port}");
            let mut server = Server::coop(&settings.bin, &env, dir.path().join(format!("server-{port}.log")), &base);
            server.spawn()?;
            server.wait_ready(Instant::now()).await?;
            servers.push(server);
            backends.push(base);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let secrets = secrets.ok_or("no instance")?;
        let (es256, rs256, session) = coop_rps(issuer, backends, &secrets, 64).await?;
        Ok::<_, String>((servers, es256, rs256, session))
    }
    .await;
    match result {
        Ok((servers, es256, rs256, session)) => Ok(Started { servers, es256, rs256, session, cleanup, _dir: dir }),
        Err(e) => {
            std::mem::take(&mut cleanup).run().await;
            Err(e)
        }
    }
}
