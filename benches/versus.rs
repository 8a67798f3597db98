//! Side by side, in one run on this machine: coop-idp on SQLite (one
//! instance), coop-idp on PostgreSQL + Redis (two instances, requests spread
//! round-robin over both as a load balancer would) and node `oidc-provider`
//! configured like a production deployment (bench/oidc-provider: Redis
//! adapter, Argon2id sign-in, one worker per core).
//!
//! Run with:
//!
//! ```sh
//! cargo build --release
//! COOP_IDP_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//! COOP_IDP_BENCH_REDIS_URL=redis://127.0.0.1:6379 cargo bench --bench versus
//! ```
//!
//! Scenarios (the same as `benches/server.rs`, same relying-party code):
//! refresh grant (ES256 ID token), SSO round trip (authorize with a session →
//! token → userinfo; RS256, then ES256), password sign-in (authorize → sign-in page →
//! form → code), each at 1, 8 and 32 concurrent clients. Measured:
//! operations/s, p50/p99, errors, server CPU per operation and RSS of the
//! server process(es). Then the cost of the metrics middleware: an A/B of two
//! SQLite servers, with and without `metrics_listen`, and a micro-benchmark
//! of the per-request counting.
//!
//! Environment:
//! - `COOP_IDP_BENCH_SECS`: seconds per cell (default 6; the whole run
//!   takes about 6 minutes);
//! - `COOP_IDP_BENCH_CLIENTS`: concurrency levels (default `1,8,32`);
//! - `COOP_IDP_BENCH_TARGETS`: among `sqlite,pair,node,metrics` (default all);
//! - `COOP_IDP_BENCH_POSTGRES_URL`, `COOP_IDP_BENCH_REDIS_URL`: PostgreSQL
//!   (a schema of its own, dropped afterwards) and Redis (keys under a
//!   prefix of their own, deleted afterwards). Without PostgreSQL and Redis
//!   the two-instance column is skipped; without Redis, the node column too;
//! - `COOP_IDP_BENCH_NODE_WORKERS`: node cluster workers (default: cores).
//!
//! `npm ci` runs here (only when bench/oidc-provider/node_modules is missing
//! or older than package-lock.json), never in `.ci/run`; without node or npm
//! the node column is skipped, said so.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coop_idp::crypto::random_token;
use support::*;

const TARGET_RATIO: f64 = 5.0;
const TARGET_SIGNIN_SHARE: f64 = 0.80;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Refresh,
    Sso,
    /// The SSO round trip again with the ES256 client, on both sides: the
    /// same work without the RSA-2048 signature that both pay in `Sso`.
    SsoEs256,
    Signin,
}

impl Scenario {
    const ALL: [Scenario; 4] = [Scenario::Refresh, Scenario::Sso, Scenario::SsoEs256, Scenario::Signin];
    /// The scenarios with a throughput target against node.
    const COMPARED: [Scenario; 3] = [Scenario::Refresh, Scenario::Sso, Scenario::SsoEs256];

    fn label(self) -> &'static str {
        match self {
            Scenario::Refresh => "Refresh grant (ES256)",
            Scenario::Sso => "SSO round trip (RS256)",
            Scenario::SsoEs256 => "SSO round trip (ES256)",
            Scenario::Signin => "Password sign-in",
        }
    }
}

struct Cell {
    scenario: Scenario,
    clients: usize,
    m: Measured,
}

struct TargetRun {
    name: String,
    processes: String,
    idle_rss: f64,
    peak_rss: f64,
    cells: Vec<Cell>,
}

impl TargetRun {
    fn cell(&self, scenario: Scenario, clients: usize) -> Option<&Measured> {
        self.cells.iter().find(|c| c.scenario == scenario && c.clients == clients).map(|c| &c.m)
    }
}

