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
