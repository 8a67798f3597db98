//! Configuration: read once at start into a typed struct.
//!
//! Sources, lowest to highest priority: embedded defaults, the TOML file
//! (`coop-idp.toml` in the working folder or `--config FILE`), then
//! `COOP_IDP_<KEY>` environment variables. Nothing reads the environment later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration file {path}: {reason}")]
    File { path: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), reason: reason.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How many hashes may run at once (each holds `memory_kib`).
    pub max_concurrent: usize,
}

/// `Debug` is written by hand: the database, Redis and SMTP URLs may carry a
/// password, which a debug print must not show.
#[derive(Clone)]
pub struct Config {
    pub issuer: Url,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Where `/metrics` is served, on a listener of its own (unset: nowhere).
    pub metrics_listen: Option<SocketAddr>,
    pub smtp_url: Option<String>,
    pub mail_from: String,
    /// Where people report an accessibility problem (the statement page,
    /// RGAA); by default the address of `mail_from`.
    pub accessibility_contact: String,
    pub keys_dir: PathBuf,
    pub log_format: LogFormat,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub code_ttl_secs: i64,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_idle_ttl_secs: i64,
    pub refresh_absolute_ttl_secs: i64,
    pub session_idle_timeout_secs: i64,
    pub session_absolute_timeout_secs: i64,
    pub argon2: Argon2Config,
    /// Activation links: 72 h by default.
    pub activation_link_ttl_secs: i64,
    /// Reset links: 30 min by default.
    pub reset_link_ttl_secs: i64,
    /// Cap of the doubling delay after repeated failures.
    pub throttle_max_delay_secs: i64,
    /// Failed sign-ins allowed per source address per 15 minutes.
    pub throttle_ip_max_failures: i64,
    /// Prefix of every Redis key (several deployments may share a server).
    pub redis_key_prefix: String,
    /// Connection-log records older than this are purged (R19: 6 to 12).
    pub log_retention_months: u32,
    /// How often the log's head is signed as a checkpoint.
    pub log_checkpoint_interval_secs: i64,
    /// How often the retention purge runs (once across instances).
    pub purge_interval_secs: i64,
    /// Thresholds and windows of the security-alert detectors.
    pub alerts: AlertConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field cannot be left out unnoticed.
        let Config {
            issuer,
            listen,
            data_dir,
            database_url,
            redis_url,
            metrics_listen,
            smtp_url,
            mail_from,
            accessibility_contact,
            keys_dir,
            log_format,
            trusted_proxies,
            code_ttl_secs,
            access_token_ttl_secs,
            id_token_ttl_secs,
            refresh_idle_ttl_secs,
            refresh_absolute_ttl_secs,
            session_idle_timeout_secs,
            session_absolute_timeout_secs,
            argon2,
            activation_link_ttl_secs,
            reset_link_ttl_secs,
            throttle_max_delay_secs,
            throttle_ip_max_failures,
            redis_key_prefix,
            log_retention_months,
            log_checkpoint_interval_secs,
            purge_interval_secs,
            alerts,
        } = self;
        f.debug_struct("Config")
            .field("issuer", &issuer.as_str())
            .field("listen", listen)
            .field("data_dir", data_dir)
            .field("database_url", &without_password(database_url))
            .field("redis_url", &redis_url.as_deref().map(without_password))
            .field("metrics_listen", metrics_listen)
            .field("smtp_url", &smtp_url.as_deref().map(without_password))
            .field("mail_from", mail_from)
            .field("accessibility_contact", accessibility_contact)
            .field("keys_dir", keys_dir)
            .field("log_format", log_format)
            .field("trusted_proxies", trusted_proxies)
            .field("code_ttl_secs", code_ttl_secs)
            .field("access_token_ttl_secs", access_token_ttl_secs)
            .field("id_token_ttl_secs", id_token_ttl_secs)
            .field("refresh_idle_ttl_secs", refresh_idle_ttl_secs)
            .field("refresh_absolute_ttl_secs", refresh_absolute_ttl_secs)
            .field("session_idle_timeout_secs", session_idle_timeout_secs)
            .field("session_absolute_timeout_secs", session_absolute_timeout_secs)
            .field("argon2", argon2)
            .field("activation_link_ttl_secs", activation_link_ttl_secs)
            .field("reset_link_ttl_secs", reset_link_ttl_secs)
            .field("throttle_max_delay_secs", throttle_max_delay_secs)
            .field("throttle_ip_max_failures", throttle_ip_max_failures)
            .field("redis_key_prefix", redis_key_prefix)
            .field("log_retention_months", log_retention_months)
            .field("log_checkpoint_interval_secs", log_checkpoint_interval_secs)
            .field("purge_interval_secs", purge_interval_secs)
            .field("alerts", alerts)
            .finish()
    }
}

