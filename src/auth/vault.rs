//! TOTP secrets at rest. A TOTP secret must be read in clear to compute
//! codes, so it cannot be hashed; it is sealed instead with AES-256-GCM
//! (aws-lc-rs) under a 256-bit key kept in `keys_dir` (file
//! `totp-secrets.key`, mode 0600, made on first use), never in the
//! database: a copy of the database alone does not give the secrets. The
//! account id is the associated data, so a sealed value moved to another
//! account does not open. Stored form: `v2:` + key id + `:` +
//! base64url(nonce ‖ ciphertext ‖ tag); the key id is the start of the
//! key's SHA-256, so that a value names the key it needs.
//!
//! `keys rotate-totp` ([`rotate`]) makes a new key, seals every stored
//! value again under it, and keeps the previous key beside it
//! (`totp-secrets-<id>.key`) only while a stored value still needs it.
//!
//! Values of earlier versions still open: `v1:` (no key id; any key of the
//! ring is tried) and secrets stored in clear (base32 text without a
//! prefix), which [`seal_clear_secrets`], run at start-up, seals.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::app::App;
use crate::auth::totp;
use crate::crypto::{b64url, sha256};
use crate::error::AppResult;
use crate::store;

/// The current key file, in `keys_dir`.
pub const KEY_FILE: &str = "totp-secrets.key";
/// Retired keys: `totp-secrets-<id>.key`.
const RETIRED_PREFIX: &str = "totp-secrets-";
const V1: &str = "v1:";
const V2: &str = "v2:";
/// How long a rotation waits before its second pass, for a value sealed
/// under the previous key by a request that read the key files just before
/// the new key took its place.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("TOTP secret key totp-secrets.key in keys_dir: {0}")]
    Key(#[from] crate::keys::KeyError),
    #[error(
        "a stored TOTP secret does not open with the keys of keys_dir (totp-secrets.key and its retired keys; \
         another keys_dir, not the same on every instance, or an altered value); the second factor is refused"
    )]
    Open,
    #[error("sealing a TOTP secret failed")]
    Seal,
}

crate::failure_from!(VaultError);

struct SealingKey {
    id: String,
    bytes: Vec<u8>,
    key: LessSafeKey,
}

impl SealingKey {
    fn new(bytes: Vec<u8>) -> Result<Self, VaultError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| VaultError::Seal)?;
        Ok(SealingKey { id: key_id(&bytes), key: LessSafeKey::new(unbound), bytes })
    }
}

/// 48 bits of the key's SHA-256: names the key, gives nothing of it.
fn key_id(bytes: &[u8]) -> String {
    b64url(&sha256(bytes)[..6])
}

/// The keys of this installation: the current one seals, every one opens
/// the values that name it.
pub struct Keyring {
    current: SealingKey,
    retired: Vec<SealingKey>,
}

impl Keyring {
    fn keys(&self) -> impl Iterator<Item = &SealingKey> {
        std::iter::once(&self.current).chain(&self.retired)
    }

    /// The id of the key that seals now.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }
}

/// The sealing keys of this installation (read from `keys_dir`; the current
/// key is created on first use).
pub fn load_key(app: &App) -> Result<Keyring, VaultError> {
    load_keyring(&app.config.keys_dir)
}

fn load_keyring(dir: &Path) -> Result<Keyring, VaultError> {
    let current = SealingKey::new(crate::keys::load_or_create_secret(dir, KEY_FILE)?)?;
    let mut retired = Vec::new();
    for name in crate::keys::list_files(dir, |n| n.starts_with(RETIRED_PREFIX) && n.ends_with(".key"))? {
        let key = SealingKey::new(crate::keys::read_secret(&dir.join(&name))?)?;
        if key.id != current.id {
            retired.push(key);
        }
    }
    Ok(Keyring { current, retired })
}

fn retired_name(id: &str) -> String {
    format!("{RETIRED_PREFIX}{id}.key")
}

/// Seals `secret` (base32 text) for `account_id` under the current key.
pub fn seal(ring: &Keyring, account_id: &str, secret: &str) -> Result<String, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| VaultError::Seal)?;
    let mut data = secret.as_bytes().to_vec();
    ring.current
        .key
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(account_id.as_bytes()), &mut data)
        .map_err(|_| VaultError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(format!("{V2}{}:{}", ring.current.id, b64url(&out)))
}

