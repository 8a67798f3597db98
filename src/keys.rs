//! Signing keys: generation, rotation, JWKS and signing.
//!
//! Keys live in `keys_dir` as PKCS#8 PEM files named `<created_ms>-<alg>.pem`
//! (mode 0600). For each algorithm the newest key signs; an older key is
//! retired when a newer one appears and stays published in the JWKS until
//! every token it signed has expired. `kid` is the RFC 7638 thumbprint.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::clock::Millis;
use crate::crypto::{b64url, sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keys folder {0}: {1}")]
    Io(String, std::io::Error),
    #[error("key file {0} is not a usable key")]
    Invalid(String),
    #[error("key generation failed")]
    Generation,
    #[error("no signing key for {0:?}")]
    Missing(Algorithm),
    #[error("signing failed")]
    Signing,
}

/// The algorithms we sign with; RS256 is the default for ID tokens.
pub const SIGNING_ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
/// The `typ` header of the ID tokens we sign, and of the hints we accept.
pub const ID_TOKEN_TYP: &str = "JWT";

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

pub fn parse_alg(name: &str) -> Option<Algorithm> {
    SIGNING_ALGS.into_iter().find(|a| alg_name(*a) == name)
}

fn file_tag(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "rs256",
        Algorithm::ES256 => "es256",
        _ => "eddsa",
    }
}

pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub created_at: Millis,
    /// When a newer key of the same algorithm took over.
    pub retired_at: Option<Millis>,
    private: PrivateKey,
    decoding: DecodingKey,
    jwk: Value,
}

/// A private key parsed once at load: parsing at every signature (what
/// `jsonwebtoken::encode` does) costs more than the RS256 signature itself.
enum PrivateKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl PrivateKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            PrivateKey::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| KeyError::Signing)?;
                Ok(signature)
            }
            PrivateKey::Ec(pair) => Ok(pair.sign(&rng, message).map_err(|_| KeyError::Signing)?.as_ref().to_vec()),
            PrivateKey::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

pub struct KeySet {
    keys: Vec<SigningKey>,
    /// A retired key stays published this long.
    retention_ms: Millis,
    files: Vec<String>,
}

impl KeySet {
    /// The key that signs new tokens for `alg`.
    pub fn signer(&self, alg: Algorithm) -> Result<&SigningKey, KeyError> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.retired_at.is_none())
            .max_by_key(|k| k.created_at)
            .ok_or(KeyError::Missing(alg))
    }

    pub fn published(&self, now: Millis) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter().filter(move |k| k.retired_at.is_none_or(|r| r + self.retention_ms > now))
    }

    pub fn jwks(&self, now: Millis) -> Value {
        json!({ "keys": self.published(now).map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    pub fn sign<T: Serialize>(&self, alg: Algorithm, typ: &str, claims: &T) -> Result<String, KeyError> {
        let key = self.signer(alg)?;
        let mut header = Header::new(alg);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_string());
        // JWS compact serialisation (RFC 7515 §7.1) over the parsed key;
        // `verify_own` checks the result with jsonwebtoken.
        let header = serde_json::to_vec(&header).map_err(|_| KeyError::Signing)?;
        let claims = serde_json::to_vec(claims).map_err(|_| KeyError::Signing)?;
        let mut jwt = format!("{}.{}", b64url(&header), b64url(&claims));
        let signature = key.private.sign(jwt.as_bytes())?;
        jwt.push('.');
        jwt.push_str(&b64url(&signature));
        Ok(jwt)
    }

    /// Verifies an ID token we signed (an `id_token_hint`): signature by a
    /// published key, our issuer, and the ID tokens' `typ`, so that the
    /// other documents the same keys sign (logout tokens, log checkpoints,
    /// attestations) are not taken for one; expiry is not checked (hints
    /// may be old).
    pub fn verify_own<T: DeserializeOwned>(&self, token: &str, issuer: &str, now: Millis) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(ID_TOKEN_TYP) {
            return None;
        }
        let kid = header.kid?;
        let key = self.published(now).find(|k| k.kid == kid && k.alg == header.alg)?;
        let mut validation = Validation::new(key.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[issuer]);
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation).ok().map(|d| d.claims)
    }
}

/// The live key set, shared by every request; reloaded when the folder changes
/// (e.g. after `coop-idp keys rotate` run from another process).
pub struct KeyManager {
    dir: PathBuf,
    retention_ms: Millis,
    current: RwLock<Arc<KeySet>>,
}

