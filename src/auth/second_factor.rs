//! The second factor (R18): who must give one, the pending state between a
//! correct password and the second factor, TOTP enrolment with recovery
//! codes, and the check of a code.
//!
//! An account holding any administrative role must enrol before it gets a
//! session at all; an account that enrolled (administrator or agent who
//! opted in) gives a code at every sign-in. The pending state is a random
//! cookie value whose hash is the key of a row living `PENDING_TTL_MS`,
//! consumed once by the request that completes it. Wrong codes count in the
//! same restriction as wrong passwords (`throttle`), under a key of their own
//! so that a correct password does not reset them.

use crate::app::App;
use crate::auth::{totp, vault};
use crate::clock::Millis;
use crate::crypto::{hash_secret, random_token};
use crate::error::AppResult;
use crate::store::{self, totp::PendingSecondFactorRow};

/// How long the second step may take after the password.
pub const PENDING_TTL_MS: Millis = 10 * 60_000;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;
const RECOVERY_CODE_BYTES: usize = 16;

/// What a correct password leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No second factor: the session opens at once.
    None,
    /// The account enrolled: a code is asked.
    Verify,
    /// An administrator without a second factor: enrolment first.
    Enrol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Too many failures: refused without checking the code.
    Throttled { retry_after_secs: i64 },
    /// Not a valid code, a code already used, or an unknown recovery code.
    WrongCode,
    /// The pending state expired or was already used.
    Expired,
}

/// How the second factor was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Totp,
    RecoveryCode,
}

/// What a correct password leads to, from what the account holds.
pub fn requirement_of(has_totp: bool, has_role: bool) -> Requirement {
    match (has_totp, has_role) {
        (true, _) => Requirement::Verify,
        (false, true) => Requirement::Enrol,
        (false, false) => Requirement::None,
    }
}

/// Whether an account holds a second factor it can give: a TOTP secret or
/// a passkey.
pub async fn held(app: &App, account_id: &str) -> AppResult<bool> {
    Ok(app.store.totp(account_id).await?.is_some() || app.store.passkey_count(account_id).await? > 0)
}

/// Where a step-up may lead back to: a same-origin path under `/admin`
/// (with its query), never another site (`//evil.example`,
/// `https://evil.example`, `/\evil.example`) nor a way out of the console.
pub fn console_return(target: &str) -> Option<String> {
    const BASE: &str = "http://console.invalid";
    if target.len() > 2048 || !target.starts_with('/') || target.starts_with("//") {
        return None;
    }
    if target.contains(['\\', '@']) || target.chars().any(char::is_control) {
        return None;
    }
    let base = url::Url::parse(BASE).ok()?;
    let url = base.join(target).ok()?;
    if url.origin() != base.origin() || url.fragment().is_some() {
        return None;
    }
    let path = url.path();
    if path != "/admin" && !path.starts_with("/admin/") {
        return None;
    }
    // The path as the browser would resolve it, so that `/admin/../x` is not
    // taken for a console page.
    Some(match url.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    })
}

/// Opens the pending state; returns the cookie value. `return_to`, a
/// console path (kept only if [`console_return`] accepts it), is where the
/// browser goes after the second factor when no authorization request waits.
pub async fn begin(app: &App, account_id: &str, request: Option<&str>, return_to: Option<&str>) -> AppResult<String> {
    let mut tx = app.store.begin_write().await?;
    let cookie = begin_in(app, &mut tx, account_id, request, return_to).await?;
    tx.commit().await?;
    Ok(cookie)
}

/// [`begin`] inside the caller's transaction (a password sign-in's).
pub async fn begin_in(
    app: &App,
    tx: &mut store::WriteTx,
    account_id: &str,
    request: Option<&str>,
    return_to: Option<&str>,
) -> AppResult<String> {
    let now = app.clock.now_ms();
    let cookie = random_token();
    let row = PendingSecondFactorRow {
        id_hash: hash_secret(&cookie),
        account_id: account_id.to_string(),
        request: request.map(str::to_string),
        enrol_secret: None,
        return_to: return_to.and_then(console_return),
        expires_at: now + PENDING_TTL_MS,
    };
    store::totp::insert_pending(tx, &row, now).await?;
    Ok(cookie)
}

/// The live pending state behind a cookie value.
pub async fn pending(app: &App, cookie: &str) -> AppResult<Option<PendingSecondFactorRow>> {
    let row = app.store.pending_second_factor(&hash_secret(cookie)).await?;
    Ok(row.filter(|r| r.expires_at >= app.clock.now_ms()))
}

/// The secret offered for enrolment in this pending state, made on first
/// display and the same on every reload (the first writer wins).
/// Like the enrolled secret, the candidate is stored sealed (`vault`).
pub async fn enrolment_secret(app: &App, pending: &PendingSecondFactorRow) -> AppResult<String> {
    let key = vault::load_key(app)?;
    if let Some(s) = &pending.enrol_secret {
        return Ok(vault::open(&key, &pending.account_id, s)?);
    }
    let sealed = vault::seal(&key, &pending.account_id, &totp::new_secret())?;
    let mut tx = app.store.begin_write().await?;
    store::totp::set_pending_enrol_secret(&mut tx, &pending.id_hash, &sealed).await?;
    tx.commit().await?;
    let row = app.store.pending_second_factor(&pending.id_hash).await?;
    let stored = row
        .and_then(|r| r.enrol_secret)
        .ok_or_else(|| crate::error::AppError::Invalid("pending state vanished".into()))?;
    Ok(vault::open(&key, &pending.account_id, &stored)?)
}

