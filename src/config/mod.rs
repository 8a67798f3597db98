//! Configuration: read once at start into a typed struct.
//!
//! Sources, lowest to highest priority: embedded defaults, the TOML file
//! (`coop-idp.toml` in the working folder or `--config FILE`), then
//! `COOP_IDP_<KEY>` environment variables. Nothing reads the environment later.
//!
//! Every key is declared once, below: its field, doc (the README's
//! meaning), name, fallback and rule. The reading, the list of keys, `Debug`
//! (secrets hidden) and the README's table come from that declaration
//! (`table.rs`); readers of the keys that are not whole numbers are in
//! `readers.rs`.

mod readers;
pub(crate) mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use url::Url;

use readers::*;
use table::Fallback::{Derived, Unset, Value};
pub use table::{Fallback, Key};
use table::{Source, settings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("configuration file {path}, line {line}, column {column}: {reason}")]
    Syntax { path: String, line: usize, column: usize, reason: String },
    #[error("unknown environment variable `{name}`: not a configuration key (README \"Configuration\"){hint}")]
    UnknownVariable { name: String, hint: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), reason: reason.into() }
}

pub const ENV_PREFIX: &str = "COOP_IDP_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The look of the pages (R26).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    /// The project's own: system fonts, the operator's name and logo.
    #[default]
    Neutral,
    /// The French State's design system, whose terms of use reserve it to
    /// the State administration and `.gouv.fr` domains.
    Dsfr,
}

impl Theme {
    /// The value of the `theme` key, as templates compare it.
    pub fn code(self) -> &'static str {
        match self {
            Theme::Neutral => "neutral",
            Theme::Dsfr => "dsfr",
        }
    }
}

/// Largest `brand_logo` accepted: a header logo, not a photograph; it is
/// held in memory and sent with every first page view.
pub const MAX_BRAND_LOGO_BYTES: u64 = 256 * 1024;
/// Longest `brand_name`, in characters: it must fit a header line.
pub const MAX_BRAND_NAME_CHARS: usize = 80;

/// The operator's logo, read once at start-up (`brand_logo`).
#[derive(Clone)]
pub struct BrandLogo {
    pub path: PathBuf,
    pub content_type: &'static str,
    pub bytes: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for BrandLogo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {} bytes)", self.path.display(), self.content_type, self.bytes.len())
    }
}

