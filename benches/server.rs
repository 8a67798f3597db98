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

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

// Targets.
const TARGET_REFRESH_PER_S: f64 = 3_000.0;
const TARGET_SSO_PER_S: f64 = 1_500.0;
const TARGET_SIGNIN_SHARE: f64 = 0.80;
const TARGET_IDLE_RSS_MIB: f64 = 30.0;
const TARGET_PEAK_RSS_MIB: f64 = 150.0;
const TARGET_STARTUP_MS: f64 = 200.0;

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
    let cores = cores();
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

struct Limits {
    argon2_ms: f64,
    argon2_limit: f64,
    cores: usize,
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
    ]
    .into_iter()
    .chain(argon2_env())
    .collect();
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
    let mut server = Server::coop(bin, env, dir.join("server.log"), base);
    let t = Instant::now();
    server.spawn()?;
    let first_ready = server.wait_ready(t).await?;
    println!("ready in {:.0} ms (first start, database already migrated)", first_ready.as_secs_f64() * 1000.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = server.memory_mib()?;
    println!("idle RSS {idle_rss:.1} MiB");

    let http = http_client(workers)?;
    let backends = vec![base.to_string()];
    let session_cookies = ["coop_session"];
    let es256 =
        Rp::discover(base, backends.clone(), http.clone(), "bench-es256", &es256_secret, &[], &session_cookies).await?;
    let rs256 = Rp::discover(base, backends, http, "bench-rs256", &rs256_secret, &[], &session_cookies).await?;
    let (session, _) = es256.sign_in().await?;
    let sessions = sso_sessions(&es256, workers).await?;

    let mut cpu = CpuMeter::new(&[&server]);
    let mut refresh = bench_refresh(&es256, &session, workers, duration).await?;
    cpu.charge(&mut refresh, &[&server]);
    progress("refresh (ES256)", &refresh);
    let mut sso_rs = bench_sso(&rs256, &sessions, workers, duration).await;
    cpu.charge(&mut sso_rs, &[&server]);
    progress("SSO round trip (RS256)", &sso_rs);
    let mut sso_es = bench_sso(&es256, &sessions, workers, duration).await;
    cpu.charge(&mut sso_es, &[&server]);
    progress("SSO round trip (ES256)", &sso_es);
    let (mut signin, signin_post) = bench_signins(&rs256, workers, duration).await;
    cpu.charge(&mut signin, &[&server]);
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