/// Whether a stored value is sealed (rather than a clear legacy secret).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(V2) || stored.starts_with(V1)
}

/// The secret behind a stored value: opened when sealed, taken as is when it
/// is a clear secret of an earlier version; anything else fails closed.
pub fn open(ring: &Keyring, account_id: &str, stored: &str) -> Result<String, VaultError> {
    opened_by(ring, account_id, stored).map(|(secret, _)| secret)
}

/// The secret behind a stored value, and the id of the key that opened it
/// (`None` for a clear secret).
fn opened_by<'r>(ring: &'r Keyring, account_id: &str, stored: &str) -> Result<(String, Option<&'r str>), VaultError> {
    if let Some(rest) = stored.strip_prefix(V2) {
        let (id, sealed) = rest.split_once(':').ok_or(VaultError::Open)?;
        let key = ring.keys().find(|k| k.id == id).ok_or(VaultError::Open)?;
        return open_with(&key.key, account_id, sealed).map(|s| (s, Some(key.id.as_str())));
    }
    if let Some(sealed) = stored.strip_prefix(V1) {
        return ring
            .keys()
            .find_map(|k| open_with(&k.key, account_id, sealed).ok().map(|s| (s, Some(k.id.as_str()))))
            .ok_or(VaultError::Open);
    }
    match totp::base32_decode(stored) {
        Some(b) if !b.is_empty() => Ok((stored.to_string(), None)),
        _ => Err(VaultError::Open),
    }
}

fn open_with(key: &LessSafeKey, account_id: &str, sealed: &str) -> Result<String, VaultError> {
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

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// The id of the new key.
    pub key_id: String,
    /// Stored values sealed again under it.
    pub resealed: usize,
    /// Values that open with no key of the ring (left as they are; their
    /// owners enrol again after `admin reset-second-factor`).
    pub unreadable: usize,
    /// Retired keys still needed by a stored value (kept).
    pub kept: Vec<String>,
    /// Retired keys no stored value needs any more (removed).
    pub removed: Vec<String>,
}

/// Rotates the sealing key: the current key is kept under its retired name,
/// a new key takes its place (in one rename: instances sealing meanwhile
/// use the old key or the new one, and every instance reads the folder at
/// each use), every stored value is sealed again under the new key (twice,
/// [`STRAGGLER_WAIT`] apart, for values written under the old key in the
/// meantime), then the retired keys that no value names any more are
/// removed.
pub async fn rotate(app: &App) -> AppResult<Rotation> {
    let dir = &app.config.keys_dir;
    let before = SealingKey::new(crate::keys::load_or_create_secret(dir, KEY_FILE)?)?;
    crate::keys::keep_secret(dir, &retired_name(&before.id), &before.bytes)?;
    crate::keys::replace_secret(dir, KEY_FILE)?;
    let ring = load_keyring(dir)?;
    let mut resealed = reseal(app, &ring).await?.resealed;
    tokio::time::sleep(STRAGGLER_WAIT).await;
    let last = reseal(app, &ring).await?;
    resealed += last.resealed;
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for key in &ring.retired {
        if last.needed.contains(&key.id) {
            kept.push(key.id.clone());
        } else {
            crate::keys::remove_secret(dir, &retired_name(&key.id))?;
            removed.push(key.id.clone());
        }
    }
    tracing::info!(key = %ring.current.id, resealed, kept = kept.len(), removed = removed.len(), "TOTP sealing key rotated");
    Ok(Rotation { key_id: ring.current.id.clone(), resealed, unreadable: last.unreadable, kept, removed })
}

struct Resealed {
    resealed: usize,
    unreadable: usize,
    /// Ids of the keys that values not sealed again still need.
    needed: Vec<String>,
}

