//! The passkey sign-ins, on the same core as the password's: an agent's
//! passkey alone, an administrator's passkey as the second factor, and an
//! administrator's first passkey at enrolment. Each is one domain function:
//!
//! 1. the attempt reserved in the throttle (an agent's under its address,
//!    as a password; a second factor under the account's code counter);
//! 2. one read (the ceremony, its account and its passkeys);
//! 3. the answer checked (signature, origin, user verification, counter);
//! 4. one write transaction: the ceremony consumed, the passkey's counter
//!    and last use written, the counters cleared, the previous session
//!    ended, the new one opened, the code issued and the records appended.
//!
//! A refused answer writes its record alone (`signin_failed` or
//! `second_factor_failed`, reason `passkey_…`); a counter that went
//! backwards is refused and its record raises a security alert.

use serde_json::{Value, json};

use super::{
    Browser, Completed, Completion, StepOutcome, code_event, commit, complete_in, pending_account, previous_session,
    write_alone,
};
use crate::accounts::{Account, AccountState, ProfessionalEmail};
use crate::app::App;
use crate::audit;
use crate::auth::factors::Factors;
use crate::auth::passkeys::{self, Purpose, Refusal};
use crate::auth::{second_factor, throttle};
use crate::error::AppResult;
use crate::oidc::authorize::{self, AuthorizationRequest};
use crate::store::{self, WriteTx, passkeys::CeremonyRow, totp::PendingSecondFactorRow};

/// What the browser sent back: the ceremony's cookie and its answer.
pub struct PasskeyAnswer<'a> {
    pub ceremony_cookie: &'a str,
    /// The `PublicKeyCredential` as JSON.
    pub answer: &'a str,
    pub browser: Browser<'a>,
}

/// Why a passkey did not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyFailure {
    Throttled {
        retry_after_secs: i64,
    },
    /// Not a valid answer, an unknown or removed passkey, a closed account,
    /// or a counter that went backwards.
    Refused,
    /// The challenge expired or was already used: ask again.
    Expired,
    /// The relying party asks for two factors (`acr_values` `mfa`): a
    /// passkey alone is one; the password, then the passkey, are two.
    TwoFactorsAsked,
}

pub enum PasskeyOutcome {
    SignedIn(Completed),
    Refused(PasskeyFailure),
}

/// The options an agent's browser needs to sign in with a passkey after
/// typing its address, with the ceremony's cookie; `None` when the address
/// is not an active account holding a passkey (the page then asks for the
/// password). `ip` is where the request came from: ceremonies are capped per
/// source (`passkeys::CEREMONIES_PER_SOURCE`).
pub async fn passkey_signin_options(app: &App, email: &str, ip: Option<&str>) -> AppResult<Option<(Value, String)>> {
    let Ok(email) = ProfessionalEmail::parse(email) else { return Ok(None) };
    let Some(row) = app.store.signin_account(email.normalized()).await? else { return Ok(None) };
    if Account::from_row(&row.account).state != AccountState::Active {
        return Ok(None);
    }
    passkeys::start_authentication(app, &row.account.id, Purpose::SignIn, ip).await
}

/// The options of the sign-in page's passkey autofill, with the ceremony's
/// cookie: a challenge for any of the site's passkeys, asked from `ip`;
/// `None` when passkeys are unavailable.
pub async fn passkey_autofill_options(app: &App, ip: Option<&str>) -> AppResult<Option<(Value, String)>> {
    passkeys::start_autofill(app, ip).await
}

