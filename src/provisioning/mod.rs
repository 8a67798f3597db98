//! Partners, their conventions (R7) and the annex-1 provisioning of their
//! agents' accesses (R8–R12).

pub mod annex1;
pub mod closure;
pub mod convention;
pub mod invite;
pub mod review;
pub mod webmail;

use crate::app::App;
use crate::dates;
use crate::error::{AppError, AppResult};
use crate::store::{self, StoreError};
use convention::{Convention, ConventionState};

/// The partner's email domains (none: any professional address).
pub fn email_domains(p: &store::partners::PartnerRow) -> Vec<String> {
    serde_json::from_str(&p.email_domains).unwrap_or_default()
}

pub struct NewPartner<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `YYYY-MM-DD`; `None`: not signed yet, no access can be opened.
    pub convention_signed: Option<&'a str>,
    pub email_domains: &'a [String],
}

/// `value` as stored (`YYYY-MM-DD`) when it is a date in either spelling
/// of `dates::parse_day`; `field` names it in the error.
fn checked_date(field: &str, value: &str) -> AppResult<String> {
    dates::parse_day(value).map(dates::format_iso).map_err(|e| AppError::Invalid(format!("{field} : {e}")))
}

/// Email domains as typed (`@` and case dropped), each checked.
fn checked_domains(list: &[String]) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    for d in list {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if crate::accounts::ProfessionalEmail::parse(&format!("x@{d}")).is_err() {
            return Err(AppError::Invalid(format!(
                "domaine de messagerie / email domain : « {d} » n'est pas un domaine / is not a domain"
            )));
        }
        out.push(d);
    }
    Ok(out)
}

