//! Partners, conventions, annexes, reminders and the console's annex-1 uploads.

use super::sql::{execute, fetch, insert, queue};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartnerRow {
    pub id: String,
    pub name: String,
    pub siren: Option<String>,
    pub convention_signed_on: Option<String>,
    pub email_domains: String,
    pub convention_terminated_on: Option<String>,
    pub termination_reason: Option<String>,
    pub non_renewal_notified_on: Option<String>,
}

const PARTNER_COLUMNS: &str = "id, name, siren, convention_signed_on, email_domains, convention_terminated_on, \
     termination_reason, non_renewal_notified_on";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Annex1Row {
    pub partner_id: String,
    pub transmitted_on: String,
    pub checksum: String,
    pub rows: String,
    pub applied_at: Millis,
    pub operator: String,
}

impl Store {
    pub async fn partner(&self, id: &str) -> StoreResult<Option<PartnerRow>> {
        let sql = format!("SELECT {PARTNER_COLUMNS} FROM partners WHERE id = $1");
        Ok(fetch!(fetch_optional(&self.pool), &sql; id))
    }

    pub async fn partners(&self) -> StoreResult<Vec<PartnerRow>> {
        let sql = format!("SELECT {PARTNER_COLUMNS} FROM partners ORDER BY id");
        Ok(fetch!(fetch_all(&self.pool), &sql))
    }

    pub async fn current_annex1(&self, partner_id: &str) -> StoreResult<Option<Annex1Row>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT partner_id, transmitted_on, checksum, rows, applied_at, operator FROM annex1_current WHERE partner_id = $1";
            partner_id
        ))
    }
}

pub async fn set_convention(
    tx: &mut WriteTx,
    id: &str,
    signed_on: Option<&str>,
    email_domains: &str,
) -> StoreResult<()> {
    execute!(
        tx,
        "UPDATE partners SET convention_signed_on = $1, email_domains = $2 WHERE id = $3";
        signed_on, email_domains, id
    );
    Ok(())
}

pub async fn sign_convention(tx: &mut WriteTx, id: &str, signed_on: &str) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "UPDATE partners SET convention_signed_on = $1, convention_terminated_on = NULL, termination_reason = NULL, \
         non_renewal_notified_on = NULL WHERE id = $2";
        signed_on, id
    );
    Ok(done == 1)
}

pub async fn terminate_convention(tx: &mut WriteTx, id: &str, on: &str, reason: &str) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "UPDATE partners SET convention_terminated_on = $1, termination_reason = $2 WHERE id = $3";
        on, reason, id
    );
    Ok(done == 1)
}

pub async fn set_non_renewal(tx: &mut WriteTx, id: &str, notified_on: Option<&str>) -> StoreResult<bool> {
    let done = execute!(tx, "UPDATE partners SET non_renewal_notified_on = $1 WHERE id = $2"; notified_on, id);
    Ok(done == 1)
}

/// Makes `rows` the partner's current annex 1; the previous one is gone (R10).
pub async fn replace_annex1(tx: &mut WriteTx, a: &Annex1Row) -> StoreResult<()> {
    queue!(tx, "DELETE FROM annex1_current WHERE partner_id = $1"; &a.partner_id);
    queue!(
        tx,
        "INSERT INTO annex1_current (partner_id, transmitted_on, checksum, rows, applied_at, operator) \
         VALUES ($1, $2, $3, $4, $5, $6)";
        &a.partner_id, &a.transmitted_on, &a.checksum, &a.rows, a.applied_at, &a.operator
    );
    Ok(())
}

/// The habilitation manager and the security officer an annex 2 or 3 names.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ContactsRow {
    pub habilitation_manager_name: String,
    pub habilitation_manager_email: String,
    pub security_officer_name: String,
    pub security_officer_email: String,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Annex2Row {
    pub partner_id: String,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub contacts: ContactsRow,
    pub transmitted_on: String,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Annex3Row {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub contacts: ContactsRow,
    /// JSON list of "Name <email>".
    pub technical_referents: String,
    pub transmitted_on: String,
}

impl Store {
    pub async fn annex2(&self, partner_id: &str) -> StoreResult<Option<Annex2Row>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT partner_id, habilitation_manager_name, habilitation_manager_email, security_officer_name, \
             security_officer_email, transmitted_on FROM annex2 WHERE partner_id = $1";
            partner_id
        ))
    }

    pub async fn annex3(&self) -> StoreResult<Option<Annex3Row>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT habilitation_manager_name, habilitation_manager_email, security_officer_name, security_officer_email, \
             technical_referents, transmitted_on FROM annex3 WHERE id = 1"
        ))
    }
}

