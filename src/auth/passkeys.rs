//! Passkeys (WebAuthn, issue 17, R18): an agent's opt-in way to sign in
//! without a password, and an administrator's second factor.
//!
//! The ceremonies are those of `webauthn-rs`, with user verification
//! required and no attestation asked (any authenticator the person holds;
//! see the README's "Passkeys" section). The relying-party id is the
//! issuer's host and the only accepted origin the issuer's: a passkey made
//! for another site, or offered through another one, is refused by the
//! browser and again here.
//!
//! Between the page that asks the browser and the browser's answer, the
//! server's side of the ceremony (its challenge, the credentials allowed)
//! is kept in the database (`passkey_ceremonies`), behind a random cookie
//! whose hash is the key, for `CEREMONY_TTL_MS`, and consumed once in the
//! transaction that uses its answer: any instance may take either request.
//! Only public keys are stored; the Caf never sees a secret (R1).

use serde_json::Value;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::accounts::Account;
use crate::app::App;
use crate::audit;
use crate::auth::throttle;
use crate::clock::Millis;
use crate::crypto::{b64url, hash_secret, random_b64, random_token, sha256};
use crate::error::{AppError, AppResult};
use crate::mail::{self, MailKind};
use crate::store::{
    self, WriteTx,
    passkeys::{CeremonyCaps, CeremonyRow, PasskeyRow},
};

/// How long the browser has to answer a challenge.
pub const CEREMONY_TTL_MS: Millis = 5 * 60_000;
/// Registering a passkey asks for a sign-in this recent: a session left
/// open on a shared computer must not be enough to add one.
pub const FRESH_SIGNIN_MS: Millis = 5 * 60_000;
/// Passkeys an account may hold.
pub const MAX_PER_ACCOUNT: usize = 10;
/// Longest name, in characters.
pub const NAME_MAX_CHARS: usize = 64;
/// The browser's answer (JSON) is refused above this size.
pub const ANSWER_MAX_BYTES: usize = 16 * 1024;
/// Live ceremonies an account may have of one purpose. Anyone who types an
/// address may ask for its challenge: past the cap the oldest is dropped
/// (its answer is then refused as expired) rather than the new one
/// refused, so that a stranger asking in a loop never locks the holder out;
/// eight leaves room for a few tabs and devices.
pub const CEREMONIES_PER_ACCOUNT: i64 = 8;
/// Live ceremonies a source (`throttle::source_key`: an IPv4 address or an
/// IPv6 /64) may have, every purpose and account together, dropped oldest
/// first too: with the per-account cap, the table stays bounded by the
/// sources that ask, whatever each sends. Sixty-four leaves room for an
/// office behind one address, as for the parked requests.
pub const CEREMONIES_PER_SOURCE: i64 = 64;

/// What a ceremony is for: the cookie of one cannot finish another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Adding a passkey from the account's security page, or at an
    /// administrator's enrolment.
    Register,
    /// An agent signing in with a passkey alone.
    SignIn,
    /// An administrator's passkey after the password.
    SecondFactor,
    /// The sign-in page's passkey autofill (conditional mediation): any of
    /// the site's passkeys, the account named by the answer.
    Autofill,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::SignIn => "signin",
            Purpose::SecondFactor => "second_factor",
            Purpose::Autofill => "signin_autofill",
        }
    }
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid answer to this challenge (wrong key, wrong origin, no
    /// user verification, malformed).
    Invalid,
    /// The ceremony expired or was already used.
    Expired,
    /// The signature counter did not move forward: the key may have been
    /// cloned. Names the passkey.
    CounterRegressed { passkey_id: String, name: String, stored: i64 },
    /// The credential is registered already (to this or another account).
    AlreadyRegistered,
    /// The account holds `MAX_PER_ACCOUNT` passkeys.
    TooMany,
}

