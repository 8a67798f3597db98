//! TOTP secrets at rest. A TOTP secret must be read in clear to compute
//! codes, so it cannot be hashed; it is sealed instead with AES-256-GCM
//! (aws-lc-rs) under a 256-bit key kept in `keys_dir` (file
//! `totp-secrets.key`, mode 0600, made on first use), never in the
//! database: a copy of the database alone does not give the secrets. The
//! account id is the associated data, so a sealed value moved to another
//! account does not open. Stored form: `v1:` + base64url(nonce ‖ ciphertext
//! ‖ tag).
//!
//! Secrets stored in clear by earlier versions still open (they are base32
//! text without the prefix) and [`seal_clear_secrets`], run at start-up,
//! seals them.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::app::App;
use crate::auth::totp;
use crate::error::AppResult;
use crate::store;

/// The key file, in `keys_dir`.
pub const KEY_FILE: &str = "totp-secrets.key";
const PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("TOTP secret key totp-secrets.key in keys_dir: {0}")]
    Key(#[from] crate::keys::KeyError),
    #[error(
        "a stored TOTP secret does not open with totp-secrets.key of keys_dir (another key — keys_dir changed, or not the \
         same on every instance — or an altered value); the second factor is refused"
    )]
    Open,
    #[error("sealing a TOTP secret failed")]
    Seal,
}

/// The sealing key of this installation (read from `keys_dir`, created on
/// first use).
pub fn load_key(app: &App) -> Result<LessSafeKey, VaultError> {
    let bytes = crate::keys::load_or_create_secret(&app.config.keys_dir, KEY_FILE)?;
    key_from(&bytes)
}

fn key_from(bytes: &[u8]) -> Result<LessSafeKey, VaultError> {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| VaultError::Seal)?;
    Ok(LessSafeKey::new(unbound))
}

/// Seals `secret` (base32 text) for `account_id`.
pub fn seal(key: &LessSafeKey, account_id: &str, secret: &str) -> Result<String, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| VaultError::Seal)?;
    let mut data = secret.as_bytes().to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(account_id.as_bytes()), &mut data)
        .map_err(|_| VaultError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(format!("{PREFIX}{}", crate::crypto::b64url(&out)))
}

/// Whether a stored value is sealed (rather than a clear legacy secret).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The secret behind a stored value: opened when sealed, taken as is when it
/// is a clear secret of an earlier version; anything else fails closed.
pub fn open(key: &LessSafeKey, account_id: &str, stored: &str) -> Result<String, VaultError> {
    let Some(sealed) = stored.strip_prefix(PREFIX) else {
        return match totp::base32_decode(stored) {
            Some(b) if !b.is_empty() => Ok(stored.to_string()),
            _ => Err(VaultError::Open),
        };
    };
    let raw = crate::crypto::b64url_decode(sealed).ok_or(VaultError::Open)?;
    if raw.len() < NONCE_LEN {
        return Err(VaultError::Open);
    }
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Open)?;
    let mut data = rest.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(account_id.as_bytes()), &mut data).map_err(|_| VaultError::Open)?;
    String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Open)
}

/// Seals every TOTP secret still stored in clear (an installation upgraded
/// from a version that kept them so); returns how many. Each row is
/// replaced only if it still holds the clear value read, so instances
/// starting together do not seal one twice.
pub async fn seal_clear_secrets(app: &App) -> AppResult<usize> {
    let clear = app.store.totp_secrets_in_clear().await?;
    if clear.is_empty() {
        return Ok(0);
    }
    let key = load_key(app)?;
    let mut sealed = 0;
    for (account_id, secret) in clear {
        // A value that is neither sealed nor base32 is left for `open` to refuse.
        if totp::base32_decode(&secret).is_none_or(|b| b.is_empty()) {
            continue;
        }
        let value = seal(&key, &account_id, &secret)?;
        let mut tx = app.store.begin_write().await?;
        if store::replace_totp_secret(&mut tx, &account_id, &secret, &value).await? {
            sealed += 1;
        }
        tx.commit().await?;
    }
    if sealed > 0 {
        tracing::info!(accounts = sealed, "TOTP secrets stored in clear were sealed");
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> LessSafeKey {
        key_from(&[byte; 32]).expect("key")
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_account_only() {
        let secret = totp::new_secret();
        let stored = seal(&key(1), "acc-1", &secret).expect("seal");
        assert!(is_sealed(&stored) && !stored.contains(&secret), "{stored}");
        assert_ne!(seal(&key(1), "acc-1", &secret).expect("seal"), stored, "a fresh nonce each time");
        assert_eq!(open(&key(1), "acc-1", &stored).expect("open"), secret);
        assert!(matches!(open(&key(2), "acc-1", &stored), Err(VaultError::Open)), "another key");
        assert!(matches!(open(&key(1), "acc-2", &stored), Err(VaultError::Open)), "another account");
        let mut altered = stored.clone();
        altered.push('A');
        assert!(open(&key(1), "acc-1", &altered).is_err(), "an altered value");
        assert!(open(&key(1), "acc-1", "v1:").is_err());
    }

    #[test]
    fn clear_secrets_of_earlier_versions_still_open() {
        let secret = totp::new_secret();
        assert!(!is_sealed(&secret));
        assert_eq!(open(&key(1), "acc-1", &secret).expect("legacy"), secret);
        assert!(open(&key(1), "acc-1", "not base32!").is_err());
    }
}
