//! Load benchmark of a running coop-idp, driven over loopback.
//!
//! Run with `cargo build --release && cargo bench --bench server`.
//!
//! The server is the release binary, started as a separate process
//! (`coop-idp serve`) on a free port with a temporary data and keys folder.
//! Clients are registered with the command line (`coop-idp client add`), the
//! test account through the library's store layer on the same database.
//! Then `WORKERS` concurrent tasks drive each scenario for a fixed time:
//!
//! 1. the refresh grant with an ES256 ID token (one rotating chain per worker);
//! 2. the SSO round trip: /authorize with a live session (303 with a code),
//!    then /token, then /userinfo (RS256, the default, and ES256);
//! 3. password sign-ins (authorize, sign-in page, POST /signin), compared
//!    with the Argon2 limit = cores / one hash's time;
//! 4. idle RSS after start and peak RSS (VmHWM) after the load;
//! 5. start-up to ready on the existing database (restart, poll /readyz).
//!
//! Environment:
//! - `COOP_IDP_BENCH_SECS`: seconds per scenario (default 10);
//! - `COOP_IDP_BENCH_WORKERS`: concurrent workers (default 32);
//! - `COOP_IDP_BENCH_POSTGRES_URL`: also run on PostgreSQL, in a schema of
//!   its own that is dropped afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use coop_idp::app::App;
use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::crypto::{b64url, random_token, sha256};
use coop_idp::store::{self, NewAccount, Store};

const PASSWORD: &str = "Correct-Horse-9-Battery";
const EMAIL: &str = "marie.dupont@cc-girou.fr";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const ARGON2_MEMORY_KIB: u32 = 19_456;
const ARGON2_ITERATIONS: u32 = 2;
const ARGON2_PARALLELISM: u32 = 1;

// Targets.
const TARGET_REFRESH_PER_S: f64 = 3_000.0;
const TARGET_SSO_PER_S: f64 = 1_500.0;
const TARGET_SIGNIN_SHARE: f64 = 0.80;
const TARGET_IDLE_RSS_MIB: f64 = 30.0;
const TARGET_PEAK_RSS_MIB: f64 = 150.0;
const TARGET_STARTUP_MS: f64 = 200.0;

type BenchResult<T> = Result<T, String>;

#[derive(Clone, Debug)]
enum Db {
    Sqlite,
    Postgres(String),
}

