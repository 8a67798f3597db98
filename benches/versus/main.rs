//! Side by side, in one run on this machine: coop-idp on SQLite (one
//! instance), coop-idp on PostgreSQL + Redis (two instances, requests spread
//! round-robin over both as a load balancer would), node `oidc-provider`
//! configured like a production deployment (bench/oidc-provider: Redis
//! adapter, Argon2id sign-in, one worker per core) and node `oidc-provider`
//! in its fastest configuration (one process, state in its memory).
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
//! server process(es), and the CPU of the PostgreSQL and Redis servers over
//! each cell (`services.rs`). The report (`report.rs`, `targets.rs`) then
//! compares them; last, the cost of the metrics middleware (`metrics.rs`).
//!
//! Environment:
//! - `COOP_IDP_BENCH_SECS`: seconds per cell (default 6; the whole run
//!   takes about 8 minutes);
//! - `COOP_IDP_BENCH_CLIENTS`: concurrency levels (default `1,8,32`);
//! - `COOP_IDP_BENCH_TARGETS`: among `sqlite,pair,node,memory,metrics`
//!   (default all);
//! - `COOP_IDP_BENCH_POSTGRES_URL`, `COOP_IDP_BENCH_REDIS_URL`: PostgreSQL
//!   (a schema of its own, dropped afterwards) and Redis (keys under a
//!   prefix of their own, deleted afterwards). Without PostgreSQL and Redis
//!   the two-instance column is skipped; without Redis, node's Redis column
//!   too (the in-memory one needs neither);
//! - `COOP_IDP_BENCH_NODE_WORKERS`: node cluster workers (default: cores).
//!
//! `npm ci` runs here (only when bench/oidc-provider/node_modules is missing
//! or older than package-lock.json), never in `.ci/run`; without node or npm
//! the node columns are skipped, said so.

#[path = "../support/mod.rs"]
mod support;

mod coop;
mod metrics;
mod node;
mod report;
mod services;
mod signature;
mod targets;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use services::{ServiceCpu, ServiceMeter};
use support::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scenario {
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

/// The four deployments compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Sqlite,
    Pair,
    NodeRedis,
    NodeMemory,
}

impl Kind {
    fn is_coop(self) -> bool {
        matches!(self, Kind::Sqlite | Kind::Pair)
    }
}

pub struct Cell {
    scenario: Scenario,
    clients: usize,
    m: Measured,
    /// PostgreSQL's and Redis's CPU over the cell.
    services: ServiceCpu,
}

pub struct TargetRun {
    kind: Kind,
    name: String,
    processes: String,
    idle_rss: f64,
    peak_rss: f64,
    cells: Vec<Cell>,
}

impl TargetRun {
    fn cell(&self, scenario: Scenario, clients: usize) -> Option<&Measured> {
        self.full_cell(scenario, clients).map(|c| &c.m)
    }

    fn full_cell(&self, scenario: Scenario, clients: usize) -> Option<&Cell> {
        self.cells.iter().find(|c| c.scenario == scenario && c.clients == clients)
    }
}

