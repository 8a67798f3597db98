//! What the load benchmarks share (`benches/server.rs`, `benches/versus/`):
//! server processes, the relying party and the browser driven by hand over
//! HTTP, the scenarios and their measurement (latencies, CPU time and RSS of
//! the server processes).
//!
//! The relying party knows nothing of coop-idp in particular: it reads the
//! endpoints from the discovery document, follows redirects and fills the
//! sign-in form it is shown, so that the same code drives coop-idp and the
//! node `oidc-provider`. With several back ends it sends each request to the
//! next one in turn, as a round-robin load balancer would.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::crypto::{b64url, random_token, sha256};
use coop_idp::store::accounts::{AccountRow, Person};
use coop_idp::store::{self, Store};

pub const PASSWORD: &str = "Correct-Horse-9-Battery";
pub const EMAIL: &str = "marie.dupont@cc-girou.fr";
/// Accounts of the sign-in scenario, one per worker: one person does not
/// sign in 32 times at once, and the throttle reserves each attempt on its
/// account before Argon2 runs (5 at a time), so a shared account would
/// measure the throttle, not the sign-in.
pub const SIGNIN_ACCOUNTS: usize = 256;

pub fn signin_email(worker: usize) -> String {
    format!("agent{}@cc-girou.fr", worker % SIGNIN_ACCOUNTS)
}
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_PARALLELISM: u32 = 1;

pub type BenchResult<T> = Result<T, String>;

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

