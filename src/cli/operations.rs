//! Running the service: `client`, `keys`, `mail`, `export`, `import`.

use std::path::Path;

use serde_json::json;

use super::args::{ClientCommand, KeysCommand, MailCommand};
use super::{CliError, open, print_line, print_pretty, table};
use crate::clock::Clock;
use crate::config::Config;
use crate::oidc::clients::{self, AuthMethod, Registration};

pub(super) async fn client(command: ClientCommand, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    let a = match command {
        ClientCommand::Add(a) => a,
        ClientCommand::List { format } => {
            let list = crate::oidc::client_views::list(&app).await?;
            if format == "json" {
                print_pretty(&list);
            } else {
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![c.client_id.clone(), c.auth_method.to_string(), c.name.clone(), c.redirect_uris.join(" ")]
                    })
                    .collect();
                print!("{}", table(&["client_id", "auth_method", "name", "redirect_uris"], rows));
            }
            return Ok(());
        }
        ClientCommand::Show { id } => {
            print_pretty(&crate::oidc::client_views::show(&app, &id).await?);
            return Ok(());
        }
    };
    let jwks = match &a.jwks {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| CliError::file(format!("--jwks {}", path.display()), e))?)
        }
        None => None,
    };
    // clap accepts only the values these parse.
    let auth_method = AuthMethod::parse(&a.auth_method).ok_or_else(|| CliError::BadInput("--auth-method".into()))?;
    let id_token_alg =
        crate::keys::parse_alg(&a.id_token_alg).ok_or_else(|| CliError::BadInput("--id-token-alg".into()))?;
    let registration = Registration {
        id: a.id.clone(),
        name: a.name,
        redirect_uris: a.redirect_uris,
        post_logout_redirect_uris: a.post_logout_redirect_uris,
        backchannel_logout_uri: a.backchannel_logout_uri,
        auth_method,
        id_token_alg,
        jwks,
    };
    let secret = clients::register(&app, registration).await?;
    print_line(json!({"client_id": a.id, "client_secret": secret}));
    Ok(())
}

pub(super) async fn keys(command: KeysCommand, config: Config) -> Result<(), CliError> {
    match command {
        // Signing keys live in files: no database needed.
        KeysCommand::Rotate => {
            let now = Clock::system().now_ms();
            let kids = crate::keys::rotate(&config.keys_dir, config.max_signed_token_ttl_secs(), now)?;
            print_line(json!({"new_kids": kids}));
        }
        KeysCommand::RotateTotp => {
            let app = open(config).await?;
            let r = crate::auth::vault::rotate(&app).await?;
            print_line(json!({
                "totp_key_id": r.key_id,
                "resealed": r.resealed,
                "unreadable": r.unreadable,
                "retired_kept": r.kept,
                "retired_removed": r.removed,
            }));
        }
    }
    Ok(())
}

pub(super) async fn mail(command: MailCommand, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    match command {
        MailCommand::Status => {
            let (waiting, failed) = app.store.mail_counts().await?;
            print_line(json!({"waiting": waiting, "failed": failed}));
        }
        MailCommand::Retry => {
            let mut tx = app.store.begin_write().await?;
            let n = crate::store::mail::retry_failed(&mut tx, app.clock.now_ms()).await?;
            tx.commit().await?;
            print_line(json!({"requeued": n}));
        }
        // The link alone on its line, for `$(coop-idp mail links --to …)`.
        MailCommand::Links { to } => match crate::auth::mailed::latest_live_link(&app, &to).await? {
            Some(found) => println!("{}", found.link),
            None => {
                let folder = crate::auth::mailed::outbox_dir(&app.config.data_dir);
                let folder = std::path::absolute(&folder).unwrap_or(folder);
                return Err(CliError::NotFound(format!(
                    "aucun lien valide envoyé à « {to} » (outbox {0}) / no live link sent to `{to}` (activation \
                     or reset: not used, not expired, not superseded; outbox {0})",
                    folder.display()
                )));
            }
        },
    }
    Ok(())
}

/// Created mode 0600 and never over an existing file: it holds password hashes.
pub(super) async fn export(file: &Path, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let f = options.open(file).map_err(|e| CliError::file(file.display(), e))?;
    let mut out = std::io::BufWriter::new(f);
    let tables = app.store.export(&mut out).await?;
    print_line(json!({"file": file.display().to_string(), "tables": tables}));
    Ok(())
}

pub(super) async fn import(file: &Path, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    let f = std::fs::File::open(file).map_err(|e| CliError::file(file.display(), e))?;
    let tables = app.store.import(std::io::BufReader::new(f)).await?;
    print_line(json!({"imported": tables}));
    Ok(())
}