/// A new annex 2 replaces the previous one (R14).
pub async fn replace_annex2(tx: &mut WriteTx, a: &Annex2Row) -> StoreResult<()> {
    execute!(tx, "DELETE FROM annex2 WHERE partner_id = $1"; &a.partner_id);
    execute!(
        tx,
        "INSERT INTO annex2 (partner_id, habilitation_manager_name, habilitation_manager_email, security_officer_name, \
         security_officer_email, transmitted_on) VALUES ($1, $2, $3, $4, $5, $6)";
        &a.partner_id, &a.contacts.habilitation_manager_name, &a.contacts.habilitation_manager_email,
        &a.contacts.security_officer_name, &a.contacts.security_officer_email, &a.transmitted_on
    );
    Ok(())
}

/// A new annex 3 replaces the previous one (R14).
pub async fn replace_annex3(tx: &mut WriteTx, a: &Annex3Row) -> StoreResult<()> {
    execute!(tx, "DELETE FROM annex3");
    execute!(
        tx,
        "INSERT INTO annex3 (id, habilitation_manager_name, habilitation_manager_email, security_officer_name, \
         security_officer_email, technical_referents, transmitted_on) VALUES (1, $1, $2, $3, $4, $5, $6)";
        &a.contacts.habilitation_manager_name, &a.contacts.habilitation_manager_email,
        &a.contacts.security_officer_name, &a.contacts.security_officer_email, &a.technical_referents, &a.transmitted_on
    );
    Ok(())
}

pub async fn update(
    tx: &mut WriteTx,
    id: &str,
    name: Option<&str>,
    siren: Option<&str>,
    email_domains: Option<&str>,
) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "UPDATE partners SET name = COALESCE($1, name), siren = COALESCE($2, siren), \
         email_domains = COALESCE($3, email_domains) WHERE id = $4";
        name, siren, email_domains, id
    );
    Ok(done == 1)
}

/// Records a reminder; false when it was already sent (by any instance).
pub async fn record_reminder(
    tx: &mut WriteTx,
    partner_id: &str,
    deadline: &str,
    kind: &str,
    now: Millis,
) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "INSERT INTO review_reminders (partner_id, deadline, kind, sent_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        partner_id, deadline, kind, now
    );
    Ok(done == 1)
}

pub async fn insert(tx: &mut WriteTx, id: &str, name: &str, now: Millis) -> StoreResult<()> {
    insert!(tx, "partner", "INSERT INTO partners (id, name, created_at) VALUES ($1, $2, $3)"; id, name, now);
    Ok(())
}

/// Deletes a partner's annex 1 and annex 2; returns (annex 1, annex 2) rows.
pub async fn delete_annexes(tx: &mut WriteTx, partner_id: &str) -> StoreResult<(u64, u64)> {
    let a1 = execute!(tx, "DELETE FROM annex1_current WHERE partner_id = $1"; partner_id);
    let a2 = execute!(tx, "DELETE FROM annex2 WHERE partner_id = $1"; partner_id);
    Ok((a1, a2))
}

pub async fn insert_console_upload(tx: &mut WriteTx, row: &ConsoleUploadRow, now: Millis) -> StoreResult<()> {
    execute!(tx, "DELETE FROM console_uploads WHERE expires_at < $1"; now);
    execute!(
        tx,
        "INSERT INTO console_uploads (handle_hash, account_id, partner_id, file_name, transmitted, content, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)";
        &row.handle_hash, &row.account_id, &row.partner_id, &row.file_name, &row.transmitted, &row.content,
        row.expires_at
    );
    Ok(())
}

/// Takes an upload once: the row is deleted by the transaction that reads
/// it; `None` when unknown, expired or already taken.
pub async fn take_console_upload(
    tx: &mut WriteTx,
    handle_hash: &str,
    now: Millis,
) -> StoreResult<Option<ConsoleUploadRow>> {
    let row: Option<ConsoleUploadRow> = fetch!(
        fetch_optional(tx.conn().await?),
        "SELECT handle_hash, account_id, partner_id, file_name, transmitted, content, expires_at \
         FROM console_uploads WHERE handle_hash = $1 AND expires_at >= $2";
        handle_hash, now
    );
    if row.is_none() {
        return Ok(None);
    }
    let n = execute!(tx, "DELETE FROM console_uploads WHERE handle_hash = $1"; handle_hash);
    Ok(if n == 1 { row } else { None })
}

/// An annex 1 kept between the console's dry run and its "Appliquer".
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsoleUploadRow {
    pub handle_hash: String,
    pub account_id: String,
    pub partner_id: String,
    pub file_name: String,
    pub transmitted: Option<String>,
    /// The file, base64.
    pub content: String,
    pub expires_at: Millis,
}
