//! The configuration's tests: every key's bounds, the sources' order, the
//! contract's defaults.
use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn embedded_defaults_match_the_contract() {
    let c = Config::from_sources(None, &[]).expect("defaults");
    assert_eq!(c.issuer_str(), "http://localhost:8080");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.database_url, "sqlite://./data/coop-idp.db");
    assert_eq!(c.redis_url, None);
    assert_eq!(c.metrics_listen, None, "no metrics unless asked for");
    assert_eq!(c.smtp_url, None);
    assert_eq!(c.mail_from, "Coopération <no-reply@localhost>");
    assert_eq!(c.accessibility_contact, "no-reply@localhost", "the address of mail_from");
    assert_eq!(c.keys_dir, PathBuf::from("./keys"));
    assert_eq!(c.code_ttl_secs, 60);
    assert_eq!(c.log_retention_months, 12);
    assert_eq!(c.log_checkpoint_interval_secs, 300);
    assert_eq!(c.theme, Theme::Neutral, "the State's look only when asked for");
    assert_eq!(c.brand_name, "Coopération");
    assert!(c.brand_logo.is_none());
}

#[test]
fn theme_is_neutral_or_dsfr() {
    let c = Config::from_sources(Some("theme = \"dsfr\""), &[]).expect("dsfr");
    assert_eq!(c.theme, Theme::Dsfr);
    let c = Config::from_sources(None, &env(&[("COOP_IDP_THEME", "neutral")])).expect("neutral");
    assert_eq!(c.theme, Theme::Neutral);
    for wrong in ["DSFR-like", "", "Dsfr "] {
        let e = Config::from_sources(None, &env(&[("COOP_IDP_THEME", wrong)])).expect_err(wrong);
        assert!(e.to_string().contains("`theme`") && e.to_string().contains("neutral or dsfr"), "{e}");
    }
}

#[test]
fn brand_name_is_one_short_line() {
    let c = Config::from_sources(None, &env(&[("COOP_IDP_BRAND_NAME", " Caf de la Haute-Garonne ")])).expect("set");
    assert_eq!(c.brand_name, "Caf de la Haute-Garonne");
    let longest = "x".repeat(MAX_BRAND_NAME_CHARS);
    assert!(Config::from_sources(None, &env(&[("COOP_IDP_BRAND_NAME", &longest)])).is_ok());
    for wrong in [" ".to_string(), format!("{longest}y"), "Caf\nGers".to_string()] {
        let e = Config::from_sources(None, &env(&[("COOP_IDP_BRAND_NAME", &wrong)])).expect_err("refused");
        assert!(e.to_string().contains("`brand_name`"), "{e}");
    }
}

