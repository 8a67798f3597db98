//! The sign-in use cases (here, beside the authorization endpoint whose
//! parked requests they answer; `auth` gives them passwords, sessions and
//! the throttle): a password, then (when the account needs one) a
//! second factor or its enrolment. Each is one domain function taking what
//! the browser sent and returning what to show, and each writes all it
//! changes in one transaction, its connection-log records included:
//!
//! 1. the attempt reserved in the failed-attempt restriction (`throttle`);
//! 2. one read (the account, with whether it holds a second factor or a role);
//! 3. Argon2, off the async runtime;
//! 4. one write transaction: the counters cleared (database counters), the
//!    browser's previous session ended, the new one opened, the parked
//!    authorization request's code issued and the request consumed, and the
//!    `signin` record — all or nothing, so a session never exists without
//!    its record. A refusal writes its record alone.

use crate::accounts::{Account, AccountState};
use crate::app::App;
use crate::audit;
use crate::auth::factors::{self, Factors};
use crate::auth::second_factor::{self, Failure, Method, Requirement};
use crate::auth::session::{self, Session, SessionSource};
use crate::auth::{self as authn, SignInFailure, throttle};
use crate::crypto::hash_secret;
use crate::error::{AppError, AppResult};
use crate::oidc::authorize::{self, AuthorizationRequest};
use crate::store::{self, WriteTx, totp::PendingSecondFactorRow};

mod passkey;
pub use passkey::{
    PasskeyAnswer, PasskeyFailure, PasskeyOutcome, passkey_autofill_options, passkey_enrolment_options,
    passkey_second_factor_options, passkey_signin_options, with_passkey, with_passkey_enrolment,
    with_passkey_second_factor,
};

/// Where a sign-in comes from and what the browser already holds.
#[derive(Clone, Copy)]
pub struct Browser<'a> {
    /// The session cookie the browser still holds: a new id at every
    /// sign-in, the previous session ends.
    pub previous_cookie: Option<&'a str>,
    /// The source for the log and the session (address and user agent).
    pub source: &'a audit::Source,
}

/// A password sign-in as typed.
pub struct PasswordSignIn<'a> {
    pub email: &'a str,
    pub password: &'a str,
    /// The parked authorization request, with its handle, to answer now.
    pub parked: Option<(&'a str, &'a AuthorizationRequest)>,
    /// A console page to go back to after a second factor (step-up).
    pub return_to: Option<&'a str>,
    pub browser: Browser<'a>,
}

pub struct Completed {
    /// The new session's cookie value.
    pub cookie: String,
    pub session: Session,
    /// The redirect to the relying party with its code, when a request was parked.
    pub location: Option<String>,
}

/// What a password leads to.
pub enum PasswordOutcome {
    SignedIn(Completed),
    /// The password was right; the session waits for a second factor
    /// (`Verify`) or its enrolment (`Enrol`), behind this pending cookie.
    SecondFactor {
        step: Requirement,
        pending_cookie: String,
    },
    /// Refused, and recorded in the connection log.
    Refused(SignInFailure),
}

/// The password step.
pub async fn with_password(app: &App, s: PasswordSignIn<'_>) -> AppResult<PasswordOutcome> {
    let ip = s.browser.source.ip.as_deref();
    let client_id = s.parked.map(|(_, r)| r.client_id.as_str());
    let checked = match authn::check_password(app, s.email, s.password, ip).await? {
        Ok(c) => c,
        Err(refused) => {
            let event = refusal_event(s.email, s.browser.source, client_id, refused.failure, refused.account.as_ref());
            write_alone(app, event).await?;
            return Ok(PasswordOutcome::Refused(refused.failure));
        }
    };
    let success = throttle::Success::of(app, s.email, ip);
    let requirement = requirement(app, &checked, s.parked.map(|(_, r)| r)).await?;
    if requirement != Requirement::None {
        let mut tx = app.store.begin_write().await?;
        success.in_tx(app, &mut tx);
        authn::write_rehash(app, &mut tx, &checked).await?;
        let handle = s.parked.map(|(h, _)| h);
        let pending_cookie = second_factor::begin_in(app, &mut tx, &checked.account.id, handle, s.return_to).await?;
        tx.commit().await?;
        success.after_commit(app).await?;
        return Ok(PasswordOutcome::SecondFactor { step: requirement, pending_cookie });
    }
    let completion = Completion {
        account: &checked.account,
        factors: Factors::Password,
        parked: s.parked,
        browser: s.browser,
        events: Vec::new(),
    };
    let previous = previous_session(app, s.browser.previous_cookie).await?;
    let mut tx = app.store.begin_write().await?;
    success.in_tx(app, &mut tx);
    authn::write_rehash(app, &mut tx, &checked).await?;
    let done = complete_in(app, &mut tx, previous.as_ref(), completion).await?;
    commit(app, tx, done, Some(success)).await.map(PasswordOutcome::SignedIn)
}

