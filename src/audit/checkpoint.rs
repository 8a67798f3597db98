//! Signed checkpoints of the connection log (issue 5, part 2). The chain
//! alone cannot show that its tail was cut off, nor that it was rewritten
//! from some record on with recomputed hashes: periodically, and at every
//! purge, the head (seq, hash, time) is signed with the server's signing key
//! as a compact JWS (`kid` in its header) and stored. Anyone holding the
//! JWKS, or `logs verify` with the keys folder, can check it.

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::AppResult;
use crate::keys::KeyManager;
use crate::store::{self, Store, WriteTx, retention::CheckpointRow};

/// The `typ` of a checkpoint JWS.
pub const TYP: &str = "log-checkpoint+jwt";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointClaims {
    pub iss: String,
    /// The last record's sequence number and hash, and its time (ms).
    pub seq: i64,
    pub hash: String,
    pub time: i64,
    /// When it was signed (seconds).
    pub iat: i64,
}

/// Signs the current head inside the caller's transaction, unless it is
/// already checkpointed; returns the seq signed. Call it last: it takes the
/// log's lock (see `store::events::chain_head`). `issuer`: the `iss` signed.
pub async fn checkpoint_in(tx: &mut WriteTx, keys: &KeyManager, issuer: &str, clock: &Clock) -> AppResult<Option<i64>> {
    store::events::chain_head(tx).await?;
    let Some((seq, hash, time)) = store::events::head_in(tx).await? else { return Ok(None) };
    if store::retention::last_checkpoint_seq_in(tx).await? == Some(seq) {
        return Ok(None);
    }
    let keys = keys.current();
    let kid = keys.signer(Algorithm::RS256)?.kid.clone();
    let claims = CheckpointClaims { iss: issuer.to_string(), seq, hash: hash.clone(), time, iat: clock.now_secs() };
    let jws = keys.sign(Algorithm::RS256, TYP, &claims)?;
    let stored = store::retention::insert_checkpoint(tx, &CheckpointRow { seq, hash, time_ms: time, kid, jws }).await?;
    Ok(stored.then_some(seq))
}

/// Signs the head in a transaction of its own.
pub async fn checkpoint(store: &Store, keys: &KeyManager, issuer: &str, clock: &Clock) -> AppResult<Option<i64>> {
    let mut tx = store.begin_write().await?;
    let seq = checkpoint_in(&mut tx, keys, issuer, clock).await?;
    tx.commit().await?;
    Ok(seq)
}

/// What is wrong with a stored checkpoint by itself (before comparing it with
/// the chain): its signature, or a row that does not say what was signed.
pub fn check_row(keys: &KeyManager, row: &CheckpointRow) -> Result<(), String> {
    let Some((payload, kid)) = keys.verify_signed(&row.jws) else {
        return Err(format!("checkpoint at record {}: signature invalid or key unknown", row.seq));
    };
    let claims: CheckpointClaims = serde_json::from_value::<CheckpointClaims>(payload)
        .map_err(|_| format!("checkpoint at record {}: not a checkpoint", row.seq))?;
    // The issuer is not compared: it may have changed since; the key is what counts.
    if claims.seq != row.seq || claims.hash != row.hash || claims.time != row.time_ms || kid != row.kid {
        return Err(format!("checkpoint at record {}: stored values differ from the signed ones", row.seq));
    }
    Ok(())
}