settings! {
    pub struct Config {
        /// public base URL; every link and `iss` is built from it, never from
        /// `Host`. Must be https unless the host is loopback
        pub issuer: Url = ("issuer", Value("http://localhost:8080"), issuer),
        /// address to bind
        pub listen: SocketAddr = ("listen", Value("127.0.0.1:8080"), address),
        /// embedded database, mail outbox (created mode 0700)
        pub data_dir: PathBuf = ("data_dir", Value("./data"), path),
        /// or `postgres://…`
        pub database_url: String =
            ("database_url", Derived("`sqlite://<data_dir>/coop-idp.db`"), secret database_url),
        /// when set, the failed-sign-in counters live in Redis so that several
        /// instances agree without a database write per failure (the database
        /// takes over while Redis is unreachable)
        pub redis_url: Option<String> = ("redis_url", Unset, secret redis_url),
        /// prefix of every Redis key, so that deployments can share a Redis
        pub redis_key_prefix: String = ("redis_key_prefix", Value("coop-idp:"), text),
        /// address of a second listener that serves only `/metrics`
        /// (Prometheus); unset: no metrics anywhere. Never served on `listen`:
        /// keep it on loopback or a private network
        pub metrics_listen: Option<SocketAddr> = ("metrics_listen", Unset, optional_address),
        /// unset: `.eml` files under `<data_dir>/outbox/`; `smtp://host:port`
        /// (plain, local sinks), `smtp://host:587?tls=starttls`,
        /// `smtps://user:pass@host:465`
        pub smtp_url: Option<String> = ("smtp_url", Unset, secret smtp_url),
        /// sender
        pub mail_from: String = ("mail_from", Value("Coopération <no-reply@localhost>"), mailbox),
        /// signing keys, generated on first start; also the 256-bit keys that
        /// seal the TOTP secrets (`totp-secrets.key`) and key the destruction
        /// hashes (`destruction-hmac.key`). Back it up with the database, and
        /// share it between instances
        pub keys_dir: PathBuf = ("keys_dir", Value("./keys"), path),
        /// the address the accessibility statement (`/accessibilite`) gives
        /// for reporting an accessibility problem (RGAA); set it to a mailbox
        /// someone reads
        pub accessibility_contact: String =
            ("accessibility_contact", Derived("the address of `mail_from`"), accessibility_contact),
        /// the look of the pages: `neutral` (the project's own) or `dsfr`
        /// (the French State's design system, whose terms reserve it to the
        /// State administration under `.gouv.fr`: see "Look and
        /// accessibility"; start-up warns when the issuer is elsewhere)
        pub theme: Theme = ("theme", Value("neutral"), theme),
        /// the operator's name, in the header, the footer and every page
        /// title (at most 80 characters)
        pub brand_name: String = ("brand_name", Value("Coopération"), brand_name),
        /// an image file (`.png`, `.jpg`, `.webp` or `.svg`, at most 256 KiB)
        /// shown beside `brand_name` in the header and served at
        /// `/static/logo`; read at start-up, which stops when it is missing,
        /// too large or not the image its name says
        pub brand_logo: Option<BrandLogo> = ("brand_logo", Unset, brand_logo),
        /// `text` or `json` (to stderr; level with `COOP_IDP_LOG`, e.g. `info`)
        pub log_format: LogFormat = ("log_format", Value("text"), log_format),
        /// addresses/CIDR blocks whose `X-Forwarded-For` is believed
        /// (comma-separated in the environment)
        pub trusted_proxies: Vec<IpNet> = ("trusted_proxies", Value(""), networks),
        /// the Caf's own email domains (comma-separated in the environment):
        /// `caf_habilitation` and `caf_security` go only to accounts of no
        /// partner whose address is at one of them; empty: any account of no
        /// partner (the Caf's staff)
        pub caf_email_domains: Vec<String> = ("caf_email_domains", Value(""), domains),
        // RFC 9700: codes live at most 60 s.
        /// authorization code lifetime
        pub code_ttl_secs: i64 = ("code_ttl_secs", Value("60"), int(1, 60)),
        /// access token lifetime
        pub access_token_ttl_secs: i64 = ("access_token_ttl_secs", Value("600"), int(30, 86_400)),
        /// ID token lifetime
        pub id_token_ttl_secs: i64 = ("id_token_ttl_secs", Value("600"), int(30, 86_400)),
        /// a refresh token unused this long dies; at most
        /// `refresh_absolute_ttl_secs`
        pub refresh_idle_ttl_secs: i64 = ("refresh_idle_ttl_secs", Value("86400"), int(60, 86_400 * 365)),
        /// a refresh-token family lives at most this long (30 days)
        pub refresh_absolute_ttl_secs: i64 =
            ("refresh_absolute_ttl_secs", Value("2592000"), int(60, 86_400 * 365)),
        /// browser session inactivity timeout; at most
        /// `session_absolute_timeout_secs`
        pub session_idle_timeout_secs: i64 = ("session_idle_timeout_secs", Value("3600"), int(60, 86_400 * 7)),
        /// browser session absolute lifetime (10 h, a working day)
        pub session_absolute_timeout_secs: i64 =
            ("session_absolute_timeout_secs", Value("36000"), int(60, 86_400 * 30)),
        /// Argon2id parameters.
        pub argon2: Argon2Config = (group),
        /// activation link lifetime (72 h)
        pub activation_link_ttl_secs: i64 = ("activation_link_ttl_secs", Value("259200"), int(600, 30 * 86_400)),
        /// reset link lifetime (30 min)
        pub reset_link_ttl_secs: i64 = ("reset_link_ttl_secs", Value("1800"), int(300, 86_400)),
        /// cap of the doubling delay after repeated failed sign-ins
        pub throttle_max_delay_secs: i64 = ("throttle_max_delay_secs", Value("3600"), int(60, 86_400)),
        /// failed sign-ins allowed per source (an IPv4 address or an IPv6
        /// /64) per 15 minutes
        pub throttle_ip_max_failures: i64 = ("throttle_ip_max_failures", Value("50"), int(5, 100_000)),
        // Convention art. 2.1 and the CNIL's guidance on connection logs:
        // between 6 months and one year.
        /// connection-log records older than this many months are purged;
        /// the bounds are the convention's (art. 2.1)
        pub log_retention_months: u32 = ("log_retention_months", Value("12"), int(6, 12)),
        /// how often the head of the connection log is signed as a
        /// checkpoint, once across instances; also at every purge
        pub log_checkpoint_interval_secs: i64 =
            ("log_checkpoint_interval_secs", Value("300"), int(5, 86_400)),
        /// how often the retention purge runs on its own, once across
        /// instances
        pub purge_interval_secs: i64 = ("purge_interval_secs", Value("3600"), int(60, 7 * 86_400)),
        /// Thresholds and windows of the security-alert detectors.
        pub alerts: AlertConfig = (group),
    }
}

