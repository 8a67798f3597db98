//! One-time links: activation (create the first password, R3) and reset
//! (lost password, R4). 256-bit tokens, stored hashed, single use; a new link
//! supersedes the older ones of the same purpose.

use crate::accounts::{Account, AccountState};
use crate::app::App;
use crate::auth::policy::{self, PersonalData, Violation};
use crate::auth::{session, throttle};
use crate::crypto::{hash_secret, random_token};
use crate::error::{AppError, AppResult};
use crate::mail::{self, MailKind};
use crate::store::{self, WriteTx, accounts::AccountRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Activation,
    Reset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Activation => "activation",
            Purpose::Reset => "reset",
        }
    }
    pub fn path(self) -> &'static str {
        match self {
            Purpose::Activation => "/activate",
            Purpose::Reset => "/password/reset",
        }
    }
    fn ttl_secs(self, app: &App) -> i64 {
        match self {
            Purpose::Activation => app.config.activation_link_ttl_secs,
            Purpose::Reset => app.config.reset_link_ttl_secs,
        }
    }
}

/// Why a link cannot be used; each gets its own explanation page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    Unknown,
    Used,
    Expired,
    Superseded,
}

#[derive(Debug)]
pub enum SetPasswordError {
    Link(LinkProblem),
    Policy(Vec<Violation>),
}

/// Creates a link inside the caller's transaction and queues its email.
/// Links are built from `issuer`, never from the request's `Host`.
pub async fn create_and_mail(app: &App, tx: &mut WriteTx, account: &AccountRow, purpose: Purpose) -> AppResult<()> {
    let now = app.clock.now_ms();
    let token = random_token();
    let ttl = purpose.ttl_secs(app);
    store::credentials::insert_link(tx, &hash_secret(&token), &account.id, purpose.as_str(), now, now + ttl * 1000)
        .await?;
    let link = format!("{}?token={token}", app.config.url(purpose.path()));
    let kind = match purpose {
        Purpose::Activation => {
            MailKind::Activation { given_name: &account.given_name, link: &link, valid_hours: ttl / 3600 }
        }
        Purpose::Reset => MailKind::Reset { given_name: &account.given_name, link: &link, valid_minutes: ttl / 60 },
    };
    let message = mail::render(&account.email, kind).map_err(|e| AppError::Invalid(e.to_string()))?;
    mail::enqueue(tx, &message, now).await?;
    Ok(())
}

/// The account a link opens, or why it cannot be used.
pub async fn inspect(app: &App, token: &str, purpose: Purpose) -> AppResult<Result<AccountRow, LinkProblem>> {
    let Some(link) = app.store.credential_link(&hash_secret(token)).await? else {
        return Ok(Err(LinkProblem::Unknown));
    };
    if link.purpose != purpose.as_str() {
        return Ok(Err(LinkProblem::Unknown));
    }
    if link.used_at.is_some() {
        return Ok(Err(LinkProblem::Used));
    }
    if link.superseded_at.is_some() {
        return Ok(Err(LinkProblem::Superseded));
    }
    if link.expires_at <= app.clock.now_ms() {
        return Ok(Err(LinkProblem::Expired));
    }
    let Some(account) = app.store.account_by_id(&link.account_id).await? else { return Ok(Err(LinkProblem::Unknown)) };
    let state = AccountState::parse(&account.state);
    let usable = match purpose {
        Purpose::Activation => state == Some(AccountState::Pending),
        Purpose::Reset => state == Some(AccountState::Active),
    };
    if !usable {
        return Ok(Err(LinkProblem::Superseded));
    }
    Ok(Ok(account))
}

/// Records a link that could not be used (R15): unknown, used, superseded or
/// expired, with the account when the link is known. Never the token.
pub async fn record_refusal(
    app: &App,
    token: &str,
    purpose: Purpose,
    problem: LinkProblem,
    source: &crate::audit::Source,
) {
    use crate::audit::{self, Event, Outcome};
    let link = app.store.credential_link(&hash_secret(token)).await.ok().flatten();
    let account = match &link {
        Some(l) => app.store.account_by_id(&l.account_id).await.ok().flatten(),
        None => None,
    };
    let reason = match problem {
        LinkProblem::Unknown => "unknown",
        LinkProblem::Used => "used",
        LinkProblem::Expired => "expired",
        LinkProblem::Superseded => "superseded",
    };
    let actor = account.as_ref().map_or_else(|| "anonymous".to_string(), |a| a.email.clone());
    let mut e = Event::new(audit::kind::LINK_REFUSED, Outcome::Failure, actor)
        .source(source)
        .details(serde_json::json!({"purpose": purpose.as_str(), "reason": reason}));
    if let Some(a) = account {
        e = e.email(a.person.email).account(a.id).partner(a.person.partner_id);
    }
    audit::record(&app.store, &app.clock, vec![e]).await;
}