/// What a correct password leads to: the account's own rule (a second
/// factor at every sign-in once enrolled, enrolment for an administrator),
/// and the second step a relying party adds by asking for `mfa` of an
/// account that holds a factor to give (an agent's passkey). The request
/// stays parked with the pending sign-in, which is how the second step
/// and [`complete_in`] know it asked.
async fn requirement(
    app: &App,
    checked: &authn::Checked,
    request: Option<&AuthorizationRequest>,
) -> AppResult<Requirement> {
    let asked = request.is_some_and(AuthorizationRequest::mfa_requested);
    if checked.requirement == Requirement::None
        && asked
        && factors::step_up_needed(asked, false, second_factor::held(app, &checked.account.id).await?)
    {
        return Ok(Requirement::Verify);
    }
    Ok(checked.requirement)
}

/// The second step as sent: the pending cookie and the code typed.
pub struct SecondStep<'a> {
    pub pending_cookie: &'a str,
    pub code: &'a str,
    pub browser: Browser<'a>,
}

/// What a second step leads to.
pub enum StepOutcome<T> {
    /// Signed in; `return_to` is the console page a step-up asked for.
    SignedIn { completed: Completed, return_to: Option<String>, value: T },
    /// The code was refused (recorded in the connection log).
    Refused(Failure),
    /// No pending sign-in behind the cookie (expired, used, or its
    /// account no longer active): start again.
    Expired,
}

/// The pending state behind a cookie and its account, if it may still sign in.
pub async fn pending_account(app: &App, cookie: &str) -> AppResult<Option<(PendingSecondFactorRow, Account)>> {
    let Some(pending) = second_factor::pending(app, cookie).await? else { return Ok(None) };
    let row = app.store.account_by_id(&pending.account_id).await?;
    let account = row.map(|r| Account::from_row(&r)).filter(|a| a.state == AccountState::Active);
    Ok(account.map(|a| (pending, a)))
}

/// The code asked at each sign-in of an enrolled account.
pub async fn with_code(app: &App, s: SecondStep<'_>) -> AppResult<StepOutcome<Method>> {
    let Some((pending, account)) = pending_account(app, s.pending_cookie).await? else {
        return Ok(StepOutcome::Expired);
    };
    let Some(enrolled) = app.store.totp(&account.id).await? else { return Ok(StepOutcome::Expired) };
    let (source, code) = (s.browser.source, s.code);
    let check = async |tx: &mut WriteTx| check_code(app, tx, &pending, &account, &enrolled, source, code).await;
    second_step(app, &s, &pending, &account, check).await
}

/// The first code of an enrolment; on success the recovery codes, to be
/// shown once.
pub async fn with_enrolment(app: &App, s: SecondStep<'_>) -> AppResult<StepOutcome<Vec<String>>> {
    let Some((pending, account)) = pending_account(app, s.pending_cookie).await? else {
        return Ok(StepOutcome::Expired);
    };
    let (source, code) = (s.browser.source, s.code);
    let check = async |tx: &mut WriteTx| check_enrolment(app, tx, &pending, &account, source, code).await;
    second_step(app, &s, &pending, &account, check).await
}

/// What a second step's check gives inside the sign-in's transaction: its
/// value and its connection-log records, or why the code was refused.
type Checked<T> = AppResult<Result<(T, Vec<audit::Event>), Failure>>;

/// A code (TOTP or recovery code) of an enrolled account.
async fn check_code(
    app: &App,
    tx: &mut WriteTx,
    pending: &PendingSecondFactorRow,
    account: &Account,
    enrolled: &store::totp::TotpRow,
    source: &audit::Source,
    code: &str,
) -> Checked<Method> {
    let method = match second_factor::verify_in(app, tx, pending, enrolled, code).await? {
        Ok(m) => m,
        Err(f) => return Ok(Err(f)),
    };
    let name = match method {
        Method::Totp => "totp",
        Method::RecoveryCode => "recovery_code",
    };
    let mut events = vec![
        code_event(audit::kind::SECOND_FACTOR, audit::Outcome::Success, account, source)
            .details(serde_json::json!({"method": name})),
    ];
    if method == Method::RecoveryCode {
        let left = store::totp::recovery_codes_left_in(tx, &account.id).await?;
        events.push(
            code_event(audit::kind::RECOVERY_CODE_USED, audit::Outcome::Success, account, source)
                .details(serde_json::json!({"remaining": left})),
        );
    }
    Ok(Ok((method, events)))
}