/// The failed-attempt counter of an account's codes: its own, so that a
/// correct password does not reset it.
pub fn throttle_key(account_id: &str) -> String {
    format!("otp:{account_id}")
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalize_recovery_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// A fresh recovery code for display (grouped by four, lower case).
fn new_recovery_code() -> String {
    let mut buf = [0u8; RECOVERY_CODE_BYTES];
    aws_lc_rs::rand::fill(&mut buf).expect("operating system random generator");
    let b32 = totp::base32_encode(&buf).to_ascii_lowercase();
    b32.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

/// Checks the second factor of a pending sign-in inside the caller's
/// transaction: a TOTP code (6 digits, each step once) or an unused
/// recovery code (spent); then consumes the pending state. The attempt was
/// reserved in the throttle by the caller; on a refusal the caller drops
/// the transaction.
pub async fn verify_in(
    app: &App,
    tx: &mut store::WriteTx,
    pending: &PendingSecondFactorRow,
    enrolled: &store::totp::TotpRow,
    code: &str,
) -> AppResult<Result<Method, Failure>> {
    let account_id = pending.account_id.as_str();
    let now = app.clock.now_ms();
    // A secret that does not open (another key) refuses the sign-in: an error, never a pass.
    let secret = vault::open(&vault::load_key(app)?, account_id, &enrolled.secret)?;
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let method = if digits.len() == totp::DIGITS as usize && digits.chars().all(|c| c.is_ascii_digit()) {
        // The step is recorded only if it is later than the last one, so two
        // requests racing with the same code cannot both pass.
        let accepted = match totp::verify(&secret, &digits, now, enrolled.last_step) {
            Some(step) => store::totp::advance_step(tx, account_id, step).await?,
            None => false,
        };
        if !accepted {
            return Ok(Err(Failure::WrongCode));
        }
        Method::Totp
    } else {
        let hash = hash_secret(&normalize_recovery_code(code));
        if !store::totp::use_recovery_code(tx, account_id, &hash, now).await? {
            return Ok(Err(Failure::WrongCode));
        }
        Method::RecoveryCode
    };
    if !store::totp::take_pending(tx, &pending.id_hash, now).await? {
        return Ok(Err(Failure::Expired));
    }
    Ok(Ok(method))
}

/// Confirms an enrolment with a first code from the app inside the caller's
/// transaction: stores the secret and fresh recovery codes (their hashes),
/// consumes the pending state, and returns the recovery codes, to be shown
/// this once.
pub async fn confirm_in(
    app: &App,
    tx: &mut store::WriteTx,
    pending: &PendingSecondFactorRow,
    code: &str,
) -> AppResult<Result<Vec<String>, Failure>> {
    let account_id = pending.account_id.as_str();
    let Some(stored) = pending.enrol_secret.as_deref() else { return Ok(Err(Failure::Expired)) };
    let key = vault::load_key(app)?;
    let secret = vault::open(&key, account_id, stored)?;
    let now = app.clock.now_ms();
    let Some(step) = totp::verify(&secret, code, now, i64::MIN) else {
        return Ok(Err(Failure::WrongCode));
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let hashes: Vec<String> = codes.iter().map(|c| hash_secret(&normalize_recovery_code(c))).collect();
    if !store::totp::take_pending(tx, &pending.id_hash, now).await? {
        return Ok(Err(Failure::Expired));
    }
    let sealed = vault::seal(&key, account_id, &secret)?;
    store::totp::insert(tx, account_id, &sealed, step, &hashes, now).await?;
    Ok(Ok(codes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_up_returns_only_to_console_paths() {
        for good in ["/admin", "/admin/logs", "/admin/logs?email=a%40b.fr&event=signin", "/admin/partners/cc-girou"] {
            assert_eq!(console_return(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "//evil.example",
            "//evil.example/admin",
            "https://evil.example/admin",
            "http://console.invalid/admin",
            "/\\evil.example/admin",
            "/admin@evil.example",
            "/administrator",
            "/admin/../signin",
            "/admin/%2e%2e/signin",
            "/signin",
            "admin",
            "",
            "/admin/logs#frag",
            "/admin/\nlogs",
            "javascript:alert(1)",
        ] {
            assert_eq!(console_return(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn recovery_codes_are_128_bit_and_typed_loosely() {
        let c = new_recovery_code();
        let n = normalize_recovery_code(&c);
        assert_eq!(n.len(), 26);
        assert_eq!(totp::base32_decode(&n).map(|v| v.len()), Some(RECOVERY_CODE_BYTES));
        assert_eq!(normalize_recovery_code(&format!(" {} ", c.to_uppercase().replace('-', " "))), n);
        assert_ne!(new_recovery_code(), c);
    }
}
