//! A minimal relying party for the quick start: signs a user in against a
//! running coop-idp with the authorization code flow + PKCE, verifies the ID
//! token, then prints every claim of the ID token and of userinfo.
//!
//!     cargo run --release -p relying-party -- CLIENT_ID CLIENT_SECRET [ISSUER]
//!
//! It listens on http://127.0.0.1:9000/callback (register that redirect URI),
//! prints the URL to open in a browser, and waits for the callback.

mod claims;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: relying-party CLIENT_ID CLIENT_SECRET [ISSUER]";
    let client_id = args.next().ok_or(usage)?;
    let client_secret = args.next().ok_or(usage)?;
    let issuer = args.next().unwrap_or_else(|| "http://localhost:8080".to_string());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer)?, &http).await?;
    let userinfo_url = metadata.userinfo_endpoint().ok_or("the discovery document names no userinfo endpoint")?;
    let userinfo_url = userinfo_url.url().clone();
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(client_id), Some(ClientSecret::new(client_secret)))
            .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:9000/callback".to_string())?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("coop".into()))
        .set_pkce_challenge(challenge)
        .url();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
    println!("Open this URL in a browser and sign in:\n\n    {url}\n");

    // One request is enough: read the callback's query string.
    let (mut socket, _) = listener.accept().await?;
    let mut buf = vec![0u8; 8192];
    let n = socket.read(&mut buf).await?;
    let request = String::from_utf8_lossy(&buf[..n]).to_string();
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let callback = url::Url::parse(&format!("http://127.0.0.1:9000{target}"))?;
    let param = |name: &str| callback.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let page = "<!DOCTYPE html><html lang=\"en\"><title>Done</title><p>Signed in: back to the terminal.</p></html>";
    socket
        .write_all(
            format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{page}", page.len())
                .as_bytes(),
        )
        .await?;
    if let Some(error) = param("error") {
        return Err(format!("authorization failed: {error}").into());
    }
    if param("state").as_deref() != Some(state.secret().as_str()) {
        return Err("state mismatch".into());
    }
    let code = param("code").ok_or("no code in the callback")?;
    let tokens =
        client.exchange_code(AuthorizationCode::new(code))?.set_pkce_verifier(verifier).request_async(&http).await?;
    let id_token = tokens.id_token().ok_or("no id_token")?;
    // Signature, issuer, audience, expiry and nonce: checked by the crate;
    // its claim types then keep only the standard claims, so the payload is
    // read again as JSON to print the platform's own (`function`, `roles`…).
    id_token.claims(&client.id_token_verifier(), &nonce)?;
    let id_claims = claims::id_token_payload(&id_token.to_string())?;
    let userinfo: serde_json::Value = http
        .get(userinfo_url)
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    print!("{}", claims::render(&id_claims, &userinfo));
    Ok(())
}