/// The first code of an enrolment, which confirms it.
async fn check_enrolment(
    app: &App,
    tx: &mut WriteTx,
    pending: &PendingSecondFactorRow,
    account: &Account,
    source: &audit::Source,
    code: &str,
) -> Checked<Vec<String>> {
    let codes = match second_factor::confirm_in(app, tx, pending, code).await? {
        Ok(c) => c,
        Err(f) => return Ok(Err(f)),
    };
    let event = code_event(audit::kind::TOTP_ENROLLED, audit::Outcome::Success, account, source)
        .details(serde_json::json!({"recovery_codes": codes.len()}));
    Ok(Ok((codes, vec![event])))
}

/// What both second steps share: the attempt reserved under the account's
/// code counter, the check inside the sign-in's transaction, and on success
/// the session opened in that same transaction. Every reservation leaves a
/// record: a pending state found spent inside the transaction (a form sent
/// twice) is recorded as refused, `expired`.
async fn second_step<T>(
    app: &App,
    s: &SecondStep<'_>,
    pending: &PendingSecondFactorRow,
    account: &Account,
    check: impl AsyncFnOnce(&mut WriteTx) -> Checked<T>,
) -> AppResult<StepOutcome<T>> {
    let ip = s.browser.source.ip.as_deref();
    let key = second_factor::throttle_key(&account.id);
    if let throttle::Verdict::Blocked { retry_after_secs } = throttle::reserve(app, &key, ip).await? {
        return refused(app, account, s.browser.source, Failure::Throttled { retry_after_secs }).await;
    }
    let parked = match &pending.request {
        Some(handle) => authorize::parked(app, handle).await?.map(|r| (handle.as_str(), r)),
        None => None,
    };
    let previous = previous_session(app, s.browser.previous_cookie).await?;
    let mut tx = app.store.begin_write().await?;
    let (value, events) = match check(&mut tx).await? {
        Ok(v) => v,
        Err(failure) => {
            drop(tx);
            let expired = matches!(failure, Failure::Expired);
            let outcome = refused(app, account, s.browser.source, failure).await?;
            return Ok(if expired { StepOutcome::Expired } else { outcome });
        }
    };
    let success = throttle::Success::of(app, &key, ip);
    success.in_tx(app, &mut tx);
    let completion = Completion {
        account,
        factors: Factors::PasswordAndOtp,
        parked: parked.as_ref().map(|(h, r)| (*h, r)),
        browser: s.browser,
        events,
    };
    let done = complete_in(app, &mut tx, previous.as_ref(), completion).await?;
    let completed = commit(app, tx, done, Some(success)).await?;
    let return_to = if completed.location.is_none() { pending.return_to.clone() } else { None };
    Ok(StepOutcome::SignedIn { completed, return_to, value })
}

async fn refused<T>(
    app: &App,
    account: &Account,
    source: &audit::Source,
    failure: Failure,
) -> AppResult<StepOutcome<T>> {
    let details = match failure {
        Failure::Throttled { retry_after_secs } => {
            serde_json::json!({"reason": "throttled", "retry_after_secs": retry_after_secs})
        }
        Failure::WrongCode => serde_json::json!({"reason": "wrong_code"}),
        Failure::Expired => serde_json::json!({"reason": "expired"}),
    };
    let event =
        code_event(audit::kind::SECOND_FACTOR_FAILED, audit::Outcome::Failure, account, source).details(details);
    write_alone(app, event).await?;
    Ok(StepOutcome::Refused(failure))
}

/// One event of a second step, about its account.
fn code_event(kind: &'static str, outcome: audit::Outcome, account: &Account, source: &audit::Source) -> audit::Event {
    audit::Event::new(kind, outcome, account.email.clone())
        .email(account.email.clone())
        .account(account.id.clone())
        .partner(account.partner_id.clone())
        .source(source)
}

/// The record of a refused password. Read only by the Caf's security
/// staff: naming the account reveals nothing to the person typing.
fn refusal_event(
    email: &str,
    source: &audit::Source,
    client_id: Option<&str>,
    failure: SignInFailure,
    account: Option<&Account>,
) -> audit::Event {
    let (kind, details) = match failure {
        SignInFailure::Throttled { retry_after_secs } => {
            (audit::kind::THROTTLED, serde_json::json!({"reason": "throttled", "retry_after_secs": retry_after_secs}))
        }
        SignInFailure::UnknownAccount => (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "unknown_account"})),
        SignInFailure::WrongPassword => (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "wrong_password"})),
        SignInFailure::Pending => (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "pending"})),
        SignInFailure::Closed => (audit::kind::SIGNIN_FAILED, serde_json::json!({"reason": "closed"})),
    };
    let mut event =
        audit::Event::new(kind, audit::Outcome::Failure, email).email(email).source(source).details(details);
    if let Some(c) = client_id {
        event = event.client(c);
    }
    if let Some(a) = account {
        event = event.account(a.id.clone()).partner(a.partner_id.clone());
    }
    event
}