/// A URL with its password replaced by `***` (and one that does not parse
/// replaced whole, since it cannot be cut safely).
fn without_password(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "(unparsable URL, not shown)".to_string(),
    }
}

/// Thresholds of the alert detectors (R5, R17); README "Administration"
/// documents each default.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// How often the detectors read the new events.
    pub scan_interval_secs: i64,
    /// At most one alert per detector and subject within this period.
    pub period_secs: i64,
    /// Password spraying: failed sign-ins on this many distinct accounts
    /// from one source address within the window.
    pub spraying_accounts: i64,
    pub spraying_window_secs: i64,
    /// An account locked: this many failed sign-ins in a row (no success in
    /// between) within the window.
    pub lockout_failures: i64,
    pub lockout_window_secs: i64,
    /// Shared credentials: sign-ins of one account within the window from
    /// distant networks (another IPv4 /16 or IPv6 /48), or with this many
    /// distinct user agents.
    pub sharing_window_secs: i64,
    pub sharing_user_agents: i64,
    /// Repeated lost-password requests for one account or from one source
    /// address within the window.
    pub reset_per_account: i64,
    pub reset_per_source: i64,
    pub reset_window_secs: i64,
}

/// Every key the file or the environment may set, with its embedded default
/// (`None`: unset or derived from another key).
const KEYS: &[(&str, Option<&str>)] = &[
    ("issuer", Some("http://localhost:8080")),
    ("listen", Some("127.0.0.1:8080")),
    ("data_dir", Some("./data")),
    ("database_url", None),
    ("redis_url", None),
    ("metrics_listen", None),
    ("smtp_url", None),
    ("mail_from", Some("Coopération <no-reply@localhost>")),
    ("accessibility_contact", None),
    ("keys_dir", Some("./keys")),
    ("log_format", Some("text")),
    ("trusted_proxies", Some("")),
    ("code_ttl_secs", Some("60")),
    ("access_token_ttl_secs", Some("600")),
    ("id_token_ttl_secs", Some("600")),
    ("refresh_idle_ttl_secs", Some("86400")),
    ("refresh_absolute_ttl_secs", Some("2592000")),
    ("session_idle_timeout_secs", Some("3600")),
    ("session_absolute_timeout_secs", Some("36000")),
    ("argon2_memory_kib", Some("19456")),
    ("argon2_iterations", Some("2")),
    ("argon2_parallelism", Some("1")),
    ("argon2_max_concurrent", None),
    ("activation_link_ttl_secs", Some("259200")),
    ("reset_link_ttl_secs", Some("1800")),
    ("throttle_max_delay_secs", Some("3600")),
    ("throttle_ip_max_failures", Some("50")),
    ("redis_key_prefix", Some("coop-idp:")),
    ("log_retention_months", Some("12")),
    ("log_checkpoint_interval_secs", Some("300")),
    ("purge_interval_secs", Some("3600")),
    ("alert_scan_interval_secs", Some("5")),
    ("alert_period_secs", Some("3600")),
    ("alert_spraying_accounts", Some("10")),
    ("alert_spraying_window_secs", Some("900")),
    ("alert_lockout_failures", Some("5")),
    ("alert_lockout_window_secs", Some("900")),
    ("alert_sharing_window_secs", Some("3600")),
    ("alert_sharing_user_agents", Some("4")),
    ("alert_reset_per_account", Some("5")),
    ("alert_reset_per_source", Some("10")),
    ("alert_reset_window_secs", Some("3600")),
];

pub const ENV_PREFIX: &str = "COOP_IDP_";

/// The address of a mailbox written `Name <address>` (or the text itself).
fn address_of(mailbox: &str) -> String {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(a), Some(b)) if a < b => mailbox[a + 1..b].trim().to_string(),
        _ => mailbox.trim().to_string(),
    }
}