impl KeyManager {
    /// Loads the folder, generating the missing keys on first start.
    pub fn open(dir: &Path, retention_secs: i64, now: Millis) -> Result<Self, KeyError> {
        ensure_keys(dir, now)?;
        let set = load(dir, retention_secs * 1000)?;
        Ok(KeyManager {
            dir: dir.to_path_buf(),
            retention_ms: retention_secs * 1000,
            current: RwLock::new(Arc::new(set)),
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Verifies a compact JWS we signed (checkpoint, attestation) with any
    /// key we ever signed with: the keys in the folder, published or not, and
    /// the public keys archived under `retired/` when `keys rotate` deleted
    /// their private part. Returns the payload and the `kid`; `None` when the
    /// signature does not verify or the key is unknown.
    pub fn verify_signed(&self, token: &str) -> Option<(Value, String)> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        let set = self.current();
        let (alg, decoding) = match set.keys.iter().find(|k| k.kid == kid) {
            Some(k) => (k.alg, k.decoding.clone()),
            None => {
                let text = std::fs::read_to_string(self.dir.join(RETIRED_DIR).join(format!("{kid}.json"))).ok()?;
                let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&text).ok()?;
                let alg = serde_json::from_str::<Value>(&text).ok()?.get("alg")?.as_str().and_then(parse_alg)?;
                (alg, DecodingKey::from_jwk(&jwk).ok()?)
            }
        };
        if alg != header.alg {
            return None;
        }
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &decoding, &validation).ok().map(|d| (d.claims, kid))
    }

    /// Reloads when the file list changed; returns whether it did.
    pub fn reload_if_changed(&self) -> Result<bool, KeyError> {
        let files = list_key_files(&self.dir)?;
        if files == self.current().files {
            return Ok(false);
        }
        let set = load(&self.dir, self.retention_ms)?;
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        Ok(true)
    }
}

/// Generates a key for each algorithm that has none.
pub fn ensure_keys(dir: &Path, now: Millis) -> Result<(), KeyError> {
    create_private_dir(dir).map_err(|e| KeyError::Io(dir.display().to_string(), e))?;
    let files = list_key_files(dir)?;
    for alg in SIGNING_ALGS {
        let suffix = format!("-{}.pem", file_tag(alg));
        if !files.iter().any(|f| f.ends_with(&suffix)) {
            write_new_key(dir, alg, now)?;
        }
    }
    Ok(())
}

/// Adds a new key for every algorithm and deletes keys no longer published.
/// Returns the new kids.
pub fn rotate(dir: &Path, retention_secs: i64, now: Millis) -> Result<Vec<String>, KeyError> {
    ensure_keys(dir, now)?;
    let before = load(dir, retention_secs * 1000)?;
    // A key's retirement time is the creation time of its successor, so a new
    // key created at `now` must sort after every existing one.
    let stamp = before.keys.iter().map(|k| k.created_at + 1).max().unwrap_or(now).max(now);
    let mut kids = Vec::new();
    for alg in SIGNING_ALGS {
        let path = write_new_key(dir, alg, stamp)?;
        let set = load_file(&path, alg, stamp)?;
        kids.push(set.kid);
    }
    for key in before.keys.iter().filter(|k| k.retired_at.is_some_and(|r| r + retention_secs * 1000 <= now)) {
        // The public part stays: signed checkpoints and attestations must
        // remain checkable after the private key is gone.
        let archive = dir.join(RETIRED_DIR);
        create_private_dir(&archive).map_err(|e| KeyError::Io(archive.display().to_string(), e))?;
        let public = archive.join(format!("{}.json", key.kid));
        if !public.exists() {
            write_private(&public, key.jwk.to_string().as_bytes())
                .map_err(|e| KeyError::Io(public.display().to_string(), e))?;
        }
        let path = dir.join(format!("{}-{}.pem", key.created_at, file_tag(key.alg)));
        let _ = std::fs::remove_file(path);
    }
    Ok(kids)
}

/// Where `keys rotate` keeps the public JWK of each deleted key.
const RETIRED_DIR: &str = "retired";

/// A 256-bit secret kept in the keys folder (created on first use, mode
/// 0600), e.g. the key of the hashes that let an attestation find a person's
/// destruction records without keeping the address.
pub fn load_or_create_secret(dir: &Path, name: &str) -> Result<Vec<u8>, KeyError> {
    let path = dir.join(name);
    if path.exists() {
        return read_secret(&path);
    }
    create_private_dir(dir).map_err(|e| KeyError::Io(dir.display().to_string(), e))?;
    match write_private(&path, crate::crypto::random_b64(32).as_bytes()) {
        Ok(()) => read_secret(&path),
        // Another instance created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(&path),
        Err(e) => Err(KeyError::Io(path.display().to_string(), e)),
    }
}

/// A 256-bit secret key file (base64url text).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Io(path.display().to_string(), e))?;
    crate::crypto::b64url_decode(text.trim())
        .filter(|k| k.len() == 32)
        .ok_or_else(|| KeyError::Invalid(path.display().to_string()))
}

