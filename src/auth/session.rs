//! Browser sessions. The cookie holds a 256-bit random value; the database
//! keeps only its hash. The public session id (`sid` claim) is separate.

use crate::app::App;
use crate::clock::Millis;
use crate::crypto::{hash_secret, random_b64, random_token};
use crate::error::AppResult;
use crate::store::{self, sessions::NewSession, sessions::SessionRow};

/// How the user authenticated (RFC 8176 `amr`) and at what level (`acr`).
pub const AMR_PASSWORD: &str = "pwd";
pub const ACR_PASSWORD: &str = "urn:coop-idp:acr:password";
/// A one-time password from an app (RFC 8176 `otp`), after the password.
pub const AMR_OTP: &str = "otp";
/// Password and second factor (R18).
pub const ACR_MFA: &str = "urn:coop-idp:acr:mfa";

/// Touch `last_seen_at` at most this often, to keep SSO reads write-free.
const TOUCH_EVERY_MS: Millis = 60_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub sid: String,
    pub account_id: String,
    pub auth_time_ms: Millis,
    pub amr: Vec<String>,
    pub acr: String,
}

impl Session {
    fn from_row(row: SessionRow) -> Self {
        Session {
            id_hash: row.id_hash,
            sid: row.sid,
            account_id: row.account_id,
            auth_time_ms: row.auth_time,
            amr: row.amr.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            acr: row.acr,
        }
    }

    /// Whether this session was opened with a second factor.
    pub fn has_second_factor(&self) -> bool {
        super::factors::has_second_factor(&self.amr)
    }

    pub fn auth_time_secs(&self) -> i64 {
        self.auth_time_ms / 1000
    }
}

pub struct SessionSource<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Opens a new session (a new id at every sign-in) inside the caller's
/// transaction (a sign-in's, all or nothing); returns the cookie value.
pub async fn open_in(
    app: &App,
    tx: &mut crate::store::WriteTx,
    account_id: &str,
    amr: &[&str],
    acr: &str,
    source: SessionSource<'_>,
) -> AppResult<(String, Session)> {
    let now = app.clock.now_ms();
    let cookie = random_token();
    let id_hash = hash_secret(&cookie);
    let sid = random_b64(16);
    let amr_text = amr.join(" ");
    store::sessions::insert(
        tx,
        &NewSession {
            id_hash: &id_hash,
            sid: &sid,
            account_id,
            auth_time: now,
            amr: &amr_text,
            acr,
            absolute_expires_at: now + app.config.session_absolute_timeout_secs * 1000,
            ip: source.ip,
            user_agent: source.user_agent,
        },
        now,
    )
    .await?;
    let session = Session {
        id_hash,
        sid,
        account_id: account_id.to_string(),
        auth_time_ms: now,
        amr: amr.iter().map(|s| s.to_string()).collect(),
        acr: acr.to_string(),
    };
    Ok((cookie, session))
}

/// The live session behind a cookie value, if any: not ended, not idle for
/// longer than the inactivity timeout, not past its absolute lifetime.
pub async fn current(app: &App, cookie: &str) -> AppResult<Option<Session>> {
    let now = app.clock.now_ms();
    let id_hash = hash_secret(cookie);
    let Some(row) = app.store.session(&id_hash).await? else { return Ok(None) };
    if row.ended_at.is_some() {
        return Ok(None);
    }
    if let Some(reason) = expiry_reason(&row, now, app.config.session_idle_timeout_secs * 1000) {
        expire(app, &row.id_hash, &row.sid, &row.account_id, reason).await?;
        return Ok(None);
    }
    if now - row.last_seen_at >= TOUCH_EVERY_MS {
        let mut tx = app.store.begin_batched_write().await?;
        store::sessions::touch(&mut tx, &id_hash, now).await?;
        tx.commit().await?;
    }
    Ok(Some(Session::from_row(row)))
}

/// Why a live session is over, if it is: past its absolute lifetime, or idle
/// for longer than the inactivity timeout.
pub fn expiry_reason(row: &SessionRow, now: Millis, idle_ms: Millis) -> Option<&'static str> {
    timed_out(row.absolute_expires_at, row.last_seen_at, now, idle_ms)
}

fn timed_out(absolute_expires_at: Millis, last_seen_at: Millis, now: Millis, idle_ms: Millis) -> Option<&'static str> {
    if absolute_expires_at <= now {
        Some("absolute_timeout")
    } else if last_seen_at + idle_ms <= now {
        Some("idle_timeout")
    } else {
        None
    }
}

/// Whether a session, as read with a code, is still live: not ended, not
/// timed out (even if no request noticed it yet), and still there.
pub fn is_live(times: Option<&store::grants::SessionTimes>, now: Millis, idle_ms: Millis) -> bool {
    times.is_some_and(|t| {
        t.ended_at.is_none() && timed_out(t.absolute_expires_at, t.last_seen_at, now, idle_ms).is_none()
    })
}

