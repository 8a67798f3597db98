//! Harness of the multi-instance and fault tests: several real `coop-idp
//! serve` processes on one PostgreSQL schema, one Redis key prefix and one
//! keys folder, configured through the environment exactly as
//! docker-compose.yml configures its instances; plus a TCP proxy the tests
//! can cut, and the command line run against the same configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coop_idp::app::App;
use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::oidc::clients::{self, AuthMethod, Registration};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_coop-idp");
/// The address the load balancer would publish; every instance has it
/// (http only because it is loopback; docker-compose.yml has https).
pub const ISSUER: &str = "http://localhost:8080";
/// Generous: a debug build starting on a loaded two-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// PostgreSQL (without it the test is skipped, said so, unless required)
/// and Redis (optional unless required) from the test environment; see
/// `common::backends`.
pub struct Backends {
    pub postgres: String,
    pub redis: Option<String>,
}

impl Backends {
    pub fn from_env() -> Option<Backends> {
        let postgres = Backend::Postgres.for_test()?;
        let redis = Backend::Redis.configured();
        if redis.is_none() {
            eprintln!("note: COOP_IDP_TEST_REDIS_URL is not set, instances share counters through the database");
        }
        Some(Backends { postgres, redis })
    }
}

pub struct Instance {
    child: Option<Child>,
    pub base: String,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().and_then(Child::id).map(|p| p as i32).expect("running instance")
    }

    /// Sends `signal` (SIGKILL, SIGTERM) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child this harness started and still owns.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for the process to end; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("child");
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("instance {} still running after {within:?}\n{}", self.base, self.log_text()),
        }
    }

    /// Every `.eml` the instance wrote to its file outbox.
    pub fn outbox(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("outbox")) else { return Vec::new() };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub struct Cluster {
    /// In this process, without jobs nor listener: sets up accounts and
    /// clients and looks at the shared database.
    pub app: Arc<App>,
    pub instances: Vec<Instance>,
    /// The configuration every instance shares (`COOP_IDP_*`).
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    _schema: PgSchema,
}

impl Cluster {
    /// A fresh schema, migrated and with its signing keys, and no instance
    /// yet. `extra`: configuration shared by every instance.
    pub async fn new(backends: &Backends, extra: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = PgSchema::create(&backends.postgres, "m").await;
        let mut env: Vec<(String, String)> = vec![
            ("issuer".into(), ISSUER.into()),
            ("database_url".into(), schema.url.clone()),
            ("keys_dir".into(), dir.path().join("keys").display().to_string()),
            ("trusted_proxies".into(), "127.0.0.1/32".into()),
            ("log_format".into(), "json".into()),
        ];
        if let Some(redis) = &backends.redis {
            env.push(("redis_url".into(), redis.clone()));
            env.push(("redis_key_prefix".into(), format!("test-{}:", coop_idp::crypto::random_b64(6))));
        }
        for (k, v) in extra {
            set(&mut env, k, v);
        }
        // Migrations and the first keys, before any instance starts.
        let mut local = env.clone();
        set(&mut local, "data_dir", &dir.path().join("setup").display().to_string());
        let config = Config::from_sources(None, &prefixed(&local)).expect("cluster configuration");
        let app = coop_idp::startup::open(config, Clock::system()).await.expect("setup app");
        Cluster { app, instances: Vec::new(), env, dir, _schema: schema }
    }

    /// The shared configuration with `key` set to `value`.
    pub fn env_with(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (k, v) in overrides {
            set(&mut env, k, v);
        }
        env
    }

