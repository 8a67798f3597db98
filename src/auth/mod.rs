//! Authentication: password hashing, sign-in and browser sessions.

pub mod factors;
pub mod links;
pub mod mailed;
pub mod passkeys;
pub mod policy;
pub mod second_factor;
pub mod session;
pub mod signout;
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

/// An account whose password was right, with what its sign-in does next.
#[derive(Debug, Clone)]
pub struct Checked {
    pub account: Account,
    pub requirement: second_factor::Requirement,
    /// A new hash when the configured Argon2 parameters changed: written in
    /// the caller's transaction while the password is at hand.
    pub rehash: Option<String>,
}

/// Checks an email and password, under the failed-attempt restriction
/// (`throttle`): the attempt is reserved (counted as a failure) before
/// Argon2 runs, so a concurrent burst gets no more evaluations than the
/// free allowance. On success the caller owes the counters a
/// [`throttle::Success`], written in its own transaction. Every checked
/// failure takes one Argon2 verification, so that an unknown email and a
/// wrong password answer in the same time; the caller shows the same
/// message for all of them.
pub async fn check_password(
    app: &App,
    email: &str,
    password: &str,
    ip: Option<&str>,
) -> AppResult<Result<Checked, Refused>> {
    if let throttle::Verdict::Blocked { retry_after_secs } = throttle::reserve(app, email, ip).await? {
        return Ok(Err(Refused::of(SignInFailure::Throttled { retry_after_secs }, None)));
    }
    verify(app, email, password).await
}

/// One read (the account, its second factor and whether it holds a role),
/// then Argon2.
async fn verify(app: &App, email: &str, password: &str) -> AppResult<Result<Checked, Refused>> {
    // Hashes were made from the NFKC form (`policy::normalize`): a typed
    // password is verified in that form, or `Zkpq①Mwx!` set would not sign in.
    let password = policy::normalize(password);
    let row = match ProfessionalEmail::parse(email) {
        Ok(email) => app.store.signin_account(email.normalized()).await?,
        Err(_) => None,
    };
    let Some(row) = row else {
        app.hasher.verify_dummy(password).await?;
        return Ok(Err(Refused::of(SignInFailure::UnknownAccount, None)));
    };
    let account = Account::from_row(&row.account);
    let Some(stored) = row.account.password_hash.clone() else {
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
    let rehash = if check.needs_rehash { Some(app.hasher.hash(password).await?) } else { None };
    let mut requirement = second_factor::requirement_of(row.totp_count > 0, row.role_count > 0);
    // An administrator whose second factor is a passkey (issue 17): read
    // only for administrators without TOTP, so an agent's sign-in reads
    // nothing more.
    if requirement == second_factor::Requirement::Enrol && app.store.passkey_count(&account.id).await? > 0 {
        requirement = second_factor::Requirement::Verify;
    }
    Ok(Ok(Checked { account, requirement, rehash }))
}

/// Writes an upgraded hash, when there is one, in the caller's transaction.
pub async fn write_rehash(app: &App, tx: &mut store::WriteTx, checked: &Checked) -> AppResult<()> {
    if let Some(hash) = &checked.rehash {
        store::accounts::update_password_hash(tx, &checked.account.id, hash, app.clock.now_ms()).await?;
    }
    Ok(())
}