/// Puts a fresh 256-bit secret in `dir/name` in one step (written beside
/// it, then renamed over it), so that a reader sees the old key or the new
/// one, never a partial file. Returns the new key.
pub fn replace_secret(dir: &Path, name: &str) -> Result<Vec<u8>, KeyError> {
    let io = |path: &Path, e| KeyError::Io(path.display().to_string(), e);
    let path = dir.join(name);
    let staged = dir.join(format!(".{name}.{}", crate::crypto::random_b64(6)));
    write_private(&staged, crate::crypto::random_b64(32).as_bytes()).map_err(|e| io(&staged, e))?;
    std::fs::rename(&staged, &path).map_err(|e| io(&path, e))?;
    read_secret(&path)
}

/// Removes a secret key file.
pub fn remove_secret(dir: &Path, name: &str) -> Result<(), KeyError> {
    let path = dir.join(name);
    std::fs::remove_file(&path).map_err(|e| KeyError::Io(path.display().to_string(), e))
}

/// Writes a copy of a secret under another name (mode 0600); an existing
/// file of that name is left as it is.
pub fn keep_secret(dir: &Path, name: &str, key: &[u8]) -> Result<(), KeyError> {
    let path = dir.join(name);
    match write_private(&path, crate::crypto::b64url(key).as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(KeyError::Io(path.display().to_string(), e)),
    }
}

fn list_key_files(dir: &Path) -> Result<Vec<String>, KeyError> {
    list_files(dir, |name| name.ends_with(".pem"))
}

/// The names of the files of `dir` that `keep` accepts, sorted.
pub fn list_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, KeyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| KeyError::Io(dir.display().to_string(), e))?;
    let mut files: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| keep(n)).collect();
    files.sort();
    Ok(files)
}

fn load(dir: &Path, retention_ms: Millis) -> Result<KeySet, KeyError> {
    let files = list_key_files(dir)?;
    let mut keys = Vec::new();
    for name in &files {
        let Some((stamp, tag)) = name.trim_end_matches(".pem").split_once('-') else { continue };
        let Ok(created_at) = stamp.parse::<Millis>() else { continue };
        let Some(alg) = SIGNING_ALGS.into_iter().find(|a| file_tag(*a) == tag) else { continue };
        keys.push(load_file(&dir.join(name), alg, created_at)?);
    }
    for alg in SIGNING_ALGS {
        let mut of_alg: Vec<usize> = (0..keys.len()).filter(|i| keys[*i].alg == alg).collect();
        of_alg.sort_by_key(|i| keys[*i].created_at);
        for pair in of_alg.windows(2) {
            keys[pair[0]].retired_at = Some(keys[pair[1]].created_at);
        }
    }
    Ok(KeySet { keys, retention_ms, files })
}

fn load_file(path: &Path, alg: Algorithm, created_at: Millis) -> Result<SigningKey, KeyError> {
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| KeyError::Io(name.clone(), e))?;
    let der = pem::parse(&text).map_err(|_| KeyError::Invalid(name.clone()))?.into_contents();
    let bad = || KeyError::Invalid(name.clone());
    let (private, decoding, mut jwk) = match alg {
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|_| bad())?;
            let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            let (n, e) = (b64url(&public.n), b64url(&public.e));
            (
                PrivateKey::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|_| bad())?),
                DecodingKey::from_rsa_components(&n, &e).map_err(|_| bad())?,
                json!({"kty": "RSA", "e": e, "n": n}),
            )
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|_| bad())?;
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(bad());
            }
            let (x, y) = (b64url(&point[1..33]), b64url(&point[33..]));
            (
                PrivateKey::Ec(pair),
                DecodingKey::from_ec_components(&x, &y).map_err(|_| bad())?,
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            )
        }
        _ => {
            let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| bad())?;
            let x = b64url(pair.public_key().as_ref());
            (
                PrivateKey::Ed(pair),
                DecodingKey::from_ed_components(&x).map_err(|_| bad())?,
                json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            )
        }
    };
    let kid = thumbprint(&jwk);
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), json!(kid));
        obj.insert("alg".into(), json!(alg_name(alg)));
        obj.insert("use".into(), json!("sig"));
    }
    Ok(SigningKey { kid, alg, created_at, retired_at: None, private, decoding, jwk })
}

/// RFC 7638: SHA-256 over the required members in lexicographic order.
/// serde_json's map keeps keys sorted, which is exactly that order.
fn thumbprint(jwk: &Value) -> String {
    b64url(&sha256(jwk.to_string().as_bytes()))
}