impl Refusal {
    /// The reason as the connection log writes it.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Invalid => "passkey_invalid",
            Refusal::Expired => "expired",
            Refusal::CounterRegressed { .. } => "passkey_counter_regressed",
            Refusal::AlreadyRegistered => "passkey_already_registered",
            Refusal::TooMany => "passkey_limit",
        }
    }
}

/// The relying party, from the issuer: its host is the RP id, its origin
/// the only origin accepted.
pub fn relying_party(app: &App) -> AppResult<Webauthn> {
    let issuer = &app.config.issuer;
    let host = issuer.host_str().ok_or_else(|| AppError::Invalid("the issuer has no host".into()))?;
    let origin = Url::parse(&issuer.origin().ascii_serialization()).map_err(|e| AppError::Invalid(e.to_string()))?;
    WebauthnBuilder::new(host, &origin)
        .and_then(|b| b.rp_name("Coopération").build())
        .map_err(|e| AppError::Invalid(format!("passkeys: the issuer cannot be a relying party: {e}")))
}

/// The relying party, or `None` (said in the log) when the issuer cannot
/// be one: browsers refuse an IP address as RP id, so an issuer such as
/// `http://127.0.0.1:8080` offers no passkey and signs in with passwords.
fn available(app: &App) -> Option<Webauthn> {
    match relying_party(app) {
        Ok(rp) => Some(rp),
        Err(e) => {
            tracing::warn!(error = %e, "passkeys unavailable");
            None
        }
    }
}