/// An agent's passkey, alone, instead of the password: after the address,
/// or chosen from the sign-in page's autofill (the passkey then names the
/// account). The rules are the same either way.
pub async fn with_passkey(
    app: &App,
    s: PasskeyAnswer<'_>,
    parked: Option<(&str, &AuthorizationRequest)>,
) -> AppResult<PasskeyOutcome> {
    if parked.is_some_and(|(_, r)| r.mfa_requested()) {
        return Ok(PasskeyOutcome::Refused(PasskeyFailure::TwoFactorsAsked));
    }
    let purposes = [Purpose::SignIn, Purpose::Autofill];
    let Some(ceremony) = passkeys::ceremony_for(app, s.ceremony_cookie, &purposes).await? else {
        return Ok(PasskeyOutcome::Refused(PasskeyFailure::Expired));
    };
    let ip = s.browser.source.ip.as_deref();
    let client_id = parked.map(|(_, r)| r.client_id.as_str());
    // The autofill's challenge names no account: the passkey chosen does.
    let account_id = match ceremony.account_id.clone() {
        Some(id) => id,
        None => match passkeys::discovered_account(app, s.answer).await? {
            Ok(id) => id,
            Err(credential) => return unknown_passkey(app, &credential, s.browser.source, client_id).await,
        },
    };
    let Some(row) = app.store.account_by_id(&account_id).await? else {
        return Ok(PasskeyOutcome::Refused(PasskeyFailure::Expired));
    };
    let account = Account::from_row(&row);
    if let throttle::Verdict::Blocked { retry_after_secs } = throttle::reserve(app, &account.email, ip).await? {
        let details = json!({"reason": "throttled", "retry_after_secs": retry_after_secs, "method": "passkey"});
        let event = signin_event(audit::kind::THROTTLED, &account, s.browser.source, client_id, details);
        write_alone(app, event).await?;
        return Ok(PasskeyOutcome::Refused(PasskeyFailure::Throttled { retry_after_secs }));
    }
    if account.state != AccountState::Active {
        let details = json!({"reason": "closed", "method": "passkey"});
        write_alone(app, signin_event(audit::kind::SIGNIN_FAILED, &account, s.browser.source, client_id, details))
            .await?;
        return Ok(PasskeyOutcome::Refused(PasskeyFailure::Refused));
    }
    let rows = app.store.passkeys_of_account(&account.id).await?;
    let verified = match passkeys::verify_answer(app, &ceremony, &rows, s.answer)? {
        Ok(v) => v,
        Err(refusal) => return signin_refused(app, &account, s.browser.source, client_id, &refusal).await,
    };
    let previous = previous_session(app, s.browser.previous_cookie).await?;
    let mut tx = app.store.begin_write().await?;
    if let Err(refusal) = passkeys::use_in(app, &mut tx, &ceremony, &verified).await? {
        drop(tx);
        return signin_refused(app, &account, s.browser.source, client_id, &refusal).await;
    }
    let success = throttle::Success::of(app, &account.email, ip);
    success.in_tx(app, &mut tx);
    let completion =
        Completion { account: &account, factors: Factors::Passkey, parked, browser: s.browser, events: Vec::new() };
    let done = complete_in(app, &mut tx, previous.as_ref(), completion).await?;
    commit(app, tx, done, Some(success)).await.map(PasskeyOutcome::SignedIn)
}

/// An autofill answer with a passkey no account holds (removed, or made
/// for this site by another server), or that cannot be read (`credential`
/// empty): refused, counted against the source in the throttle like an
/// unknown address, and recorded.
async fn unknown_passkey(
    app: &App,
    credential: &str,
    source: &audit::Source,
    client_id: Option<&str>,
) -> AppResult<PasskeyOutcome> {
    let key = format!("passkey:{credential}");
    let verdict = throttle::reserve(app, &key, source.ip.as_deref()).await?;
    let reason = if credential.is_empty() { Refusal::Invalid.reason() } else { "passkey_unknown" };
    let mut details = json!({"reason": reason, "method": "passkey", "credential": credential});
    let mut failure = PasskeyFailure::Refused;
    if let throttle::Verdict::Blocked { retry_after_secs } = verdict {
        details = json!({"reason": "throttled", "retry_after_secs": retry_after_secs, "method": "passkey"});
        failure = PasskeyFailure::Throttled { retry_after_secs };
    }
    let kind = if failure == PasskeyFailure::Refused { audit::kind::SIGNIN_FAILED } else { audit::kind::THROTTLED };
    let mut event = audit::Event::new(kind, audit::Outcome::Failure, "anonymous").source(source).details(details);
    if let Some(c) = client_id {
        event = event.client(c);
    }
    write_alone(app, event).await?;
    Ok(PasskeyOutcome::Refused(failure))
}

async fn signin_refused(
    app: &App,
    account: &Account,
    source: &audit::Source,
    client_id: Option<&str>,
    refusal: &Refusal,
) -> AppResult<PasskeyOutcome> {
    let event = signin_event(audit::kind::SIGNIN_FAILED, account, source, client_id, refusal_details(refusal));
    write_alone(app, event).await?;
    Ok(PasskeyOutcome::Refused(match refusal {
        Refusal::Expired => PasskeyFailure::Expired,
        _ => PasskeyFailure::Refused,
    }))
}

