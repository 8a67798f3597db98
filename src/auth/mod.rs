//! Authentication: password hashing, sign-in and browser sessions.

pub mod links;
pub mod password;
pub mod policy;
pub mod second_factor;
pub mod session;
pub mod signin;
pub mod throttle;
pub mod totp;
pub mod vault;

use crate::accounts::{Account, AccountState, ProfessionalEmail};
use crate::app::App;
use crate::error::AppResult;
use crate::store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    UnknownAccount,
    WrongPassword,
    /// Access opened but no password created yet.
    Pending,
    Closed,
    /// Too many failures: refused without checking the password.
    Throttled {
        retry_after_secs: i64,
    },
}

/// A refused sign-in, with the account the address belongs to when it
/// was read (not for `Throttled`, refused before any read), so that the
/// connection log names the account and its partner.
#[derive(Debug, Clone)]
pub struct Refused {
    pub failure: SignInFailure,
    pub account: Option<Account>,
}

impl Refused {
    fn of(failure: SignInFailure, account: Option<Account>) -> Self {
        Refused { failure, account }
    }
}

/// Checks an email and password, under the failed-attempt restriction
/// (`throttle`): the attempt is reserved (counted as a failure) before
/// Argon2 runs, so a concurrent burst gets no more evaluations than the
/// free allowance; a success clears the address's count and gives back the
/// source's. Every checked failure takes one Argon2 verification, so that
/// an unknown email and a wrong password answer in the same time; the
/// caller shows the same message for all of them.
pub async fn sign_in_with_password(
    app: &App,
    email: &str,
    password: &str,
    ip: Option<&str>,
) -> AppResult<Result<Account, Refused>> {
    if let throttle::Verdict::Blocked { retry_after_secs } = throttle::reserve(app, email, ip).await? {
        return Ok(Err(Refused::of(SignInFailure::Throttled { retry_after_secs }, None)));
    }
    let outcome = check_password(app, email, password).await?;
    if outcome.is_ok() {
        throttle::record_success(app, email).await?;
        throttle::release_source(app, ip).await?;
    }
    Ok(outcome)
}

async fn check_password(app: &App, email: &str, password: &str) -> AppResult<Result<Account, Refused>> {
    // Hashes were made from the NFKC form (`policy::normalize`): a typed
    // password is verified in that form, or `Zkpq①Mwx!` set would not sign in.
    let password = policy::normalize(password);
    let row = match ProfessionalEmail::parse(email) {
        Ok(email) => app.store.account_by_email(email.normalized()).await?,
        Err(_) => None,
    };
    let Some(row) = row else {
        app.hasher.verify_dummy(password).await?;
        return Ok(Err(Refused::of(SignInFailure::UnknownAccount, None)));
    };
    let account = Account::from_row(&row);
    let Some(stored) = row.password_hash.clone() else {
        app.hasher.verify_dummy(password).await?;
        return Ok(Err(Refused::of(SignInFailure::Pending, Some(account))));
    };
    let check = app.hasher.verify(password.clone(), stored).await?;
    if !check.valid {
        return Ok(Err(Refused::of(SignInFailure::WrongPassword, Some(account))));
    }
    match account.state {
        AccountState::Active => {}
        AccountState::Pending => return Ok(Err(Refused::of(SignInFailure::Pending, Some(account)))),
        AccountState::Closed => return Ok(Err(Refused::of(SignInFailure::Closed, Some(account)))),
    }
    if check.needs_rehash {
        // The configured Argon2 parameters changed: upgrade while we hold the password.
        let upgraded = app.hasher.hash(password).await?;
        let mut tx = app.store.begin_write().await?;
        store::update_password_hash(&mut tx, &account.id, &upgraded, app.clock.now_ms()).await?;
        tx.commit().await?;
    }
    Ok(Ok(account))
}