/// Seals under the current key every stored value (enrolled secrets and
/// pending enrolments) that another key sealed, in one transaction; each
/// value is replaced only if it is still the one read.
async fn reseal(app: &App, ring: &Keyring) -> AppResult<Resealed> {
    let mut done = Resealed { resealed: 0, unreadable: 0, needed: Vec::new() };
    let mut tx = app.store.begin_write().await?;
    let values = store::totp::sealed_values(&mut tx).await?;
    for value in values {
        let (secret, by) = match opened_by(ring, &value.account_id, &value.stored) {
            Ok(opened) => opened,
            Err(_) => {
                done.unreadable += 1;
                continue;
            }
        };
        if by == Some(ring.current.id.as_str()) && value.stored.starts_with(V2) {
            continue;
        }
        let sealed = seal(ring, &value.account_id, &secret)?;
        if store::totp::replace_sealed_value(&mut tx, &value, &sealed).await? {
            done.resealed += 1;
        } else if let Some(id) = by {
            done.needed.push(id.to_string());
        }
    }
    tx.commit().await?;
    Ok(done)
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
        if store::totp::replace_secret(&mut tx, &account_id, &secret, &value).await? {
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

    fn ring(current: u8, retired: &[u8]) -> Keyring {
        let key = |b: u8| SealingKey::new(vec![b; 32]).expect("key");
        Keyring { current: key(current), retired: retired.iter().map(|b| key(*b)).collect() }
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_account_only() {
        let secret = totp::new_secret();
        let stored = seal(&ring(1, &[]), "acc-1", &secret).expect("seal");
        assert!(is_sealed(&stored) && !stored.contains(&secret), "{stored}");
        assert!(stored.starts_with(&format!("v2:{}:", ring(1, &[]).current_id())), "names its key: {stored}");
        assert_ne!(seal(&ring(1, &[]), "acc-1", &secret).expect("seal"), stored, "a fresh nonce each time");
        assert_eq!(open(&ring(1, &[]), "acc-1", &stored).expect("open"), secret);
        assert!(matches!(open(&ring(2, &[]), "acc-1", &stored), Err(VaultError::Open)), "another key");
        assert!(matches!(open(&ring(1, &[]), "acc-2", &stored), Err(VaultError::Open)), "another account");
        let mut altered = stored.clone();
        altered.push('A');
        assert!(open(&ring(1, &[]), "acc-1", &altered).is_err(), "an altered value");
        assert!(open(&ring(1, &[]), "acc-1", "v2:").is_err());
        assert!(open(&ring(1, &[]), "acc-1", "v1:").is_err());
    }

    #[test]
    fn a_retired_key_still_opens_what_it_sealed_and_seals_nothing() {
        let secret = totp::new_secret();
        let old = seal(&ring(1, &[]), "acc-1", &secret).expect("seal");
        let rotated = ring(2, &[1]);
        assert_eq!(open(&rotated, "acc-1", &old).expect("retired key"), secret);
        assert_eq!(opened_by(&rotated, "acc-1", &old).expect("open").1, Some(ring(1, &[]).current_id()));
        let new = seal(&rotated, "acc-1", &secret).expect("seal");
        assert!(new.starts_with(&format!("v2:{}:", rotated.current_id())), "the current key seals: {new}");
        assert!(open(&ring(1, &[]), "acc-1", &new).is_err(), "the retired key does not open the new value");
        // A value naming a key that is not in the ring does not open, even if
        // another key of the ring would have been right.
        let renamed = old.replacen(ring(1, &[]).current_id(), "AAAAAAAA", 1);
        assert!(matches!(open(&rotated, "acc-1", &renamed), Err(VaultError::Open)));
    }

    #[test]
    fn values_of_earlier_versions_still_open() {
        let secret = totp::new_secret();
        assert!(!is_sealed(&secret));
        assert_eq!(open(&ring(1, &[]), "acc-1", &secret).expect("legacy"), secret);
        assert!(open(&ring(1, &[]), "acc-1", "not base32!").is_err());
        // `v1:` (no key id): any key of the ring is tried.
        let v2 = seal(&ring(1, &[]), "acc-1", &secret).expect("seal");
        let v1 = format!("v1:{}", v2.rsplit(':').next().expect("body"));
        assert_eq!(open(&ring(2, &[1]), "acc-1", &v1).expect("v1 with a retired key"), secret);
        assert!(open(&ring(2, &[]), "acc-1", &v1).is_err());
    }

    #[test]
    fn the_keyring_reads_the_retired_keys_beside_the_current_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_keyring(dir.path()).expect("made on first use");
        assert!(first.retired.is_empty());
        crate::keys::keep_secret(dir.path(), &retired_name(first.current_id()), &first.current.bytes).expect("keep");
        crate::keys::replace_secret(dir.path(), KEY_FILE).expect("replace");
        let second = load_keyring(dir.path()).expect("ring");
        assert_ne!(second.current_id(), first.current_id());
        let ids: Vec<&str> = second.retired.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, [first.current_id()]);
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert!(!files.iter().any(|f| f.starts_with('.')), "no staged file left: {files:?}");
    }
}
