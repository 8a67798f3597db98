//! `export` / `import` (issue 7): a populated SQLite installation moved to
//! PostgreSQL keeps every row and a whole connection-log chain; the import
//! refuses a non-empty target and a truncated file changes nothing.

use coop_idp::app::App;
use coop_idp::audit::Verification;
use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::provisioning::invite::{Invitation, invite};
use coop_idp::provisioning::{NewPartner, add_partner};
use coop_idp::store::{Store, transfer::TransferError};

use crate::common::*;

/// A migrated store on `schema`.
async fn store_on(schema: &PgSchema) -> Store {
    let store = Store::connect(&schema.url).await.expect("schema");
    store.migrate().await.expect("migrate");
    store
}

/// The data lines of an export, sorted (the header and end lines apart).
fn rows_of(export: &[u8]) -> Vec<String> {
    let text = String::from_utf8(export.to_vec()).expect("UTF-8");
    let mut rows: Vec<String> = text.lines().filter(|l| l.contains("\"table\":")).map(str::to_string).collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_installation_moves_to_postgres_whole() {
    let Some(Db::Postgres(admin)) = Db::postgres() else { return };
    // A populated SQLite installation: partner, invitation (mail), account,
    // client, a full flow (session, tokens), failures, the log.
    let source = TestServer::start(Db::Sqlite).await;
    add_partner(
        &source.app,
        NewPartner {
            id: "cc-girou",
            name: "CC du Girou",
            convention_signed: Some("2026-01-01"),
            email_domains: &["cc-girou.fr".to_string()],
        },
    )
    .await
    .expect("partner");
    invite(
        &source.app,
        Invitation {
            partner_id: "cc-girou",
            email: "paul.martin@cc-girou.fr",
            given_name: "Paul",
            family_name: "Martin",
            function: "Agent",
        },
    )
    .await
    .expect("invite");
    source.add_account(EMAIL, Some(("cc-girou", "CC du Girou"))).await;
    let secret = source.add_client("platform").await;
    let rp = source.rp("platform", Some(&secret)).await;
    code_flow(&source, &rp, &browser(), EMAIL, &["offline_access"]).await;
    assert_eq!(attempt_at(&source.base, EMAIL, "wrong-Password-1").await, 401);

    let mut export = Vec::new();
    let counts = source.app.store.export(&mut export).await.expect("export");
    for table in ["partners", "accounts", "clients", "events", "mail_outbox", "refresh_tokens"] {
        assert!(counts.get(table).copied().unwrap_or(0) > 0, "{table} exported: {counts:?}");
    }

    // Into an empty PostgreSQL schema.
    let schema = PgSchema::create(&admin, "x").await;
    let target = store_on(&schema).await;
    let imported = target.import(&export[..]).await.expect("import");
    assert_eq!(imported.values().sum::<i64>(), counts.values().sum::<i64>(), "every row");

    // The connection log verifies on the target (same keys folder).
    let env = vec![
        ("COOP_IDP_DATABASE_URL".to_string(), schema.url.clone()),
        ("COOP_IDP_KEYS_DIR".to_string(), source.app.config.keys_dir.display().to_string()),
        ("COOP_IDP_DATA_DIR".to_string(), source.app.config.data_dir.display().to_string()),
    ];
    let config = Config::from_sources(None, &env).expect("config");
    let app = App::with_store(config, target.clone(), Clock::system()).expect("target app");
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events").fetch_one(target.pool()).await.expect("n");
    assert_eq!(
        coop_idp::audit::verify(&app.store, &app.keys).await.expect("verify"),
        Verification::Intact { records: events }
    );

    // Exported again, the target holds exactly the same rows.
    let mut again = Vec::new();
    target.export(&mut again).await.expect("export the target");
    assert_eq!(rows_of(&again), rows_of(&export), "same rows, same values");

    // A second import into it is refused.
    match target.import(&export[..]).await {
        Err(TransferError::NotEmpty { .. }) => {}
        other => panic!("a non-empty target is refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_foreign_file_changes_nothing() {
    let Some(Db::Postgres(admin)) = Db::postgres() else { return };
    let source = TestServer::start(Db::Sqlite).await;
    source.add_account(EMAIL, None).await;
    let mut export = Vec::new();
    source.app.store.export(&mut export).await.expect("export");
    let text = String::from_utf8(export).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let truncated = lines[..lines.len() - 1].join("\n");

    let schema = PgSchema::create(&admin, "x").await;
    let target = store_on(&schema).await;
    match target.import(truncated.as_bytes()).await {
        Err(TransferError::Format { .. }) => {}
        other => panic!("a truncated file is refused: {other:?}"),
    }
    let mut foreign = lines.clone();
    foreign[0] = r#"{"format":"coop-idp-export","version":1,"migrations":[1,2]}"#;
    match target.import(foreign.join("\n").as_bytes()).await {
        Err(TransferError::Migrations { .. }) => {}
        other => panic!("another schema version is refused: {other:?}"),
    }
    let (accounts,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM accounts").fetch_one(target.pool()).await.expect("n");
    assert_eq!(accounts, 0, "nothing imported");
    let (cursors,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM job_cursors").fetch_one(target.pool()).await.expect("n");
    assert_eq!(cursors, 1, "the seeded cursor is back: the transaction was rolled back");
    // The whole file then imports.
    target.import(text.as_bytes()).await.expect("import");
    let (accounts,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM accounts").fetch_one(target.pool()).await.expect("n");
    assert_eq!(accounts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_commands_move_an_installation() {
    let Some(backends) = crate::cluster::Backends::from_env() else { return };
    // The target: a migrated, empty PostgreSQL schema; the source: SQLite
    // with the same keys folder.
    let cluster = crate::cluster::Cluster::new(&backends, &[]).await;
    let source: Vec<(String, String)> = vec![
        ("data_dir".into(), cluster.path("sqlite").display().to_string()),
        ("keys_dir".into(), cluster.get("keys_dir")),
    ];
    let run = |env: &[(String, String)], args: &[&str]| {
        let log = cluster.path(&format!("cli-{}.log", coop_idp::crypto::random_b64(6)));
        let mut cmd = cluster.command(env, args, &log);
        async move {
            let out = cmd.stdout(std::process::Stdio::piped()).output().await.expect("run");
            (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let (ok, out) = run(&source, &["partner", "add", "--id", "cc-girou", "--name", "CC du Girou"]).await;
    assert!(ok, "{out}");
    let file = cluster.path("export.jsonl");
    let file_arg = file.display().to_string();
    let (ok, out) = run(&source, &["export", &file_arg]).await;
    assert!(ok, "export: {out}");
    let printed: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(printed["tables"]["partners"], 1, "{printed}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export holds password hashes: owner only");
    let (ok, _) = run(&source, &["export", &file_arg]).await;
    assert!(!ok, "an existing file is not overwritten");

    let (ok, out, err) = cluster.cli(&["import", &file_arg]).await;
    assert!(ok, "import: {out}\n{err}");
    let (ok, out, err) = cluster.cli(&["partner", "list"]).await;
    assert!(ok && out.contains("cc-girou"), "{out}\n{err}");
    let (ok, out, err) = cluster.cli(&["logs", "verify"]).await;
    assert!(ok, "logs verify on the target: {out}\n{err}");
    let (ok, _, err) = cluster.cli(&["import", &file_arg]).await;
    assert!(!ok && err.contains("not empty"), "a second import is refused: {err}");
}