/// Sets a password through a link: the policy checked, the link consumed
/// and, for a reset, every session and token of the account ended, with
/// the `password_created` or `password_reset` record, in one transaction.
pub async fn set_password(
    app: &App,
    token: &str,
    purpose: Purpose,
    typed: Typed<'_>,
    source: &crate::audit::Source,
) -> AppResult<Result<Account, SetPasswordError>> {
    let account = match inspect(app, token, purpose).await? {
        Ok(a) => a,
        Err(p) => return Ok(Err(SetPasswordError::Link(p))),
    };
    let personal =
        PersonalData { email: &account.email, given_name: &account.given_name, family_name: &account.family_name };
    let password = match policy::check(typed.password, typed.confirmation, &personal) {
        Ok(p) => p,
        Err(v) => return Ok(Err(SetPasswordError::Policy(v))),
    };
    // A reset must replace the password: a lost password typed back as the
    // new one would leave the account as it was, yet end every session.
    if purpose == Purpose::Reset
        && let Some(current) = &account.password_hash
        && app.hasher.verify(password.expose().to_string(), current.clone()).await?.valid
    {
        return Ok(Err(SetPasswordError::Policy(vec![Violation::SameAsCurrent])));
    }
    let hash = app.hasher.hash(password.expose().to_string()).await?;
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await?;
    if !store::credentials::consume_link(&mut tx, &hash_secret(token), now).await? {
        return Ok(Err(SetPasswordError::Link(LinkProblem::Used)));
    }
    // A password set by its owner's link ends a lock-out (the reset link
    // works during one).
    let success = throttle::Success::of(app, &account.email_normalized, None);
    success.in_tx(app, &mut tx);
    let notices = match purpose {
        Purpose::Activation => {
            store::accounts::update_password_hash(&mut tx, &account.id, &hash, now).await?;
            store::credentials::supersede_links_of_account(&mut tx, &account.id, now).await?;
            store::accounts::update_state(&mut tx, &account.id, AccountState::Active.as_str(), now).await?;
            let event = account_event(crate::audit::kind::PASSWORD_CREATED, &account, source);
            crate::audit::append(&app.clock, &mut tx, vec![event]).await?;
            0
        }
        Purpose::Reset => {
            let event = account_event(crate::audit::kind::PASSWORD_RESET, &account, source);
            replace_password_in(app, &mut tx, &account, &hash, "password_reset", event).await?
        }
    };
    tx.commit().await?;
    wake_after_replacement(app, purpose == Purpose::Reset, notices);
    success.after_commit(app).await?;
    let mut updated = Account::from_row(&account);
    updated.state = AccountState::Active;
    Ok(Ok(updated))
}

/// A new password as typed twice.
#[derive(Clone, Copy)]
pub struct Typed<'a> {
    pub password: &'a str,
    pub confirmation: &'a str,
}

fn account_event(kind: &'static str, account: &AccountRow, source: &crate::audit::Source) -> crate::audit::Event {
    crate::audit::Event::new(kind, crate::audit::Outcome::Success, account.email.clone())
        .email(account.email.clone())
        .account(account.id.clone())
        .partner(account.partner_id.clone())
        .source(source)
}

/// A password replaced (reset or change) inside the caller's transaction:
/// the hash, older links superseded, every token family revoked, every
/// session ended (codes with them, back-channel notices queued), the
/// "password changed" email queued and the record appended. Returns the
/// back-channel notices queued.
async fn replace_password_in(
    app: &App,
    tx: &mut WriteTx,
    account: &AccountRow,
    hash: &str,
    reason: &str,
    event: crate::audit::Event,
) -> AppResult<usize> {
    let now = app.clock.now_ms();
    store::accounts::update_password_hash(tx, &account.id, hash, now).await?;
    store::credentials::supersede_links_of_account(tx, &account.id, now).await?;
    let notices = session::end_all_of_account_in(app, tx, &account.id, reason, now).await?;
    let message = mail::render(
        &account.email,
        MailKind::PasswordChanged { given_name: &account.given_name, issuer: &app.config.issuer_str() },
    )
    .map_err(|e| AppError::Invalid(e.to_string()))?;
    mail::enqueue(tx, &message, now).await?;
    crate::audit::append(&app.clock, tx, vec![event]).await?;
    Ok(notices)
}

fn wake_after_replacement(app: &App, mailed: bool, notices: usize) {
    if mailed {
        app.mail_wake.notify_one();
    }
    if notices > 0 {
        app.backchannel_wake.notify_one();
    }
}