impl Db {
    fn label(&self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres(_) => "PostgreSQL",
        }
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench` (and maybe a filter); there is nothing to filter.
    let secs = env_number("COOP_IDP_BENCH_SECS", 10);
    let workers = env_number("COOP_IDP_BENCH_WORKERS", 32) as usize;
    let bin = server_binary();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("coop-idp load benchmark: {} ({} workers, {secs} s per scenario, {cores} cores)", bin.display(), workers);

    let argon2_ms = measure_argon2_ms();
    let argon2_limit = cores as f64 * 1000.0 / argon2_ms;
    println!(
        "one Argon2id hash (m={ARGON2_MEMORY_KIB}, t={ARGON2_ITERATIONS}, p={ARGON2_PARALLELISM}): {argon2_ms:.1} ms \
         → limit {argon2_limit:.1} sign-ins/s on {cores} cores"
    );

    let mut databases = vec![Db::Sqlite];
    match std::env::var("COOP_IDP_BENCH_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => databases.push(Db::Postgres(url)),
        _ => println!("PostgreSQL run skipped: COOP_IDP_BENCH_POSTGRES_URL is not set"),
    }
    let mut failed = false;
    for db in databases {
        let limits = Limits { argon2_ms, argon2_limit, cores };
        match run_suite(&bin, db.clone(), workers, Duration::from_secs(secs), &limits).await {
            Ok(report) => println!("\n{report}"),
            Err(e) => {
                eprintln!("{} run failed: {e}", db.label());
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// The release binary: Cargo's path for benchmarks, else `target/release`.
fn server_binary() -> PathBuf {
    let path = match option_env!("CARGO_BIN_EXE_coop-idp") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/coop-idp"),
    };
    assert!(path.exists(), "{} is missing: run `cargo build --release` first", path.display());
    path
}

/// The median time of one Argon2id hash with the configured parameters, in ms.
fn measure_argon2_ms() -> f64 {
    let params =
        Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM, Some(32)).expect("argon2 params");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = [7u8; 16];
    let mut out = [0u8; 32];
    argon2.hash_password_into(PASSWORD.as_bytes(), &salt, &mut out).expect("argon2 warm-up");
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            argon2.hash_password_into(PASSWORD.as_bytes(), &salt, &mut out).expect("argon2 hash");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

struct Limits {
    argon2_ms: f64,
    argon2_limit: f64,
    cores: usize,
}

// ---------------------------------------------------------------------------
// The server process

struct Server {
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    base: String,
}

impl Server {
    fn spawn(&mut self) -> BenchResult<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("server log: {e}"))?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> BenchResult<u32> {
        self.child.as_ref().map(Child::id).ok_or_else(|| "server not running".to_string())
    }

    /// SIGTERM (graceful shutdown), then waits for the exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Polls /readyz until 200; returns the time since `since`.
    async fn wait_ready(&mut self, since: Instant) -> BenchResult<Duration> {
        let probe = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("{}/readyz", self.base);
        while since.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = probe.get(&url).send().await
                && r.status() == 200
            {
                return Ok(since.elapsed());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("server exited ({status}); log: {}", tail(&self.log)));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(format!("server not ready after 30 s; log: {}", tail(&self.log)))
    }

    /// (VmRSS, VmHWM) in MiB.
    fn memory_mib(&self) -> BenchResult<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))
            .map_err(|e| format!("/proc status: {e}"))?;
        let field = |name: &str| -> BenchResult<f64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kib| kib / 1024.0)
                .ok_or_else(|| format!("{name} missing from /proc status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn free_port() -> BenchResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Runs `coop-idp client add`; returns the secret it printed.
fn add_client(bin: &Path, env: &[(String, String)], id: &str, alg: &str) -> BenchResult<String> {
    let out = Command::new(bin)
        .args(["client", "add", "--id", id, "--name", &format!("Bench {id}"), "--redirect-uri", REDIRECT])
        .args(["--id-token-alg", alg])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .map_err(|e| format!("coop-idp client add: {e}"))?;
    if !out.status.success() {
        return Err(format!("coop-idp client add: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let printed: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("client add output: {e}"))?;
    printed["client_secret"].as_str().map(str::to_string).ok_or_else(|| "client add printed no secret".to_string())
}

/// Inserts the active test account through the store layer.
async fn add_account(env: &[(String, String)]) -> BenchResult<()> {
    let config = Config::from_sources(None, env).map_err(|e| e.to_string())?;
    let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
    let hash = app.hasher.hash(PASSWORD.to_string()).await.map_err(|e| e.to_string())?;
    let id = coop_idp::accounts::new_subject();
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await.map_err(|e| e.to_string())?;
    let _ = store::insert_partner(&mut tx, "cc-girou", "CC du Girou", now).await;
    store::insert_account(
        &mut tx,
        &NewAccount {
            id: &id,
            email: EMAIL,
            email_normalized: EMAIL,
            given_name: "Marie",
            family_name: "Dupont",
            function: "Coordinatrice CTG",
            partner_id: Some("cc-girou"),
            state: "active",
            password_hash: Some(&hash),
            now,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    app.store.close().await;
    Ok(())
}

/// For PostgreSQL: a fresh schema; returns the URL that selects it.
async fn postgres_schema(url: &str) -> BenchResult<(String, String)> {
    let schema = format!("bench_{}", random_token()[..10].to_lowercase().replace(['-', '_'], "x"));
    let admin = Store::connect(url).await.map_err(|e| format!("PostgreSQL: {e}"))?;
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(admin.pool()).await.map_err(|e| e.to_string())?;
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok((format!("{url}{sep}options=-c%20search_path%3D{schema}"), schema))
}

async fn drop_postgres_schema(url: &str, schema: &str) {
    if let Ok(admin) = Store::connect(url).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(admin.pool()).await;
        admin.close().await;
    }
}

// ---------------------------------------------------------------------------
// The relying party and the browser, by hand

#[derive(Clone)]
struct Rp {
    base: String,
    http: reqwest::Client,
    client_id: String,
    secret: String,
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = random_token();
    let challenge = b64url(&sha256(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

impl Rp {
    fn authorize_url(&self, scope: &str, pkce: &Pkce) -> String {
        let state = random_token();
        let nonce = random_token();
        let url = url::Url::parse_with_params(
            &format!("{}/authorize", self.base),
            [
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", REDIRECT),
                ("scope", scope),
                ("state", state.as_str()),
                ("nonce", nonce.as_str()),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        );
        url.map(String::from).unwrap_or_default()
    }

    /// /authorize with a live session: the code, straight away.
    async fn authorize_sso(&self, scope: &str, session: &str, pkce: &Pkce) -> BenchResult<String> {
        let r = self
            .http
            .get(self.authorize_url(scope, pkce))
            .header("cookie", format!("coop_session={session}"))
            .send()
            .await
            .map_err(|e| format!("authorize: {e}"))?;
        let status = r.status();
        let location = location(&r);
        drain(r).await;
        if status != 303 || !location.starts_with(REDIRECT) {
            return Err(format!("authorize answered {status} → {location}"));
        }
        code_of(&location)
    }

    async fn token(&self, form: &[(&str, &str)]) -> BenchResult<serde_json::Value> {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(form)
            .send()
            .await
            .map_err(|e| format!("token: {e}"))?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| format!("token body: {e}"))?;
        if status != 200 {
            return Err(format!("token answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("token json: {e}"))?;
        if json["id_token"].as_str().is_none() {
            return Err("token response without id_token".into());
        }
        Ok(json)
    }

    async fn exchange(&self, code: &str, pkce: &Pkce) -> BenchResult<serde_json::Value> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> BenchResult<serde_json::Value> {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    async fn userinfo(&self, access_token: &str) -> BenchResult<()> {
        let r = self
            .http
            .get(format!("{}/userinfo", self.base))
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| format!("userinfo: {e}"))?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| format!("userinfo body: {e}"))?;
        if status != 200 || !body.starts_with(b"{") {
            return Err(format!("userinfo answered {status}"));
        }
        Ok(())
    }

    /// A new refresh-token chain: SSO authorize with offline_access, then the code.
    async fn new_chain(&self, session: &str) -> BenchResult<String> {
        let p = pkce();
        let code = self.authorize_sso("openid profile email offline_access", session, &p).await?;
        let tokens = self.exchange(&code, &p).await?;
        tokens["refresh_token"].as_str().map(str::to_string).ok_or_else(|| "no refresh_token".to_string())
    }

    /// The whole password sign-in of a browser without a session: authorize,
    /// the sign-in page, then the form. Returns the session cookie's value and
    /// the time of the POST alone.
    async fn sign_in(&self) -> BenchResult<(String, Duration)> {
        let p = pkce();
        let r =
            self.http.get(self.authorize_url("openid profile email", &p)).send().await.map_err(|e| e.to_string())?;
        let signin = location(&r);
        drain(r).await;
        if !signin.starts_with("/signin?request=") {
            return Err(format!("authorize without a session went to {signin}"));
        }
        let page = self.http.get(format!("{}{signin}", self.base)).send().await.map_err(|e| e.to_string())?;
        let mut jar = cookies(&page);
        let html = page.text().await.map_err(|e| e.to_string())?;
        let csrf = hidden(&html, "csrf").ok_or("no csrf field")?;
        let request = hidden(&html, "request").ok_or("no request field")?;
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{}/signin", self.base))
            .header("cookie", cookie_header(&jar))
            .form(&[("csrf", csrf.as_str()), ("request", request.as_str()), ("email", EMAIL), ("password", PASSWORD)])
            .send()
            .await
            .map_err(|e| format!("sign-in: {e}"))?;
        let status = r.status();
        let to = location(&r);
        jar.extend(cookies(&r));
        drain(r).await;
        let post = started.elapsed();
        if status != 303 || !to.starts_with(REDIRECT) {
            return Err(format!("sign-in answered {status} → {to}"));
        }
        code_of(&to)?;
        let session = jar.remove("coop_session").ok_or("no session cookie")?;
        Ok((session, post))
    }
}

async fn drain(r: reqwest::Response) {
    let _ = r.bytes().await;
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn code_of(location: &str) -> BenchResult<String> {
    url::Url::parse(location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
        .ok_or_else(|| format!("no code in {location}"))
}

fn cookies(r: &reqwest::Response) -> HashMap<String, String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn cookie_header(jar: &HashMap<String, String>) -> String {
    jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&#x2f;", "/").replace("&amp;", "&"))
}

// ---------------------------------------------------------------------------
// Load

/// One worker's record: latencies (µs) of the completed operations.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn ok(&mut self, took: Duration) {
        self.latencies_us.push(took.as_micros().min(u32::MAX as u128) as u32);
    }

    fn failed(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

struct Measured {
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ops: usize,
    errors: u64,
    first_error: Option<String>,
    /// Server process CPU time per operation (user + system), ms.
    server_cpu_ms: f64,
    /// Load generator (this process) CPU time per operation, ms.
    client_cpu_ms: f64,
    /// Server RSS right after the scenario, MiB.
    rss_after_mib: f64,
}

fn merge(tallies: Vec<Tally>, elapsed: Duration) -> Measured {
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tallies {
        all.extend(t.latencies_us);
        errors += t.errors;
        if first_error.is_none() {
            first_error = t.first_error;
        }
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    Measured {
        ops_per_s: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        ops: all.len(),
        errors,
        first_error,
        server_cpu_ms: f64::NAN,
        client_cpu_ms: f64::NAN,
        rss_after_mib: f64::NAN,
    }
}

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat`.
fn cpu_secs(pid: &str, ticks_per_s: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: state is field 3,
    // utime field 14 and stime field 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / ticks_per_s
}

/// Charges the CPU time of the server and of the load generator since the
/// last call to the scenario just measured.
struct CpuMeter {
    server_pid: String,
    ticks_per_s: f64,
    server: f64,
    client: f64,
}

impl CpuMeter {
    fn new(server_pid: u32) -> Self {
        let ticks_per_s = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        let server_pid = server_pid.to_string();
        let server = cpu_secs(&server_pid, ticks_per_s);
        let client = cpu_secs("self", ticks_per_s);
        CpuMeter { server_pid, ticks_per_s, server, client }
    }