pub fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The release binary: Cargo's path for benchmarks, else `target/release`.
pub fn server_binary() -> PathBuf {
    // `COOP_IDP_BENCH_SERVER`: another build, to compare two in one run.
    let path = match (std::env::var_os("COOP_IDP_BENCH_SERVER"), option_env!("CARGO_BIN_EXE_coop-idp")) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/coop-idp"),
    };
    assert!(path.exists(), "{} is missing: run `cargo build --release` first", path.display());
    path
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The median time of one Argon2id hash with the configured parameters, in ms.
pub fn measure_argon2_ms() -> f64 {
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

/// The coop-idp configuration the benchmarks share: Argon2 m=19456, t=2, p=1.
pub fn argon2_env() -> Vec<(String, String)> {
    vec![
        ("COOP_IDP_ARGON2_MEMORY_KIB".into(), ARGON2_MEMORY_KIB.to_string()),
        ("COOP_IDP_ARGON2_ITERATIONS".into(), ARGON2_ITERATIONS.to_string()),
        ("COOP_IDP_ARGON2_PARALLELISM".into(), ARGON2_PARALLELISM.to_string()),
    ]
}

// ---------------------------------------------------------------------------
// Server processes

/// A server process (coop-idp, or node and its workers), its log in a file.
pub struct Server {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub base: String,
    /// Polled until it answers 200.
    pub ready_path: String,
    /// And, when set, until the log holds this text.
    pub ready_marker: Option<String>,
}

impl Server {
    /// `coop-idp serve` with `env`, listening on `base`.
    pub fn coop(bin: &Path, env: &[(String, String)], log: PathBuf, base: &str) -> Server {
        Server {
            program: bin.to_path_buf(),
            args: vec!["serve".into()],
            cwd: None,
            env: env.to_vec(),
            log,
            child: None,
            base: base.into(),
            ready_path: "/readyz".into(),
            ready_marker: None,
        }
    }

    pub fn spawn(&mut self) -> BenchResult<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("server log: {e}"))?;
        let out = log.try_clone().map_err(|e| format!("server log: {e}"))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().map_err(|e| format!("starting {}: {e}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> BenchResult<u32> {
        self.child.as_ref().map(Child::id).ok_or_else(|| "server not running".to_string())
    }

    /// The process and its descendants (node's cluster workers).
    pub fn pids(&self) -> Vec<u32> {
        self.pid().map(process_tree).unwrap_or_default()
    }

    /// SIGTERM (graceful shutdown), then waits for the exit.
    pub fn stop(&mut self) {
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

    /// Polls the readiness path until 200; returns the time since `since`.
    pub async fn wait_ready(&mut self, since: Instant) -> BenchResult<Duration> {
        let probe = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("{}{}", self.base, self.ready_path);
        while since.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = probe.get(&url).send().await
                && r.status() == 200
                && self
                    .ready_marker
                    .as_ref()
                    .is_none_or(|m| std::fs::read_to_string(&self.log).unwrap_or_default().contains(m.as_str()))
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

    /// (VmRSS, VmHWM) in MiB, summed over the process and its descendants.
    pub fn memory_mib(&self) -> BenchResult<(f64, f64)> {
        let pids = self.pids();
        if pids.is_empty() {
            return Err("server not running".into());
        }
        let mut sum = (0.0, 0.0);
        for pid in pids {
            let (rss, hwm) = memory_of(pid)?;
            sum.0 += rss;
            sum.1 += hwm;
        }
        Ok(sum)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// (VmRSS, VmHWM) of one process, in MiB.
fn memory_of(pid: u32) -> BenchResult<(f64, f64)> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
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

/// `pid` and its descendants, from `/proc/<pid>/task/*/children`.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                out.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
        i += 1;
    }
    out.sort_unstable();
    out.dedup();
    out
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub fn free_port() -> BenchResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Runs `coop-idp client add`; returns the secret it printed.
pub fn add_client(bin: &Path, env: &[(String, String)], id: &str, alg: &str) -> BenchResult<String> {
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

/// An active account of the partner cc-girou; `names`: given, family, function.
fn active_account(id: String, email: &str, names: (&str, &str, &str), hash: &str, now: i64) -> AccountRow {
    AccountRow {
        id,
        email_normalized: email.to_string(),
        person: Person {
            email: email.to_string(),
            given_name: names.0.to_string(),
            family_name: names.1.to_string(),
            function: names.2.to_string(),
            partner_id: Some("cc-girou".to_string()),
            partner_name: None,
        },
        state: "active".to_string(),
        password_hash: Some(hash.to_string()),
        created_at: now,
        updated_at: now,
    }
}

/// Inserts the active test account through the store layer.
pub async fn add_account(env: &[(String, String)]) -> BenchResult<()> {
    let config = Config::from_sources(None, env).map_err(|e| e.to_string())?;
    let app = coop_idp::startup::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
    let hash = app.hasher.hash(PASSWORD.to_string()).await.map_err(|e| e.to_string())?;
    let id = coop_idp::accounts::new_subject();
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await.map_err(|e| e.to_string())?;
    let _ = store::partners::insert(&mut tx, "cc-girou", "CC du Girou", now).await;
    for i in 0..SIGNIN_ACCOUNTS {
        let email = signin_email(i);
        let id = coop_idp::accounts::new_subject();
        let account = active_account(id, &email, ("Agent", "Test", "Agent"), &hash, now);
        store::accounts::insert(&mut tx, &account).await.map_err(|e| e.to_string())?;
    }
    let account = active_account(id, EMAIL, ("Marie", "Dupont", "Coordinatrice CTG"), &hash, now);
    store::accounts::insert(&mut tx, &account).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    app.store.close().await;
    Ok(())
}

/// For PostgreSQL: a fresh schema; returns the URL that selects it.
pub async fn postgres_schema(url: &str) -> BenchResult<(String, String)> {
    let schema = format!("bench_{}", random_token()[..10].to_lowercase().replace(['-', '_'], "x"));
    let admin = Store::connect(url).await.map_err(|e| format!("PostgreSQL: {e}"))?;
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(admin.pool()).await.map_err(|e| e.to_string())?;
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok((format!("{url}{sep}options=-c%20search_path%3D{schema}"), schema))
}

pub async fn drop_postgres_schema(url: &str, schema: &str) {
    if let Ok(admin) = Store::connect(url).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(admin.pool()).await;
        admin.close().await;
    }
}

/// Deletes every Redis key that starts with `prefix`.
pub async fn delete_redis_prefix(url: &str, prefix: &str) -> BenchResult<u64> {
    let client = redis::Client::open(url).map_err(|e| format!("Redis: {e}"))?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| format!("Redis: {e}"))?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("Redis SCAN: {e}"))?;
        if !keys.is_empty() {
            let n: u64 =
                redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await.map_err(|e| format!("Redis: {e}"))?;
            deleted += n;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(deleted);
        }
    }
}

// ---------------------------------------------------------------------------
// The relying party and the browser, by hand

/// Paths of the provider's endpoints, from its discovery document.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub userinfo: String,
}