fn write_new_key(dir: &Path, alg: Algorithm, created_at: Millis) -> Result<PathBuf, KeyError> {
    let der: Vec<u8> = match alg {
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Generation)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().map_err(|_| KeyError::Generation)?;
            der.as_ref().to_vec()
        }
        Algorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|p| p.to_pkcs8v1())
            .map_err(|_| KeyError::Generation)?
            .as_ref()
            .to_vec(),
        _ => {
            Ed25519KeyPair::generate().and_then(|p| p.to_pkcs8v1()).map_err(|_| KeyError::Generation)?.as_ref().to_vec()
        }
    };
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    let path = dir.join(format!("{created_at}-{}.pem", file_tag(alg)));
    write_private(&path, text.as_bytes()).map_err(|e| KeyError::Io(path.display().to_string(), e))?;
    Ok(path)
}

/// Creates a folder (mode 0700 when it is new): it holds keys or the
/// database, readable by the service account only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes a file readable by its owner only, created with that mode so it is
/// never briefly world-readable.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Claims {
        iss: String,
        sub: String,
    }

    #[test]
    fn first_start_generates_private_files_and_distinct_kids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyManager::open(dir.path(), 600, 1_000).expect("keys");
        let files = list_key_files(dir.path()).expect("files");
        assert_eq!(files.len(), 3);
        for f in &files {
            let mode = std::fs::metadata(dir.path().join(f)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let jwks = keys.current().jwks(1_000);
        let kids: std::collections::HashSet<_> =
            jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].to_string()).collect();
        assert_eq!(kids.len(), 3);
        for k in jwks["keys"].as_array().expect("keys") {
            assert!(k.get("d").is_none() && k.get("p").is_none(), "private part published: {k}");
        }
    }

    #[test]
    fn signed_tokens_verify_and_foreign_ones_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let keys = KeyManager::open(dir.path(), 600, 1_000).expect("keys").current();
        let foreign = KeyManager::open(other.path(), 600, 1_000).expect("keys").current();
        let claims = Claims { iss: "https://idp".into(), sub: "s".into() };
        for alg in SIGNING_ALGS {
            let jwt = keys.sign(alg, "JWT", &claims).expect("sign");
            assert_eq!(
                keys.verify_own::<Claims>(&jwt, "https://idp", 1_000),
                Some(Claims { iss: "https://idp".into(), sub: "s".into() })
            );
            assert_eq!(keys.verify_own::<Claims>(&jwt, "https://other", 1_000), None);
            let forged = foreign.sign(alg, "JWT", &claims).expect("sign");
            assert_eq!(keys.verify_own::<Claims>(&forged, "https://idp", 1_000), None);
            let logout_token = keys.sign(alg, "logout+jwt", &claims).expect("sign");
            assert_eq!(keys.verify_own::<Claims>(&logout_token, "https://idp", 1_000), None, "not an ID token");
        }
    }

    #[test]
    fn rotation_keeps_old_key_published_until_retention_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manager = KeyManager::open(dir.path(), 600, 1_000).expect("keys");
        let old_kid = manager.current().signer(Algorithm::RS256).expect("rs").kid.clone();
        let new_kids = rotate(dir.path(), 600, 2_000).expect("rotate");
        assert!(manager.reload_if_changed().expect("reload"));
        let set = manager.current();
        let signer = set.signer(Algorithm::RS256).expect("rs");
        assert_ne!(signer.kid, old_kid);
        assert!(new_kids.contains(&signer.kid));
        let published = |now| set.published(now).map(|k| k.kid.clone()).collect::<Vec<_>>();
        assert!(published(2_500).contains(&old_kid));
        assert!(!published(2_001 + 600_000).contains(&old_kid));
        // A second rotation after the retention deletes the expired files,
        // but what the old key signed stays checkable.
        let old_jws = set.keys.iter().find(|k| k.kid == old_kid).map(|k| {
            let mut header = Header::new(k.alg);
            header.kid = Some(k.kid.clone());
            let signing = format!("{}.{}", b64url(&serde_json::to_vec(&header).expect("h")), b64url(b"{\"seq\":1}"));
            let sig = k.private.sign(signing.as_bytes()).expect("sign");
            format!("{signing}.{}", b64url(&sig))
        });
        let old_jws = old_jws.expect("old key");
        rotate(dir.path(), 600, 700_000).expect("rotate");
        assert_eq!(list_key_files(dir.path()).expect("files").len(), 6);
        assert!(manager.reload_if_changed().expect("reload"));
        assert!(manager.current().keys.iter().all(|k| k.kid != old_kid), "private key deleted");
        let (payload, kid) = manager.verify_signed(&old_jws).expect("archived key verifies");
        assert_eq!((payload["seq"].as_i64(), kid), (Some(1), old_kid));
        let mut forged = old_jws.clone();
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert!(manager.verify_signed(&forged).is_none());
    }
}