/// A started target: its processes, its relying parties and a session.
struct Started {
    servers: Vec<Server>,
    es256: Rp,
    rs256: Rp,
    session: String,
    cleanup: Cleanup,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct Cleanup {
    postgres: Option<(String, String)>,
    redis: Option<(String, String)>,
}

impl Cleanup {
    async fn run(self) {
        if let Some((url, schema)) = self.postgres {
            drop_postgres_schema(&url, &schema).await;
        }
        if let Some((url, prefix)) = self.redis {
            let _ = delete_redis_prefix(&url, &prefix).await;
        }
    }
}

struct Settings {
    bin: PathBuf,
    secs: Duration,
    clients: Vec<usize>,
    postgres: Option<String>,
    redis: Option<String>,
    node_workers: usize,
}

#[tokio::main]
async fn main() {
    let secs = env_number("COOP_IDP_BENCH_SECS", 6);
    let clients: Vec<usize> = env_text("COOP_IDP_BENCH_CLIENTS")
        .unwrap_or_else(|| "1,8,32".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
        .collect();
    let targets = env_text("COOP_IDP_BENCH_TARGETS").unwrap_or_else(|| "sqlite,pair,node,metrics".into());
    let wants = |t: &str| targets.split(',').any(|x| x.trim() == t);
    let cores = cores();
    let settings = Settings {
        bin: server_binary(),
        secs: Duration::from_secs(secs),
        clients: clients.clone(),
        postgres: env_text("COOP_IDP_BENCH_POSTGRES_URL"),
        redis: env_text("COOP_IDP_BENCH_REDIS_URL"),
        node_workers: env_number("COOP_IDP_BENCH_NODE_WORKERS", cores as u64) as usize,
    };
    let load_before = load_average();
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    println!(
        "side-by-side benchmark: {} s per cell, clients {clients:?}, {cores} cores, commit {commit}{}, load {load_before}",
        secs,
        if dirty { " (modified tree)" } else { "" }
    );

    let argon2_ms = measure_argon2_ms();
    let argon2_limit = cores as f64 * 1000.0 / argon2_ms;
    println!(
        "one Argon2id hash (Rust, m={ARGON2_MEMORY_KIB} t={ARGON2_ITERATIONS} p={ARGON2_PARALLELISM}): {argon2_ms:.1} ms → limit {argon2_limit:.1} /s"
    );

    let mut runs: Vec<TargetRun> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut node_hash_ms = None;

    if wants("sqlite") {
        run_target("coop-idp, SQLite, 1 instance", start_sqlite(&settings, true), &settings, &mut runs, &mut notes)
            .await;
    }
    if wants("pair") {
        match (&settings.postgres, &settings.redis) {
            (Some(pg), Some(redis)) => {
                run_target(
                    "coop-idp, PostgreSQL + Redis, 2 instances",
                    start_pair(&settings, pg, redis),
                    &settings,
                    &mut runs,
                    &mut notes,
                )
                .await
            }
            _ => skip(
                &mut notes,
                "coop-idp on PostgreSQL + Redis: COOP_IDP_BENCH_POSTGRES_URL and COOP_IDP_BENCH_REDIS_URL are needed",
            ),
        }
    }
    if wants("node") {
        let ready = match &settings.redis {
            None => Err("COOP_IDP_BENCH_REDIS_URL is needed (its adapter is on Redis)".to_string()),
            Some(redis) => node_ready().map(|version| (redis, version)),
        };
        match ready {
            Err(e) => skip(&mut notes, &format!("node oidc-provider: {e}")),
            Ok((redis, version)) => {
                node_hash_ms = node_argon2_ms();
                if let Some(ms) = node_hash_ms {
                    println!("one Argon2id hash (node `argon2`, same parameters): {ms:.1} ms");
                }
                run_target(
                    &format!(
                        "node oidc-provider {OIDC_PROVIDER_VERSION} (node {version}, {} workers)",
                        settings.node_workers
                    ),
                    start_node(&settings, redis),
                    &settings,
                    &mut runs,
                    &mut notes,
                )
                .await
            }
        }
    }
    let micro = if wants("metrics") { Some(metrics_micro()) } else { None };
    let ab = if wants("metrics") {
        match metrics_ab(&settings).await {
            Ok(ab) => Some(ab),
            Err(e) => {
                skip(&mut notes, &format!("metrics A/B failed: {e}"));
                None
            }
        }
    } else {
        None
    };
    let load_after = load_average();

    let report = Report {
        settings: &settings,
        cores,
        commit: format!("{commit}{}", if dirty { " + uncommitted changes" } else { "" }),
        load_before,
        load_after,
        argon2_ms,
        argon2_limit,
        node_hash_ms,
        runs: &runs,
        notes: &notes,
        micro,
        ab,
    };
    println!("\n{}", report.markdown());
}

const OIDC_PROVIDER_VERSION: &str = "9.13.3";

fn skip(notes: &mut Vec<String>, why: &str) {
    println!("SKIPPED: {why}");
    notes.push(format!("Skipped: {why}."));
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

async fn run_target(
    name: &str,
    start: impl std::future::Future<Output = BenchResult<Started>>,
    settings: &Settings,
    runs: &mut Vec<TargetRun>,
    notes: &mut Vec<String>,
) {
    println!("\n== {name} ==");
    let started = match start.await {
        Ok(s) => s,
        Err(e) => {
            skip(notes, &format!("{name} did not start: {e}"));
            return;
        }
    };
    let outcome = measure_target(name, &started, settings).await;
    let Started { mut servers, cleanup, .. } = started;
    for s in &mut servers {
        s.stop();
    }
    cleanup.run().await;
    match outcome {
        Ok(run) => runs.push(run),
        Err(e) => skip(notes, &format!("{name} failed: {e}")),
    }
}

async fn measure_target(name: &str, t: &Started, settings: &Settings) -> BenchResult<TargetRun> {
    let servers: Vec<&Server> = t.servers.iter().collect();
    let idle_rss: f64 = servers.iter().map(|s| s.memory_mib().map(|m| m.0)).sum::<BenchResult<f64>>()?;
    let processes = servers.iter().map(|s| s.pids().len()).sum::<usize>();
    println!("idle RSS {idle_rss:.1} MiB ({processes} processes)");
    // Warm-up, not counted (the node side's JIT, every side's caches).
    let mut session = t.session.clone();
    let warm = bench_sso(&t.rs256, &session, 8, Duration::from_secs(2)).await;
    if warm.errors > 0 {
        return Err(format!("warm-up: {}", warm.first_error.unwrap_or_default()));
    }
    let mut cpu = CpuMeter::new(&servers);
    let mut cells = Vec::new();
    for scenario in Scenario::ALL {
        for &clients in &settings.clients {
            // Each refresh worker's chain is made before the clock starts.
            let mut m = match scenario {
                Scenario::Refresh => {
                    let (chains, now) = new_chains(&t.es256, &session, clients).await?;
                    session = now;
                    cpu.reset(&servers);
                    run_refresh(&t.es256, &session, chains, settings.secs).await
                }
                Scenario::Sso => {
                    cpu.reset(&servers);
                    bench_sso(&t.rs256, &session, clients, settings.secs).await
                }
                Scenario::SsoEs256 => {
                    cpu.reset(&servers);
                    bench_sso(&t.es256, &session, clients, settings.secs).await
                }
                Scenario::Signin => {
                    cpu.reset(&servers);
                    bench_signins(&t.rs256, clients, settings.secs).await.0
                }
            };
            cpu.charge(&mut m, &servers);
            progress(&format!("{name} · {} · {clients} clients", scenario.label()), &m);
            cells.push(Cell { scenario, clients, m });
        }
    }
    let peak_rss: f64 = servers.iter().map(|s| s.memory_mib().map(|m| m.1)).sum::<BenchResult<f64>>()?;
    Ok(TargetRun { name: name.into(), processes: format!("{processes}"), idle_rss, peak_rss, cells })
}

// ---------------------------------------------------------------------------
// The three targets

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

async fn start_sqlite(settings: &Settings, metrics: bool) -> BenchResult<Started> {
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
async fn start_pair(settings: &Settings, postgres: &str, redis: &str) -> BenchResult<Started> {
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

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/oidc-provider")
}

/// node and npm present, the dependencies installed (`npm ci` when
/// node_modules is missing or older than the lock file); node's version.
fn node_ready() -> BenchResult<String> {
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
fn node_argon2_ms() -> Option<f64> {
    let out = Command::new("node").arg("argon2_time.js").current_dir(node_dir()).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

async fn start_node(settings: &Settings, redis: &str) -> BenchResult<Started> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let prefix = format!("bench-node-{}:", &random_token()[..10]);
    let es256_secret = random_token();
    let rs256_secret = random_token();
    let env: Vec<(String, String)> = [
        ("NODE_ENV", "production".to_string()),
        ("PORT", port.to_string()),
        ("ISSUER", base.clone()),
        ("REDIS_URL", redis.to_string()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        ("REDIS_CLEANUP_ON_EXIT", "1".into()),
        ("NODE_WORKERS", settings.node_workers.to_string()),
        ("ACCOUNT_EMAIL", EMAIL.into()),
        ("ACCOUNT_PASSWORD", PASSWORD.into()),
        ("CLIENT_SECRET_BENCH_ES256", es256_secret.clone()),
        ("CLIENT_SECRET_BENCH_RS256", rs256_secret.clone()),
        ("REDIRECT_URIS", REDIRECT.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut server = Server {
        program: "node".into(),
        args: vec!["server.js".into()],
        cwd: Some(node_dir()),
        env,
        log: dir.path().join("node.log"),
        child: None,
        base: base.clone(),
        ready_path: "/.well-known/openid-configuration".into(),
        ready_marker: Some("listening (".into()),
    };
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
    let cleanup = Cleanup { postgres: None, redis: Some((redis.into(), prefix)) };
    Ok(Started { servers: vec![server], es256, rs256, session, cleanup, _dir: dir })
}

// ---------------------------------------------------------------------------
// The metrics middleware

struct Micro {
    one_thread_ns: f64,
    two_threads_ns: f64,
}

/// The per-request counting alone (`metrics::request`: two label sets
/// built, a counter and a histogram found and bumped), ns per call.
fn metrics_micro() -> Micro {
    let calls = 1_000_000u32;
    let run = |n: u32| {
        let routes = ["/token", "/authorize", "/userinfo"];
        let t = Instant::now();
        for i in 0..n {
            coop_idp::metrics::request(routes[(i % 3) as usize], "POST", 200, Duration::from_micros(700));
        }
        t.elapsed().as_secs_f64() * 1e9 / n as f64
    };
    run(10_000);
    let one_thread_ns = run(calls);
    let threads: Vec<_> = (0..2).map(|_| std::thread::spawn(move || run(calls))).collect();
    let two: Vec<f64> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    let two_threads_ns = two.iter().sum::<f64>() / two.len() as f64;
    println!(
        "metrics::request: {one_thread_ns:.0} ns/call on one thread, {two_threads_ns:.0} ns/call with two threads at once"
    );
    Micro { one_thread_ns, two_threads_ns }
}

struct Ab {
    clients: usize,
    rounds: usize,
    /// (scenario, with metrics, without metrics): the mean of the rounds.
    rows: Vec<(Scenario, Measured, Measured)>,
}

/// Two SQLite servers, one with `metrics_listen` (the middleware on), one
/// without; refresh and SSO at 32 clients, alternating A/B then B/A.
async fn metrics_ab(settings: &Settings) -> BenchResult<Ab> {
    println!("\n== metrics middleware A/B (SQLite) ==");
    let with = start_sqlite(settings, true).await?;
    let without = start_sqlite(settings, false).await?;
    let clients = 32;
    let rounds = 2;
    let mut rows = Vec::new();
    for scenario in [Scenario::Refresh, Scenario::Sso] {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for round in 0..rounds {
            let order: [(bool, &Started); 2] =
                if round % 2 == 0 { [(true, &with), (false, &without)] } else { [(false, &without), (true, &with)] };
            for (metrics, t) in order {
                let servers: Vec<&Server> = t.servers.iter().collect();
                let mut cpu = CpuMeter::new(&servers);
                let mut m = match scenario {
                    Scenario::Refresh => {
                        // coop-idp keeps the session's cookie: `_now` is the same.
                        let (chains, _now) = new_chains(&t.es256, &t.session, clients).await?;
                        cpu.reset(&servers);
                        run_refresh(&t.es256, &t.session, chains, settings.secs).await
                    }
                    _ => {
                        cpu.reset(&servers);
                        bench_sso(&t.rs256, &t.session, clients, settings.secs).await
                    }
                };
                cpu.charge(&mut m, &servers);
                progress(&format!("{} · metrics {}", scenario.label(), if metrics { "on" } else { "off" }), &m);
                if metrics { a.push(m) } else { b.push(m) }
            }
        }
        rows.push((scenario, mean(&a), mean(&b)));
    }
    for t in [with, without] {
        let Started { mut servers, cleanup, .. } = t;
        for s in &mut servers {
            s.stop();
        }
        cleanup.run().await;
    }
    Ok(Ab { clients, rounds, rows })
}

fn mean(ms: &[Measured]) -> Measured {
    let n = ms.len().max(1) as f64;
    let avg = |f: fn(&Measured) -> f64| ms.iter().map(f).sum::<f64>() / n;
    Measured {
        ops_per_s: avg(|m| m.ops_per_s),
        p50_ms: avg(|m| m.p50_ms),
        p99_ms: avg(|m| m.p99_ms),
        ops: ms.iter().map(|m| m.ops).sum(),
        errors: ms.iter().map(|m| m.errors).sum(),
        first_error: ms.iter().find_map(|m| m.first_error.clone()),
        server_cpu_ms: avg(|m| m.server_cpu_ms),
        client_cpu_ms: avg(|m| m.client_cpu_ms),
        rss_after_mib: avg(|m| m.rss_after_mib),
    }
}

// ---------------------------------------------------------------------------
// The report

struct Report<'a> {
    settings: &'a Settings,
    cores: usize,
    commit: String,
    load_before: String,
    load_after: String,
    argon2_ms: f64,
    argon2_limit: f64,
    node_hash_ms: Option<f64>,
    runs: &'a [TargetRun],
    notes: &'a [String],
    micro: Option<Micro>,
    ab: Option<Ab>,
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let mut md = String::new();
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        md.push_str(&format!(
            "Run of {date}, commit {}, {} cores, {} s per cell, load average (1, 5, 15 min) {} before and {} after.\n\n",
            self.commit,
            self.cores,
            self.settings.secs.as_secs(),
            self.load_before,
            self.load_after
        ));
        for note in self.notes {
            md.push_str(&format!("{note}\n\n"));
        }
        if !self.runs.is_empty() {
            self.cells_and_ratios(&mut md);
        }
        self.metrics(&mut md);
        md
    }

    /// Every cell, the ratios against node and the sign-ins.
    fn cells_and_ratios(&self, md: &mut String) {
        // Every cell.
        md.push_str("| Scenario | Clients |");
        for r in self.runs {
            md.push_str(&format!(" {} |", r.name));
        }
        md.push_str("\n|---|---:|");
        for _ in self.runs {
            md.push_str("---|");
        }
        md.push('\n');
        for scenario in Scenario::ALL {
            for &clients in &self.settings.clients {
                md.push_str(&format!("| {} | {clients} |", scenario.label()));
                for r in self.runs {
                    match r.cell(scenario, clients) {
                        Some(m) => md.push_str(&format!(
                            " {:.0} /s · p50 {} · p99 {} ms · {} err · {:.2} ms CPU/op |",
                            m.ops_per_s,
                            ms(m.p50_ms),
                            ms(m.p99_ms),
                            m.errors,
                            m.server_cpu_ms
                        )),
                        None => md.push_str(" — |"),
                    }
                }
                md.push('\n');
            }
        }
        md.push_str("| RSS at rest after one sign-in → peak (Σ VmHWM) | |");
        for r in self.runs {
            md.push_str(&format!(" {:.0} → {:.0} MiB ({} processes) |", r.idle_rss, r.peak_rss, r.processes));
        }
        md.push_str("\n\n");

        // Ratios against node.
        let node = self.runs.iter().find(|r| r.name.starts_with("node"));
        let coops: Vec<&TargetRun> = self.runs.iter().filter(|r| r.name.starts_with("coop-idp")).collect();
        if let Some(node) = node {
            md.push_str("Throughput ratio coop-idp ÷ node at the same number of clients, with both p99 (target ≥ 5× at equal p99):\n\n");
            md.push_str("| Scenario | Clients |");
            for c in &coops {
                md.push_str(&format!(" {} ÷ node | p99 coop-idp vs node |", c.name));
            }
            md.push_str("\n|---|---:|");
            for _ in &coops {
                md.push_str("---:|---|");
            }
            md.push('\n');
            for scenario in Scenario::COMPARED {
                for &clients in &self.settings.clients {
                    md.push_str(&format!("| {} | {clients} |", scenario.label()));
                    for c in &coops {
                        match (c.cell(scenario, clients), node.cell(scenario, clients)) {
                            (Some(a), Some(b)) => md.push_str(&format!(
                                " {:.1}× | {} vs {} ms |",
                                a.ops_per_s / b.ops_per_s,
                                ms(a.p99_ms),
                                ms(b.p99_ms)
                            )),
                            _ => md.push_str(" — | — |"),
                        }
                    }
                    md.push('\n');
                }
            }
            md.push_str(
                "\nAt equal p99: node's best throughput, against coop-idp's best throughput among the cells whose \
                 p99 is not above node's p99 in that cell:\n\n",
            );
            md.push_str("| Scenario | node best | coop-idp | coop-idp best at ≤ that p99 | Ratio | Target ≥ 5× |\n");
            md.push_str("|---|---|---|---|---:|---|\n");
            for scenario in Scenario::COMPARED {
                let best_node = node
                    .cells
                    .iter()
                    .filter(|c| c.scenario == scenario && c.m.errors == 0)
                    .max_by(|a, b| a.m.ops_per_s.total_cmp(&b.m.ops_per_s));
                let Some(bn) = best_node else { continue };
                for c in &coops {
                    let best = c
                        .cells
                        .iter()
                        .filter(|x| x.scenario == scenario && x.m.errors == 0 && x.m.p99_ms <= bn.m.p99_ms)
                        .max_by(|a, b| a.m.ops_per_s.total_cmp(&b.m.ops_per_s));
                    let (text, ratio) = match best {
                        Some(x) => (
                            format!("{:.0} /s, p99 {} ms ({} clients)", x.m.ops_per_s, ms(x.m.p99_ms), x.clients),
                            x.m.ops_per_s / bn.m.ops_per_s,
                        ),
                        None => ("no cell at that p99".into(), 0.0),
                    };
                    md.push_str(&format!(
                        "| {} | {:.0} /s, p99 {} ms ({} clients) | {} | {text} | {ratio:.1}× | {} |\n",
                        scenario.label(),
                        bn.m.ops_per_s,
                        ms(bn.m.p99_ms),
                        bn.clients,
                        c.name,
                        if ratio >= TARGET_RATIO { "PASS" } else { "MISS" }
                    ));
                }
            }
            md.push('\n');
        }

        // Sign-ins against the Argon2 limit.
        md.push_str(&format!(
            "Password sign-ins against the Argon2 limit = {} cores ÷ one hash ({:.1} ms, Rust `argon2`, m={ARGON2_MEMORY_KIB} \
             t={ARGON2_ITERATIONS} p={ARGON2_PARALLELISM}) = {:.1} /s{}:\n\n",
            self.cores,
            self.argon2_ms,
            self.argon2_limit,
            self.node_hash_ms
                .map(|n| format!(
                    "; node's `argon2` package takes {n:.1} ms for the same hash (its own limit {:.1} /s)",
                    self.cores as f64 * 1000.0 / n
                ))
                .unwrap_or_default()
        ));
        md.push_str(
            "| Target | Clients | Sign-ins/s | p99 | % of the limit | Target ≥ 80 % |\n|---|---:|---:|---:|---:|---|\n",
        );
        for r in self.runs {
            for &clients in &self.settings.clients {
                if let Some(m) = r.cell(Scenario::Signin, clients) {
                    let share = m.ops_per_s / self.argon2_limit;
                    md.push_str(&format!(
                        "| {} | {clients} | {:.1} | {} ms | {:.0} % | {} |\n",
                        r.name,
                        m.ops_per_s,
                        ms(m.p99_ms),
                        share * 100.0,
                        if clients < self.cores {
                            "(fewer clients than cores)"
                        } else if share >= TARGET_SIGNIN_SHARE && m.errors == 0 {
                            "PASS"
                        } else {
                            "MISS"
                        }
                    ));
                }
            }
        }
        md.push('\n');
        for r in self.runs {
            for c in &r.cells {
                if let Some(e) = &c.m.first_error {
                    md.push_str(&format!(
                        "First error, {} · {} · {} clients ({} in all): {e}\n\n",
                        r.name,
                        c.scenario.label(),
                        c.clients,
                        c.m.errors
                    ));
                }
            }
        }
    }

    /// The metrics middleware: micro-benchmark and A/B.
    fn metrics(&self, md: &mut String) {
        if let Some(micro) = &self.micro {
            md.push_str(&format!(
                "Metrics middleware: `metrics::request` costs {:.0} ns per request on one thread, {:.0} ns with two \
                 threads counting at once (one request per refresh, three per SSO round trip).\n\n",
                micro.one_thread_ns, micro.two_threads_ns
            ));
        }
        if let Some(ab) = &self.ab {
            md.push_str(&format!(
                "Metrics A/B, coop-idp on SQLite, {} clients, mean of {} alternated rounds per side:\n\n",
                ab.clients, ab.rounds
            ));
            md.push_str("| Scenario | `metrics_listen` set (middleware on) | unset (off) | Throughput off ÷ on | CPU/op on − off |\n|---|---|---|---:|---:|\n");
            for (scenario, on, off) in &ab.rows {
                md.push_str(&format!(
                    "| {} | {:.0} /s · p99 {} ms · {:.3} ms CPU/op | {:.0} /s · p99 {} ms · {:.3} ms CPU/op | {:.3} | {:+.1} µs |\n",
                    scenario.label(),
                    on.ops_per_s,
                    ms(on.p99_ms),
                    on.server_cpu_ms,
                    off.ops_per_s,
                    ms(off.p99_ms),
                    off.server_cpu_ms,
                    off.ops_per_s / on.ops_per_s,
                    (on.server_cpu_ms - off.server_cpu_ms) * 1000.0
                ));
            }
            md.push('\n');
        }
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 { format!("{v:.1}") } else { format!("{v:.0}") }
}