/// A refusal's record: the only thing it writes.
async fn write_alone(app: &App, event: audit::Event) -> AppResult<()> {
    let mut tx = app.store.begin_write().await?;
    audit::append(&app.clock, &mut tx, vec![event]).await?;
    tx.commit().await?;
    Ok(())
}

struct Completion<'a> {
    account: &'a Account,
    /// What the sign-in was made of: its `amr`, `acr` and method.
    factors: Factors,
    parked: Option<(&'a str, &'a AuthorizationRequest)>,
    browser: Browser<'a>,
    /// Records of the step that led here, written before the `signin` record.
    events: Vec<audit::Event>,
}

/// The session the browser holds, with the clients it reached (read
/// before the transaction, which ends it).
struct Previous {
    row: store::sessions::SessionRow,
    clients: Vec<String>,
}

async fn previous_session(app: &App, cookie: Option<&str>) -> AppResult<Option<Previous>> {
    let Some(cookie) = cookie else { return Ok(None) };
    let Some(row) = app.store.session(&hash_secret(cookie)).await? else { return Ok(None) };
    let clients = app.store.session_client_ids(&row.id_hash).await?;
    Ok(Some(Previous { row, clients }))
}

struct Done {
    completed: Completed,
    notices: bool,
}

/// The end of every sign-in, inside the caller's transaction.
async fn complete_in(app: &App, tx: &mut WriteTx, previous: Option<&Previous>, c: Completion<'_>) -> AppResult<Done> {
    let mut notices = false;
    if let Some(p) = previous {
        notices = session::end_in(app, tx, &p.row, &p.clients, "replaced").await? && !p.clients.is_empty();
    }
    // Every caller sends such a sign-in to its second step first; a session
    // that skipped it must not answer the relying party. Read only when the
    // request asked and one factor was given.
    let asked = c.parked.is_some_and(|(_, r)| r.mfa_requested());
    if asked
        && !c.factors.is_mfa()
        && factors::step_up_needed(asked, false, store::totp::second_factor_held_in(tx, &c.account.id).await?)
    {
        return Err(AppError::Invalid("a sign-in asked for mfa completed without its second factor".into()));
    }
    let source =
        SessionSource { ip: c.browser.source.ip.as_deref(), user_agent: c.browser.source.user_agent.as_deref() };
    let (amr, acr) = (c.factors.amr(), c.factors.acr());
    let (cookie, session) = session::open_in(app, tx, &c.account.id, amr, acr, source).await?;
    let location = match c.parked {
        Some((handle, request)) => {
            let location = authorize::issue_code_in(app, tx, request, &session).await?;
            store::grants::delete_auth_request(tx, &hash_secret(handle)).await?;
            Some(location)
        }
        None => None,
    };
    let mut event = audit::Event::new(audit::kind::SIGNIN, audit::Outcome::Success, c.account.email.clone())
        .email(c.account.email.clone())
        .account(c.account.id.clone())
        .partner(c.account.partner_id.clone())
        .source(c.browser.source)
        .session(&session.sid)
        .details(signin_details(&c, amr, acr));
    if let Some((_, request)) = c.parked {
        event = event.client(request.client_id.clone());
    }
    let mut events = c.events;
    events.push(event);
    audit::append(&app.clock, tx, events).await?;
    tracing::info!(account = %c.account.id, "signed in");
    Ok(Done { completed: Completed { cookie, session, location }, notices })
}

/// The `signin` record's details: how the session was opened and, when
/// the relying party sent `acr_values`, what it asked for.
fn signin_details(c: &Completion<'_>, amr: &[&str], acr: &str) -> serde_json::Value {
    let mut details = serde_json::json!({"amr": amr, "acr": acr, "method": c.factors.method()});
    if let Some((_, request)) = c.parked.filter(|(_, r)| !r.acr_values.is_empty()) {
        details["acr_requested"] = serde_json::json!(request.acr_values);
    }
    details
}

async fn commit(app: &App, tx: WriteTx, done: Done, success: Option<throttle::Success>) -> AppResult<Completed> {
    tx.commit().await?;
    if done.notices {
        app.backchannel_wake.notify_one();
    }
    if let Some(success) = success {
        success.after_commit(app).await?;
    }
    Ok(done.completed)
}
