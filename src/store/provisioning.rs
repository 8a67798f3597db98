//! Partners, conventions, annexes, and the accounts of a partner.

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

/// An account as provisioning sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartnerAccountRow {
    pub id: String,
    pub email: String,
    pub email_normalized: String,
    pub given_name: String,
    pub family_name: String,
    pub function: String,
    pub state: String,
    pub closure_requested_on: Option<String>,
    pub closed_at: Option<Millis>,
}

const PARTNER_ACCOUNT_COLUMNS: &str =
    "id, email, email_normalized, given_name, family_name, function, state, closure_requested_on, closed_at";

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
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
    }

    pub async fn partners(&self) -> StoreResult<Vec<PartnerRow>> {
        let sql = format!("SELECT {PARTNER_COLUMNS} FROM partners ORDER BY id");
        Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
    }

    pub async fn current_annex1(&self, partner_id: &str) -> StoreResult<Option<Annex1Row>> {
        Ok(sqlx::query_as(
            "SELECT partner_id, transmitted_on, checksum, rows, applied_at, operator FROM annex1_current WHERE partner_id = $1",
        )
        .bind(partner_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// The partner's accounts, read inside the transaction that will change them.
pub async fn accounts_of_partner(tx: &mut WriteTx, partner_id: &str) -> StoreResult<Vec<PartnerAccountRow>> {
    let sql = format!("SELECT {PARTNER_ACCOUNT_COLUMNS} FROM accounts WHERE partner_id = $1 ORDER BY email_normalized");
    Ok(sqlx::query_as(&sql).bind(partner_id).fetch_all(tx.conn().await?).await?)
}

pub async fn set_partner_convention(
    tx: &mut WriteTx,
    id: &str,
    signed_on: Option<&str>,
    email_domains: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE partners SET convention_signed_on = $1, email_domains = $2 WHERE id = $3")
        .bind(signed_on)
        .bind(email_domains)
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    Ok(())
}

pub async fn sign_convention(tx: &mut WriteTx, id: &str, signed_on: &str) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE partners SET convention_signed_on = $1, convention_terminated_on = NULL, termination_reason = NULL, \
         non_renewal_notified_on = NULL WHERE id = $2",
    )
    .bind(signed_on)
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn terminate_convention(tx: &mut WriteTx, id: &str, on: &str, reason: &str) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE partners SET convention_terminated_on = $1, termination_reason = $2 WHERE id = $3")
        .bind(on)
        .bind(reason)
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_non_renewal(tx: &mut WriteTx, id: &str, notified_on: Option<&str>) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE partners SET non_renewal_notified_on = $1 WHERE id = $2")
        .bind(notified_on)
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn update_account_identity(
    tx: &mut WriteTx,
    id: &str,
    given_name: &str,
    family_name: &str,
    function: &str,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query("UPDATE accounts SET given_name = $1, family_name = $2, function = $3, updated_at = $4 WHERE id = $5")
        .bind(given_name)
        .bind(family_name)
        .bind(function)
        .bind(now)
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    Ok(())
}

/// Closes an access: the state, the closure request date, no password left.
pub async fn close_account(tx: &mut WriteTx, id: &str, closure_requested_on: &str, now: Millis) -> StoreResult<()> {
    sqlx::query(
        "UPDATE accounts SET state = 'closed', closure_requested_on = $1, closed_at = $2, password_hash = NULL, \
         updated_at = $2 WHERE id = $3",
    )
    .bind(closure_requested_on)
    .bind(now)
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// Reopens a closed access as pending: a new activation link will follow.
pub async fn reopen_account(
    tx: &mut WriteTx,
    id: &str,
    given_name: &str,
    family_name: &str,
    function: &str,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE accounts SET state = 'pending', closure_requested_on = NULL, closed_at = NULL, password_hash = NULL, \
         given_name = $1, family_name = $2, function = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(given_name)
    .bind(family_name)
    .bind(function)
    .bind(now)
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// Ends every session of an account inside the caller's transaction;
/// returns (session id hash, sid) of each, for the back-channel notices.
pub async fn end_sessions_of_account(
    tx: &mut WriteTx,
    account_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<Vec<(String, String)>> {
    let open: Vec<(String, String)> =
        sqlx::query_as("SELECT id_hash, sid FROM sessions WHERE account_id = $1 AND ended_at IS NULL")
            .bind(account_id)
            .fetch_all(tx.conn().await?)
            .await?;
    sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE account_id = $3 AND ended_at IS NULL")
        .bind(now)
        .bind(reason)
        .bind(account_id)
        .execute(tx.conn().await?)
        .await?;
    Ok(open)
}

pub async fn session_client_ids_in(tx: &mut WriteTx, id_hash: &str) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT client_id FROM session_clients WHERE session_id_hash = $1")
        .bind(id_hash)
        .fetch_all(tx.conn().await?)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Makes `rows` the partner's current annex 1; the previous one is gone (R10).
pub async fn replace_annex1(tx: &mut WriteTx, a: &Annex1Row) -> StoreResult<()> {
    sqlx::query("DELETE FROM annex1_current WHERE partner_id = $1")
        .bind(&a.partner_id)
        .execute(tx.conn().await?)
        .await?;
    sqlx::query(
        "INSERT INTO annex1_current (partner_id, transmitted_on, checksum, rows, applied_at, operator) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&a.partner_id)
    .bind(&a.transmitted_on)
    .bind(&a.checksum)
    .bind(&a.rows)
    .bind(a.applied_at)
    .bind(&a.operator)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Annex2Row {
    pub partner_id: String,
    pub habilitation_manager_name: String,
    pub habilitation_manager_email: String,
    pub security_officer_name: String,
    pub security_officer_email: String,
    pub transmitted_on: String,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Annex3Row {
    pub habilitation_manager_name: String,
    pub habilitation_manager_email: String,
    pub security_officer_name: String,
    pub security_officer_email: String,
    /// JSON list of "Name <email>".
    pub technical_referents: String,
    pub transmitted_on: String,
}

impl Store {
    pub async fn annex2(&self, partner_id: &str) -> StoreResult<Option<Annex2Row>> {
        Ok(sqlx::query_as(
            "SELECT partner_id, habilitation_manager_name, habilitation_manager_email, security_officer_name, \
             security_officer_email, transmitted_on FROM annex2 WHERE partner_id = $1",
        )
        .bind(partner_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn annex3(&self) -> StoreResult<Option<Annex3Row>> {
        Ok(sqlx::query_as(
            "SELECT habilitation_manager_name, habilitation_manager_email, security_officer_name, security_officer_email, \
             technical_referents, transmitted_on FROM annex3 WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// A new annex 2 replaces the previous one (R14).
pub async fn replace_annex2(tx: &mut WriteTx, a: &Annex2Row) -> StoreResult<()> {
    sqlx::query("DELETE FROM annex2 WHERE partner_id = $1").bind(&a.partner_id).execute(tx.conn().await?).await?;
    sqlx::query(
        "INSERT INTO annex2 (partner_id, habilitation_manager_name, habilitation_manager_email, security_officer_name, \
         security_officer_email, transmitted_on) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&a.partner_id)
    .bind(&a.habilitation_manager_name)
    .bind(&a.habilitation_manager_email)
    .bind(&a.security_officer_name)
    .bind(&a.security_officer_email)
    .bind(&a.transmitted_on)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// A new annex 3 replaces the previous one (R14).
pub async fn replace_annex3(tx: &mut WriteTx, a: &Annex3Row) -> StoreResult<()> {
    sqlx::query("DELETE FROM annex3").execute(tx.conn().await?).await?;
    sqlx::query(
        "INSERT INTO annex3 (id, habilitation_manager_name, habilitation_manager_email, security_officer_name, \
         security_officer_email, technical_referents, transmitted_on) VALUES (1, $1, $2, $3, $4, $5, $6)",
    )
    .bind(&a.habilitation_manager_name)
    .bind(&a.habilitation_manager_email)
    .bind(&a.security_officer_name)
    .bind(&a.security_officer_email)
    .bind(&a.technical_referents)
    .bind(&a.transmitted_on)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

pub async fn update_partner(
    tx: &mut WriteTx,
    id: &str,
    name: Option<&str>,
    siren: Option<&str>,
    email_domains: Option<&str>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE partners SET name = COALESCE($1, name), siren = COALESCE($2, siren), \
         email_domains = COALESCE($3, email_domains) WHERE id = $4",
    )
    .bind(name)
    .bind(siren)
    .bind(email_domains)
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a reminder; false when it was already sent (by any instance).
pub async fn record_reminder(
    tx: &mut WriteTx,
    partner_id: &str,
    deadline: &str,
    kind: &str,
    now: Millis,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO review_reminders (partner_id, deadline, kind, sent_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(partner_id)
    .bind(deadline)
    .bind(kind)
    .bind(now)
    .execute(tx.conn().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}
