//! OIDC Back-Channel Logout 1.0: whenever a session ends, every client that
//! received tokens from it and registered a `backchannel_logout_uri` gets a
//! signed `logout_token`. Notifications are queued durably in the same
//! transaction that ends the session (by `auth::session`, which ends it), and retried with backoff while the
//! relying party is unreachable. The token is signed at sending time, so a
//! late delivery still carries a fresh `iat`/`exp`.

use serde_json::json;

use super::clients;
use crate::app::App;
use crate::audit;
use crate::clock::Backoff;
use crate::crypto::random_b64;
use crate::store::backchannel::{BackchannelRow, OUTBOX};

pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Retries after 1 s, 2 s, 4 s … capped at 5 minutes; gives up after a day
/// of failures (the session is long gone by then).
pub const BACKOFF: Backoff = Backoff { first_ms: 1000, max_ms: 5 * 60 * 1000, give_up_after_ms: 24 * 3600 * 1000 };

/// Sends every notification that is due; returns how many were delivered.
/// Run by the start-up's sender loop, woken by `App::backchannel_wake`.
pub async fn send_due(app: &App) -> crate::error::AppResult<usize> {
    let mut delivered = 0;
    for row in app.store.due_backchannel(app.clock.now_ms(), 50).await? {
        if !OUTBOX.claim(&app.store, &row.id, row.next_attempt_at, app.clock.now_ms() + 60_000).await? {
            continue;
        }
        let outcome = send_one(app, &row).await;
        let now = app.clock.now_ms();
        let mut tx = app.store.begin_write().await?;
        let account = app.store.account_by_id(&row.subject).await?;
        let event = |kind, outcome| {
            let mut e = audit::Event::new(kind, outcome, "system")
                .account(row.subject.clone())
                .client(row.client_id.clone())
                .session(&row.sid);
            if let Some(a) = &account {
                e = e.email(a.email.clone()).partner(a.partner_id.clone());
            }
            e
        };
        match outcome {
            Ok(()) => {
                OUTBOX.mark_done(&mut tx, &row.id, now).await?;
                delivered += 1;
                tracing::info!(client_id = %row.client_id, "back-channel logout delivered");
                let e = event(audit::kind::BACKCHANNEL_LOGOUT_SENT, audit::Outcome::Success)
                    .details(serde_json::json!({"attempts": row.attempts + 1}));
                audit::append(&app.clock, &mut tx, vec![e]).await?;
            }
            Err(reason) => {
                let next = BACKOFF.next_attempt(now, row.created_at, row.attempts);
                OUTBOX.mark_failed(&mut tx, &row.id, &reason, next, now).await?;
                tracing::warn!(client_id = %row.client_id, attempts = row.attempts + 1, reason = %reason, "back-channel logout failed");
                let e = event(audit::kind::BACKCHANNEL_LOGOUT_FAILED, audit::Outcome::Failure).details(
                    serde_json::json!({"attempts": row.attempts + 1, "reason": reason, "will_retry": next.is_some()}),
                );
                audit::append(&app.clock, &mut tx, vec![e]).await?;
            }
        }
        tx.commit().await?;
    }
    Ok(delivered)
}

async fn send_one(app: &App, row: &BackchannelRow) -> Result<(), String> {
    let client = clients::find(app, &row.client_id).await.map_err(|e| e.to_string())?.ok_or("client removed")?;
    let uri = client.backchannel_logout_uri.as_deref().ok_or("no backchannel_logout_uri")?;
    let now = app.clock.now_secs();
    let claims = json!({
        "iss": app.config.issuer_str(),
        "aud": client.id,
        "iat": now,
        "exp": now + 120,
        "jti": random_b64(16),
        "sub": row.subject,
        "sid": row.sid,
        "events": { EVENT: {} },
    });
    let token = app.keys.current().sign(client.id_token_alg, "logout+jwt", &claims).map_err(|e| e.to_string())?;
    let response = app
        .http
        .post(uri)
        .header("Cache-Control", "no-store")
        .form(&[("logout_token", token)])
        .send()
        .await
        .map_err(|e| format!("unreachable: {}", e.without_url()))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", response.status().as_u16())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_retried_from_1_s_doubling_to_5_min_for_24_h() {
        assert_eq!(BACKOFF.delay_ms(0), 1_000);
        assert_eq!(BACKOFF.delay_ms(2), 4_000);
        assert_eq!(BACKOFF.delay_ms(20), 300_000);
        let hour = 3_600_000;
        assert_eq!(BACKOFF.next_attempt(24 * hour - 1, 0, 1), Some(24 * hour - 1 + 2_000));
        assert_eq!(BACKOFF.next_attempt(24 * hour, 0, 1), None);
    }
}
