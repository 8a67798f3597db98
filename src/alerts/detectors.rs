//! The detectors: each looks at one new event and what happened before it
//! (by address, email or account, within its window) and says whether it is
//! the sign of an incident. They only read; `super::scan` records.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::kind;
use crate::config::AlertConfig;
use crate::error::AppResult;
use crate::store::events::{EventKey, EventRow};

/// How many earlier records a detector reads at most, and how many of their
/// sequence numbers an alert quotes.
const LOOK_BACK: i64 = 1000;
const QUOTED_SEQS: usize = 50;

pub const PASSWORD_SPRAYING: &str = "password_spraying";
pub const ACCOUNT_LOCKED: &str = "account_locked";
pub const REFRESH_TOKEN_REUSE: &str = "refresh_token_reuse";
pub const SHARED_CREDENTIALS: &str = "shared_credentials";
pub const RESET_ABUSE: &str = "reset_abuse";
pub const PASSKEY_CLONED: &str = "passkey_cloned";

/// (French, English) title of a detector, for the email.
pub fn title(detector: &str) -> (&'static str, &'static str) {
    match detector {
        PASSWORD_SPRAYING => (
            "Échecs de connexion sur plusieurs comptes depuis une même adresse (password spraying)",
            "Failed sign-ins on many accounts from one address (password spraying)",
        ),
        ACCOUNT_LOCKED => {
            ("Compte bloqué après des échecs de connexion répétés", "Account locked after repeated failed sign-ins")
        }
        REFRESH_TOKEN_REUSE => {
            ("Réutilisation d'un jeton de rafraîchissement révoqué", "Reuse of a revoked refresh token")
        }
        SHARED_CREDENTIALS => ("Signes de partage d'identifiants", "Signs of shared credentials"),
        RESET_ABUSE => ("Demandes répétées de renouvellement de mot de passe", "Repeated lost-password requests"),
        PASSKEY_CLONED => (
            "Clé d'accès peut-être copiée (compteur de signature revenu en arrière)",
            "Passkey possibly cloned (its signature counter went backwards)",
        ),
        _ => ("Alerte de sécurité", "Security alert"),
    }
}

/// A suspected incident, before deduplication.
#[derive(Debug, Clone)]
pub struct Finding {
    pub detector: &'static str,
    /// What it is about: `ip:…`, `email:…` or `account:…`; the unit of
    /// deduplication with the detector.
    pub subject: String,
    /// Machine-readable cause, e.g. `distant_networks`.
    pub cause: &'static str,
    pub cause_fr: String,
    pub cause_en: String,
    pub email: Option<String>,
    pub account_id: Option<String>,
    /// Partners whose security officer is told.
    pub partner_ids: Vec<String>,
    /// Emails (normalised) whose partner is looked up when no partner is known.
    pub emails_for_partners: Vec<String>,
    pub counts: Value,
    pub seqs: Vec<i64>,
    pub time_ms: i64,
}

impl Finding {
    fn new(detector: &'static str, subject: String, cause: &'static str, trigger: &EventRow) -> Self {
        Finding {
            detector,
            subject,
            cause,
            cause_fr: String::new(),
            cause_en: String::new(),
            email: trigger.email.clone(),
            account_id: trigger.account_id.clone(),
            partner_ids: trigger.partner_id.iter().cloned().collect(),
            emails_for_partners: trigger.email_normalized.iter().cloned().collect(),
            counts: json!({}),
            seqs: vec![trigger.seq],
            time_ms: trigger.time_ms,
        }
    }

    fn text(mut self, fr: String, en: String) -> Self {
        self.cause_fr = fr;
        self.cause_en = en;
        self
    }
}

fn seqs(rows: &[EventRow]) -> Vec<i64> {
    let start = rows.len().saturating_sub(QUOTED_SEQS);
    rows[start..].iter().map(|r| r.seq).collect()
}

/// The network an address belongs to, as far as "distant" goes: its IPv4
/// /16 or IPv6 /48. Two sign-ins from different networks at once are not
/// one person moving between rooms.
pub fn network(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!("{}.{}.0.0/16", o[0], o[1]))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(&v4.to_string()),
            None => {
                let s = v6.segments();
                Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
            }
        },
    }
}

async fn window(
    app: &App,
    kinds: &[&str],
    key: EventKey<'_>,
    trigger: &EventRow,
    secs: i64,
) -> AppResult<Vec<EventRow>> {
    Ok(app.store.events_by_key(kinds, &key, trigger.time_ms - secs * 1000, trigger.seq, LOOK_BACK).await?)
}

