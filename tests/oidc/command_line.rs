//! The command line's exit statuses (README "Command line"): 0 done, 2 input
//! refused, 1 the work failed; the daily commands on accounts, clients and
//! mailed links, on both databases; what start-up says about its
//! configuration; and what the logs look like. The binary itself.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::on_both_databases;

/// `coop-idp ARGS` in `dir` on its own database and keys, with `env` over them.
fn command(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let data = dir.join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_coop-idp"));
    command
        .args(args)
        .current_dir(dir)
        .env("COOP_IDP_DATA_DIR", &data)
        .env("COOP_IDP_KEYS_DIR", dir.join("keys"))
        .env("COOP_IDP_DATABASE_URL", format!("sqlite://{}/coop-idp.db", data.display()))
        .env("COOP_IDP_LOG", "error")
        .env_remove("COOP_IDP_SMTP_URL")
        .env_remove("COOP_IDP_REDIS_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs `coop-idp` to its end: (exit code, stdout, stderr).
fn run(dir: &Path, env: &[(&str, String)], args: &[&str]) -> (Option<i32>, String, String) {
    let out = command(dir, env, args).output().expect("run coop-idp");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_exit_statuses_are_0_done_2_refused_1_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let (code, out, err) = run(dir, &[], &["migrate"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(dir, &[], &["partner", "list"]);
    assert_eq!((code, out.trim()), (Some(0), "[]"), "{err}");
    let (code, _, _) = run(dir, &[], &["--help"]);
    assert_eq!(code, Some(0));

    let existing = dir.join("existing.jsonl");
    std::fs::write(&existing, "").expect("write");
    let existing = existing.display().to_string();
    // The configuration.
    let (code, out, err) = run(dir, &[("COOP_IDP_LISTEN", "nowhere".into())], &["partner", "list"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("`listen`"), "{err}");
    let refused: [(&[&str], &str); 6] = [
        // clap: an unknown command, a missing argument.
        (&["partner", "frobnicate"], "frobnicate"),
        (&["partner", "show"], "<ID>"),
        // The domain's rules.
        (&["partner", "show", "nobody"], "`nobody`"),
        (&["admin", "grant", "personne@caf.fr", "superuser"], "rôle inconnu"),
        // Files named on the command line.
        (&["annex1", "import", "--partner", "cc-girou", "absent.csv"], "absent.csv"),
        (&["export", &existing], "existing.jsonl"),
    ];
    for (args, says) in refused {
        let (code, out, err) = run(dir, &[], args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // A database that cannot be opened, a keys folder that cannot be made.
    let folder = format!("sqlite://{}", dir.join("data").display());
    let (code, out, err) = run(dir, &[("COOP_IDP_DATABASE_URL", folder)], &["partner", "list"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("database"), "{err}");
    let (code, out, err) = run(dir, &[("COOP_IDP_KEYS_DIR", existing.clone())], &["keys", "rotate"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("keys folder"), "{err}");
}

/// An unknown name is refused naming the database searched; other
/// refusals do not name it.
#[test]
fn an_unknown_partner_or_account_names_the_database_searched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let db = std::path::absolute(dir.join("data").join("coop-idp.db")).expect("absolute");
    let said = format!("database: sqlite://{}", db.display());
    for args in [
        &["partner", "show", "cc-nulle-part"][..],
        &["convention", "sign", "--partner", "cc-nulle-part", "--date", "2026-01-15"],
        &["account", "show", "personne@cc-girou.fr"],
        &["admin", "grant", "personne@cc-girou.fr", "caf_security"],
    ] {
        let (code, out, err) = run(dir, &[], args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(&said), "{args:?} should name {said}: {err}");
    }
    let (code, _, err) = run(dir, &[], &["admin", "grant", "personne@cc-girou.fr", "superuser"]);
    assert_eq!(code, Some(2));
    assert!(!err.contains("database:"), "an unknown role is no name of the database: {err}");
}

/// Environment and file: an unknown variable under the prefix stops
/// start-up naming it (the tests' and benchmarks' own are let through); a
/// TOML syntax error gives its line and column.
#[test]
fn configuration_mistakes_are_named_where_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let (code, out, err) = run(dir, &[("COOP_IDP_LISTN", "127.0.0.1:9000".into())], &["partner", "list"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("`COOP_IDP_LISTN`") && err.contains("did you mean `COOP_IDP_LISTEN`"), "{err}");
    assert!(out.is_empty(), "nothing done: {out}");
    let allowed = [("COOP_IDP_TEST_SOMETHING", "1".to_string()), ("COOP_IDP_BENCH_SOMETHING", "1".to_string())];
    let (code, out, err) = run(dir, &allowed, &["partner", "list"]);
    assert_eq!(code, Some(0), "{out}{err}");

    let file = dir.join("coop-idp.toml");
    std::fs::write(&file, "issuer = \"http://localhost:8080\"\nlisten = 127.0.0.1:8080\n").expect("write");
    let (code, out, err) = run(dir, &[], &["--config", &file.display().to_string(), "partner", "list"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains(&format!("{}, line 2, column 15", file.display())), "{err}");
    // The file found by default is named the same way.
    let (code, _, err) = run(dir, &[], &["partner", "list"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("coop-idp.toml, line 2, column 15"), "{err}");
}

/// With SMTP the link exists only in the person's mailbox: `mail links`
/// is refused, whatever the outbox table holds (R1).
#[test]
fn mail_links_is_refused_when_mail_goes_out_over_smtp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let smtp = [("COOP_IDP_SMTP_URL", "smtp://127.0.0.1:9".to_string())];
    let (code, out, err) = run(dir, &smtp, &["mail", "links", "--to", "marie.dupont@cc-girou.fr"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("smtp_url") && out.is_empty(), "{out}{err}");
}

/// A `coop-idp serve` whose standard error is read line by line.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl Serving {
    fn start(dir: &Path, env: &[(&str, String)]) -> Serving {
        let mut cmd = command(dir, env, &["serve"]);
        cmd.env("COOP_IDP_LOG", "info,sqlx=warn").stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start coop-idp serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serving { child, lines, seen: String::new() }
    }

    /// Reads the log until a line holds `marker` (60 s at most).
    fn wait_for(&mut self, marker: &str) {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(marker) {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no {marker:?} in the server's log:\n{}", self.seen);
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Start-up warns when `listen` and a loopback issuer disagree on the port,
/// and when a second server opens the same SQLite database; the first,
/// alone and consistent, is not warned. Its log, piped, has no colour codes.
#[test]
fn serve_warns_about_the_port_and_a_second_server_on_one_sqlite_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let (code, out, err) = run(dir, &[], &["migrate"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (first_port, second_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{first_port}");
    let mut first = Serving::start(
        dir,
        &[("COOP_IDP_ISSUER", issuer.clone()), ("COOP_IDP_LISTEN", format!("127.0.0.1:{first_port}"))],
    );
    first.wait_for("coop-idp listening");
    // The next step for a newcomer, with where to look (issue 16).
    first.wait_for("next: in another terminal");
    assert!(first.seen.contains(&format!("{issuer}/.well-known/openid-configuration")), "{}", first.seen);
    assert!(!first.seen.contains("disagree") && !first.seen.contains("another coop-idp server"), "{}", first.seen);
    assert!(!first.seen.contains('\u{1b}'), "colour codes in a piped log: {:?}", first.seen);

    let mut second =
        Serving::start(dir, &[("COOP_IDP_ISSUER", issuer), ("COOP_IDP_LISTEN", format!("127.0.0.1:{second_port}"))]);
    second.wait_for("coop-idp listening");
    let log = &second.seen;
    assert!(
        log.contains(&format!("127.0.0.1:{second_port} and issuer http://127.0.0.1:{first_port} disagree")),
        "{log}"
    );
    assert!(log.contains(&format!("another coop-idp server (pid {}", first.child.id())), "{log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log:?}");
}

/// The info lines a command logs carry no colour codes when standard error
/// is not a terminal.
#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let info = [("COOP_IDP_LOG", "info".to_string())];
    let (code, out, err) = run(dir, &info, &["partner", "add", "--id", "cc-girou", "--name", "CC du Girou"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(dir, &info, &["convention", "sign", "--partner", "cc-girou", "--date", "2026-01-15"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("convention signed") && err.contains("INFO"), "the log is there: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes: {err:?}");
}

/// Runs the binary on a test server's installation: (exit code, stdout, stderr).
fn on(server: &TestServer, args: &[&str]) -> (Option<i32>, String, String) {
    let out = cli(server, args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON a successful command prints.
fn json_of(server: &TestServer, args: &[&str]) -> Value {
    let (code, out, err) = on(server, args);
    assert_eq!(code, Some(0), "{args:?}\n{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// A refusal: exit status 2, the message holding `says`.
fn refused(server: &TestServer, args: &[&str], says: &str) -> String {
    let (code, out, err) = on(server, args);
    assert_eq!(code, Some(2), "{args:?}\n{out}\n{err}");
    assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
    err
}

const JEAN: &str = "je.ndiaye@cc-girou.fr";
const PAUL: &str = "paul.martin@cc-girou.fr";

on_both_databases!(accounts_and_links_day_to_day, clients_are_listed_without_their_secret);

async fn accounts_and_links_day_to_day(db: Db) {
    let server = TestServer::start(db).await;
    let database = format!("database: {}", server.app.config.database_shown());
    let signed = coop_idp::dates::format_iso(server.clock.today() - time::Duration::days(10));
    let (code, out, err) =
        on(&server, &["partner", "add", "--id", "cc-girou", "--name", "CC du Girou", "--convention-signed", &signed]);
    assert_eq!(code, Some(0), "{out}{err}");
    for (email, given, family) in [(EMAIL, "Marie", "Dupont"), (JEAN, "Jean-Éric", "N'Diaye")] {
        let invite = ["account", "invite", "--partner", "cc-girou", "--email", email, "--given-name", given];
        let args = [&invite[..], &["--family-name", family, "--function", "Agent"]].concat();
        assert_eq!(json_of(&server, &args)["status"], "opened");
    }
    // Paul has created his password: active.
    server.add_account(PAUL, Some(("cc-girou", "CC du Girou"))).await;

    // mail links: the live link mailed, as the outbox file holds it.
    let (code, first_link, err) = on(&server, &["mail", "links", "--to", EMAIL]);
    assert_eq!(code, Some(0), "{first_link}{err}");
    let first_link = first_link.trim().to_string();
    let prefix = format!("{}?token=", server.url("/activate"));
    assert!(first_link.starts_with(&prefix), "{first_link}");
    assert_eq!(mailed_link(&server, EMAIL, "/activate", 1).await, first_link);
    // Case and spaces of the address do not matter.
    let (_, same, _) = on(&server, &["mail", "links", "--to", " Marie.Dupont@CC-Girou.fr "]);
    assert_eq!(same.trim(), first_link);

    // resend-activation: a fresh link; the previous one no longer counts.
    let resent = json_of(&server, &["account", "resend-activation", EMAIL]);
    assert_eq!(resent["activation_sent"], true, "{resent}");
    let (code, second_link, err) = on(&server, &["mail", "links", "--to", EMAIL]);
    assert_eq!(code, Some(0), "{err}");
    let second_link = second_link.trim();
    assert!(second_link.starts_with(&prefix) && second_link != first_link, "{second_link}");
    let token = first_link.trim_start_matches(&prefix);
    let old = coop_idp::auth::links::inspect(&server.app, token, coop_idp::auth::links::Purpose::Activation)
        .await
        .expect("inspect");
    assert!(old.is_err(), "the first link is superseded");
    // Only for an account still pending; nothing sent otherwise.
    let before = outbox(&server).len();
    refused(&server, &["account", "resend-activation", PAUL], "already active");
    assert_eq!(outbox(&server).len(), before, "no message for an active account");
    let err = refused(&server, &["account", "resend-activation", "personne@cc-girou.fr"], "personne@cc-girou.fr");
    assert!(err.contains(&database), "{err}");
    // No live link for Paul (active, never sent one), nor for an unknown address.
    let err = refused(&server, &["mail", "links", "--to", PAUL], "no live link");
    assert!(err.contains(&database), "{err}");
    refused(&server, &["mail", "links", "--to", "personne@cc-girou.fr"], "no account for");

    // account list: every filter, both formats.
    let (code, table, err) = on(&server, &["account", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(table.starts_with("email"), "a header first: {table}");
    for email in [EMAIL, JEAN, PAUL] {
        assert!(table.contains(email), "{email} in {table}");
    }
    let pending = json_of(&server, &["account", "list", "--pending-activation", "--format", "json"]);
    let emails: Vec<&str> = pending.as_array().expect("array").iter().filter_map(|a| a["email"].as_str()).collect();
    assert_eq!(emails, vec![JEAN, EMAIL], "by address");
    assert!(pending.as_array().expect("array").iter().all(|a| a["activation"]["live"] == true), "{pending}");
    let active =
        json_of(&server, &["account", "list", "--partner", "cc-girou", "--state", "active", "--format", "json"]);
    assert_eq!(active.as_array().map(Vec::len), Some(1), "{active}");
    assert_eq!(active[0]["email"], PAUL);
    assert_eq!(active[0]["activation"], Value::Null, "no activation for an active account");
    let err = refused(&server, &["account", "list", "--partner", "cc-nulle-part"], "unknown partner");
    assert!(err.contains(&database), "{err}");
    refused(&server, &["account", "list", "--state", "frozen"], "frozen");
    refused(&server, &["account", "list", "--pending-activation", "--state", "active"], "pending");

    // account show: the account, never its password hash.
    let (code, shown, err) = on(&server, &["account", "show", PAUL]);
    assert_eq!(code, Some(0), "{err}");
    let paul: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!((paul["state"].as_str(), paul["partner_id"].as_str()), (Some("active"), Some("cc-girou")), "{paul}");
    assert_eq!(paul["roles"], serde_json::json!([]));
    assert_eq!(paul["second_factor"], false);
    assert!(!shown.contains("argon2") && !shown.contains("password"), "{shown}");
    let err = refused(&server, &["account", "show", "personne@cc-girou.fr"], "no account for");
    assert!(err.contains(&database), "{err}");

    // account close: as a closure by annex 1, with its record.
    refused(&server, &["account", "close", PAUL, "--reason", "  "], "reason");
    let reason = "Départ de la collectivité";
    let closed = json_of(&server, &["account", "close", PAUL, "--reason", reason]);
    assert_eq!(closed["closed"], true, "{closed}");
    let today = coop_idp::dates::format_iso(server.clock.today());
    assert_eq!(closed["closure_date"], today.as_str());
    let paul = json_of(&server, &["account", "show", PAUL]);
    assert_eq!((paul["state"].as_str(), paul["closure_requested_on"].as_str()), (Some("closed"), Some(today.as_str())));
    let records = json_of(&server, &["logs", "query", "--email", PAUL, "--event", "access_closed", "--format", "json"]);
    let records = records.as_array().expect("records");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["actor"], "cli");
    assert_eq!(records[0]["partner_id"], "cc-girou");
    assert_eq!(records[0]["details"]["comment"], reason);
    assert_eq!(records[0]["details"]["closure_date"], today.as_str());
    refused(&server, &["account", "close", PAUL, "--reason", reason], "already closed");
    // Closing a pending access kills its activation link, as annex 1 does.
    json_of(&server, &["account", "close", EMAIL, "--reason", reason]);
    refused(&server, &["mail", "links", "--to", EMAIL], "no live link");
    refused(&server, &["account", "resend-activation", EMAIL], "closed");
    let (code, out, err) = on(&server, &["logs", "verify"]);
    assert_eq!(code, Some(0), "the chain holds the records: {out}{err}");
}

async fn clients_are_listed_without_their_secret(db: Db) {
    let server = TestServer::start(db).await;
    let database = format!("database: {}", server.app.config.database_shown());
    let secret = server.add_client("platform").await;
    server.add_client_with("mobile", coop_idp::oidc::clients::AuthMethod::None, |_| {}).await;
    let (code, table, err) = on(&server, &["client", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(table.starts_with("client_id") && table.contains("platform") && table.contains("mobile"), "{table}");
    let (code, listed, err) = on(&server, &["client", "list", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let list: Value = serde_json::from_str(&listed).expect("JSON");
    let ids: Vec<&str> = list.as_array().expect("array").iter().filter_map(|c| c["client_id"].as_str()).collect();
    assert_eq!(ids, vec!["mobile", "platform"]);
    let (code, shown, err) = on(&server, &["client", "show", "platform"]);
    assert_eq!(code, Some(0), "{err}");
    let platform: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(platform["auth_method"], "client_secret_basic");
    assert_eq!(platform["redirect_uris"], serde_json::json!([REDIRECT]));
    let hash = coop_idp::crypto::hash_secret(&secret);
    for output in [&table, &listed, &shown] {
        assert!(!output.contains(&secret) && !output.contains(&hash) && !output.contains("secret_hash"), "{output}");
    }
    let err = refused(&server, &["client", "show", "absent"], "unknown client `absent`");
    assert!(err.contains(&database), "{err}");
}

/// The yearly-review warning about a partner without an annex-2 contact is
/// logged once per partner per day, not at every run of the reminders.
#[tokio::test]
async fn review_warning_is_logged_once_per_partner_per_day() {
    use coop_idp::provisioning::{NewPartner, add_partner, review::send_reminders};
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt().with_writer(log.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().expect("tempdir");
    let env: Vec<(String, String)> = vec![
        ("COOP_IDP_DATA_DIR".into(), dir.path().join("data").display().to_string()),
        ("COOP_IDP_KEYS_DIR".into(), dir.path().join("keys").display().to_string()),
        ("COOP_IDP_DATABASE_URL".into(), format!("sqlite://{}/coop-idp.db", dir.path().display())),
    ];
    let config = coop_idp::config::Config::from_sources(None, &env).expect("config");
    let clock = coop_idp::clock::Clock::system();
    let app = coop_idp::startup::open(config, clock.clone()).await.expect("app");
    // Its own name: the memory of warnings is the process's.
    let id = format!("cc-sans-annexe2-{}", coop_idp::crypto::random_b64(6).to_lowercase().replace(['-', '_'], "x"));
    let signed = coop_idp::dates::format_iso(clock.today() - time::Duration::days(400));
    let partner =
        NewPartner { id: &id, name: "CC sans annexe 2", convention_signed: Some(&signed), email_domains: &[] };
    add_partner(&app, partner).await.expect("partner");
    let warnings = || log.text().lines().filter(|l| l.contains("WARN") && l.contains(&id)).count();
    for _ in 0..3 {
        send_reminders(&app).await.expect("reminders");
    }
    assert_eq!(warnings(), 1, "{}", log.text());
    clock.advance_secs(86_400);
    send_reminders(&app).await.expect("reminders");
    send_reminders(&app).await.expect("reminders");
    assert_eq!(warnings(), 2, "once more the next day: {}", log.text());
}

/// A log writer the test reads back.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Dates typed `JJ/MM/AAAA` or `YYYY-MM-DD` in every date option, refused
/// naming the field (not the option); an annex older than the current one
/// refused (2), nothing changed; Caf roles for the Caf's staff only.
#[test]
fn cli_dates_older_annexes_and_caf_roles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let ok = |env: &[(&str, String)], args: &[&str]| {
        let (code, out, err) = run(dir, env, args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
        out
    };
    let refused = |env: &[(&str, String)], args: &[&str]| {
        let (code, out, err) = run(dir, env, args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        err
    };
    ok(&[], &["migrate"]);
    ok(&[], &["partner", "add", "--id", "cc-girou", "--name", "CC du Girou", "--convention-signed", "05/01/2026"]);
    let shown = ok(&[], &["partner", "show", "cc-girou"]);
    assert!(shown.contains("2026-01-05"), "stored as YYYY-MM-DD: {shown}");
    let err = refused(&[], &["convention", "sign", "--partner", "cc-girou", "--date", "31/02/2026"]);
    assert!(err.contains("date de signature") && err.contains("31/02/2026") && !err.contains("--date"), "{err}");

    let annex = dir.join("annexe1.csv");
    std::fs::write(
        &annex,
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\n\
         ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG\n",
    )
    .expect("write");
    let annex = annex.display().to_string();
    let import = |transmitted: &str| {
        ["annex1", "import", "--partner", "cc-girou", annex.as_str(), "--transmitted", transmitted, "--apply"]
            .map(String::from)
    };
    let args = import("01/02/2026");
    ok(&[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    for older in ["2026-01-15", "15/01/2026"] {
        let args = import(older);
        let err = refused(&[], &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(err.contains("antérieure") && err.contains("2026-02-01") && !err.contains("--transmitted"), "{err}");
    }
    let args = import("2026-02-30");
    let err = refused(&[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("date de transmission") && !err.contains("--transmitted"), "{err}");
    let args = import("2026-02-01");
    ok(&[], &args.iter().map(String::as_str).collect::<Vec<_>>());

    let out = ok(&[], &["logs", "query", "--since", "01/01/2026", "--event", "annex1_applied", "--format", "json"]);
    assert_eq!(out.matches("\"annex1_applied\"").count(), 2, "{out}");
    let out = ok(&[], &["logs", "query", "--until", "01/01/2026", "--event", "annex1_applied", "--format", "json"]);
    assert!(!out.contains("annex1_applied"), "{out}");
    let err = refused(&[], &["logs", "query", "--since", "32/01/2026"]);
    assert!(err.contains("32/01/2026") && err.contains("JJ/MM/AAAA") && !err.contains("--since"), "{err}");

    // A partner's agent never gets a Caf role; the Caf's staff do.
    let err = refused(&[], &["admin", "grant", "marie.dupont@cc-girou.fr", "caf_security"]);
    assert!(err.contains("n'est pas un compte de la Caf"), "{err}");
    assert!(!ok(&[], &["admin", "list"]).contains("marie.dupont"), "nothing changed");
    let bootstrap =
        ["admin", "bootstrap", "--email", "habilitations@caf.fr", "--given-name", "Claire", "--family-name", "Habil"];
    let domains = [("COOP_IDP_CAF_EMAIL_DOMAINS", "ctg.caf.fr".to_string())];
    refused(&domains, &bootstrap);
    assert!(!ok(&[], &["admin", "list"]).contains("habilitations@caf.fr"), "nothing changed");
    ok(&[("COOP_IDP_CAF_EMAIL_DOMAINS", "caf.fr".to_string())], &bootstrap);
    assert!(ok(&[], &["admin", "list"]).contains("habilitations@caf.fr"));
}