settings! {
    pub struct Argon2Config {
        // OWASP's floor for Argon2id: m=19456 KiB, t=2, p=1.
        /// Argon2id memory per hash (OWASP floor; lower is refused). Changing
        /// an Argon2 parameter upgrades each hash at its owner's next sign-in
        pub memory_kib: u32 = ("argon2_memory_kib", Value("19456"), int(19_456, 4_194_304)),
        /// Argon2id iterations (OWASP floor; lower is refused)
        pub iterations: u32 = ("argon2_iterations", Value("2"), int(2, 100)),
        /// Argon2id lanes
        pub parallelism: u32 = ("argon2_parallelism", Value("1"), int(1, 64)),
        /// hashing threads; at most this many hashes (each
        /// `argon2_memory_kib`) at once, 256 more may wait, beyond that
        /// sign-ins are refused
        pub max_concurrent: usize =
            ("argon2_max_concurrent", Derived("number of CPUs"), int(1, 1024) or cpus),
    }
}

settings! {
    /// Thresholds of the alert detectors (R5, R17); README "Administration"
    /// says what each detector does.
    pub struct AlertConfig {
        /// how often the alert detectors read the new events
        pub scan_interval_secs: i64 = ("alert_scan_interval_secs", Value("5"), int(1, 3600)),
        /// at most one alert per detector and subject within this period
        pub period_secs: i64 = ("alert_period_secs", Value("3600"), int(60, 7 * 86_400)),
        /// password spraying: failed sign-ins on this many distinct accounts
        /// from one source address within the window
        pub spraying_accounts: i64 = ("alert_spraying_accounts", Value("10"), int(2, 100_000)),
        /// the window of password spraying
        pub spraying_window_secs: i64 = ("alert_spraying_window_secs", Value("900"), int(60, 86_400)),
        /// an account locked: this many failed sign-ins in a row (no success
        /// in between) within the window
        pub lockout_failures: i64 = ("alert_lockout_failures", Value("5"), int(1, 100_000)),
        /// the window of a locked account
        pub lockout_window_secs: i64 = ("alert_lockout_window_secs", Value("900"), int(60, 86_400)),
        /// shared credentials: sign-ins of one account within this window
        /// from distant networks (another IPv4 /16 or IPv6 /48), or with
        /// `alert_sharing_user_agents` distinct user agents
        pub sharing_window_secs: i64 = ("alert_sharing_window_secs", Value("3600"), int(60, 86_400)),
        /// distinct user agents of one account that make its credentials
        /// look shared
        pub sharing_user_agents: i64 = ("alert_sharing_user_agents", Value("4"), int(2, 1000)),
        /// repeated lost-password requests for one account within the window
        pub reset_per_account: i64 = ("alert_reset_per_account", Value("5"), int(2, 100_000)),
        /// repeated lost-password requests from one source address within the
        /// window
        pub reset_per_source: i64 = ("alert_reset_per_source", Value("10"), int(2, 100_000)),
        /// the window of repeated lost-password requests
        pub reset_window_secs: i64 = ("alert_reset_window_secs", Value("3600"), int(60, 86_400)),
    }
}