pub async fn add_partner(app: &App, p: NewPartner<'_>) -> AppResult<()> {
    let bad = |m: String| AppError::Invalid(m);
    if p.id.is_empty() || p.id.len() > 64 || !p.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(bad("identifiant / id : 1 à 64 lettres, chiffres, « - », « _ » ou « . » / 1 to 64 letters, digits, '-', '_' or '.'".into()));
    }
    if p.name.trim().is_empty() {
        return Err(bad("nom / name : ne doit pas être vide / must not be empty".into()));
    }
    let signed = p.convention_signed.map(|d| checked_date(SIGNATURE_DATE, d)).transpose()?;
    let domains = checked_domains(p.email_domains)?;
    let mut tx = app.store.begin_write().await?;
    store::partners::insert(&mut tx, p.id, p.name.trim(), app.clock.now_ms()).await.map_err(|e| match e {
        StoreError::Conflict(_) => bad(format!("partner `{}` already exists", p.id)),
        other => other.into(),
    })?;
    store::partners::set_convention(
        &mut tx,
        p.id,
        signed.as_deref(),
        &serde_json::to_string(&domains).unwrap_or_default(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Records the signature of a partner's convention (a new signature also
/// clears a past termination or notice: it is a new convention).
pub async fn sign_convention(app: &App, partner_id: &str, date: &str) -> AppResult<()> {
    let date = checked_date(SIGNATURE_DATE, date)?;
    let mut tx = app.store.begin_write().await?;
    if !store::partners::sign_convention(&mut tx, partner_id, &date).await? {
        return Err(AppError::Invalid(format!("unknown partner `{partner_id}`")));
    }
    convention_event(app, &mut tx, partner_id, serde_json::json!({"change": "signed", "date": date})).await?;
    tx.commit().await?;
    tracing::info!(partner = partner_id, signed_on = %date, "convention signed");
    Ok(())
}

/// Records a termination and closes every access of the partner at once
/// (sessions and tokens end, relying parties are told), in one transaction.
pub async fn terminate_convention(app: &App, partner_id: &str, date: &str, reason: &str) -> AppResult<usize> {
    const FIELD: &str = "date de résiliation / termination date";
    let date = checked_date(FIELD, date)?;
    if dates::parse_iso(&date).is_some_and(|d| d > app.clock.today()) {
        return Err(AppError::Invalid(format!(
            "{FIELD} : une résiliation s'enregistre quand elle prend effet, pas avant / \
             a termination is recorded when it takes effect, not before"
        )));
    }
    if reason.trim().is_empty() {
        return Err(AppError::Invalid("motif / reason : ne doit pas être vide / must not be empty".into()));
    }
    let mut tx = app.store.begin_write().await?;
    if !store::partners::terminate_convention(&mut tx, partner_id, &date, reason.trim()).await? {
        return Err(AppError::Invalid(format!("unknown partner `{partner_id}`")));
    }
    let closed = close_all_accounts(app, &mut tx, partner_id, &date).await?;
    let details =
        serde_json::json!({"change": "terminated", "date": date, "reason": reason.trim(), "accesses_closed": closed});
    convention_event(app, &mut tx, partner_id, details).await?;
    tx.commit().await?;
    app.backchannel_wake.notify_one();
    tracing::info!(partner = partner_id, terminated_on = %date, closed, "convention terminated");
    Ok(closed)
}

/// Records (or, with `None`, withdraws) a notice of non-renewal.
pub async fn set_non_renewal(app: &App, partner_id: &str, date: Option<&str>) -> AppResult<Option<String>> {
    let date = date.map(|d| checked_date("date de l'avis / notice date", d)).transpose()?;
    let partner = app
        .store
        .partner(partner_id)
        .await?
        .ok_or_else(|| AppError::Invalid(format!("unknown partner `{partner_id}`")))?;
    let mut tx = app.store.begin_write().await?;
    store::partners::set_non_renewal(&mut tx, partner_id, date.as_deref()).await?;
    let change = if date.is_some() { "not_renewed" } else { "renewal_restored" };
    convention_event(app, &mut tx, partner_id, serde_json::json!({"change": change, "date": date})).await?;
    tx.commit().await?;
    let mut c = Convention::of(&partner);
    c.non_renewal_notified_on = date.as_deref().and_then(dates::parse_iso);
    let ends = c.non_renewal_notified_on.and_then(|n| c.end_after_notice(n)).map(dates::format_iso);
    tracing::info!(partner = partner_id, ends = ?ends, "convention renewal changed");
    Ok(ends)
}

async fn convention_event(
    app: &App,
    tx: &mut store::WriteTx,
    partner_id: &str,
    details: serde_json::Value,
) -> AppResult<()> {
    let e = crate::audit::Event::new(crate::audit::kind::CONVENTION_CHANGED, crate::audit::Outcome::Success, "cli")
        .partner(Some(partner_id.to_string()))
        .details(details);
    crate::audit::append(&app.clock, tx, vec![e]).await
}

/// Closes an access at once (R12), in the caller's transaction: its state
/// (`on`: the closure request's date), its links, its sessions and tokens
/// (back-channel logouts queued; `reason` is the sessions' end reason).
pub async fn close_access_in(
    app: &App,
    tx: &mut store::WriteTx,
    account_id: &str,
    on: &str,
    reason: &str,
    now: crate::clock::Millis,
) -> AppResult<()> {
    store::accounts::close(tx, account_id, on, now).await?;
    store::credentials::supersede_links_of_account(tx, account_id, now).await?;
    // A closed access keeps no way in: its passkeys go with its other credentials.
    store::passkeys::delete_of_account(tx, account_id).await?;
    crate::auth::session::end_all_of_account_in(app, tx, account_id, reason, now).await?;
    Ok(())
}

async fn close_all_accounts(app: &App, tx: &mut store::WriteTx, partner_id: &str, on: &str) -> AppResult<usize> {
    let now = app.clock.now_ms();
    let mut closed = 0;
    // Events go last: appending takes the log's lock, held until commit.
    let mut events = Vec::new();
    for a in store::accounts::of_partner(tx, partner_id).await? {
        if a.state == "closed" {
            continue;
        }
        close_access_in(app, tx, &a.id, on, "convention_ended", now).await?;
        let e = crate::audit::Event::new(crate::audit::kind::ACCESS_CLOSED, crate::audit::Outcome::Success, "system")
            .email(a.email.clone())
            .account(a.id.clone())
            .partner(Some(partner_id.to_string()))
            .details(serde_json::json!({"reason": "convention_ended", "closure_date": on}));
        events.push(e);
        closed += 1;
    }
    crate::audit::append(&app.clock, tx, events).await?;
    Ok(closed)
}

/// Closes the accesses of partners whose convention has ended at a term
/// (after a notice of non-renewal); run by a background job.
pub async fn close_ended_conventions(app: &App) -> AppResult<usize> {
    let today = app.clock.today();
    let mut closed = 0;
    for p in app.store.partners().await? {
        let state = Convention::of(&p).state(today);
        if let ConventionState::Ended { on } | ConventionState::Terminated { on } = state {
            let mut tx = app.store.begin_write().await?;
            let n = close_all_accounts(app, &mut tx, &p.id, &dates::format_iso(on)).await?;
            tx.commit().await?;
            if n > 0 {
                app.backchannel_wake.notify_one();
                tracing::info!(partner = %p.id, closed = n, "convention ended: accesses closed");
            }
            closed += n;
        }
    }
    Ok(closed)
}

fn contact_email(field: &str, value: &str) -> AppResult<String> {
    crate::accounts::ProfessionalEmail::parse(value)
        .map(|e| e.as_str().to_string())
        .map_err(|e| AppError::Invalid(format!("{field} : {e}")))
}

fn non_empty(field: &'static str, value: &str) -> AppResult<String> {
    crate::accounts::checked_name(field, value).map(str::to_string).map_err(|e| AppError::Invalid(e.to_string()))
}

const SIGNATURE_DATE: &str = "date de signature / signature date";
const TRANSMISSION_DATE: &str = "date de transmission / transmission date";
const HABILITATION_NAME: &str = "nom du responsable des habilitations / habilitation manager's name";
const HABILITATION_EMAIL: &str = "adresse du responsable des habilitations / habilitation manager's email";
const SECURITY_NAME: &str = "nom du responsable de la sécurité / security officer's name";
const SECURITY_EMAIL: &str = "adresse du responsable de la sécurité / security officer's email";
const TECHNICAL_REFERENT: &str = "référent technique / technical referent";

/// The habilitation manager and the security officer of an annex 2 or 3,
/// as typed.
pub struct Contacts<'a> {
    pub habilitation_name: &'a str,
    pub habilitation_email: &'a str,
    pub security_name: &'a str,
    pub security_email: &'a str,
}

impl Contacts<'_> {
    fn checked(&self) -> AppResult<store::partners::ContactsRow> {
        Ok(store::partners::ContactsRow {
            habilitation_manager_name: non_empty(HABILITATION_NAME, self.habilitation_name)?,
            habilitation_manager_email: contact_email(HABILITATION_EMAIL, self.habilitation_email)?,
            security_officer_name: non_empty(SECURITY_NAME, self.security_name)?,
            security_officer_email: contact_email(SECURITY_EMAIL, self.security_email)?,
        })
    }
}

