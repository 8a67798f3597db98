//! Client registrations, and the short cache of those read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::sql::fetch;
use super::{Store, StoreError, StoreResult, WriteTx, json_list, to_json_list};
use crate::clock::Millis;

/// How long a client registration read from the database is reused. Clients
/// are added by the CLI (another process) and never changed in place; only
/// found clients are kept, so a new client is seen at once, and any change
/// made in the database by hand is seen within this time.
const CLIENT_CACHE_TTL: Duration = Duration::from_secs(1);
/// Bound on the entries kept (there are a few dozen clients at most).
const CLIENT_CACHE_MAX: usize = 1024;

/// Recently read client registrations, per store (one per database).
#[derive(Default)]
pub(super) struct ClientCache {
    entries: Mutex<HashMap<String, (Instant, ClientRow)>>,
}

impl ClientCache {
    fn get(&self, id: &str) -> Option<ClientRow> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(id).filter(|(at, _)| at.elapsed() < CLIENT_CACHE_TTL).map(|(_, row)| row.clone())
    }

    fn put(&self, row: &ClientRow) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CLIENT_CACHE_MAX {
            entries.retain(|_, (at, _)| at.elapsed() < CLIENT_CACHE_TTL);
            if entries.len() >= CLIENT_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(row.id.clone(), (Instant::now(), row.clone()));
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ClientDbRow {
    id: String,
    name: String,
    secret_hash: Option<String>,
    auth_method: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    backchannel_logout_uri: Option<String>,
    id_token_alg: String,
    jwks: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub auth_method: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub id_token_alg: String,
    pub jwks: Option<String>,
}

impl TryFrom<ClientDbRow> for ClientRow {
    type Error = StoreError;
    fn try_from(r: ClientDbRow) -> StoreResult<Self> {
        Ok(ClientRow {
            redirect_uris: json_list(&r.redirect_uris)?,
            post_logout_redirect_uris: json_list(&r.post_logout_redirect_uris)?,
            id: r.id,
            name: r.name,
            secret_hash: r.secret_hash,
            auth_method: r.auth_method,
            backchannel_logout_uri: r.backchannel_logout_uri,
            id_token_alg: r.id_token_alg,
            jwks: r.jwks,
        })
    }
}

impl Store {
    /// A client registration; reused for up to a second once found (unknown
    /// ids always go to the database).
    pub async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        if let Some(row) = self.client_cache.get(id) {
            return Ok(Some(row));
        }
        let row = self.client_from_db(id).await?;
        if let Some(row) = &row {
            self.client_cache.put(row);
        }
        Ok(row)
    }

    async fn client_from_db(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        let row: Option<ClientDbRow> = fetch!(
            fetch_optional(&self.pool),
            "SELECT id, name, secret_hash, auth_method, redirect_uris, post_logout_redirect_uris, \
             backchannel_logout_uri, id_token_alg, jwks FROM clients WHERE id = $1";
            id
        );
        row.map(ClientRow::try_from).transpose()
    }
}

pub async fn insert(tx: &mut WriteTx, c: &ClientRow, now: Millis) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO clients (id, name, secret_hash, auth_method, redirect_uris, post_logout_redirect_uris, \
         backchannel_logout_uri, id_token_alg, jwks, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&c.id)
    .bind(&c.name)
    .bind(&c.secret_hash)
    .bind(&c.auth_method)
    .bind(to_json_list(&c.redirect_uris))
    .bind(to_json_list(&c.post_logout_redirect_uris))
    .bind(&c.backchannel_logout_uri)
    .bind(&c.id_token_alg)
    .bind(&c.jwks)
    .bind(now)
    .execute(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from_insert(e, "client"))?;
    Ok(())
}

impl Store {
    /// Every client registration, by id (read from the database, not the cache).
    pub async fn clients(&self) -> StoreResult<Vec<ClientRow>> {
        let rows: Vec<ClientDbRow> = sqlx::query_as(
            "SELECT id, name, secret_hash, auth_method, redirect_uris, post_logout_redirect_uris, \
             backchannel_logout_uri, id_token_alg, jwks FROM clients ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ClientRow::try_from).collect()
    }
}
