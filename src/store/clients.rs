use super::{Store, StoreError, StoreResult, WriteTx, json_list, to_json_list};
use crate::clock::Millis;

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
    pub async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        let row: Option<ClientDbRow> = sqlx::query_as(
            "SELECT id, name, secret_hash, auth_method, redirect_uris, post_logout_redirect_uris, \
             backchannel_logout_uri, id_token_alg, jwks FROM clients WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(ClientRow::try_from).transpose()
    }
}

pub async fn insert_client(tx: &mut WriteTx, c: &ClientRow, now: Millis) -> StoreResult<()> {
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
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| StoreError::from_insert(e, "client"))?;
    Ok(())
}