fn refusal_details(refusal: &Refusal) -> Value {
    match refusal {
        Refusal::CounterRegressed { passkey_id, name, stored } => json!({
            "reason": refusal.reason(), "method": "passkey", "passkey": passkey_id, "name": name, "stored_counter": stored,
        }),
        _ => json!({"reason": refusal.reason(), "method": "passkey"}),
    }
}

fn signin_event(
    kind: &'static str,
    account: &Account,
    source: &audit::Source,
    client_id: Option<&str>,
    details: Value,
) -> audit::Event {
    let mut event = code_event(kind, audit::Outcome::Failure, account, source).details(details);
    if let Some(c) = client_id {
        event = event.client(c);
    }
    event
}

/// The pending sign-in of an administrator, its account and its ceremony of
/// `purpose`, if all are alive and belong together.
async fn pending_ceremony(
    app: &App,
    pending_cookie: &str,
    ceremony_cookie: &str,
    purpose: Purpose,
) -> AppResult<Option<(PendingSecondFactorRow, Account, CeremonyRow)>> {
    let Some((pending, account)) = pending_account(app, pending_cookie).await? else { return Ok(None) };
    let Some(ceremony) = passkeys::ceremony(app, ceremony_cookie, purpose).await? else { return Ok(None) };
    if ceremony.account_id.as_deref() != Some(account.id.as_str()) {
        return Ok(None);
    }
    Ok(Some((pending, account, ceremony)))
}

/// The options for an administrator's passkey after the password, with the
/// ceremony's cookie; `None` when the pending sign-in expired or its account
/// holds no passkey.
pub async fn passkey_second_factor_options(
    app: &App,
    pending_cookie: &str,
    ip: Option<&str>,
) -> AppResult<Option<(Value, String)>> {
    let Some((pending, _)) = pending_account(app, pending_cookie).await? else { return Ok(None) };
    passkeys::start_authentication(app, &pending.account_id, Purpose::SecondFactor, ip).await
}

/// The options to register an administrator's first passkey at enrolment.
pub async fn passkey_enrolment_options(
    app: &App,
    pending_cookie: &str,
    ip: Option<&str>,
) -> AppResult<Option<(Value, String)>> {
    let Some((_, account)) = pending_account(app, pending_cookie).await? else { return Ok(None) };
    passkeys::start_registration(app, &account, ip).await
}

/// An administrator's passkey as the second factor (enrolment or step-up),
/// or an agent's when a relying party asked for `mfa`.
pub async fn with_passkey_second_factor(
    app: &App,
    pending_cookie: &str,
    s: PasskeyAnswer<'_>,
) -> AppResult<StepOutcome<()>> {
    let (answer, source) = (s.answer, s.browser.source);
    let check = async |ceremony: &CeremonyRow, account: &Account| {
        let rows = app.store.passkeys_of_account(&account.id).await?;
        passkeys::verify_answer(app, ceremony, &rows, answer)
    };
    let write = async |tx: &mut WriteTx, ceremony: &CeremonyRow, account: &Account, verified: passkeys::Verified| {
        if let Err(refusal) = passkeys::use_in(app, tx, ceremony, &verified).await? {
            return Ok(Err(refusal));
        }
        let event = code_event(audit::kind::SECOND_FACTOR, audit::Outcome::Success, account, source)
            .details(json!({"method": "passkey", "passkey": verified.row.id}));
        Ok(Ok(event))
    };
    passkey_step(app, pending_cookie, s, Purpose::SecondFactor, check, write).await
}

/// An administrator's first passkey, registered at enrolment instead of
/// TOTP: it is the second factor of this sign-in.
pub async fn with_passkey_enrolment(
    app: &App,
    pending_cookie: &str,
    s: PasskeyAnswer<'_>,
    name: &str,
) -> AppResult<StepOutcome<()>> {
    let (answer, source) = (s.answer, s.browser.source);
    let check = async |ceremony: &CeremonyRow, _: &Account| passkeys::finish_registration(app, ceremony, answer);
    let write = async |tx: &mut WriteTx, ceremony: &CeremonyRow, account: &Account, new: passkeys::NewPasskey| {
        passkeys::register_in(app, tx, ceremony, account, new, name, source).await
    };
    let outcome = passkey_step(app, pending_cookie, s, Purpose::Register, check, write).await?;
    if matches!(outcome, StepOutcome::SignedIn { .. }) {
        // The account is told of its new passkey.
        app.mail_wake.notify_one();
    }
    Ok(outcome)
}

