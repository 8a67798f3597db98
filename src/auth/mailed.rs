//! The live action link last mailed to a person (`mail links --to EMAIL`),
//! so that a test installation needs no `grep` over `.eml` files.
//!
//! Tokens are stored hashed: a link can be read back only where its message
//! lies in plain text, that is the file outbox (`<data_dir>/outbox/*.eml`,
//! used when `smtp_url` is unset) and the messages the outbox table still
//! holds before their delivery (delivered ones lose their text). With SMTP
//! the link exists only in the person's mailbox, and the command is refused:
//! nobody but the person sets the password (R1). Each token found is checked
//! against its hash as the link page checks it, so only a link still usable
//! (not used, not expired, not superseded, its account in the state its
//! purpose needs) is given.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::links::{self, Purpose};
use crate::accounts::directory::{normalized, unknown};
use crate::app::App;
use crate::clock::{Millis, rfc3339_ms};
use crate::crypto::hash_secret;
use crate::error::{AppError, AppResult};

/// The `.eml` files read, newest first.
pub const MAX_FILES: usize = 10_000;
/// A larger `.eml` file is skipped (ours are a few kilobytes).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The messages kept for the person, newest first, stop at this many bytes
/// in all: the file bounds alone would let 10,000 large files addressed to
/// one person stay in memory at once.
pub const MAX_KEPT_BYTES: usize = 16 << 20;
/// The undelivered messages read from the outbox table, newest first.
pub const MAX_QUEUED: i64 = 1000;

/// A link still usable.
#[derive(Debug, Clone, Serialize)]
pub struct MailedLink {
    /// `activation` or `reset`.
    pub purpose: &'static str,
    pub link: String,
    pub expires_at: String,
    #[serde(skip)]
    created_at: Millis,
}

/// The newest live activation or reset link mailed to `email`; `None` when
/// none is live. Refused with SMTP, and for an address no account has.
pub async fn latest_live_link(app: &App, email: &str) -> AppResult<Option<MailedLink>> {
    if app.config.smtp_url.is_some() {
        return Err(AppError::Invalid(
            "les messages partent par SMTP (smtp_url) : le lien n'est que dans la boîte de la personne / \
             mail goes out over SMTP (smtp_url): the link is only in the person's mailbox"
                .into(),
        ));
    }
    let wanted = normalized(email);
    let account = app.store.account_by_email(&wanted).await?.ok_or_else(|| unknown(email))?;
    let mut texts: Vec<String> = app
        .store
        .undelivered_mail_texts(MAX_QUEUED)
        .await?
        .into_iter()
        .filter(|(recipient, _)| recipient.to_lowercase().contains(&wanted))
        .map(|(_, text)| text)
        .collect();
    let dir = outbox_dir(&app.config.data_dir);
    let to = wanted.clone();
    let files =
        tokio::task::spawn_blocking(move || eml_to(&dir, &to)).await.map_err(|e| AppError::Failure(Box::new(e)))?;
    texts.extend(files);
    let mut best: Option<MailedLink> = None;
    for purpose in [Purpose::Activation, Purpose::Reset] {
        let prefix = format!("{}?token=", app.config.url(purpose.path()));
        for token in texts.iter().flat_map(|t| tokens_after(t, &prefix)) {
            let Ok(owner) = links::inspect(app, &token, purpose).await? else { continue };
            if owner.id != account.id {
                continue;
            }
            let Some(row) = app.store.credential_link(&hash_secret(&token)).await? else { continue };
            if best.as_ref().is_none_or(|b| row.created_at > b.created_at) {
                best = Some(MailedLink {
                    purpose: purpose.as_str(),
                    link: format!("{prefix}{token}"),
                    expires_at: rfc3339_ms(row.expires_at),
                    created_at: row.created_at,
                });
            }
        }
    }
    Ok(best)
}

/// Where the file transport writes (see `mail_transport`).
pub fn outbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox")
}

/// The `.eml` files of `dir` addressed to `email` (a `To:` header naming
/// it), newest first (names start with the creation time), within the
/// bounds above. A folder not there yet holds none.
fn eml_to(dir: &Path, email: &str) -> Vec<String> {
    eml_within(dir, email, MAX_KEPT_BYTES)
}

fn eml_within(dir: &Path, email: &str, kept_bytes: usize) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "eml")
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    names
        .into_iter()
        .take(MAX_FILES)
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= MAX_FILE_BYTES))
        .filter_map(|p| std::fs::read(p).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .filter(|text| addressed_to(text, email))
        .scan(0usize, |kept, text| {
            *kept += text.len();
            (*kept <= kept_bytes).then_some(text)
        })
        .collect()
}

/// Whether a message's header names `email` as its recipient.
fn addressed_to(message: &str, email: &str) -> bool {
    message
        .lines()
        .take_while(|l| !l.is_empty() && *l != "\r")
        .any(|l| l.get(..3).is_some_and(|h| h.eq_ignore_ascii_case("to:")) && l.to_lowercase().contains(email))
}

/// Every token that follows `prefix` in `text` (URL-safe base64 characters).
fn tokens_after(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_end_at_the_first_character_outside_base64url() {
        let p = "http://localhost:8080/activate?token=";
        let text = format!("Lien : {p}abc-_09\r\nAutre : <a href=\"{p}XYZ\">{p}</a>");
        assert_eq!(tokens_after(&text, p), vec!["abc-_09", "XYZ"]);
        assert!(tokens_after("http://localhost:8080/activate?token=3D", "https://idp/activate?token=").is_empty());
    }

    #[test]
    fn the_messages_kept_stop_at_the_byte_budget_newest_first() {
        let dir = std::env::temp_dir().join(format!("coop-idp-mailed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mail = |n: u8| format!("To: marie.dupont@cc-girou.fr\r\n\r\n{}", "x".repeat(100 + usize::from(n)));
        for n in 1..=3u8 {
            std::fs::write(dir.join(format!("{n:03}.eml")), mail(n)).unwrap();
        }
        std::fs::write(dir.join("004.eml"), "To: autre@cc-girou.fr\r\n\r\nbody").unwrap();
        let all = eml_within(&dir, "marie.dupont@cc-girou.fr", 10_000);
        assert_eq!(all.len(), 3, "the other person's message is not kept");
        let two = eml_within(&dir, "marie.dupont@cc-girou.fr", mail(3).len() + mail(2).len());
        assert_eq!(two, vec![mail(3), mail(2)], "the newest two fit, the oldest does not");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_header_names_the_recipient() {
        let mail = "From: a@b.fr\r\nTo: Marie <marie.dupont@cc-girou.fr>\r\n\r\nBody to: x@y.fr\r\n";
        assert!(addressed_to(mail, "marie.dupont@cc-girou.fr"));
        assert!(!addressed_to(mail, "x@y.fr"), "the body is not the header");
        assert!(!addressed_to(mail, "je.ndiaye@cc-girou.fr"));
    }
}