#[derive(Clone)]
pub struct Rp {
    /// The public address (the issuer), which links and redirects name.
    pub issuer: String,
    /// Where requests really go: each request to the next one in turn.
    pub backends: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    pub endpoints: Endpoints,
    pub http: reqwest::Client,
    pub client_id: String,
    pub secret: String,
    /// Extra authorization parameters when a refresh token is wanted
    /// (`prompt=consent` for oidc-provider, which drops `offline_access`
    /// otherwise, as OpenID Connect Core 11 allows).
    pub chain_params: Vec<(String, String)>,
    /// The cookies that make the session (their names).
    pub session_cookies: Vec<String>,
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = random_token();
    let challenge = b64url(&sha256(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

/// A keep-alive HTTP client that does not follow redirects.
pub fn http_client(workers: usize) -> BenchResult<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(workers * 2)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())
}

impl Rp {
    /// Reads the endpoints from the first back end's discovery document.
    #[allow(clippy::too_many_arguments)]
    pub async fn discover(
        issuer: &str,
        backends: Vec<String>,
        http: reqwest::Client,
        client_id: &str,
        secret: &str,
        chain_params: &[(&str, &str)],
        session_cookies: &[&str],
    ) -> BenchResult<Rp> {
        let first = backends.first().ok_or("no back end")?;
        let doc: serde_json::Value = http
            .get(format!("{first}/.well-known/openid-configuration"))
            .send()
            .await
            .map_err(|e| format!("discovery: {e}"))?
            .json()
            .await
            .map_err(|e| format!("discovery: {e}"))?;
        let path = |key: &str| -> BenchResult<String> {
            let url = doc[key].as_str().ok_or_else(|| format!("discovery without {key}"))?;
            url.strip_prefix(issuer).map(str::to_string).ok_or_else(|| format!("{key} {url} is not under {issuer}"))
        };
        let endpoints = Endpoints {
            authorize: path("authorization_endpoint")?,
            token: path("token_endpoint")?,
            userinfo: path("userinfo_endpoint")?,
        };
        Ok(Rp {
            issuer: issuer.into(),
            backends: Arc::new(backends),
            next: Arc::new(AtomicUsize::new(0)),
            endpoints,
            http,
            client_id: client_id.into(),
            secret: secret.into(),
            chain_params: chain_params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            session_cookies: session_cookies.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// The URL of `path` (with its query) on the next back end.
    pub fn url(&self, path: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.backends.len();
        format!("{}{path}", self.backends[n])
    }

    /// A redirect's target as a path on the issuer, or `None` when it leaves
    /// the provider (the relying party's callback).
    fn local_path(&self, location: &str, from_path: &str) -> Option<String> {
        if location.starts_with(REDIRECT) {
            return None;
        }
        if let Some(path) = location.strip_prefix(&self.issuer) {
            return Some(path.to_string());
        }
        if location.starts_with('/') {
            return Some(location.to_string());
        }
        let base = url::Url::parse(&format!("{}{from_path}", self.issuer)).ok()?;
        let joined = base.join(location).ok()?;
        joined.as_str().strip_prefix(&self.issuer).map(str::to_string)
    }

    pub fn authorize_path(&self, scope: &str, pkce: &Pkce, extra: &[(String, String)]) -> String {
        let state = random_token();
        let nonce = random_token();
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        params.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        format!("{}?{query}", self.endpoints.authorize)
    }

    /// /authorize with a live session: the code, straight away (one request).
    pub async fn authorize_sso(&self, scope: &str, session: &str, pkce: &Pkce) -> BenchResult<String> {
        let r = self
            .http
            .get(self.url(&self.authorize_path(scope, pkce, &[])))
            .header("cookie", session)
            .send()
            .await
            .map_err(|e| format!("authorize: {e}"))?;
        let status = r.status();
        let location = location(&r);
        drain(r).await;
        if !(status == 302 || status == 303) || !location.starts_with(REDIRECT) {
            return Err(format!("authorize answered {status} → {location}"));
        }
        code_of(&location)
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> BenchResult<serde_json::Value> {
        let r = self
            .http
            .post(self.url(&self.endpoints.token))
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

    pub async fn exchange(&self, code: &str, pkce: &Pkce) -> BenchResult<serde_json::Value> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> BenchResult<serde_json::Value> {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    pub async fn userinfo(&self, access_token: &str) -> BenchResult<()> {
        let r = self
            .http
            .get(self.url(&self.endpoints.userinfo))
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

    /// Follows redirects from `path` (GET, cookies kept in `jar`) until the
    /// relying party's callback (returns its URL) or a page (its path and
    /// HTML).
    async fn follow(&self, mut path: String, jar: &mut HashMap<String, String>) -> BenchResult<Followed> {
        for _ in 0..10 {
            let mut request = self.http.get(self.url(&path));
            if !jar.is_empty() {
                request = request.header("cookie", cookie_header(jar));
            }
            let r = request.send().await.map_err(|e| format!("GET {path}: {e}"))?;
            jar.extend(cookies(&r));
            let status = r.status();
            if status.is_redirection() {
                let to = location(&r);
                drain(r).await;
                match self.local_path(&to, &path) {
                    Some(next) => path = next,
                    None => return Ok(Followed::Callback(to)),
                }
            } else if status == 200 {
                let html = r.text().await.map_err(|e| e.to_string())?;
                return Ok(Followed::Page(path, html));
            } else {
                let body = r.text().await.unwrap_or_default();
                return Err(format!("GET {path} answered {status}: {}", body.chars().take(200).collect::<String>()));
            }
        }
        Err("more than 10 redirects".into())
    }

    /// The session's cookies in a `Cookie` header.
    fn session_of(&self, jar: &HashMap<String, String>) -> BenchResult<String> {
        let mut parts = Vec::new();
        for name in &self.session_cookies {
            let value = jar.get(name).ok_or_else(|| format!("no {name} cookie"))?;
            parts.push(format!("{name}={value}"));
        }
        Ok(parts.join("; "))
    }

    /// A new refresh-token chain: authorize with `offline_access` and the
    /// session (interactions, if any, followed), then the code. Returns the
    /// refresh token and the session as it is now: oidc-provider gives the
    /// session a new identifier (and cookie) after every interaction.
    pub async fn new_chain(&self, session: &str) -> BenchResult<(String, String)> {
        let p = pkce();
        let mut jar: HashMap<String, String> = session
            .split("; ")
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let start = self.authorize_path("openid profile email offline_access", &p, &self.chain_params);
        let code = match self.follow(start, &mut jar).await? {
            Followed::Callback(to) => code_of(&to)?,
            Followed::Page(path, _) => return Err(format!("a page ({path}) instead of a code with a session")),
        };
        let tokens = self.exchange(&code, &p).await?;
        let refresh =
            tokens["refresh_token"].as_str().map(str::to_string).ok_or_else(|| "no refresh_token".to_string())?;
        Ok((refresh, self.session_of(&jar)?))
    }

    /// The whole password sign-in of a browser without a session: authorize,
    /// redirects to the sign-in page, the form (its hidden fields, email and
    /// password), redirects to the callback with a code. Returns the session
    /// (a `Cookie` header) and the time of the form's POST alone.
    pub async fn sign_in(&self) -> BenchResult<(String, Duration)> {
        self.sign_in_as(EMAIL).await
    }

    /// [`Rp::sign_in`] as another account of the bench.
    pub async fn sign_in_as(&self, email: &str) -> BenchResult<(String, Duration)> {
        let p = pkce();
        let mut jar = HashMap::new();
        let (page_path, html) =
            match self.follow(self.authorize_path("openid profile email", &p, &[]), &mut jar).await? {
                Followed::Page(path, html) => (path, html),
                Followed::Callback(to) => return Err(format!("signed in without a password: {to}")),
            };
        let form = password_form(&html).ok_or_else(|| format!("no password form on {page_path}"))?;
        let action = self.local_path(&form.action, &page_path).ok_or("form posts outside the provider")?;
        let mut fields: Vec<(String, String)> = form.hidden;
        fields.push(("email".into(), email.into()));
        fields.push(("password".into(), PASSWORD.into()));
        let started = Instant::now();
        let r = self
            .http
            .post(self.url(&action))
            .header("cookie", cookie_header(&jar))
            .form(&fields)
            .send()
            .await
            .map_err(|e| format!("sign-in: {e}"))?;
        let status = r.status();
        let to = location(&r);
        jar.extend(cookies(&r));
        drain(r).await;
        let post = started.elapsed();
        if !status.is_redirection() {
            return Err(format!("sign-in answered {status}"));
        }
        let callback = match self.local_path(&to, &action) {
            None => to,
            Some(next) => match self.follow(next, &mut jar).await? {
                Followed::Callback(to) => to,
                Followed::Page(path, _) => return Err(format!("after the sign-in, a page: {path}")),
            },
        };
        code_of(&callback)?;
        Ok((self.session_of(&jar)?, post))
    }
}

enum Followed {
    Callback(String),
    Page(String, String),
}

struct Form {
    action: String,
    hidden: Vec<(String, String)>,
}

/// The form that holds a password field: its action and hidden fields.
fn password_form(html: &str) -> Option<Form> {
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start..];
        let end = after.find("</form>").unwrap_or(after.len());
        let form = &after[..end];
        rest = &after[end..];
        if !form.contains("name=\"password\"") {
            continue;
        }
        let tag_end = form.find('>')?;
        let action = attribute(&form[..tag_end], "action").unwrap_or_default();
        let hidden = form
            .split("<input")
            .skip(1)
            .filter_map(|input| {
                let tag = &input[..input.find('>')?];
                if attribute(tag, "type").as_deref() != Some("hidden") {
                    return None;
                }
                Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default()))
            })
            .collect();
        return Some(Form { action, hidden });
    }
    None
}

/// The value of `name="…"` in a tag, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = tag[start..].find('"')?;
    Some(unescape_html(&tag[start..start + end]))
}

fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(semi) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub async fn drain(r: reqwest::Response) {
    let _ = r.bytes().await;
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

pub fn code_of(location: &str) -> BenchResult<String> {
    url::Url::parse(location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
        .ok_or_else(|| format!("no code in {location}"))
}

pub fn cookies(r: &reqwest::Response) -> HashMap<String, String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn cookie_header(jar: &HashMap<String, String>) -> String {
    jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

// ---------------------------------------------------------------------------
// Load

/// One worker's record: latencies (µs) of the completed operations.
#[derive(Default)]
pub struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    pub fn ok(&mut self, took: Duration) {
        self.latencies_us.push(took.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn failed(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

#[derive(Clone, Debug)]
pub struct Measured {
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ops: usize,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Server process(es) CPU time per operation (user + system), ms.
    pub server_cpu_ms: f64,
    /// Load generator (this process) CPU time per operation, ms.
    pub client_cpu_ms: f64,
    /// Server RSS right after the scenario, MiB.
    pub rss_after_mib: f64,
}

pub fn merge(tallies: Vec<Tally>, elapsed: Duration) -> Measured {
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
pub fn cpu_secs(pid: &str, ticks_per_s: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: state is field 3,
    // utime field 14 and stime field 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / ticks_per_s
}

pub fn ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Charges the CPU time of the server processes and of the load generator
/// since the last call to the scenario just measured.
pub struct CpuMeter {
    ticks_per_s: f64,
    server: f64,
    client: f64,
}

impl CpuMeter {
    pub fn new(servers: &[&Server]) -> Self {
        let ticks_per_s = ticks_per_s();
        let mut meter = CpuMeter { ticks_per_s, server: 0.0, client: 0.0 };
        meter.server = meter.server_secs(servers);
        meter.client = cpu_secs("self", ticks_per_s);
        meter
    }

    fn server_secs(&self, servers: &[&Server]) -> f64 {
        servers.iter().flat_map(|s| s.pids()).map(|pid| cpu_secs(&pid.to_string(), self.ticks_per_s)).sum()
    }

    /// Starts counting from now.
    pub fn reset(&mut self, servers: &[&Server]) {
        self.server = self.server_secs(servers);
        self.client = cpu_secs("self", self.ticks_per_s);
    }

    pub fn charge(&mut self, m: &mut Measured, servers: &[&Server]) {
        let server_now = self.server_secs(servers);
        let client_now = cpu_secs("self", self.ticks_per_s);
        let ops = m.ops.max(1) as f64;
        m.server_cpu_ms = (server_now - self.server) * 1000.0 / ops;
        m.client_cpu_ms = (client_now - self.client) * 1000.0 / ops;
        m.rss_after_mib = servers.iter().filter_map(|s| s.memory_mib().ok()).map(|(rss, _)| rss).sum();
        self.server = server_now;
        self.client = client_now;
    }
}

pub async fn join_all(handles: Vec<tokio::task::JoinHandle<Tally>>) -> Vec<Tally> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("worker task"));
    }
    out
}

/// Scenario 1: each worker rotates its own refresh-token chain.
pub async fn bench_refresh(rp: &Rp, session: &str, workers: usize, duration: Duration) -> BenchResult<Measured> {
    let (chains, session) = new_chains(rp, session, workers).await?;
    Ok(run_refresh(rp, &session, chains, duration).await)
}

/// One refresh-token chain per worker; and the session as it is now.
pub async fn new_chains(rp: &Rp, session: &str, workers: usize) -> BenchResult<(Vec<String>, String)> {
    let mut chains = Vec::new();
    let mut session = session.to_string();
    for _ in 0..workers {
        let (chain, now) = rp.new_chain(&session).await?;
        chains.push(chain);
        session = now;
    }
    Ok((chains, session))
}

/// Scenario 1 on chains made beforehand: one worker per chain.
pub async fn run_refresh(rp: &Rp, session: &str, chains: Vec<String>, duration: Duration) -> Measured {
    let started = Instant::now();
    let deadline = started + duration;
    let handles = chains
        .into_iter()
        .map(|mut token| {
            let rp = rp.clone();
            let mut session = session.to_string();
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
                                Ok((t, now)) => {
                                    token = t;
                                    session = now;
                                }
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
    merge(tallies, started.elapsed())
}

/// One signed-in session per SSO worker, each of its own person (the
/// sign-in scenario's accounts), made before any clock starts, as real
/// traffic spreads its round trips over many people's sessions. Workers
/// sharing one session let a batch of their code exchanges lock one session
/// row and one account row once, where real traffic locks one of each per
/// exchange: on PostgreSQL that flattered the ES256 round trip by about
/// 10 % (BENCHMARKS.md, "The bench's sessions").
pub async fn sso_sessions(rp: &Rp, workers: usize) -> BenchResult<Vec<String>> {
    let mut sessions = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (session, _) = rp.sign_in_as(&signin_email(worker)).await?;
        sessions.push(session);
    }
    Ok(sessions)
}

/// Scenario 2: authorize (SSO) → token → userinfo, one operation; worker `i`
/// uses `sessions[i % sessions.len()]` (see [`sso_sessions`]).
pub async fn bench_sso(rp: &Rp, sessions: &[String], workers: usize, duration: Duration) -> Measured {
    let started = Instant::now();
    let deadline = started + duration;
    let handles = (0..workers)
        .map(|worker| {
            let rp = rp.clone();
            let session = sessions[worker % sessions.len()].clone();
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
pub async fn bench_signins(rp: &Rp, workers: usize, duration: Duration) -> (Measured, Measured) {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let rp = rp.clone();
            tokio::spawn(async move {
                let email = signin_email(worker);
                let mut flow = Tally::default();
                let mut post = Tally::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match rp.sign_in_as(&email).await {
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

pub fn progress(name: &str, m: &Measured) {
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