/// The logo is read at start-up: a missing, oversized or mislabelled file
/// stops it with a message that names the key and the file.
#[test]
fn brand_logo_is_a_small_image_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path.display().to_string()
    };
    let logo = |path: &str| Config::from_sources(None, &env(&[("COOP_IDP_BRAND_LOGO", path)]));
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[0; 100]].concat();
    let c = logo(&write("logo.png", &png)).expect("a PNG");
    let read = c.brand_logo.expect("read");
    assert_eq!((read.content_type, read.bytes.len()), ("image/png", 108));
    let svg = logo(&write("logo.SVG", b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>"));
    assert_eq!(svg.expect("an SVG").brand_logo.map(|l| l.content_type), Some("image/svg+xml"));
    let largest = [png.as_slice(), &vec![0; MAX_BRAND_LOGO_BYTES as usize - png.len()]].concat();
    assert!(logo(&write("largest.png", &largest)).is_ok(), "exactly the bound");

    let too_large = [largest.as_slice(), &[0]].concat();
    let missing = dir.path().join("nope.png").display().to_string();
    for (path, says) in [
        (missing.clone(), "nope.png"),
        (write("big.png", &too_large), "more than the 262144"),
        (write("logo.gif", b"GIF89a"), "expected a .png"),
        (write("fake.png", b"<svg/>"), "is not a image/png image"),
        (dir.path().display().to_string(), "expected a .png"),
    ] {
        let e = logo(&path).expect_err(&path);
        assert!(e.to_string().contains("`brand_logo`") && e.to_string().contains(says), "{path}: {e}");
    }
    // Unset (or empty): no logo.
    assert!(logo("").expect("empty").brand_logo.is_none());
}

#[test]
fn only_gouv_fr_hosts_are_under_gouv_fr() {
    for (url, under) in [
        ("https://connexion.agriculture.gouv.fr", true),
        ("https://gouv.fr", true),
        ("https://IDP.Travail.Gouv.Fr/x", true),
        ("https://ctg.caf.fr", false),
        ("https://gouv.fr.example.com", false),
        ("https://notgouv.fr", false),
        ("http://localhost:8080", false),
        ("http://127.0.0.1:8080", false),
    ] {
        assert_eq!(is_under_gouv_fr(&Url::parse(url).expect("url")), under, "{url}");
    }
}

#[test]
fn debug_output_hides_the_passwords_of_urls() {
    let c = Config::from_sources(
        None,
        &env(&[
            ("COOP_IDP_DATABASE_URL", "postgres://coop:db-s3cret@db.example.fr/coop"),
            ("COOP_IDP_REDIS_URL", "redis://:redis-s3cret@cache.example.fr:6379"),
            ("COOP_IDP_SMTP_URL", "smtps://mailer:smtp-s3cret@mail.example.fr:465"),
        ]),
    )
    .expect("config");
    let shown = format!("{c:?}");
    for secret in ["db-s3cret", "redis-s3cret", "smtp-s3cret"] {
        assert!(!shown.contains(secret), "{secret} shown in {shown}");
    }
    // The rest of each URL is still there, to be of use when debugging.
    assert!(shown.contains("postgres://coop:***@db.example.fr/coop"), "{shown}");
    assert!(shown.contains("smtps://mailer:***@mail.example.fr:465"), "{shown}");
    // The values themselves are untouched.
    assert_eq!(c.smtp_url.as_deref(), Some("smtps://mailer:smtp-s3cret@mail.example.fr:465"));
}

#[test]
fn metrics_listen_is_an_address_or_unset() {
    let c = Config::from_sources(None, &env(&[("COOP_IDP_METRICS_LISTEN", "127.0.0.1:9090")])).expect("set");
    assert_eq!(c.metrics_listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9090"));
    let e = Config::from_sources(None, &env(&[("COOP_IDP_METRICS_LISTEN", "metrics")])).expect_err("no port");
    assert!(e.to_string().contains("metrics_listen"), "{e}");
}

#[test]
fn accessibility_contact_is_an_address() {
    let c =
        Config::from_sources(None, &env(&[("COOP_IDP_ACCESSIBILITY_CONTACT", "accessibilite@caf.fr")])).expect("set");
    assert_eq!(c.accessibility_contact, "accessibilite@caf.fr");
    let c = Config::from_sources(None, &env(&[("COOP_IDP_MAIL_FROM", "Caf <idp@caf.fr>")])).expect("derived");
    assert_eq!(c.accessibility_contact, "idp@caf.fr");
    let e =
        Config::from_sources(None, &env(&[("COOP_IDP_ACCESSIBILITY_CONTACT", "A <a@b.fr>")])).expect_err("a mailbox");
    assert!(e.to_string().contains("accessibility_contact"), "{e}");
}

#[test]
fn environment_overrides_file() {
    let c = Config::from_sources(
        Some("issuer = \"https://idp.example.fr\"\nlisten = \"0.0.0.0:9000\"\n"),
        &env(&[("COOP_IDP_LISTEN", "127.0.0.1:9999"), ("COOP_IDP_TEST_POSTGRES_URL", "x")]),
    )
    .expect("config");
    assert_eq!(c.issuer_str(), "https://idp.example.fr");
    assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
}

#[test]
fn invalid_values_name_the_key() {
    let cases = [
        ("COOP_IDP_LISTEN", "nowhere"),
        ("COOP_IDP_ISSUER", "ftp://x"),
        ("COOP_IDP_ISSUER", "http://idp.example.fr"),
        ("COOP_IDP_DATABASE_URL", "mysql://x"),
        ("COOP_IDP_CODE_TTL_SECS", "600"),
        ("COOP_IDP_ARGON2_MEMORY_KIB", "1024"),
        ("COOP_IDP_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("COOP_IDP_SMTP_URL", "http://mail"),
        ("COOP_IDP_ACCESSIBILITY_CONTACT", "nobody"),
        ("COOP_IDP_LOG_RETENTION_MONTHS", "5"),
        ("COOP_IDP_LOG_RETENTION_MONTHS", "13"),
        ("COOP_IDP_LOG_CHECKPOINT_INTERVAL_SECS", "1"),
        ("COOP_IDP_ALERT_SPRAYING_ACCOUNTS", "1"),
        ("COOP_IDP_ALERT_PERIOD_SECS", "soon"),
        ("COOP_IDP_ALERT_RESET_WINDOW_SECS", "0"),
        ("COOP_IDP_THEME", "blue"),
        ("COOP_IDP_BRAND_NAME", ""),
        ("COOP_IDP_BRAND_LOGO", "/no/such/logo.png"),
    ];
    for (key, value) in cases {
        let err = Config::from_sources(None, &env(&[(key, value)])).expect_err(key);
        let expected = key.trim_start_matches(ENV_PREFIX).to_ascii_lowercase();
        assert!(err.to_string().contains(&format!("`{expected}`")), "{err}");
    }
}

#[test]
fn unknown_environment_variable_stops_start_up_naming_it() {
    let e = Config::from_sources(None, &env(&[("COOP_IDP_LISTN", "127.0.0.1:9000")])).expect_err("typo");
    let said = e.to_string();
    assert!(said.contains("`COOP_IDP_LISTN`") && said.contains("did you mean `COOP_IDP_LISTEN`"), "{said}");
    let e = Config::from_sources(None, &env(&[("COOP_IDP_WHATEVER", "1")])).expect_err("unknown");
    assert!(e.to_string().contains("`COOP_IDP_WHATEVER`") && !e.to_string().contains("did you mean"), "{e}");
    // The log filter, the tests' and benchmarks' own variables, and
    // variables outside the prefix are not keys, and are let through.
    let others = env(&[
        ("COOP_IDP_LOG", "debug"),
        ("COOP_IDP_TEST_POSTGRES", "required"),
        ("COOP_IDP_BENCH_SECS", "5"),
        ("COOP_IDPX", "1"),
        ("PATH", "/usr/bin"),
    ]);
    Config::from_sources(None, &others).expect("allowed variables");
}

#[test]
fn toml_syntax_error_gives_line_and_column() {
    let e = Config::from_sources(Some("issuer = \"http://localhost:8080\"\nlisten = 127.0.0.1:8080\n"), &[])
        .expect_err("unquoted");
    let said = e.to_string();
    assert!(said.contains("line 2, column 15"), "{said}");
    let e = Config::from_sources(Some("\n\ncode_ttl_secs = = 3"), &[]).expect_err("two =");
    assert!(e.to_string().contains("line 3, column "), "{e}");
}

#[test]
fn unknown_file_key_suggests_the_nearest() {
    let err = Config::from_sources(Some("isuer = \"x\""), &[]).expect_err("typo");
    assert!(err.to_string().contains("did you mean `issuer`"), "{err}");
}

#[test]
fn listen_and_loopback_issuer_must_agree_on_the_port() {
    let at = |issuer: &str, listen: &str| {
        Config::from_sources(None, &env(&[("COOP_IDP_ISSUER", issuer), ("COOP_IDP_LISTEN", listen)]))
            .expect("config")
            .listen_issuer_mismatch()
    };
    assert_eq!(at("http://localhost:8080", "127.0.0.1:8080"), None);
    assert_eq!(at("http://127.0.0.1:9000/", "0.0.0.0:9000"), None);
    let said = at("http://localhost:8080", "127.0.0.1:9000").expect("ports differ");
    assert!(said.contains("127.0.0.1:9000") && said.contains("http://localhost:8080"), "{said}");
    assert!(at("http://localhost", "127.0.0.1:8080").is_some(), "http's port is 80");
    // A public issuer is a proxy's address: its port is not ours.
    assert_eq!(at("https://idp.example.fr", "127.0.0.1:8080"), None);
}

#[test]
fn the_database_is_named_without_its_password() {
    let shown = |url: &str| {
        Config::from_sources(None, &env(&[("COOP_IDP_DATABASE_URL", url)])).expect("config").database_shown()
    };
    assert_eq!(shown("postgres://coop:s3cret@db.example.fr/coop"), "postgres://coop:***@db.example.fr/coop");
    let sqlite = shown("sqlite://./data/coop-idp.db");
    assert!(sqlite.starts_with("sqlite:///") && sqlite.ends_with("/data/coop-idp.db"), "absolute: {sqlite}");
}

#[test]
fn unknown_file_key_is_refused() {
    let err = Config::from_sources(Some("isuer = \"x\""), &[]).expect_err("typo");
    assert!(err.to_string().contains("`isuer`"));
}

/// The README's table is the declaration's, row for row: a key added,
/// removed or given another default fails here until the README says so.
#[test]
fn readme_table_is_the_declared_one() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme.split("\n## Configuration\n").nth(1).expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let expected = Config::readme_table();
    assert!(section.contains(&expected), "README \"## Configuration\" should hold this table:\n\n{expected}");
}

/// Elsewhere in the README a key's default is written `key` (default):
/// it must be the declared one.
#[test]
fn readme_mentions_of_defaults_are_the_declared_ones() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let mut checked = 0;
    for key in Config::keys() {
        let Fallback::Value(default) = key.fallback else { continue };
        for (at, _) in readme.match_indices(&format!("`{}` (", key.name)) {
            let rest = &readme[at + key.name.len() + 4..];
            let said = rest.split(')').next().unwrap_or_default();
            if said.chars().all(|c| c.is_ascii_digit()) {
                assert_eq!(said, default, "README gives {} the default {said}", key.name);
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "the README's Administration section gives the alert defaults");
}

#[test]
fn keys_are_unique_and_read_from_their_environment_variable() {
    let keys = Config::keys();
    let names: std::collections::BTreeSet<&str> = keys.iter().map(|k| k.name).collect();
    assert_eq!(names.len(), keys.len(), "a key declared twice");
    for key in &keys {
        assert!(!key.meaning.trim().is_empty(), "{} has no meaning", key.name);
        assert_eq!(key.env_var(), format!("COOP_IDP_{}", key.name.to_ascii_uppercase()));
        if let (Some((min, max)), Fallback::Value(default)) = (key.bounds, key.fallback) {
            let n: i64 = default.parse().expect("a whole-number default");
            assert!((min..=max).contains(&n), "{}: default {n} outside {min}..={max}", key.name);
            // Each bound is accepted, and one past it refused; the idle
            // lifetimes, bound to the absolute ones, are given room.
            for (value, accepted) in [(min, true), (max, true), (min - 1, false), (max + 1, false)] {
                let mut set = env(&[
                    ("COOP_IDP_SESSION_IDLE_TIMEOUT_SECS", "60"),
                    ("COOP_IDP_SESSION_ABSOLUTE_TIMEOUT_SECS", "2592000"),
                    ("COOP_IDP_REFRESH_IDLE_TTL_SECS", "60"),
                    ("COOP_IDP_REFRESH_ABSOLUTE_TTL_SECS", "31536000"),
                ]);
                set.push((key.env_var(), value.to_string()));
                let result = Config::from_sources(None, &set);
                assert_eq!(result.is_ok(), accepted, "{}={value}: {:?}", key.name, result.err());
            }
        }
    }
}

#[test]
fn trusted_proxies_accept_addresses_and_blocks() {
    let c = Config::from_sources(Some("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]"), &[]).expect("config");
    assert_eq!(c.trusted_proxies.len(), 2);
}

#[test]
fn caf_email_domains_are_domains() {
    let c = Config::from_sources(Some("caf_email_domains = [\"@Caf.fr\", \"ctg.caf.fr\"]"), &[]).expect("config");
    assert_eq!(c.caf_email_domains, ["caf.fr", "ctg.caf.fr"]);
    assert!(Config::from_sources(None, &[]).expect("defaults").caf_email_domains.is_empty());
    for bad in ["caf", "caf..fr", "-caf.fr", "rssi@caf.fr"] {
        let e = Config::from_sources(Some(&format!("caf_email_domains = \"{bad}\"")), &[]).expect_err(bad);
        assert!(e.to_string().contains("caf_email_domains"), "{e}");
    }
}