    pub fn get(&self, key: &str) -> String {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts one more `coop-idp serve`; `overrides` for this instance only.
    /// Returns its index once `/readyz` answers 200.
    pub async fn spawn(&mut self, overrides: &[(&str, &str)]) -> usize {
        let n = self.instances.len();
        let port = free_port();
        let data_dir = self.dir.path().join(format!("data-{n}"));
        let mut env = self.env_with(overrides);
        set(&mut env, "listen", &format!("127.0.0.1:{port}"));
        set(&mut env, "data_dir", &data_dir.display().to_string());
        let log = self.dir.path().join(format!("instance-{n}.log"));
        let child = self.command(&env, &["serve"], &log).spawn().expect("start coop-idp serve");
        let mut instance = Instance { child: Some(child), base: format!("http://127.0.0.1:{port}"), data_dir, log };
        wait_ready(&mut instance).await;
        self.instances.push(instance);
        n
    }

    /// Starts `count` instances.
    pub async fn spawn_many(&mut self, count: usize) {
        for _ in 0..count {
            self.spawn(&[]).await;
        }
    }

    pub fn instance(&self, n: usize) -> &Instance {
        &self.instances[n]
    }

    /// A command-line process on the shared configuration.
    pub fn command(&self, env: &[(String, String)], args: &[&str], log: &Path) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.dir.path()).kill_on_drop(true).stdin(Stdio::null());
        // Only this configuration: nothing inherited from the test's own variables.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with(coop_idp::config::ENV_PREFIX)) {
            cmd.env_remove(k);
        }
        cmd.envs(prefixed(env));
        cmd.env("COOP_IDP_LOG", "info,sqlx=warn");
        let file = std::fs::File::create(log).expect("log file");
        cmd.stderr(Stdio::from(file)).stdout(Stdio::null());
        cmd
    }

    /// Runs `coop-idp ARGS` to its end; (exit success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut env = self.env.clone();
        set(&mut env, "data_dir", &self.dir.path().join("cli").display().to_string());
        let log = self.dir.path().join(format!("cli-{}.log", coop_idp::crypto::random_b64(6)));
        let out = self.command(&env, args, &log).stdout(Stdio::piped()).output().await.expect("run coop-idp");
        // `output` captures stderr itself; the log file gets anything else.
        let stderr =
            format!("{}{}", String::from_utf8_lossy(&out.stderr), std::fs::read_to_string(&log).unwrap_or_default());
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    /// A confidential client (`client_secret_basic`) with `REDIRECT`.
    pub async fn add_client(&self, id: &str) -> String {
        clients::register(
            &self.app,
            Registration {
                id: id.to_string(),
                name: format!("Client {id}"),
                redirect_uris: vec![REDIRECT.to_string()],
                post_logout_redirect_uris: vec![],
                backchannel_logout_uri: None,
                auth_method: AuthMethod::ClientSecretBasic,
                id_token_alg: jsonwebtoken::Algorithm::RS256,
                jwks: None,
            },
        )
        .await
        .expect("register client")
        .expect("secret")
    }

    pub async fn add_account(&self, email: &str) -> String {
        create_account(&self.app, email, None).await
    }

    /// Every `.eml` written by any instance.
    pub fn all_outboxes(&self) -> Vec<String> {
        self.instances.iter().flat_map(Instance::outbox).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in &mut self.instances {
            if let Some(mut child) = i.child.take() {
                let _ = child.start_kill();
            }
        }
        // The killed instances' connections go away before the schema
        // (dropped with the fields, after this).
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

fn prefixed(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (format!("{}{}", coop_idp::config::ENV_PREFIX, k.to_ascii_uppercase()), v.clone()))
        .collect()
}

/// `url` with its host and port replaced by `proxy`'s.
pub fn through(url: &str, proxy: &Proxy) -> String {
    let mut u = url::Url::parse(url).expect("URL");
    u.set_host(Some("127.0.0.1")).expect("host");
    u.set_port(Some(proxy.port)).expect("port");
    u.to_string()
}

/// The `host:port` a URL points to.
pub async fn target_of(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).expect("URL");
    let host = u.host_str().expect("host").to_string();
    let port = u.port_or_known_default().unwrap_or(match u.scheme() {
        "redis" => 6379,
        _ => 5432,
    });
    tokio::net::lookup_host((host.as_str(), port)).await.expect("resolve").next().expect("an address")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn wait_ready(instance: &mut Instance) {
    let client = http_client();
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(Ok(Some(status))) = instance.child.as_mut().map(Child::try_wait) {
            panic!("instance {} exited at start ({status})\n{}", instance.base, instance.log_text());
        }
        if let Ok(r) = client.get(instance.url("/readyz")).timeout(Duration::from_secs(5)).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("instance {} not ready within {START_TIMEOUT:?}\n{}", instance.base, instance.log_text());
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// A TCP proxy that can be cut: while cut, its port refuses connections (as a
// stopped server's does) and the connections it carried are closed.

pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    cut: watch::Sender<bool>,
    acceptor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (cut, _) = watch::channel(false);
        let proxy = Proxy { port, target, cut, acceptor: std::sync::Mutex::new(None) };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let cut = self.cut.subscribe();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut stop = cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = stop.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        *self.acceptor.lock().expect("acceptor") = Some(task);
    }

    /// Closes every carried connection and stops listening.
    pub fn cut(&self) {
        if let Some(task) = self.acceptor.lock().expect("acceptor").take() {
            task.abort();
        }
        self.cut.send_replace(true);
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        self.cut.send_replace(false);
        let listener = eventually(Duration::from_secs(10), "re-binding the proxy port", || async {
            TcpListener::bind(("127.0.0.1", self.port)).await.ok()
        })
        .await;
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(mut a) = self.acceptor.lock()
            && let Some(task) = a.take()
        {
            task.abort();
        }
        self.cut.send_replace(true);
    }
}
