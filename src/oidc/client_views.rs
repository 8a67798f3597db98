//! The relying parties as the command line lists and shows them (`client
//! list`, `client show`): their registration, never their secret nor its
//! hash (a secret is shown once, by `client add`).

use serde::Serialize;

use super::clients::Client;
use crate::app::App;
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub auth_method: &'static str,
    pub id_token_alg: &'static str,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// The key ids of its public JWK set (`private_key_jwt`).
    pub jwks_kids: Option<Vec<Option<String>>>,
}

impl ClientView {
    fn of(c: Client) -> Self {
        ClientView {
            auth_method: c.auth_method.as_str(),
            id_token_alg: crate::keys::alg_name(c.id_token_alg),
            jwks_kids: c.jwks.map(|set| set.keys.into_iter().map(|k| k.common.key_id).collect()),
            client_id: c.id,
            name: c.name,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            backchannel_logout_uri: c.backchannel_logout_uri,
        }
    }
}

/// Every relying party, by id.
pub async fn list(app: &App) -> AppResult<Vec<ClientView>> {
    let mut out = Vec::new();
    for row in app.store.clients().await? {
        out.push(ClientView::of(Client::from_row(row)?));
    }
    Ok(out)
}

/// One relying party; an unknown id is refused.
pub async fn show(app: &App, id: &str) -> AppResult<ClientView> {
    let client = super::clients::find(app, id)
        .await?
        .ok_or_else(|| AppError::Invalid(format!("client inconnu « {id} » / unknown client `{id}`")))?;
    Ok(ClientView::of(client))
}
