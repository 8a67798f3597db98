//! The command line's exit statuses (README "Command line"): 0 done, 2 input
//! refused, 1 the work failed; the binary itself, on a fresh SQLite database.

use std::path::Path;
use std::process::Command;

/// Runs `coop-idp` in `dir` on its own database and keys, with `env` over them.
fn run(dir: &Path, env: &[(&str, String)], args: &[&str]) -> (Option<i32>, String, String) {
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
    let out = command.output().expect("run coop-idp");
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
