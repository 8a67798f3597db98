//! Opening an access: the account is created `pending` and receives an
//! activation link by email; it becomes `active` only when its owner creates
//! a password (R1, R3). The annex-1 import will drive this same function.

use super::{AccountState, ProfessionalEmail, new_subject};
use crate::app::App;
use crate::auth::links::{self, Purpose};
use crate::error::{AppError, AppResult};
use crate::store::{self, NewAccount};

pub struct Invitation<'a> {
    pub partner_id: &'a str,
    pub email: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub function: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Invited {
    /// A new pending account.
    Opened(String),
    /// A pending or closed account got a fresh link (older links die).
    Reinvited(String),
}

pub async fn invite(app: &App, inv: Invitation<'_>) -> AppResult<Invited> {
    let bad = |m: String| AppError::Invalid(m);
    let email = ProfessionalEmail::parse(inv.email).map_err(|e| bad(format!("--email: {e}")))?;
    for (flag, value) in
        [("--given-name", inv.given_name), ("--family-name", inv.family_name), ("--function", inv.function)]
    {
        if value.trim().is_empty() || value.len() > 200 {
            return Err(bad(format!("{flag} must hold 1 to 200 characters")));
        }
    }
    let partner =
        app.store.partner(inv.partner_id).await?.ok_or_else(|| bad(format!("unknown partner `{}`", inv.partner_id)))?;
    // R7: no access unless the partner's convention is in force.
    let state = crate::provisioning::annex1::apply::convention_of(&partner)
        .state(crate::provisioning::annex1::apply::today(app));
    if !state.allows_openings() {
        return Err(bad(format!(
            "the convention of partner `{}` is not in force: no access can be opened",
            partner.id
        )));
    }
    let domains: Vec<String> = serde_json::from_str(&partner.email_domains).unwrap_or_default();
    if !domains.is_empty() && !domains.iter().any(|d| d.eq_ignore_ascii_case(email.domain())) {
        return Err(bad(format!("{} is outside the partner's email domains ({})", email, domains.join(", "))));
    }
    let existing = app.store.account_by_email(email.normalized()).await?;
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await?;
    let (row_id, outcome) = match existing {
        Some(a) if AccountState::parse(&a.state) == Some(AccountState::Active) => {
            return Err(bad(format!("{email} already has an active access")));
        }
        Some(a) => {
            store::update_account_state(&mut tx, &a.id, AccountState::Pending.as_str(), now).await?;
            (a.id.clone(), Invited::Reinvited(a.id))
        }
        None => {
            let id = new_subject();
            store::insert_account(
                &mut tx,
                &NewAccount {
                    id: &id,
                    email: email.as_str(),
                    email_normalized: email.normalized(),
                    given_name: inv.given_name.trim(),
                    family_name: inv.family_name.trim(),
                    function: inv.function.trim(),
                    partner_id: Some(&partner.id),
                    state: AccountState::Pending.as_str(),
                    password_hash: None,
                    now,
                },
            )
            .await?;
            (id.clone(), Invited::Opened(id))
        }
    };
    // Re-read inside the transaction's view: names as stored.
    let row = crate::store::AccountRow {
        id: row_id,
        email: email.as_str().to_string(),
        email_normalized: email.normalized().to_string(),
        given_name: inv.given_name.trim().to_string(),
        family_name: inv.family_name.trim().to_string(),
        function: inv.function.trim().to_string(),
        partner_id: Some(partner.id.clone()),
        partner_name: Some(partner.name.clone()),
        state: AccountState::Pending.as_str().to_string(),
        password_hash: None,
        created_at: now,
        updated_at: now,
    };
    links::create_and_mail(app, &mut tx, &row, Purpose::Activation).await?;
    let opened = match &outcome {
        Invited::Opened(_) => crate::audit::kind::ACCESS_OPENED,
        Invited::Reinvited(_) => crate::audit::kind::ACCESS_REOPENED,
    };
    let event = |kind| {
        crate::audit::Event::new(kind, crate::audit::Outcome::Success, "cli")
            .email(row.email.clone())
            .account(row.id.clone())
            .partner(row.partner_id.clone())
    };
    crate::audit::append(app, &mut tx, vec![event(opened), event(crate::audit::kind::ACTIVATION_SENT)]).await?;
    tx.commit().await?;
    app.mail_wake.notify_one();
    Ok(outcome)
}
