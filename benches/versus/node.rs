//! The node `oidc-provider` targets (bench/oidc-provider/server.js): with
//! its Redis adapter and cluster workers, and in memory in one process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coop_idp::crypto::random_token;

use crate::support::*;
use crate::{Cleanup, Settings, Started};

pub const OIDC_PROVIDER_VERSION: &str = "9.13.3";

/// Where the node side keeps its state.
pub enum NodeState<'a> {
    /// `ADAPTER=redis`: the Redis at this URL, `Settings::node_workers`
    /// cluster workers.
    Redis(&'a str),
    /// `ADAPTER=memory`: one process, state in its memory.
    Memory,
}

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/oidc-provider")
}

/// node and npm present, the dependencies installed (`npm ci` when
/// node_modules is missing or older than the lock file); node's version.
pub fn node_ready() -> BenchResult<String> {
    let version = |program: &str| -> BenchResult<String> {
        let out = Command::new(program)
            .arg("--version")
            .output()
            .map_err(|e| format!("`{program}` not found ({e}); install node >= 20.19 and npm to run this column"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let node = version("node")?;
    version("npm")?;
    let dir = node_dir();
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    let locked = modified(dir.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        println!("npm ci in {} …", dir.display());
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("npm ci: {e}"))?;
        if !status.success() {
            return Err(format!("npm ci failed ({status})"));
        }
    }
    Ok(node)
}

/// One Argon2id hash through node's `argon2` package (median of 7), ms.
pub fn node_argon2_ms() -> Option<f64> {
    let out = Command::new("node").arg("argon2_time.js").current_dir(node_dir()).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Starts server.js; the accounts (the benchmark's person and one per
/// sign-in worker, as coop-idp's `add_account` makes them) come from a seed
/// file, in Redis or in memory alike.
pub async fn start_node(settings: &Settings, state: NodeState<'_>) -> BenchResult<Started> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let es256_secret = random_token();
    let rs256_secret = random_token();
    let accounts_file = dir.path().join("accounts.json");
    let accounts: Vec<serde_json::Value> =
        (0..SIGNIN_ACCOUNTS).map(|i| serde_json::json!({ "email": signin_email(i), "password": PASSWORD })).collect();
    let text = serde_json::to_vec(&accounts).map_err(|e| format!("accounts file: {e}"))?;
    std::fs::write(&accounts_file, text).map_err(|e| format!("accounts file: {e}"))?;
    let mut env: Vec<(&str, String)> = vec![
        ("NODE_ENV", "production".to_string()),
        ("PORT", port.to_string()),
        ("ISSUER", base.clone()),
        ("ACCOUNT_EMAIL", EMAIL.into()),
        ("ACCOUNT_PASSWORD", PASSWORD.into()),
        ("ACCOUNTS_FILE", accounts_file.display().to_string()),
        ("CLIENT_SECRET_BENCH_ES256", es256_secret.clone()),
        ("CLIENT_SECRET_BENCH_RS256", rs256_secret.clone()),
        ("REDIRECT_URIS", REDIRECT.into()),
    ];
    let mut cleanup = Cleanup::default();
    match state {
        NodeState::Redis(redis) => {
            let prefix = format!("bench-node-{}:", &random_token()[..10]);
            env.extend([
                ("ADAPTER", "redis".to_string()),
                ("REDIS_URL", redis.to_string()),
                ("REDIS_KEY_PREFIX", prefix.clone()),
                ("REDIS_CLEANUP_ON_EXIT", "1".into()),
                ("NODE_WORKERS", settings.node_workers.to_string()),
            ]);
            cleanup.redis = Some((redis.into(), prefix));
        }
        NodeState::Memory => env.extend([("ADAPTER", "memory".to_string()), ("NODE_WORKERS", "1".into())]),
    }
    let mut server = Server {
        program: "node".into(),
        args: vec!["server.js".into()],
        cwd: Some(node_dir()),
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        log: dir.path().join("node.log"),
        child: None,
        base: base.clone(),
        ready_path: "/.well-known/openid-configuration".into(),
        ready_marker: Some("listening (".into()),
    };
    let started = async {
        server.spawn()?;
        server.wait_ready(Instant::now()).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let http = http_client(64)?;
        let chain = [("prompt", "consent")];
        let cookies = ["_session", "_session.sig"];
        let backends = vec![base.clone()];
        let es256 =
            Rp::discover(&base, backends.clone(), http.clone(), "bench-es256", &es256_secret, &chain, &cookies).await?;
        let rs256 = Rp::discover(&base, backends, http, "bench-rs256", &rs256_secret, &chain, &cookies).await?;
        let (session, _) = rs256.sign_in().await?;
        Ok::<_, String>((es256, rs256, session))
    }
    .await;
    match started {
        Ok((es256, rs256, session)) => Ok(Started { servers: vec![server], es256, rs256, session, cleanup, _dir: dir }),
        Err(e) => {
            // The primary deletes its Redis keys on SIGTERM.
            server.stop();
            cleanup.run().await;
            Err(e)
        }
    }
}