/// Ends a session that timed out and records `session_expired`, once:
/// whoever notices first (the next request or the job's sweep, on any
/// instance) ends it, the others find it ended. Its tokens live on by their
/// own lifetimes, as before the expiry was noticed.
pub async fn expire(app: &App, id_hash: &str, sid: &str, account_id: &str, reason: &str) -> AppResult<bool> {
    let now = app.clock.now_ms();
    let account = app.store.account_by_id(account_id).await?;
    let mut tx = app.store.begin_write().await?;
    if !store::sessions::expire(&mut tx, id_hash, reason, now).await? {
        return Ok(false);
    }
    store::grants::delete_unredeemed_codes_of_session(&mut tx, id_hash);
    let mut e = crate::audit::Event::new(crate::audit::kind::SESSION_EXPIRED, crate::audit::Outcome::Success, "system")
        .account(account_id)
        .session(sid)
        .details(serde_json::json!({"reason": reason}));
    if let Some(a) = account {
        e = e.email(a.person.email).partner(a.person.partner_id);
    }
    crate::audit::append(&app.clock, &mut tx, vec![e]).await?;
    tx.commit().await?;
    Ok(true)
}

/// Ends the sessions that timed out without a request noticing it; run by
/// the 60 s job. Returns how many it ended.
pub async fn sweep_expired(app: &App) -> AppResult<usize> {
    let now = app.clock.now_ms();
    let idle_ms = app.config.session_idle_timeout_secs * 1000;
    let mut n = 0;
    for s in app.store.expired_sessions(now, idle_ms, 500).await? {
        let reason = if s.absolute_expires_at <= now { "absolute_timeout" } else { "idle_timeout" };
        if expire(app, &s.id_hash, &s.sid, &s.account_id, reason).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// Ends a session inside the caller's transaction, its tokens stopping at
/// once and every relying party that received tokens from it told by
/// back-channel logout; the session and its clients are already read. The
/// caller wakes the back-channel sender after
/// committing when this returns true and `clients` is not empty.
pub async fn end_in(
    app: &App,
    tx: &mut crate::store::WriteTx,
    row: &SessionRow,
    clients: &[String],
    reason: &str,
) -> AppResult<bool> {
    let now = app.clock.now_ms();
    let ended = store::sessions::end(tx, &row.id_hash, reason, now).await?;
    store::grants::revoke_families_of_session(tx, &row.id_hash, reason, now).await?;
    // A code not yet exchanged would otherwise open a token family that
    // outlives the session it came from (R4, R12).
    store::grants::delete_unredeemed_codes_of_session(tx, &row.id_hash);
    if ended {
        for client_id in clients {
            queue_logout_notice(app, tx, client_id, &row.account_id, &row.sid).await?;
        }
    }
    Ok(ended)
}

/// Ends every session and token of an account inside the caller's
/// transaction (an access closed by an annex 1 must close all or nothing),
/// at the caller's `now`, and queues the back-channel notices in it. The
/// caller wakes the sender after committing.
pub async fn end_all_of_account_in(
    app: &App,
    tx: &mut crate::store::WriteTx,
    account_id: &str,
    reason: &str,
    now: Millis,
) -> AppResult<usize> {
    let ended = store::sessions::end_all_of_account(tx, account_id, reason, now).await?;
    store::grants::revoke_families_of_account(tx, account_id, reason, now).await?;
    store::grants::delete_unredeemed_codes_of_account(tx, account_id);
    let mut notices = 0;
    for (id_hash, sid) in &ended {
        for client_id in store::sessions::client_ids_in(tx, id_hash).await? {
            queue_logout_notice(app, tx, &client_id, account_id, sid).await?;
            notices += 1;
        }
    }
    Ok(notices)
}

/// Queues a back-channel logout notice for a client that registered a
/// `backchannel_logout_uri`, in the transaction that ends the session; the
/// protocol layer (`oidc::backchannel`) signs and sends it. Queued here, by
/// what ends sessions, so that auth does not call up into the protocol layer.
async fn queue_logout_notice(
    app: &App,
    tx: &mut crate::store::WriteTx,
    client_id: &str,
    subject: &str,
    sid: &str,
) -> store::StoreResult<()> {
    let has_uri = app.store.client(client_id).await?.is_some_and(|c| c.backchannel_logout_uri.is_some());
    if has_uri {
        store::backchannel::enqueue(tx, &random_b64(16), client_id, subject, sid, app.clock.now_ms()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::grants::SessionTimes;

    #[test]
    fn a_code_s_session_is_live_only_while_there_open_and_not_timed_out() {
        let (now, idle) = (1_000_000, 60_000);
        let live = SessionTimes { last_seen_at: now - idle + 1, absolute_expires_at: now + 1, ended_at: None };
        assert!(is_live(Some(&live), now, idle));
        assert!(!is_live(None, now, idle), "gone");
        assert!(!is_live(Some(&SessionTimes { ended_at: Some(now - 1), ..live }), now, idle), "ended");
        assert!(!is_live(Some(&SessionTimes { last_seen_at: now - idle, ..live }), now, idle), "idle");
        assert!(!is_live(Some(&SessionTimes { absolute_expires_at: now, ..live }), now, idle), "absolute");
    }
}
