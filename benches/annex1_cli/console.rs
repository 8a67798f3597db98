//! The same annex through the console, as a Caf habilitation manager sends
//! it from a browser: `coop-idp serve` on a fresh embedded database, the
//! password and second-factor sign-in (enrolment, as on a first visit),
//! the upload form (multipart, its CSRF token a part: the dry run), then
//! "Appliquer" with the handle the plan page gives. Measured: each of the
//! two requests, the time until the 5,000 activation emails are in the
//! outbox folder, and the server's CPU (user + system, `/proc/<pid>/stat`)
//! from the upload to the last email.

use std::path::Path;
use std::time::{Duration, Instant};

use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::store::{self, accounts::AccountRow, accounts::Person};

use super::support::{self, BenchResult, PASSWORD, Server, argon2_env, free_port};

pub const STAFF: &str = "habilitations@caf.fr";
const PARTNER: &str = "cc-girou";

pub struct ConsoleRun {
    pub upload: Duration,
    pub apply: Duration,
    /// From the upload's request to the last email in the folder.
    pub delivered: Duration,
    pub user: Duration,
    pub system: Duration,
    pub max_rss_mib: f64,
}

/// The server's (user, system) CPU time so far.
fn cpu_of(pid: u32) -> BenchResult<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks_per_s = support::ticks_per_s();
    let at = |i: usize| -> BenchResult<Duration> {
        let ticks: f64 = fields.get(i).and_then(|f| f.parse().ok()).ok_or("no CPU time in /proc stat")?;
        Ok(Duration::from_secs_f64(ticks / ticks_per_s))
    };
    Ok((at(11)?, at(12)?))
}

/// The Caf's habilitation manager, active with the bench's password.
async fn add_staff(env: &[(String, String)]) -> BenchResult<()> {
    let config = Config::from_sources(None, env).map_err(|e| e.to_string())?;
    let app = coop_idp::startup::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
    let hash = app.hasher.hash(PASSWORD.to_string()).await.map_err(|e| e.to_string())?;
    let now = app.clock.now_ms();
    let id = coop_idp::accounts::new_subject();
    let account = AccountRow {
        id: id.clone(),
        email_normalized: STAFF.to_string(),
        person: Person {
            email: STAFF.to_string(),
            given_name: "Hélène".to_string(),
            family_name: "Habil".to_string(),
            function: "Responsable des habilitations".to_string(),
            partner_id: None,
            partner_name: None,
        },
        state: "active".to_string(),
        password_hash: Some(hash),
        created_at: now,
        updated_at: now,
    };
    let mut tx = app.store.begin_write().await.map_err(|e| e.to_string())?;
    store::accounts::insert(&mut tx, &account).await.map_err(|e| e.to_string())?;
    store::accounts::grant_role(&mut tx, &id, "caf_habilitation").await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    app.store.close().await;
    Ok(())
}

/// The value of the hidden field `name` of a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&#x2f;", "/").replace("&amp;", "&"))
}

async fn page(b: &reqwest::Client, url: &str) -> BenchResult<String> {
    let r = b.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    let html = r.text().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("GET {url} answered {status}"));
    }
    Ok(html)
}

/// Signs the manager in on the sign-in page, enrolling a second factor as
/// the console requires of an administrator; the CSRF token of the session.
async fn sign_in(b: &reqwest::Client, base: &str) -> BenchResult<()> {
    let form = page(b, &format!("{base}/signin")).await?;
    let csrf = hidden(&form, "csrf").ok_or("no CSRF token on the sign-in page")?;
    let r = b
        .post(format!("{base}/signin"))
        .form(&[("csrf", csrf.as_str()), ("email", STAFF), ("password", PASSWORD)])
        .send()
        .await
        .map_err(|e| format!("sign-in: {e}"))?;
    let to = support::location(&r);
    if r.status() != 303 || to != "/signin/otp/enrol" {
        return Err(format!("sign-in answered {} → {to}", r.status()));
    }
    let enrol = page(b, &format!("{base}{to}")).await?;
    let csrf = hidden(&enrol, "csrf").ok_or("no CSRF token on the enrolment page")?;
    let start = "class=\"totp-key\" translate=\"no\">";
    let key = enrol
        .find(start)
        .and_then(|at| enrol[at + start.len()..].split("</code>").next())
        .ok_or("no key on the enrolment page")?
        .replace(' ', "");
    let code = coop_idp::auth::totp::code_at(&key, Clock::system().now_ms()).ok_or("the key is not base32")?;
    let r = b
        .post(format!("{base}{to}"))
        .form(&[("csrf", csrf.as_str()), ("code", code.as_str())])
        .send()
        .await
        .map_err(|e| format!("enrolment: {e}"))?;
    if r.status() != 200 {
        return Err(format!("enrolment answered {}", r.status()));
    }
    Ok(())
}