/// What both passkey second steps share: the pending sign-in with its
/// ceremony, the attempt reserved under the account's code counter, the
/// answer checked (`check`), then one transaction that consumes the pending
/// state, writes the passkey (`write`, which gives the step's record) and
/// opens the session with its code for the parked request.
async fn passkey_step<V>(
    app: &App,
    pending_cookie: &str,
    s: PasskeyAnswer<'_>,
    purpose: Purpose,
    check: impl AsyncFnOnce(&CeremonyRow, &Account) -> AppResult<Result<V, Refusal>>,
    write: impl AsyncFnOnce(&mut WriteTx, &CeremonyRow, &Account, V) -> AppResult<Result<audit::Event, Refusal>>,
) -> AppResult<StepOutcome<()>> {
    let Some((pending, account, ceremony)) = pending_ceremony(app, pending_cookie, s.ceremony_cookie, purpose).await?
    else {
        return Ok(StepOutcome::Expired);
    };
    let ip = s.browser.source.ip.as_deref();
    let key = second_factor::throttle_key(&account.id);
    if let throttle::Verdict::Blocked { retry_after_secs } = throttle::reserve(app, &key, ip).await? {
        let failure = second_factor::Failure::Throttled { retry_after_secs };
        let details = json!({"reason": "throttled", "retry_after_secs": retry_after_secs, "method": "passkey"});
        return step_refused(app, &account, s.browser.source, details, failure).await;
    }
    let checked = match check(&ceremony, &account).await? {
        Ok(v) => v,
        Err(refusal) => return step_refusal(app, &account, s.browser.source, &refusal).await,
    };
    let parked = parked_of(app, &pending).await?;
    let previous = previous_session(app, s.browser.previous_cookie).await?;
    let mut tx = app.store.begin_write().await?;
    if !store::totp::take_pending(&mut tx, &pending.id_hash, app.clock.now_ms()).await? {
        drop(tx);
        return spent_pending(app, &account, s.browser.source).await;
    }
    let event = match write(&mut tx, &ceremony, &account, checked).await? {
        Ok(e) => e,
        Err(refusal) => {
            drop(tx);
            return step_refusal(app, &account, s.browser.source, &refusal).await;
        }
    };
    let success = throttle::Success::of(app, &key, ip);
    success.in_tx(app, &mut tx);
    let completion = Completion {
        account: &account,
        factors: Factors::PasswordAndPasskey,
        parked: parked.as_ref().map(|(h, r)| (h.as_str(), r)),
        browser: s.browser,
        events: vec![event],
    };
    let done = complete_in(app, &mut tx, previous.as_ref(), completion).await?;
    let completed = commit(app, tx, done, Some(success)).await?;
    let return_to = if completed.location.is_none() { pending.return_to.clone() } else { None };
    Ok(StepOutcome::SignedIn { completed, return_to, value: () })
}

async fn parked_of(app: &App, pending: &PendingSecondFactorRow) -> AppResult<Option<(String, AuthorizationRequest)>> {
    Ok(match &pending.request {
        Some(handle) => authorize::parked(app, handle).await?.map(|r| (handle.clone(), r)),
        None => None,
    })
}

async fn step_refusal<T>(
    app: &App,
    account: &Account,
    source: &audit::Source,
    refusal: &Refusal,
) -> AppResult<StepOutcome<T>> {
    let failure = match refusal {
        Refusal::Expired => second_factor::Failure::Expired,
        _ => second_factor::Failure::WrongCode,
    };
    step_refused(app, account, source, refusal_details(refusal), failure).await
}

/// A pending state found spent inside the transaction (the form sent
/// twice): the reserved attempt is recorded as refused, `expired`, as in the
/// TOTP step, so that every reservation leaves a record.
async fn spent_pending<T>(app: &App, account: &Account, source: &audit::Source) -> AppResult<StepOutcome<T>> {
    let details = json!({"reason": "expired", "method": "passkey"});
    step_refused::<T>(app, account, source, details, second_factor::Failure::Expired).await?;
    Ok(StepOutcome::Expired)
}

async fn step_refused<T>(
    app: &App,
    account: &Account,
    source: &audit::Source,
    details: Value,
    failure: second_factor::Failure,
) -> AppResult<StepOutcome<T>> {
    let event =
        code_event(audit::kind::SECOND_FACTOR_FAILED, audit::Outcome::Failure, account, source).details(details);
    write_alone(app, event).await?;
    Ok(StepOutcome::Refused(failure))
}