/// The user handle the authenticator keeps: derived from the account id,
/// so that it names no one and stays the same for every passkey.
fn user_handle(account_id: &str) -> Uuid {
    let digest = sha256(format!("coop-idp passkey user {account_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// A name as typed: trimmed, without control characters, not empty, at
/// most `NAME_MAX_CHARS`.
pub fn clean_name(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS || name.chars().any(char::is_control) {
        return None;
    }
    Some(name.to_string())
}

fn stored_passkey(row: &PasskeyRow) -> AppResult<Passkey> {
    serde_json::from_str(&row.passkey).map_err(|e| AppError::Invalid(format!("stored passkey {}: {e}", row.id)))
}

fn to_json<T: serde::Serialize>(value: &T) -> AppResult<String> {
    serde_json::to_string(value).map_err(|e| AppError::Invalid(e.to_string()))
}

/// Stores a ceremony's state, asked from `ip`, within the caps
/// ([`CEREMONIES_PER_ACCOUNT`], [`CEREMONIES_PER_SOURCE`]); returns the
/// cookie value that finds it.
async fn open_ceremony(
    app: &App,
    purpose: Purpose,
    account_id: Option<&str>,
    ip: Option<&str>,
    state: String,
) -> AppResult<String> {
    let now = app.clock.now_ms();
    let cookie = random_token();
    let row = CeremonyRow {
        id_hash: hash_secret(&cookie),
        purpose: purpose.as_str().to_string(),
        account_id: account_id.map(str::to_string),
        state,
        expires_at: now + CEREMONY_TTL_MS,
    };
    // A request always has a peer address; without one (a caller outside
    // the web face) the ceremonies share one source.
    let source = ip.map(throttle::source_key).unwrap_or_else(|| "unknown".to_string());
    let caps = CeremonyCaps { per_account: CEREMONIES_PER_ACCOUNT, per_source: CEREMONIES_PER_SOURCE };
    let mut tx = app.store.begin_write().await?;
    store::passkeys::insert_ceremony(&mut tx, &row, &source, now, caps).await?;
    tx.commit().await?;
    Ok(cookie)
}

/// The live ceremony behind a cookie, for this purpose.
pub async fn ceremony(app: &App, cookie: &str, purpose: Purpose) -> AppResult<Option<CeremonyRow>> {
    ceremony_for(app, cookie, &[purpose]).await
}

/// The live ceremony behind a cookie, for one of these purposes.
pub async fn ceremony_for(app: &App, cookie: &str, purposes: &[Purpose]) -> AppResult<Option<CeremonyRow>> {
    let row = app.store.passkey_ceremony(&hash_secret(cookie)).await?;
    Ok(row.filter(|r| r.expires_at >= app.clock.now_ms() && purposes.iter().any(|p| r.purpose == p.as_str())))
}

/// Starts adding a passkey to `account`: the options for
/// `navigator.credentials.create` and the ceremony's cookie. `None` when the
/// account holds `MAX_PER_ACCOUNT` already.
pub async fn start_registration(app: &App, account: &Account, ip: Option<&str>) -> AppResult<Option<(Value, String)>> {
    let Some(rp) = available(app) else { return Ok(None) };
    let existing = app.store.passkeys_of_account(&account.id).await?;
    if existing.len() >= MAX_PER_ACCOUNT {
        return Ok(None);
    }
    let mut exclude = Vec::with_capacity(existing.len());
    for row in &existing {
        exclude.push(stored_passkey(row)?.cred_id().clone());
    }
    let display = format!("{} {}", account.given_name, account.family_name);
    let (options, state): (CreationChallengeResponse, PasskeyRegistration) = rp
        .start_passkey_registration(user_handle(&account.id), &account.email, display.trim(), Some(exclude))
        .map_err(|e| AppError::Invalid(format!("passkey registration: {e}")))?;
    let cookie = open_ceremony(app, Purpose::Register, Some(&account.id), ip, to_json(&state)?).await?;
    let mut options = serde_json::to_value(options).map_err(|e| AppError::Invalid(e.to_string()))?;
    // webauthn-rs asks for a server-side credential ("discouraged"); the
    // passkey autofill needs one the authenticator keeps (discoverable).
    // "preferred" rather than "required": a security key without room for
    // another still registers one, which signs in after the address.
    if let Some(selection) = options["publicKey"]["authenticatorSelection"].as_object_mut() {
        selection.insert("residentKey".into(), "preferred".into());
        selection.insert("requireResidentKey".into(), false.into());
    }
    Ok(Some((options, cookie)))
}

/// Starts an authentication with one of the account's passkeys: the
/// options for `navigator.credentials.get` and the ceremony's cookie;
/// `None` when the account holds none.
pub async fn start_authentication(
    app: &App,
    account_id: &str,
    purpose: Purpose,
    ip: Option<&str>,
) -> AppResult<Option<(Value, String)>> {
    let Some(rp) = available(app) else { return Ok(None) };
    let rows = app.store.passkeys_of_account(account_id).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let keys = rows.iter().map(stored_passkey).collect::<AppResult<Vec<_>>>()?;
    let (options, state): (RequestChallengeResponse, PasskeyAuthentication) = rp
        .start_passkey_authentication(&keys)
        .map_err(|e| AppError::Invalid(format!("passkey authentication: {e}")))?;
    let cookie = open_ceremony(app, purpose, Some(account_id), ip, to_json(&state)?).await?;
    Ok(Some((serde_json::to_value(options).map_err(|e| AppError::Invalid(e.to_string()))?, cookie)))
}

/// Starts the sign-in page's passkey autofill: a challenge tied to no
/// account, for any passkey of the site the browser holds; the options for
/// `navigator.credentials.get` (conditional mediation) and the ceremony's
/// cookie. `None` when the issuer cannot be a relying party.
pub async fn start_autofill(app: &App, ip: Option<&str>) -> AppResult<Option<(Value, String)>> {
    let Some(rp) = available(app) else { return Ok(None) };
    let (options, state): (RequestChallengeResponse, DiscoverableAuthentication) =
        rp.start_discoverable_authentication().map_err(|e| AppError::Invalid(format!("passkey autofill: {e}")))?;
    let cookie = open_ceremony(app, Purpose::Autofill, None, ip, to_json(&state)?).await?;
    Ok(Some((serde_json::to_value(options).map_err(|e| AppError::Invalid(e.to_string()))?, cookie)))
}

/// The answer to an autofill challenge, parsed, with the credential id it
/// names (base64url); `None` when it is not an answer.
fn parse_answer(answer: &str) -> Option<(PublicKeyCredential, String)> {
    if answer.len() > ANSWER_MAX_BYTES {
        return None;
    }
    let credential = serde_json::from_str::<PublicKeyCredential>(answer).ok()?;
    let id = b64url(credential.get_credential_id());
    Some((credential, id))
}

/// Who an autofill answer says it is: the account holding the passkey it
/// names, if the answer's user handle is that account's. `Err` with the
/// credential id (cut to 64 characters, for the log; empty when the answer
/// cannot be read) when no account holds it.
pub async fn discovered_account(app: &App, answer: &str) -> AppResult<Result<String, String>> {
    let Some((credential, id)) = parse_answer(answer) else { return Ok(Err(String::new())) };
    let Some(row) = app.store.passkey_by_credential(&id).await? else {
        return Ok(Err(id.chars().take(64).collect()));
    };
    let handle = credential.get_user_unique_id().and_then(|b| Uuid::from_slice(b).ok());
    if handle != Some(user_handle(&row.account_id)) {
        return Ok(Err(id.chars().take(64).collect()));
    }
    Ok(Ok(row.account_id))
}

/// The browser's answer and the ceremony's state, parsed; `None` (to be
/// refused) for an answer too long or not of the kind the ceremony asked.
/// A state that does not parse is an error, not a refusal: the server
/// wrote it.
fn parsed<A: serde::de::DeserializeOwned, S: serde::de::DeserializeOwned>(
    ceremony: &CeremonyRow,
    answer: &str,
) -> AppResult<Option<(A, S)>> {
    if answer.len() > ANSWER_MAX_BYTES {
        return Ok(None);
    }
    let Ok(credential) = serde_json::from_str::<A>(answer) else { return Ok(None) };
    let state = serde_json::from_str(&ceremony.state).map_err(|e| AppError::Invalid(format!("ceremony state: {e}")))?;
    Ok(Some((credential, state)))
}

/// An answer the library refused: not valid, to the browser; the reason
/// goes to the log, where it helps whoever looks into a refused passkey.
fn refused_by_library<T>(ceremony: &'static str, e: &WebauthnError) -> AppResult<Result<T, Refusal>> {
    tracing::info!(error = %e, ceremony, "passkey answer refused");
    Ok(Err(Refusal::Invalid))
}

/// A new passkey, checked, not stored yet.
pub struct NewPasskey {
    passkey: Passkey,
    credential_id: String,
}

/// Checks the browser's answer to a registration.
pub fn finish_registration(app: &App, ceremony: &CeremonyRow, answer: &str) -> AppResult<Result<NewPasskey, Refusal>> {
    let Some((credential, state)) = parsed::<RegisterPublicKeyCredential, PasskeyRegistration>(ceremony, answer)?
    else {
        return Ok(Err(Refusal::Invalid));
    };
    match relying_party(app)?.finish_passkey_registration(&credential, &state) {
        Ok(passkey) => {
            let credential_id = b64url(passkey.cred_id().as_ref());
            Ok(Ok(NewPasskey { passkey, credential_id }))
        }
        Err(e) => refused_by_library("registration", &e),
    }
}

/// Stores a checked passkey inside the caller's transaction: the ceremony
/// consumed, the passkey stored under its name and the account told by
/// email; returns the `passkey_registered` record, for the caller to
/// append with its others.
pub async fn register_in(
    app: &App,
    tx: &mut WriteTx,
    ceremony: &CeremonyRow,
    account: &Account,
    new: NewPasskey,
    name: &str,
    source: &audit::Source,
) -> AppResult<Result<audit::Event, Refusal>> {
    let now = app.clock.now_ms();
    if !store::passkeys::take_ceremony(tx, &ceremony.id_hash, now).await? {
        return Ok(Err(Refusal::Expired));
    }
    if store::passkeys::credential_exists_in(tx, &new.credential_id).await? {
        return Ok(Err(Refusal::AlreadyRegistered));
    }
    let json = serde_json::to_value(&new.passkey).map_err(|e| AppError::Invalid(e.to_string()))?;
    let row = PasskeyRow {
        id: random_b64(12),
        account_id: account.id.clone(),
        credential_id: new.credential_id,
        counter: json["cred"]["counter"].as_i64().unwrap_or(0),
        passkey: json.to_string(),
        name: name.to_string(),
        created_at: now,
        last_used_at: None,
    };
    store::passkeys::insert(tx, &row).await?;
    tell_account(app, tx, account, &row.name, true, now).await?;
    let event = account_event(audit::kind::PASSKEY_REGISTERED, account, &account.email, source)
        .details(serde_json::json!({"passkey": row.id, "name": row.name}));
    Ok(Ok(event))
}

/// Adds a passkey from the account's security page: the answer checked,
/// then one transaction (see [`register_in`]) with its record. The caller
/// checked that the session is recent ([`FRESH_SIGNIN_MS`]).
pub async fn add(
    app: &App,
    ceremony: &CeremonyRow,
    account: &Account,
    answer: &str,
    name: &str,
    source: &audit::Source,
) -> AppResult<Result<(), Refusal>> {
    if ceremony.account_id.as_deref() != Some(account.id.as_str()) {
        return Ok(Err(Refusal::Expired));
    }
    if app.store.passkey_count(&account.id).await? >= MAX_PER_ACCOUNT as i64 {
        return Ok(Err(Refusal::TooMany));
    }
    let new = match finish_registration(app, ceremony, answer)? {
        Ok(n) => n,
        Err(r) => return Ok(Err(r)),
    };
    let mut tx = app.store.begin_write().await?;
    let event = match register_in(app, &mut tx, ceremony, account, new, name, source).await? {
        Ok(e) => e,
        Err(r) => return Ok(Err(r)),
    };
    audit::append(&app.clock, &mut tx, vec![event]).await?;
    tx.commit().await?;
    app.mail_wake.notify_one();
    Ok(Ok(()))
}

/// A passkey that answered, with what to write of its use.
pub struct Verified {
    pub row: PasskeyRow,
    result: AuthenticationResult,
}

/// Checks the browser's answer to an authentication against the account's
/// passkeys (read by the caller): signature, origin, RP id, user
/// verification, a counter that moves forward and, for the autofill, the
/// account's user handle.
pub fn verify_answer(
    app: &App,
    ceremony: &CeremonyRow,
    rows: &[PasskeyRow],
    answer: &str,
) -> AppResult<Result<Verified, Refusal>> {
    let Some((credential, used)) = parse_answer(answer) else { return Ok(Err(Refusal::Invalid)) };
    let Some(row) = rows.iter().find(|r| r.credential_id == used) else { return Ok(Err(Refusal::Invalid)) };
    let invalid_state = |e: serde_json::Error| AppError::Invalid(format!("ceremony state: {e}"));
    let finished = if ceremony.purpose == Purpose::Autofill.as_str() {
        // Any credential was allowed: it must also carry its account's handle.
        let handle = credential.get_user_unique_id().and_then(|b| Uuid::from_slice(b).ok());
        if handle != Some(user_handle(&row.account_id)) {
            return Ok(Err(Refusal::Invalid));
        }
        let state: DiscoverableAuthentication = serde_json::from_str(&ceremony.state).map_err(invalid_state)?;
        let key = DiscoverableKey::from(&stored_passkey(row)?);
        relying_party(app)?.finish_discoverable_authentication(&credential, state, &[key])
    } else {
        let state: PasskeyAuthentication = serde_json::from_str(&ceremony.state).map_err(invalid_state)?;
        relying_party(app)?.finish_passkey_authentication(&credential, &state)
    };
    match finished {
        Ok(result) if result.user_verified() => Ok(Ok(Verified { row: row.clone(), result })),
        Ok(_) => Ok(Err(Refusal::Invalid)),
        Err(WebauthnError::CredentialPossibleCompromise) => Ok(Err(Refusal::CounterRegressed {
            passkey_id: row.id.clone(),
            name: row.name.clone(),
            stored: row.counter,
        })),
        Err(e) => refused_by_library("assertion", &e),
    }
}

/// Consumes the ceremony and records the passkey's use (its new counter)
/// inside the sign-in's transaction.
pub async fn use_in(
    app: &App,
    tx: &mut WriteTx,
    ceremony: &CeremonyRow,
    verified: &Verified,
) -> AppResult<Result<(), Refusal>> {
    let now = app.clock.now_ms();
    if !store::passkeys::take_ceremony(tx, &ceremony.id_hash, now).await? {
        return Ok(Err(Refusal::Expired));
    }
    let mut passkey = stored_passkey(&verified.row)?;
    passkey.update_credential(&verified.result);
    let counter = i64::from(verified.result.counter());
    if !store::passkeys::record_use(tx, &verified.row.id, &to_json(&passkey)?, counter, now).await? {
        // Another assertion with a later counter was recorded meanwhile.
        return Ok(Err(Refusal::CounterRegressed {
            passkey_id: verified.row.id.clone(),
            name: verified.row.name.clone(),
            stored: verified.row.counter,
        }));
    }
    Ok(Ok(()))
}

/// Renames one of the account's passkeys; false when it holds no such one.
pub async fn rename(app: &App, account: &Account, passkey_id: &str, name: &str) -> AppResult<bool> {
    let mut tx = app.store.begin_write().await?;
    let done = store::passkeys::rename(&mut tx, &account.id, passkey_id, name).await?;
    tx.commit().await?;
    Ok(done)
}

/// Removes one of the account's passkeys, by its holder (`actor` is the
/// account's email) or by a habilitation manager from the console: the
/// account told by email and the `passkey_removed` record, in one
/// transaction. False when the account holds no such passkey.
pub async fn remove(
    app: &App,
    account: &Account,
    passkey_id: &str,
    actor: &str,
    source: &audit::Source,
) -> AppResult<bool> {
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await?;
    let Some(name) = store::passkeys::delete(&mut tx, &account.id, passkey_id).await? else { return Ok(false) };
    tell_account(app, &mut tx, account, &name, false, now).await?;
    let event = account_event(audit::kind::PASSKEY_REMOVED, account, actor, source)
        .details(serde_json::json!({"passkey": passkey_id, "name": name}));
    audit::append(&app.clock, &mut tx, vec![event]).await?;
    tx.commit().await?;
    app.mail_wake.notify_one();
    Ok(true)
}

/// The "si ce n'est pas vous…" message of an addition or a removal.
async fn tell_account(
    app: &App,
    tx: &mut WriteTx,
    account: &Account,
    name: &str,
    added: bool,
    now: Millis,
) -> AppResult<()> {
    let kind =
        MailKind::PasskeyChanged { given_name: &account.given_name, name, added, issuer: &app.config.issuer_str() };
    let message = mail::render(&account.email, kind).map_err(|e| AppError::Invalid(e.to_string()))?;
    mail::enqueue(tx, &message, now).await?;
    Ok(())
}

fn account_event(kind: &'static str, account: &Account, actor: &str, source: &audit::Source) -> audit::Event {
    audit::Event::new(kind, audit::Outcome::Success, actor)
        .email(account.email.clone())
        .account(account.id.clone())
        .partner(account.partner_id.clone())
        .source(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name("  Clé USB  ").as_deref(), Some("Clé USB"));
        assert_eq!(clean_name(""), None);
        assert_eq!(clean_name("   "), None);
        assert_eq!(clean_name("a\u{0}b"), None);
        assert!(clean_name(&"é".repeat(NAME_MAX_CHARS)).is_some());
        assert_eq!(clean_name(&"é".repeat(NAME_MAX_CHARS + 1)), None);
    }

    #[test]
    fn the_user_handle_is_stable_and_per_account() {
        assert_eq!(user_handle("a"), user_handle("a"));
        assert_ne!(user_handle("a"), user_handle("b"));
    }
}