/// A started target: its processes, its relying parties and a session.
pub struct Started {
    servers: Vec<Server>,
    es256: Rp,
    rs256: Rp,
    session: String,
    cleanup: Cleanup,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct Cleanup {
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

pub struct Settings {
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
    let targets = env_text("COOP_IDP_BENCH_TARGETS").unwrap_or_else(|| "sqlite,pair,node,memory,metrics".into());
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
    let mut notes: Vec<String> = Vec::new();
    let rs256_ms = match signature::rs256_signature_ms() {
        Ok(ms) => {
            println!("one RS256 ID-token signature (aws-lc-rs, as the server signs): {ms:.3} ms");
            Some(ms)
        }
        Err(e) => {
            skip(&mut notes, &format!("RS256 signature timing: {e}"));
            None
        }
    };
    let services = ServiceMeter::start();
    println!("shared services: {}", services.describe());

    let mut bench = Bench { settings: &settings, services, runs: Vec::new(), notes };
    if wants("sqlite") {
        bench.run(Kind::Sqlite, "coop-idp, SQLite, 1 instance", coop::start_sqlite(&settings, true)).await;
    }
    if wants("pair") {
        match (&settings.postgres, &settings.redis) {
            (Some(pg), Some(redis)) => {
                let start = coop::start_pair(&settings, pg, redis);
                bench.run(Kind::Pair, "coop-idp, PostgreSQL + Redis, 2 instances", start).await
            }
            _ => skip(
                &mut bench.notes,
                "coop-idp on PostgreSQL + Redis: COOP_IDP_BENCH_POSTGRES_URL and COOP_IDP_BENCH_REDIS_URL are needed",
            ),
        }
    }
    let mut node_hash_ms = None;
    if wants("node") || wants("memory") {
        match node::node_ready() {
            Err(e) => skip(&mut bench.notes, &format!("node oidc-provider: {e}")),
            Ok(version) => {
                node_hash_ms = node::node_argon2_ms();
                if let Some(ms) = node_hash_ms {
                    println!("one Argon2id hash (node `argon2`, same parameters): {ms:.1} ms");
                }
                let product = format!("node oidc-provider {}", node::OIDC_PROVIDER_VERSION);
                if wants("node") {
                    match &settings.redis {
                        None => skip(
                            &mut bench.notes,
                            "node oidc-provider with Redis: COOP_IDP_BENCH_REDIS_URL is needed (its adapter is on Redis)",
                        ),
                        Some(redis) => {
                            let name = format!("{product} (node {version}), Redis, {} workers", settings.node_workers);
                            let start = node::start_node(&settings, node::NodeState::Redis(redis));
                            bench.run(Kind::NodeRedis, &name, start).await
                        }
                    }
                }
                if wants("memory") {
                    let name = format!("{product} (node {version}), in memory, one process");
                    bench.run(Kind::NodeMemory, &name, node::start_node(&settings, node::NodeState::Memory)).await
                }
            }
        }
    }
    let Bench { runs, mut notes, .. } = bench;
    let micro = if wants("metrics") { Some(metrics::metrics_micro()) } else { None };
    let ab = if wants("metrics") {
        match metrics::metrics_ab(&settings).await {
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

    let report = report::Report {
        settings: &settings,
        cores,
        commit: format!("{commit}{}", if dirty { " + uncommitted changes" } else { "" }),
        load_before,
        load_after,
        argon2_ms,
        argon2_limit,
        node_hash_ms,
        rs256_ms,
        runs: &runs,
        notes: &notes,
        micro,
        ab,
    };
    println!("\n{}", report.markdown());
}

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

/// The targets measured so far, and the meter of the shared services.
struct Bench<'a> {
    settings: &'a Settings,
    services: ServiceMeter,
    runs: Vec<TargetRun>,
    notes: Vec<String>,
}

impl Bench<'_> {
    async fn run(&mut self, kind: Kind, name: &str, start: impl std::future::Future<Output = BenchResult<Started>>) {
        println!("\n== {name} ==");
        let started = match start.await {
            Ok(s) => s,
            Err(e) => {
                skip(&mut self.notes, &format!("{name} did not start: {e}"));
                return;
            }
        };
        let outcome = self.measure(kind, name, &started).await;
        let Started { mut servers, cleanup, .. } = started;
        for s in &mut servers {
            s.stop();
        }
        cleanup.run().await;
        match outcome {
            Ok(run) => self.runs.push(run),
            Err(e) => skip(&mut self.notes, &format!("{name} failed: {e}")),
        }
    }

    async fn measure(&mut self, kind: Kind, name: &str, t: &Started) -> BenchResult<TargetRun> {
        let settings = self.settings;
        let servers: Vec<&Server> = t.servers.iter().collect();
        let idle_rss: f64 = servers.iter().map(|s| s.memory_mib().map(|m| m.0)).sum::<BenchResult<f64>>()?;
        let processes = servers.iter().map(|s| s.pids().len()).sum::<usize>();
        println!("idle RSS {idle_rss:.1} MiB ({processes} processes)");
        // Warm-up, not counted (the node side's JIT, every side's caches).
        let mut session = t.session.clone();
        let most = settings.clients.iter().copied().max().unwrap_or(1).max(8);
        let sessions = sso_sessions(&t.rs256, most).await?;
        let warm = bench_sso(&t.rs256, &sessions, 8, Duration::from_secs(2)).await;
        if warm.errors > 0 {
            return Err(format!("warm-up: {}", warm.first_error.unwrap_or_default()));
        }
        let mut cpu = CpuMeter::new(&servers);
        let mut cells = Vec::new();
        for scenario in Scenario::ALL {
            for &clients in &settings.clients {
                // Each refresh worker's chain is made before the clock starts.
                let chains = if scenario == Scenario::Refresh {
                    let (chains, now) = new_chains(&t.es256, &session, clients).await?;
                    session = now;
                    chains
                } else {
                    Vec::new()
                };
                cpu.reset(&servers);
                self.services.reset();
                let mut m = match scenario {
                    Scenario::Refresh => run_refresh(&t.es256, &session, chains, settings.secs).await,
                    Scenario::Sso => bench_sso(&t.rs256, &sessions, clients, settings.secs).await,
                    Scenario::SsoEs256 => bench_sso(&t.es256, &sessions, clients, settings.secs).await,
                    Scenario::Signin => bench_signins(&t.rs256, clients, settings.secs).await.0,
                };
                cpu.charge(&mut m, &servers);
                let services = self.services.charge(m.ops);
                progress(&format!("{name} · {} · {clients} clients", scenario.label()), &m);
                cells.push(Cell { scenario, clients, m, services });
            }
        }
        let peak_rss: f64 = servers.iter().map(|s| s.memory_mib().map(|m| m.1)).sum::<BenchResult<f64>>()?;
        Ok(TargetRun { kind, name: name.into(), processes: format!("{processes}"), idle_rss, peak_rss, cells })
    }
}