/// Every finding the event `e` brings.
pub async fn detect(app: &App, e: &EventRow) -> AppResult<Vec<Finding>> {
    let c = &app.config.alerts;
    let mut out = Vec::new();
    if matches!(e.kind.as_str(), kind::SIGNIN_FAILED | kind::SECOND_FACTOR_FAILED)
        && e.details.contains("\"passkey_counter_regressed\"")
    {
        out.push(passkey_cloned(e));
    }
    match e.kind.as_str() {
        kind::SIGNIN_FAILED | kind::THROTTLED => {
            if let Some(ip) = e.ip.as_deref() {
                out.extend(spraying(app, c, e, ip).await?);
            }
            if let Some(email) = e.email_normalized.as_deref().filter(|m| !m.is_empty()) {
                out.extend(lockout(app, c, e, email).await?);
            }
        }
        kind::REFRESH_REUSE_DETECTED => {
            let subject = e.account_id.clone().unwrap_or_default();
            let client = e.client_id.clone().unwrap_or_default();
            let mut f = Finding::new(REFRESH_TOKEN_REUSE, format!("account:{subject}"), "revoked_token_replayed", e)
                .text(
                    format!(
                        "Un jeton de rafraîchissement déjà utilisé a été présenté de nouveau (client {client}) : \
                         il a peut-être été volé. Toute la famille de jetons a été révoquée."
                    ),
                    format!(
                        "An already used refresh token was presented again (client {client}): it may have been \
                         stolen. Its whole token family was revoked."
                    ),
                );
            f.counts = json!({"replays": 1});
            out.push(f);
        }
        kind::SIGNIN => {
            if let Some(account) = e.account_id.as_deref() {
                out.extend(sharing(app, c, e, account).await?);
            }
        }
        kind::RESET_REQUESTED => out.extend(resets(app, c, e).await?),
        _ => {}
    }
    Ok(out)
}

