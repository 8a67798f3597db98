//! Partners and their conventions (R7, R14). This first part registers a
//! partner with its signature date and email domains; the annex-1 import and
//! the convention life cycle build on it.

use crate::app::App;
use crate::error::{AppError, AppResult};
use crate::store::{self, StoreError};

pub struct NewPartner<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `YYYY-MM-DD`; `None`: not signed yet, no access can be opened.
    pub convention_signed: Option<&'a str>,
    pub email_domains: &'a [String],
}

pub fn parse_date(flag: &str, value: &str) -> AppResult<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &format)
        .map(|_| value.to_string())
        .map_err(|_| AppError::Invalid(format!("{flag}: `{value}` is not a date (YYYY-MM-DD)")))
}

pub async fn add_partner(app: &App, p: NewPartner<'_>) -> AppResult<()> {
    let bad = |m: String| AppError::Invalid(m);
    if p.id.is_empty() || p.id.len() > 64 || !p.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(bad("--id: 1 to 64 letters, digits, '-', '_' or '.'".into()));
    }
    if p.name.trim().is_empty() {
        return Err(bad("--name must not be empty".into()));
    }
    let signed = p.convention_signed.map(|d| parse_date("--convention-signed", d)).transpose()?;
    let mut domains = Vec::new();
    for d in p.email_domains {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if crate::accounts::ProfessionalEmail::parse(&format!("x@{d}")).is_err() {
            return Err(bad(format!("--email-domain: `{d}` is not a domain")));
        }
        domains.push(d);
    }
    let mut tx = app.store.begin_write().await?;
    store::insert_partner(&mut tx, p.id, p.name.trim(), app.clock.now_ms()).await.map_err(|e| match e {
        StoreError::Conflict(_) => bad(format!("partner `{}` already exists", p.id)),
        other => other.into(),
    })?;
    store::set_partner_convention(
        &mut tx,
        p.id,
        signed.as_deref(),
        &serde_json::to_string(&domains).unwrap_or_default(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