    fn charge(&mut self, m: &mut Measured, server: &Server) {
        let server_now = cpu_secs(&self.server_pid, self.ticks_per_s);
        let client_now = cpu_secs("self", self.ticks_per_s);
        let ops = m.ops.max(1) as f64;
        m.server_cpu_ms = (server_now - self.server) * 1000.0 / ops;
        m.client_cpu_ms = (client_now - self.client) * 1000.0 / ops;
        m.rss_after_mib = server.memory_mib().map(|(rss, _)| rss).unwrap_or(f64::NAN);
        self.server = server_now;
        self.client = client_now;
    }
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<Tally>>) -> Vec<Tally> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("worker task"));
    }
    out
}

/// Scenario 1: each worker rotates its own refresh-token chain.
async fn bench_refresh(rp: &Rp, session: &str, workers: usize, duration: Duration) -> BenchResult<Measured> {
    let mut chains = Vec::new();
    for _ in 0..workers {
        chains.push(rp.new_chain(session).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let handles = chains
        .into_iter()
        .map(|mut token| {
            let rp = rp.clone();
            let session = session.to_string();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match rp.refresh(&token).await {
                        Ok(json) => match json["refresh_token"].as_str() {
                            Some(next) => {
                                tally.ok(t.elapsed());
                                token = next.to_string();
                            }
                            None => tally.failed("refresh answered without a new refresh_token".into()),
                        },
                        Err(e) => {
                            tally.failed(e);
                            // The chain is broken: start a new one.
                            match rp.new_chain(&session).await {
                                Ok(t) => token = t,
                                Err(e) => {
                                    tally.failed(e);
                                    break;
                                }
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let tallies = join_all(handles).await;
    Ok(merge(tallies, started.elapsed()))
}

/// Scenario 2: authorize (SSO) → token → userinfo, one operation.
async fn bench_sso(rp: &Rp, session: &str, workers: usize, duration: Duration) -> Measured {
    let started = Instant::now();
    let deadline = started + duration;
    let handles = (0..workers)
        .map(|_| {
            let rp = rp.clone();
            let session = session.to_string();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let round = async {
                        let p = pkce();
                        let code = rp.authorize_sso("openid profile email", &session, &p).await?;
                        let tokens = rp.exchange(&code, &p).await?;
                        let access = tokens["access_token"].as_str().ok_or("no access_token")?;
                        rp.userinfo(access).await
                    };
                    match round.await {
                        Ok(()) => tally.ok(t.elapsed()),
                        Err(e) => tally.failed(e),
                    }
                }
                tally
            })
        })
        .collect();
    let tallies = join_all(handles).await;
    merge(tallies, started.elapsed())
}

/// Scenario 3: full password sign-ins. Returns the whole flow and the POST alone.
async fn bench_signins(rp: &Rp, workers: usize, duration: Duration) -> (Measured, Measured) {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let rp = rp.clone();
            tokio::spawn(async move {
                let mut flow = Tally::default();
                let mut post = Tally::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match rp.sign_in().await {
                        Ok((_session, post_took)) => {
                            flow.ok(t.elapsed());
                            post.ok(post_took);
                        }
                        Err(e) => flow.failed(e),
                    }
                }
                (flow, post)
            })
        })
        .collect();
    let mut flows = Vec::new();
    let mut posts = Vec::new();
    for h in handles {
        let (f, p) = h.await.expect("worker task");
        flows.push(f);
        posts.push(p);
    }
    let elapsed = started.elapsed();
    (merge(flows, elapsed), merge(posts, elapsed))
}

// ---------------------------------------------------------------------------
// The suite and its report

async fn run_suite(bin: &Path, db: Db, workers: usize, duration: Duration, limits: &Limits) -> BenchResult<String> {
    println!("\n== {} ==", db.label());
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let (database_url, pg_schema) = match &db {
        Db::Sqlite => (format!("sqlite://{}/coop-idp.db", dir.path().join("data").display()), None),
        Db::Postgres(url) => {
            let (u, schema) = postgres_schema(url).await?;
            (u, Some((url.clone(), schema)))
        }
    };
    let env: Vec<(String, String)> = vec![
        ("COOP_IDP_ISSUER".into(), base.clone()),
        ("COOP_IDP_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("COOP_IDP_DATA_DIR".into(), dir.path().join("data").display().to_string()),
        ("COOP_IDP_KEYS_DIR".into(), dir.path().join("keys").display().to_string()),
        ("COOP_IDP_DATABASE_URL".into(), database_url),
        ("COOP_IDP_ARGON2_MEMORY_KIB".into(), ARGON2_MEMORY_KIB.to_string()),
        ("COOP_IDP_ARGON2_ITERATIONS".into(), ARGON2_ITERATIONS.to_string()),
        ("COOP_IDP_ARGON2_PARALLELISM".into(), ARGON2_PARALLELISM.to_string()),
    ];
    let result = suite(bin, &env, &base, dir.path(), workers, duration, limits, &db).await;
    if let Some((url, schema)) = pg_schema {
        drop_postgres_schema(&url, &schema).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn suite(
    bin: &Path,
    env: &[(String, String)],
    base: &str,
    dir: &Path,
    workers: usize,
    duration: Duration,
    limits: &Limits,
    db: &Db,
) -> BenchResult<String> {
    // First start: migrations, keys, the account and the clients.
    add_account(env).await?;
    let es256_secret = add_client(bin, env, "bench-es256", "ES256")?;
    let rs256_secret = add_client(bin, env, "bench-rs256", "RS256")?;
    let mut server = Server {
        bin: bin.to_path_buf(),
        env: env.to_vec(),
        log: dir.join("server.log"),
        child: None,
        base: base.into(),
    };
    let t = Instant::now();
    server.spawn()?;
    let first_ready = server.wait_ready(t).await?;
    println!("ready in {:.0} ms (first start, database already migrated)", first_ready.as_secs_f64() * 1000.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = server.memory_mib()?;
    println!("idle RSS {idle_rss:.1} MiB");

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(workers * 2)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let es256 = Rp { base: base.into(), http: http.clone(), client_id: "bench-es256".into(), secret: es256_secret };
    let rs256 = Rp { base: base.into(), http, client_id: "bench-rs256".into(), secret: rs256_secret };
    let (session, _) = es256.sign_in().await?;

    let mut cpu = CpuMeter::new(server.pid()?);
    let mut refresh = bench_refresh(&es256, &session, workers, duration).await?;
    cpu.charge(&mut refresh, &server);
    progress("refresh (ES256)", &refresh);
    let mut sso_rs = bench_sso(&rs256, &session, workers, duration).await;
    cpu.charge(&mut sso_rs, &server);
    progress("SSO round trip (RS256)", &sso_rs);
    let mut sso_es = bench_sso(&es256, &session, workers, duration).await;
    cpu.charge(&mut sso_es, &server);
    progress("SSO round trip (ES256)", &sso_es);
    let (mut signin, signin_post) = bench_signins(&rs256, workers, duration).await;
    cpu.charge(&mut signin, &server);
    progress("password sign-in (flow)", &signin);
    let (rss_after, peak_rss) = server.memory_mib()?;
    println!("RSS after load {rss_after:.1} MiB, peak (VmHWM) {peak_rss:.1} MiB");

    // Start-up on the existing (now populated) database.
    let mut startups = Vec::new();
    for _ in 0..5 {
        server.stop();
        let t = Instant::now();
        server.spawn()?;
        startups.push(server.wait_ready(t).await?.as_secs_f64() * 1000.0);
    }
    server.stop();
    startups.sort_by(f64::total_cmp);
    let startup_ms = startups[startups.len() / 2];
    println!("start-up to ready: {startups:.0?} ms");

    let signing = signing_costs(&dir.join("keys"))?;
    println!("{signing}");

    let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
    let share = signin.ops_per_s / limits.argon2_limit;
    let mut md = String::new();
    md.push_str(&format!(
        "### {} — {workers} workers, {} s per scenario, {} cores\n\n",
        db.label(),
        duration.as_secs(),
        limits.cores
    ));
    md.push_str(
        "| Scenario | Measured | p50 | p99 | Errors | Server CPU / op | Load-gen CPU / op | \
         Server-bound capacity | RSS after | Target | Result |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    let cores = limits.cores as f64;
    let row = |name: &str, m: &Measured, target: &str, verdict: &str| {
        format!(
            "| {name} | {:.0} /s ({} ops) | {:.1} ms | {:.1} ms | {} | {:.2} ms | {:.2} ms | {:.0} /s | {:.0} MiB | \
             {target} | {verdict} |\n",
            m.ops_per_s,
            m.ops,
            m.p50_ms,
            m.p99_ms,
            m.errors,
            m.server_cpu_ms,
            m.client_cpu_ms,
            cores * 1000.0 / m.server_cpu_ms,
            m.rss_after_mib
        )
    };
    md.push_str(&row(
        "Refresh grant, ES256 ID token",
        &refresh,
        "≥ 3,000 /s",
        pass(refresh.ops_per_s >= TARGET_REFRESH_PER_S && refresh.errors == 0),
    ));
    md.push_str(&row(
        "SSO round trip (authorize → token → userinfo), RS256",
        &sso_rs,
        "≥ 1,500 /s",
        pass(sso_rs.ops_per_s >= TARGET_SSO_PER_S && sso_rs.errors == 0),
    ));
    md.push_str(&row(
        "SSO round trip, ES256",
        &sso_es,
        "≥ 1,500 /s",
        pass(sso_es.ops_per_s >= TARGET_SSO_PER_S && sso_es.errors == 0),
    ));
    md.push_str(&row(
        &format!(
            "Password sign-in (authorize → page → POST), {:.0} % of the Argon2 limit {:.1} /s",
            share * 100.0,
            limits.argon2_limit
        ),
        &signin,
        "≥ 80 % of the limit",
        pass(share >= TARGET_SIGNIN_SHARE && signin.errors == 0),
    ));
    md.push_str(&format!(
        "| — of which POST /signin alone | | {:.1} ms | {:.1} ms | | | | | | | |\n",
        signin_post.p50_ms, signin_post.p99_ms
    ));
    md.push_str(&format!(
        "| Idle RSS after start | {idle_rss:.1} MiB | | | | | | | | ≤ 30 MB | {} |\n",
        pass(idle_rss <= TARGET_IDLE_RSS_MIB)
    ));
    md.push_str(&format!(
        "| Peak RSS under load (VmHWM) | {peak_rss:.1} MiB | | | | | | | | ≤ 150 MB | {} |\n",
        pass(peak_rss <= TARGET_PEAK_RSS_MIB)
    ));
    md.push_str(&format!(
        "| Start-up to ready, existing database (median of 5) | {startup_ms:.0} ms | | | | | | | | ≤ 200 ms | {} |\n",
        pass(startup_ms <= TARGET_STARTUP_MS)
    ));
    md.push_str(&format!(
        "\nOne Argon2id hash (m={ARGON2_MEMORY_KIB}, t={ARGON2_ITERATIONS}, p={ARGON2_PARALLELISM}): {:.1} ms; \
         limit = {} cores ÷ {:.1} ms = {:.1} sign-ins/s. Start-ups (ms): {startups:.0?}.\n",
        limits.argon2_ms, limits.cores, limits.argon2_ms, limits.argon2_limit
    ));
    for (name, m) in [("refresh", &refresh), ("SSO RS256", &sso_rs), ("SSO ES256", &sso_es), ("sign-in", &signin)] {
        if let Some(e) = &m.first_error {
            md.push_str(&format!("\nFirst {name} error ({} in all): {e}\n", m.errors));
        }
    }
    md.push_str(&format!("\n{signing}\n"));
    Ok(md)
}

/// Evidence for the signing hot path: `jsonwebtoken::encode` parses the
/// private key again at every call (`RsaKeyPair::from_der`,
/// `EcdsaKeyPair::from_pkcs8`); compared here with signing by a key pair
/// parsed once. Single-threaded, median of 3 rounds of 200.
fn signing_costs(keys_dir: &Path) -> BenchResult<String> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
    let pem_of = |tag: &str| -> BenchResult<Vec<u8>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(keys_dir)
            .map_err(|e| format!("keys dir: {e}"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(&format!("-{tag}.pem")))
            .collect();
        names.sort();
        let path = names.pop().ok_or_else(|| format!("no {tag} key"))?;
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let per_call_us = |f: &mut dyn FnMut()| -> f64 {
        let mut rounds: Vec<f64> = (0..3)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..200 {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / 200.0
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        rounds[1]
    };
    let claims = serde_json::json!({"iss": "http://127.0.0.1", "sub": "x", "aud": "bench", "iat": 1, "exp": 2});
    let message = b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xIn0";
    let rng = SystemRandom::new();

    let rsa_pem = pem_of("rs256")?;
    let rsa_der = pem::parse(&rsa_pem).map_err(|e| e.to_string())?.into_contents();
    let rsa_key = jsonwebtoken::EncodingKey::from_rsa_pem(&rsa_pem).map_err(|e| e.to_string())?;
    let rsa_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let rsa_encode = per_call_us(&mut || {
        jsonwebtoken::encode(&rsa_header, &claims, &rsa_key).expect("RS256 encode");
    });
    let rsa_pair = RsaKeyPair::from_pkcs8(&rsa_der).map_err(|e| e.to_string())?;
    let mut sig = vec![0u8; rsa_pair.public_modulus_len()];
    let rsa_sign = per_call_us(&mut || {
        rsa_pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).expect("RS256 sign");
    });

    let ec_pem = pem_of("es256")?;
    let ec_der = pem::parse(&ec_pem).map_err(|e| e.to_string())?.into_contents();
    let ec_key = jsonwebtoken::EncodingKey::from_ec_pem(&ec_pem).map_err(|e| e.to_string())?;
    let ec_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let ec_encode = per_call_us(&mut || {
        jsonwebtoken::encode(&ec_header, &claims, &ec_key).expect("ES256 encode");
    });
    let ec_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ec_der).map_err(|e| e.to_string())?;
    let ec_sign = per_call_us(&mut || {
        ec_pair.sign(&rng, message).expect("ES256 sign");
    });
    Ok(format!(
        "ID token signing, one thread: RS256 `jsonwebtoken::encode` {rsa_encode:.0} µs vs {rsa_sign:.0} µs with a \
         key pair parsed once; ES256 {ec_encode:.0} µs vs {ec_sign:.0} µs."
    ))
}

fn progress(name: &str, m: &Measured) {
    println!(
        "{name}: {:.0} /s, p50 {:.1} ms, p99 {:.1} ms, server CPU {:.2} ms/op, load-gen CPU {:.2} ms/op, \
         RSS after {:.0} MiB, {} errors{}",
        m.ops_per_s,
        m.p50_ms,
        m.p99_ms,
        m.server_cpu_ms,
        m.client_cpu_ms,
        m.rss_after_mib,
        m.errors,
        m.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
}