#[derive(Debug)]
pub enum ChangePasswordError {
    CurrentPassword(crate::auth::SignInFailure),
    Policy(Vec<Violation>),
}

/// A signed-in account changes its password: the current one checked under
/// the failed-attempt restriction, the new one against the policy, then one
/// transaction (as [`replace_password_in`], with the `password_changed`
/// record and the counters cleared).
pub async fn change_password(
    app: &App,
    account_id: &str,
    current: &str,
    typed: Typed<'_>,
    source: &crate::audit::Source,
) -> AppResult<Result<(), ChangePasswordError>> {
    let Some(account) = app.store.account_by_id(account_id).await? else {
        return Ok(Err(ChangePasswordError::CurrentPassword(crate::auth::SignInFailure::UnknownAccount)));
    };
    let ip = source.ip.as_deref();
    // The password is replaced below: an upgraded hash of the current one is moot.
    if let Err(refused) = crate::auth::check_password(app, &account.email, current, ip).await? {
        return Ok(Err(ChangePasswordError::CurrentPassword(refused.failure)));
    }
    let success = throttle::Success::of(app, &account.email, ip);
    let personal =
        PersonalData { email: &account.email, given_name: &account.given_name, family_name: &account.family_name };
    let password = match policy::check(typed.password, typed.confirmation, &personal) {
        Ok(p) => p,
        Err(v) => {
            // The current password was right: its reservation is given back.
            let mut tx = app.store.begin_write().await?;
            success.in_tx(app, &mut tx);
            tx.commit().await?;
            success.after_commit(app).await?;
            return Ok(Err(ChangePasswordError::Policy(v)));
        }
    };
    let hash = app.hasher.hash(password.expose().to_string()).await?;
    let mut tx = app.store.begin_write().await?;
    success.in_tx(app, &mut tx);
    let event = account_event(crate::audit::kind::PASSWORD_CHANGED, &account, source);
    let notices = replace_password_in(app, &mut tx, &account, &hash, "password_changed", event).await?;
    tx.commit().await?;
    wake_after_replacement(app, true, notices);
    success.after_commit(app).await?;
    Ok(Ok(()))
}

/// Records a lost-password request as typed, before anything is looked up
/// (the page answers the same whatever the address).
pub async fn record_reset_request(app: &App, email: &str, source: &crate::audit::Source) -> AppResult<()> {
    let requested =
        crate::audit::Event::new(crate::audit::kind::RESET_REQUESTED, crate::audit::Outcome::Success, email)
            .email(email)
            .source(source);
    let mut tx = app.store.begin_write().await?;
    crate::audit::append(&app.clock, &mut tx, vec![requested]).await?;
    tx.commit().await?;
    Ok(())
}

/// Lost password: for an active account, a reset link by email; for any
/// other address, nothing. The caller answers the same in every case, and
/// runs this off the request so that the answer takes the same time.
/// A new link is not sent within a minute of the previous one, nor more than
/// `RESET_REQUESTS_PER_SOURCE` per source address per 15 minutes.
pub async fn request_reset(app: &App, email: &str, ip: Option<&str>) -> AppResult<bool> {
    if let Some(ip) = ip
        && !crate::auth::throttle::spend_reset_budget(app, ip).await?
    {
        tracing::warn!(ip = %ip, "lost-password requests from this source exceed the budget; not sent");
        return Ok(false);
    }
    let Ok(email) = crate::accounts::ProfessionalEmail::parse(email) else { return Ok(false) };
    let Some(account) = app.store.account_by_email(email.normalized()).await? else { return Ok(false) };
    if AccountState::parse(&account.state) != Some(AccountState::Active) {
        return Ok(false);
    }
    let now = app.clock.now_ms();
    if app.store.latest_link_created_at(&account.id, Purpose::Reset.as_str()).await?.is_some_and(|t| now - t < 60_000) {
        tracing::info!(account = %account.id, "reset requested again within a minute; not sent");
        return Ok(false);
    }
    let mut tx = app.store.begin_write().await?;
    create_and_mail(app, &mut tx, &account, Purpose::Reset).await?;
    let sent = crate::audit::Event::new(crate::audit::kind::RESET_SENT, crate::audit::Outcome::Success, "system")
        .email(account.email.clone())
        .account(account.id.clone())
        .partner(account.partner_id.clone())
        .source(&crate::audit::Source { ip: ip.map(str::to_string), user_agent: None });
    crate::audit::append(&app.clock, &mut tx, vec![sent]).await?;
    tx.commit().await?;
    app.mail_wake.notify_one();
    Ok(true)
}