async fn spraying(app: &App, c: &AlertConfig, e: &EventRow, ip: &str) -> AppResult<Option<Finding>> {
    let rows =
        window(app, &[kind::SIGNIN_FAILED, kind::THROTTLED], EventKey::Ip(ip), e, c.spraying_window_secs).await?;
    let accounts: BTreeSet<String> = rows.iter().filter_map(|r| r.email_normalized.clone()).collect();
    if (accounts.len() as i64) < c.spraying_accounts {
        return Ok(None);
    }
    let minutes = c.spraying_window_secs / 60;
    let (n, failures) = (accounts.len(), rows.len());
    let mut f = Finding::new(PASSWORD_SPRAYING, format!("ip:{ip}"), "failures_across_accounts", e).text(
        format!(
            "{failures} échecs de connexion sur {n} comptes différents depuis l'adresse {ip} en {minutes} minutes."
        ),
        format!("{failures} failed sign-ins on {n} different accounts from address {ip} within {minutes} minutes."),
    );
    f.email = None;
    f.account_id = None;
    f.partner_ids = rows.iter().filter_map(|r| r.partner_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    f.emails_for_partners = accounts.iter().cloned().collect();
    f.counts = json!({"accounts": n, "failures": failures, "ip": ip, "window_secs": c.spraying_window_secs});
    f.seqs = seqs(&rows);
    Ok(Some(f))
}

async fn lockout(app: &App, c: &AlertConfig, e: &EventRow, email: &str) -> AppResult<Option<Finding>> {
    // As the restriction does, count the failures since the last success.
    let mut rows =
        window(app, &[kind::SIGNIN_FAILED, kind::SIGNIN], EventKey::Email(email), e, c.lockout_window_secs).await?;
    if let Some(last_success) = rows.iter().rposition(|r| r.kind == kind::SIGNIN) {
        rows.drain(..=last_success);
    }
    if (rows.len() as i64) < c.lockout_failures {
        return Ok(None);
    }
    let sources: BTreeSet<String> = rows.iter().filter_map(|r| r.ip.clone()).collect();
    let minutes = c.lockout_window_secs / 60;
    let n = rows.len();
    let mut f = Finding::new(ACCOUNT_LOCKED, format!("email:{email}"), "repeated_failures", e).text(
        format!(
            "{n} échecs de connexion sur le compte {email} en {minutes} minutes : les tentatives sont retardées \
             (blocage temporaire)."
        ),
        format!("{n} failed sign-ins on account {email} within {minutes} minutes: attempts are now delayed (temporary lockout)."),
    );
    f.email = Some(email.to_string());
    f.counts = json!({"failures": n, "sources": sources, "window_secs": c.lockout_window_secs});
    f.seqs = seqs(&rows);
    Ok(Some(f))
}

async fn sharing(app: &App, c: &AlertConfig, e: &EventRow, account: &str) -> AppResult<Vec<Finding>> {
    let signins = window(app, &[kind::SIGNIN], EventKey::Account(account), e, c.sharing_window_secs).await?;
    // A session signed out or expired before this sign-in is not concurrent
    // with it: moving from the office to home is normal use.
    let ended: HashSet<String> =
        window(app, &[kind::SIGNOUT, kind::SESSION_EXPIRED], EventKey::Account(account), e, c.sharing_window_secs)
            .await?
            .into_iter()
            .filter_map(|r| r.session_hash)
            .collect();
    let live: Vec<EventRow> = signins
        .into_iter()
        .filter(|r| r.seq == e.seq || r.session_hash.as_ref().is_none_or(|h| !ended.contains(h)))
        .collect();
    let networks: BTreeSet<String> = live.iter().filter_map(|r| r.ip.as_deref().and_then(network)).collect();
    let agents: BTreeSet<String> = live.iter().filter_map(|r| r.user_agent.clone()).collect();
    let minutes = c.sharing_window_secs / 60;
    let email = e.email.clone().unwrap_or_default();
    let mut out = Vec::new();
    if networks.len() >= 2 {
        let list = networks.iter().cloned().collect::<Vec<_>>().join(", ");
        let mut f = Finding::new(SHARED_CREDENTIALS, format!("account:{account}"), "distant_networks", e).text(
            format!("Le compte {email} a des sessions ouvertes en même temps depuis des réseaux distants ({list}) en {minutes} minutes."),
            format!("Account {email} has sessions open at the same time from distant networks ({list}) within {minutes} minutes."),
        );
        f.counts = json!({"networks": networks, "signins": live.len(), "window_secs": c.sharing_window_secs});
        f.seqs = seqs(&live);
        out.push(f);
    } else if agents.len() as i64 >= c.sharing_user_agents {
        let n = agents.len();
        let mut f = Finding::new(SHARED_CREDENTIALS, format!("account:{account}"), "many_devices", e).text(
            format!(
                "Le compte {email} s'est connecté depuis {n} appareils (navigateurs) différents en {minutes} minutes."
            ),
            format!("Account {email} signed in from {n} different devices (browsers) within {minutes} minutes."),
        );
        f.counts = json!({"user_agents": n, "signins": live.len(), "window_secs": c.sharing_window_secs});
        f.seqs = seqs(&live);
        out.push(f);
    }
    Ok(out)
}

async fn resets(app: &App, c: &AlertConfig, e: &EventRow) -> AppResult<Vec<Finding>> {
    let mut out = Vec::new();
    let minutes = c.reset_window_secs / 60;
    if let Some(email) = e.email_normalized.as_deref().filter(|m| !m.is_empty()) {
        let rows = window(app, &[kind::RESET_REQUESTED], EventKey::Email(email), e, c.reset_window_secs).await?;
        if rows.len() as i64 >= c.reset_per_account {
            let n = rows.len();
            let mut f = Finding::new(RESET_ABUSE, format!("email:{email}"), "repeated_for_account", e).text(
                format!("{n} demandes de renouvellement de mot de passe pour {email} en {minutes} minutes."),
                format!("{n} lost-password requests for {email} within {minutes} minutes."),
            );
            f.email = Some(email.to_string());
            f.counts = json!({"requests": n, "window_secs": c.reset_window_secs});
            f.seqs = seqs(&rows);
            out.push(f);
        }
    }
    if let Some(ip) = e.ip.as_deref() {
        let rows = window(app, &[kind::RESET_REQUESTED], EventKey::Ip(ip), e, c.reset_window_secs).await?;
        if rows.len() as i64 >= c.reset_per_source {
            let n = rows.len();
            let emails: BTreeSet<String> = rows.iter().filter_map(|r| r.email_normalized.clone()).collect();
            let mut f = Finding::new(RESET_ABUSE, format!("ip:{ip}"), "repeated_from_source", e).text(
                format!("{n} demandes de renouvellement de mot de passe depuis l'adresse {ip} en {minutes} minutes."),
                format!("{n} lost-password requests from address {ip} within {minutes} minutes."),
            );
            f.email = None;
            f.account_id = None;
            f.emails_for_partners = emails.iter().cloned().collect();
            f.counts = json!({"requests": n, "accounts": emails.len(), "ip": ip, "window_secs": c.reset_window_secs});
            f.seqs = seqs(&rows);
            out.push(f);
        }
    }
    Ok(out)
}

/// A passkey answered with a signature counter not above the one stored
/// (issue 17): two copies of its private key may exist. The sign-in was
/// refused; the security officers are told at once.
fn passkey_cloned(e: &EventRow) -> Finding {
    let subject = e.account_id.clone().unwrap_or_default();
    let email = e.email.clone().unwrap_or_default();
    let mut f = Finding::new(PASSKEY_CLONED, format!("account:{subject}"), "counter_regressed", e).text(
        format!(
            "Une clé d'accès du compte {email} a présenté un compteur de signature qui n'avance pas : elle a \
             peut-être été copiée. La connexion a été refusée ; retirez cette clé d'accès depuis la console."
        ),
        format!(
            "A passkey of account {email} presented a signature counter that did not move forward: it may have \
             been cloned. The sign-in was refused; remove this passkey from the console."
        ),
    );
    f.counts = json!({"refused": 1});
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_ipv4_slash_16_and_ipv6_slash_48() {
        assert_eq!(network("203.0.113.9").as_deref(), Some("203.0.0.0/16"));
        assert_eq!(network("203.0.200.1"), network("203.0.113.9"));
        assert_ne!(network("203.1.113.9"), network("203.0.113.9"));
        assert_eq!(network("2001:db8:1:2::1").as_deref(), Some("2001:db8:1::/48"));
        assert_ne!(network("2001:db8:2::1"), network("2001:db8:1::1"));
        assert_eq!(network("::ffff:198.51.100.7").as_deref(), Some("198.51.0.0/16"));
        assert_eq!(network("not an address"), None);
    }
}
