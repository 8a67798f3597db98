//! An annex 1 imported by an administrator, from the console or the admin
//! API: a dry run by anyone who sees the partner (for a partner's manager,
//! a proposal), applied by the Caf's habilitation managers alone. The
//! console shows the plan first and applies on "Appliquer": the file
//! checked is kept under a single-use handle meanwhile, so that the file
//! applied is the one whose plan was shown.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Admin, AdminError, AdminResult, Role};
use crate::app::App;
use crate::crypto::{hash_secret, random_token};
use crate::provisioning::annex1::apply::{self, ImportOutcome};
use crate::provisioning::annex1::plan::Plan;
use crate::store::{self, partners::ConsoleUploadRow, partners::PartnerRow};

/// How long a checked file waits for "Appliquer".
const KEPT_TTL_MS: i64 = 30 * 60_000;

/// An annex-1 file as sent.
pub struct AnnexFile<'a> {
    pub file_name: &'a str,
    pub bytes: &'a [u8],
    /// The transmission date as typed (`JJ/MM/AAAA` or `AAAA-MM-JJ`);
    /// today when absent.
    pub transmitted: Option<&'a str>,
}

/// Checks `file` against `partner` and, with `apply`, applies it all or
/// nothing. A file that cannot be read comes back as
/// `AdminError::App(AppError::Invalid)`, to be said to the sender; an
/// annex older than the current one as `AdminError::OlderAnnex`.
pub async fn import(
    app: &Arc<App>,
    admin: &Admin,
    partner: &PartnerRow,
    file: &AnnexFile<'_>,
    apply: bool,
) -> AdminResult<ImportOutcome> {
    if apply && !admin.has(Role::CafHabilitation) {
        return Err(AdminError::Forbidden);
    }
    let transmitted = file.transmitted.map(crate::dates::parse_day).transpose()?;
    let day = transmitted.unwrap_or_else(|| app.clock.today());
    if let Some(older) = apply::older_than_current(app, &partner.id, day).await? {
        return Err(older.into());
    }
    let import = apply::Import {
        partner_id: &partner.id,
        file_name: file.file_name,
        bytes: file.bytes,
        transmitted,
        apply,
        operator: &admin.email,
    };
    if !apply {
        return Ok(apply::import(app, import).await?);
    }
    // The activation emails are held by the apply and delivered by a task
    // of their own once it has committed, rather than claimed again from
    // the outbox by the sender (a rewrite of each message's row, thousands
    // for an annex). Should the server stop first, the sender (this one's
    // or another instance's) takes them once their hold ends.
    let (outcome, held) = apply::import_holding_mail(app, import, crate::mail::hold_ms(&app.mail)).await?;
    if !held.is_empty() {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::mail::deliver_held(&app.store, &app.clock, &app.mail, &app.config, held).await {
                tracing::warn!(error = %e, "delivering the activation emails of an annex 1; the sender retries");
            }
        });
    }
    Ok(outcome)
}

/// Keeps a checked file for "Appliquer" and gives its handle — only for a
/// Caf habilitation manager (the one who may apply), and only when its plan
/// has no error (nothing could be applied otherwise).
pub async fn keep_for_apply(
    app: &App,
    admin: &Admin,
    partner: &PartnerRow,
    file: &AnnexFile<'_>,
    plan: &Plan,
) -> AdminResult<Option<String>> {
    if !admin.has(Role::CafHabilitation) || !plan.errors.is_empty() {
        return Ok(None);
    }
    let handle = random_token();
    let now = app.clock.now_ms();
    let row = ConsoleUploadRow {
        handle_hash: hash_secret(&handle),
        account_id: admin.account_id.clone(),
        partner_id: partner.id.clone(),
        file_name: file.file_name.to_string(),
        // As parsed, so that the kept file is read back in one spelling.
        transmitted: file.transmitted.and_then(|t| crate::dates::parse_day(t).ok()).map(crate::dates::format_iso),
        content: STANDARD.encode(file.bytes),
        expires_at: now + KEPT_TTL_MS,
    };
    let mut tx = app.store.begin_write().await?;
    store::partners::insert_console_upload(&mut tx, &row, now).await?;
    tx.commit().await?;
    Ok(Some(handle))
}

/// Applies the file kept under `handle`, once: `None` when the handle is
/// unknown, expired, already used, or another administrator's or another
/// partner's.
pub async fn apply_kept(
    app: &Arc<App>,
    admin: &Admin,
    partner: &PartnerRow,
    handle: &str,
) -> AdminResult<Option<ImportOutcome>> {
    let mut tx = app.store.begin_write().await?;
    let row = store::partners::take_console_upload(&mut tx, &hash_secret(handle), app.clock.now_ms()).await?;
    tx.commit().await?;
    let Some(row) = row.filter(|r| r.partner_id == partner.id && r.account_id == admin.account_id) else {
        return Ok(None);
    };
    let Ok(bytes) = STANDARD.decode(&row.content) else { return Ok(None) };
    let file = AnnexFile { file_name: &row.file_name, bytes: &bytes, transmitted: row.transmitted.as_deref() };
    import(app, admin, partner, &file, true).await.map(Some)
}