impl Config {
    /// Loads `file` (or `./coop-idp.toml` when it exists) and the process
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let default_file = Path::new("coop-idp.toml");
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None if default_file.exists() => Some(default_file.to_path_buf()),
            None => None,
        };
        let text = match &path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::File { path: p.display().to_string(), reason: e.to_string() })?,
            ),
            None => None,
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_sources(text.as_deref(), &env)
    }

    /// Builds the configuration from a TOML text and environment pairs; the
    /// pure core of [`Config::load`], tested on its own.
    pub fn from_sources(toml_text: Option<&str>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        if let Some(text) = toml_text {
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::File {
                path: "coop-idp.toml".into(),
                reason: e.message().to_string(),
            })?;
            for (key, value) in table {
                if !KEYS.iter().any(|(k, _)| *k == key) {
                    return Err(invalid(&key, "unknown key"));
                }
                let as_text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Array(items) => items
                        .into_iter()
                        .map(|v| match v {
                            toml::Value::String(s) => Ok(s),
                            _ => Err(invalid(&key, "expected a list of strings")),
                        })
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    other => return Err(invalid(&key, format!("unexpected value {other}"))),
                };
                raw.insert(key, as_text);
            }
        }
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                let key = key.to_ascii_lowercase();
                // Test and tooling variables share the prefix; only known keys count.
                if KEYS.iter().any(|(k, _)| *k == key) {
                    raw.insert(key, value.clone());
                }
            }
        }
        let get = |key: &str| -> Option<String> {
            raw.get(key)
                .cloned()
                .or_else(|| KEYS.iter().find(|(k, _)| *k == key).and_then(|(_, d)| d.map(str::to_string)))
        };
        let int = |key: &str, min: i64, max: i64| -> Result<i64, ConfigError> {
            let v = get(key).unwrap_or_default();
            let n: i64 = v.trim().parse().map_err(|_| invalid(key, format!("`{v}` is not a whole number")))?;
            if n < min || n > max {
                return Err(invalid(key, format!("{n} is outside {min}..={max}")));
            }
            Ok(n)
        };

        let issuer_text = get("issuer").unwrap_or_default();
        let issuer = Url::parse(&issuer_text).map_err(|e| invalid("issuer", e.to_string()))?;
        if !matches!(issuer.scheme(), "http" | "https") {
            return Err(invalid("issuer", "must be an http or https URL"));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(invalid("issuer", "must not have a query or fragment"));
        }
        if issuer.scheme() == "http" && !is_loopback_host(&issuer) {
            return Err(invalid("issuer", "must be https unless the host is loopback"));
        }
        let listen_text = get("listen").unwrap_or_default();
        let listen =
            listen_text.parse().map_err(|_| invalid("listen", format!("`{listen_text}` is not an address:port")))?;
        let metrics_listen = match get("metrics_listen").filter(|s| !s.is_empty()) {
            Some(text) => {
                Some(text.parse().map_err(|_| invalid("metrics_listen", format!("`{text}` is not an address:port")))?)
            }
            None => None,
        };
        let data_dir = PathBuf::from(get("data_dir").unwrap_or_default());
        let database_url =
            get("database_url").unwrap_or_else(|| format!("sqlite://{}/coop-idp.db", data_dir.display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid("database_url", "must start with sqlite:, postgres:// or postgresql://"));
        }
        let redis_url = get("redis_url").filter(|s| !s.is_empty());
        if let Some(r) = &redis_url
            && !(r.starts_with("redis://") || r.starts_with("rediss://"))
        {
            return Err(invalid("redis_url", "must start with redis:// or rediss://"));
        }
        let smtp_url = get("smtp_url").filter(|s| !s.is_empty());
        if let Some(s) = &smtp_url {
            let u = Url::parse(s).map_err(|e| invalid("smtp_url", e.to_string()))?;
            if !matches!(u.scheme(), "smtp" | "smtps") {
                return Err(invalid("smtp_url", "must start with smtp:// or smtps://"));
            }
        }
        let mail_from = get("mail_from").unwrap_or_default();
        if !mail_from.contains('@') {
            return Err(invalid("mail_from", "must contain an email address"));
        }
        let accessibility_contact = match get("accessibility_contact").filter(|s| !s.trim().is_empty()) {
            Some(c) if c.contains('@') && !c.contains(['<', '>', '"']) => c.trim().to_string(),
            Some(_) => return Err(invalid("accessibility_contact", "must be an email address")),
            None => address_of(&mail_from),
        };
        let log_format = match get("log_format").as_deref() {
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            other => return Err(invalid("log_format", format!("`{}`: expected text or json", other.unwrap_or("")))),
        };
        let trusted_proxies = get("trusted_proxies")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| invalid("trusted_proxies", format!("`{s}` is not an address or CIDR block")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) as i64;
        let max_concurrent = match get("argon2_max_concurrent") {
            Some(_) => int("argon2_max_concurrent", 1, 1024)?,
            None => cpus,
        };
        let session_idle = int("session_idle_timeout_secs", 60, 86_400 * 7)?;
        let session_abs = int("session_absolute_timeout_secs", 60, 86_400 * 30)?;
        if session_idle > session_abs {
            return Err(invalid("session_idle_timeout_secs", "must not exceed session_absolute_timeout_secs"));
        }
        let refresh_idle = int("refresh_idle_ttl_secs", 60, 86_400 * 365)?;
        let refresh_abs = int("refresh_absolute_ttl_secs", 60, 86_400 * 365)?;
        if refresh_idle > refresh_abs {
            return Err(invalid("refresh_idle_ttl_secs", "must not exceed refresh_absolute_ttl_secs"));
        }
        Ok(Config {
            issuer,
            listen,
            keys_dir: PathBuf::from(get("keys_dir").unwrap_or_default()),
            data_dir,
            database_url,
            redis_url,
            metrics_listen,
            smtp_url,
            mail_from,
            accessibility_contact,
            log_format,
            trusted_proxies,
            // RFC 9700: codes live at most 60 s.
            code_ttl_secs: int("code_ttl_secs", 1, 60)?,
            access_token_ttl_secs: int("access_token_ttl_secs", 30, 86_400)?,
            id_token_ttl_secs: int("id_token_ttl_secs", 30, 86_400)?,
            refresh_idle_ttl_secs: refresh_idle,
            refresh_absolute_ttl_secs: refresh_abs,
            session_idle_timeout_secs: session_idle,
            session_absolute_timeout_secs: session_abs,
            argon2: Argon2Config {
                // OWASP's floor for Argon2id: m=19456 KiB, t=2, p=1.
                memory_kib: int("argon2_memory_kib", 19_456, 4_194_304)? as u32,
                iterations: int("argon2_iterations", 2, 100)? as u32,
                parallelism: int("argon2_parallelism", 1, 64)? as u32,
                max_concurrent: max_concurrent as usize,
            },
            activation_link_ttl_secs: int("activation_link_ttl_secs", 600, 30 * 86_400)?,
            reset_link_ttl_secs: int("reset_link_ttl_secs", 300, 86_400)?,
            throttle_max_delay_secs: int("throttle_max_delay_secs", 60, 86_400)?,
            throttle_ip_max_failures: int("throttle_ip_max_failures", 5, 100_000)?,
            redis_key_prefix: get("redis_key_prefix").unwrap_or_default(),
            // Convention art. 2.1 and the CNIL's guidance on connection logs:
            // between 6 months and one year.
            log_retention_months: int("log_retention_months", 6, 12)? as u32,
            log_checkpoint_interval_secs: int("log_checkpoint_interval_secs", 5, 86_400)?,
            purge_interval_secs: int("purge_interval_secs", 60, 7 * 86_400)?,
            alerts: AlertConfig {
                scan_interval_secs: int("alert_scan_interval_secs", 1, 3600)?,
                period_secs: int("alert_period_secs", 60, 7 * 86_400)?,
                spraying_accounts: int("alert_spraying_accounts", 2, 100_000)?,
                spraying_window_secs: int("alert_spraying_window_secs", 60, 86_400)?,
                lockout_failures: int("alert_lockout_failures", 1, 100_000)?,
                lockout_window_secs: int("alert_lockout_window_secs", 60, 86_400)?,
                sharing_window_secs: int("alert_sharing_window_secs", 60, 86_400)?,
                sharing_user_agents: int("alert_sharing_user_agents", 2, 1000)?,
                reset_per_account: int("alert_reset_per_account", 2, 100_000)?,
                reset_per_source: int("alert_reset_per_source", 2, 100_000)?,
                reset_window_secs: int("alert_reset_window_secs", 60, 86_400)?,
            },
        })
    }

    /// The issuer as it appears in `iss`: no trailing slash.
    pub fn issuer_str(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_string()
    }

    /// An absolute URL under the issuer, never derived from the `Host` header.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer_str(), path)
    }

    pub fn is_https(&self) -> bool {
        self.issuer.scheme() == "https"
    }

    /// The longest a token signed by a key can stay valid; a retired key stays
    /// published this long.
    pub fn max_signed_token_ttl_secs(&self) -> i64 {
        self.id_token_ttl_secs.max(self.access_token_ttl_secs) + 300
    }
}

pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
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
        let c = Config::from_sources(None, &env(&[("COOP_IDP_ACCESSIBILITY_CONTACT", "accessibilite@caf.fr")]))
            .expect("set");
        assert_eq!(c.accessibility_contact, "accessibilite@caf.fr");
        let c = Config::from_sources(None, &env(&[("COOP_IDP_MAIL_FROM", "Caf <idp@caf.fr>")])).expect("derived");
        assert_eq!(c.accessibility_contact, "idp@caf.fr");
        let e = Config::from_sources(None, &env(&[("COOP_IDP_ACCESSIBILITY_CONTACT", "A <a@b.fr>")]))
            .expect_err("a mailbox");
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
        ];
        for (key, value) in cases {
            let err = Config::from_sources(None, &env(&[(key, value)])).expect_err(key);
            let expected = key.trim_start_matches(ENV_PREFIX).to_ascii_lowercase();
            assert!(err.to_string().contains(&format!("`{expected}`")), "{err}");
        }
    }

    #[test]
    fn unknown_file_key_is_refused() {
        let err = Config::from_sources(Some("isuer = \"x\""), &[]).expect_err("typo");
        assert!(err.to_string().contains("`isuer`"));
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_blocks() {
        let c = Config::from_sources(Some("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]"), &[]).expect("config");
        assert_eq!(c.trusted_proxies.len(), 2);
    }
}