impl Config {
    /// Every key the file or the environment may set, in the README's order.
    pub fn keys() -> Vec<Key> {
        let mut keys = Vec::new();
        Config::collect_keys(&mut keys);
        keys
    }

    /// The README's table of keys ("Configuration"); a test keeps the two equal.
    pub fn readme_table() -> String {
        table::markdown(&Config::keys())
    }

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
        // A variable that is not Unicode cannot be a key's; it is kept (by
        // its name) so that one under our prefix is still refused.
        let env: Vec<(String, String)> = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        Self::from_sources(text.as_deref(), &env).map_err(|e| match (e, &path) {
            (ConfigError::Syntax { line, column, reason, .. }, Some(p)) => {
                ConfigError::Syntax { path: p.display().to_string(), line, column, reason }
            }
            (e, _) => e,
        })
    }

    /// Builds the configuration from a TOML text and environment pairs; the
    /// pure core of [`Config::load`], tested on its own.
    pub fn from_sources(toml_text: Option<&str>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let source = Source::new(Config::keys(), toml_text, env)?;
        Config::read(&source)?.checked()
    }

    /// The rules between keys, once each key is valid on its own.
    fn checked(self) -> Result<Self, ConfigError> {
        if self.session_idle_timeout_secs > self.session_absolute_timeout_secs {
            return Err(invalid("session_idle_timeout_secs", "must not exceed session_absolute_timeout_secs"));
        }
        if self.refresh_idle_ttl_secs > self.refresh_absolute_ttl_secs {
            return Err(invalid("refresh_idle_ttl_secs", "must not exceed refresh_absolute_ttl_secs"));
        }
        Ok(self)
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

    /// The database, as messages name it: the SQLite file's absolute path,
    /// or the URL without its password.
    pub fn database_shown(&self) -> String {
        match self.sqlite_file() {
            Some(file) => {
                let file = std::path::absolute(&file).unwrap_or(file);
                format!("sqlite://{}", file.display())
            }
            None => table::without_password(&self.database_url),
        }
    }

    /// The SQLite database file, when the database is one (not in memory).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite://").or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or("");
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// When the issuer is on this machine (loopback) and names another port
    /// than `listen`, the links it builds lead nowhere: the reason, to warn
    /// at start-up. A proxy on the loopback address is possible, hence a
    /// warning and not a refusal.
    pub fn listen_issuer_mismatch(&self) -> Option<String> {
        let issuer_port = self.issuer.port_or_known_default()?;
        (is_loopback_host(&self.issuer) && issuer_port != self.listen.port()).then(|| {
            format!(
                "listen {} and issuer {} disagree on the port: links and redirects will lead to port {issuer_port}",
                self.listen,
                self.issuer_str()
            )
        })
    }

    /// The longest a token signed by a key can stay valid; a retired key stays
    /// published this long.
    pub fn max_signed_token_ttl_secs(&self) -> i64 {
        self.id_token_ttl_secs.max(self.access_token_ttl_secs) + 300
    }
}

/// Whether the URL's host is `gouv.fr` or under it: the domains where the
/// DSFR's terms of use allow it (`theme = "dsfr"`).
pub fn is_under_gouv_fr(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "gouv.fr" || d.ends_with(".gouv.fr")
        }
        _ => false,
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
mod tests;
