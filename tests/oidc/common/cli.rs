//! The `coop-idp` command line, run as the binary: on a test server's
//! installation, or on a fresh one of its own.

use serde_json::Value;

use super::server::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_coop-idp");

/// Runs the `coop-idp` binary on the server's database, keys and issuer.
pub fn cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    cli_on(&server.app.config, &server.base, args)
}

/// The same on the installation `c` describes, published at `base`.
pub fn cli_on(c: &coop_idp::config::Config, base: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .current_dir(&c.data_dir)
        .env("COOP_IDP_ISSUER", base)
        .env("COOP_IDP_DATABASE_URL", &c.database_url)
        .env("COOP_IDP_DATA_DIR", &c.data_dir)
        .env("COOP_IDP_KEYS_DIR", &c.keys_dir)
        .env("COOP_IDP_LOG", "error")
        .output()
        .expect("run coop-idp")
}

/// A fresh installation in a folder of its own (SQLite, file outbox), for
/// the command line alone.
pub struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    pub fn new() -> Cli {
        Cli { dir: tempfile::tempdir().expect("tempdir") }
    }

    /// (exit code, stdout, stderr) of `coop-idp ARGS`.
    pub fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let data = self.dir.path().join("data");
        let out = std::process::Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env("COOP_IDP_DATA_DIR", &data)
            .env("COOP_IDP_KEYS_DIR", self.dir.path().join("keys"))
            .env("COOP_IDP_DATABASE_URL", format!("sqlite://{}/coop-idp.db", data.display()))
            .env_remove("COOP_IDP_SMTP_URL")
            .env_remove("COOP_IDP_REDIS_URL")
            .output()
            .expect("run coop-idp");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The JSON a successful command prints.
    pub fn json(&self, args: &[&str]) -> Value {
        let (code, out, err) = self.run(args);
        assert_eq!(code, Some(0), "{args:?}\n{out}\n{err}");
        serde_json::from_str(&out).expect("JSON output")
    }

    /// Writes a file in the installation's folder; its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write fixture");
        path.display().to_string()
    }

    /// Every `.eml` of the file outbox.
    pub fn outbox(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.dir.path().join("data").join("outbox")) else { return Vec::new() };
        dir.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}