/// A partner's annex 2 (its habilitation manager and security officer);
/// replaces the previous one (R14).
pub struct Annex2<'a> {
    pub partner_id: &'a str,
    pub contacts: Contacts<'a>,
    pub transmitted: &'a str,
}

pub async fn set_annex2(app: &App, a: Annex2<'_>) -> AppResult<()> {
    if app.store.partner(a.partner_id).await?.is_none() {
        return Err(AppError::Invalid(format!("unknown partner `{}`", a.partner_id)));
    }
    let row = store::partners::Annex2Row {
        partner_id: a.partner_id.to_string(),
        contacts: a.contacts.checked()?,
        transmitted_on: checked_date(TRANSMISSION_DATE, a.transmitted)?,
    };
    let mut tx = app.store.begin_write().await?;
    store::partners::replace_annex2(&mut tx, &row).await?;
    tx.commit().await?;
    tracing::info!(partner = a.partner_id, "annex 2 replaced");
    Ok(())
}

/// The Caf's annex 3 (habilitation manager, security officer, technical
/// referents given as "Name <email>"); replaces the previous one (R14).
pub struct Annex3<'a> {
    pub contacts: Contacts<'a>,
    pub technical_referents: &'a [String],
    pub transmitted: &'a str,
}

pub async fn set_annex3(app: &App, a: Annex3<'_>) -> AppResult<()> {
    let mut referents = Vec::new();
    for r in a.technical_referents {
        let (name, email) = r.trim().strip_suffix('>').and_then(|s| s.rsplit_once('<')).ok_or_else(|| {
            AppError::Invalid(format!(
                "{TECHNICAL_REFERENT} : « {r} » : « Nom <adresse> » attendu / expected \"Name <email>\""
            ))
        })?;
        referents.push(format!(
            "{} <{}>",
            non_empty(TECHNICAL_REFERENT, name)?,
            contact_email(TECHNICAL_REFERENT, email)?
        ));
    }
    let row = store::partners::Annex3Row {
        contacts: a.contacts.checked()?,
        technical_referents: serde_json::to_string(&referents).unwrap_or_else(|_| "[]".into()),
        transmitted_on: checked_date(TRANSMISSION_DATE, a.transmitted)?,
    };
    let mut tx = app.store.begin_write().await?;
    store::partners::replace_annex3(&mut tx, &row).await?;
    tx.commit().await?;
    tracing::info!("annex 3 replaced");
    Ok(())
}

pub async fn update_partner(
    app: &App,
    id: &str,
    name: Option<&str>,
    siren: Option<&str>,
    email_domains: Option<&[String]>,
) -> AppResult<()> {
    let name = name.map(|n| non_empty("nom / name", n)).transpose()?;
    if let Some(s) = siren
        && (s.len() != 9 || !s.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(AppError::Invalid("SIREN : 9 chiffres / 9 digits".into()));
    }
    let domains = match email_domains {
        Some(list) => Some(serde_json::to_string(&checked_domains(list)?).unwrap_or_else(|_| "[]".into())),
        None => None,
    };
    let mut tx = app.store.begin_write().await?;
    if !store::partners::update(&mut tx, id, name.as_deref(), siren, domains.as_deref()).await? {
        return Err(AppError::Invalid(format!("unknown partner `{id}`")));
    }
    tx.commit().await?;
    Ok(())
}