/// The annex as a multipart body with its CSRF part.
fn multipart(csrf: &str, csv: &str) -> (String, Vec<u8>) {
    let boundary = "coopidpbench7MA4YWxkTrZu0gW";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n");
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"annexe1.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    ));
    (format!("multipart/form-data; boundary={boundary}"), body.into_bytes())
}

/// The messages in the outbox folder (written and renamed).
fn emails_in(outbox: &Path) -> usize {
    std::fs::read_dir(outbox)
        .map(|entries| entries.flatten().filter(|e| e.file_name().as_encoded_bytes().ends_with(b".eml")).count())
        .unwrap_or(0)
}

/// One upload and apply on a fresh server and database; the folder is
/// returned to be kept until the end (see `apply_once`).
pub async fn console_once(bin: &Path, rows: usize, csv: &str) -> BenchResult<(ConsoleRun, tempfile::TempDir)> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut env = vec![
        ("COOP_IDP_ISSUER".to_string(), base.clone()),
        ("COOP_IDP_LISTEN".to_string(), format!("127.0.0.1:{port}")),
        ("COOP_IDP_DATA_DIR".to_string(), dir.path().join("data").display().to_string()),
        ("COOP_IDP_KEYS_DIR".to_string(), dir.path().join("keys").display().to_string()),
    ];
    env.extend(argon2_env());
    let partner = ["partner", "add", "--id", PARTNER, "--name", "CC du Girou"];
    super::coop(
        bin,
        &env,
        &[&partner[..], &["--convention-signed", "2026-01-15", "--email-domain", "cc-girou.fr"]].concat(),
    )?;
    add_staff(&env).await?;
    let mut server = Server::coop(bin, &env, dir.path().join("server.log"), &base);
    server.spawn()?;
    server.wait_ready(Instant::now()).await?;
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    sign_in(&b, &base).await?;
    let form_url = format!("{base}/admin/partners/{PARTNER}/annex1");
    let csrf = hidden(&page(&b, &form_url).await?, "csrf").ok_or("no CSRF token on the upload form")?;
    let (content_type, body) = multipart(&csrf, csv);
    let outbox = dir.path().join("data").join("outbox");
    let pid = server.pid()?;
    // Settled: start-up's own work is not the import's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (user0, system0) = cpu_of(pid)?;

    let started = Instant::now();
    let r = b
        .post(&form_url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let status = r.status();
    let plan = r.text().await.map_err(|e| e.to_string())?;
    let upload = started.elapsed();
    let handle = hidden(&plan, "handle").ok_or_else(|| format!("upload answered {status} without Appliquer"))?;
    let applying = Instant::now();
    let r = b
        .post(format!("{form_url}/apply"))
        .form(&[("csrf", csrf.as_str()), ("handle", handle.as_str())])
        .send()
        .await
        .map_err(|e| format!("apply: {e}"))?;
    let status = r.status();
    let applied = r.text().await.map_err(|e| e.to_string())?;
    let apply = applying.elapsed();
    if status != 200 || !applied.contains("Changements appliqués") {
        return Err(format!("apply answered {status}"));
    }
    while emails_in(&outbox) < rows {
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("{} of {rows} emails after 120 s", emails_in(&outbox)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();
    let (user1, system1) = cpu_of(pid)?;
    let (_, max_rss_mib) = server.memory_mib()?;
    server.stop();
    Ok((ConsoleRun { upload, apply, delivered, user: user1 - user0, system: system1 - system0, max_rss_mib }, dir))
}
