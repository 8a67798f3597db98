//! `account …`: opening one access by hand, and the daily work on accounts
//! (list, show, close, resend an activation link).

use serde_json::json;

use super::args::{AccountCommand, AccountListArgs};
use super::{CliError, open, print_line, print_pretty, table};
use crate::accounts::directory::{self, AccountView, ListQuery};
use crate::config::Config;

pub(super) async fn account(command: AccountCommand, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    match command {
        AccountCommand::Invite { partner, email, given_name, family_name, function } => {
            let invitation = crate::provisioning::invite::Invitation {
                partner_id: &partner,
                email: &email,
                given_name: &given_name,
                family_name: &family_name,
                function: &function,
            };
            let outcome = crate::provisioning::invite::invite(&app, invitation).await?;
            // Deliver now rather than wait for the server's worker.
            let delivered = crate::mail::send_due(&app.store, &app.clock, &app.mail, &app.config).await?;
            let (status, id) = match outcome {
                crate::provisioning::invite::Invited::Opened(id) => ("opened", id),
                crate::provisioning::invite::Invited::Reinvited(id) => ("reinvited", id),
            };
            print_line(json!({"status": status, "account_id": id, "emails_delivered": delivered}));
        }
        AccountCommand::List(args) => {
            let AccountListArgs { partner, state, pending_activation, format, limit, offset } = args;
            let query = ListQuery {
                partner_id: partner.as_deref(),
                state: state.as_deref(),
                pending_activation,
                limit,
                offset,
            };
            let accounts = directory::list(&app, &query).await?;
            if format == "json" {
                print_pretty(&accounts);
            } else {
                print!("{}", accounts_table(&accounts));
            }
        }
        AccountCommand::Show { email } => print_pretty(&directory::show(&app, &email).await?),
        AccountCommand::Close { email, reason } => {
            let closed = crate::provisioning::closure::close_by_hand(&app, &email, &reason, "cli").await?;
            print_line(json!({
                "email": closed.email, "account_id": closed.account_id, "partner_id": closed.partner_id,
                "closed": true, "closure_date": closed.closure_date,
            }));
        }
        AccountCommand::ResendActivation { email } => {
            let account = directory::show(&app, &email).await?.account;
            let source = crate::audit::Source::default();
            crate::admin::actions::resend_activation(&app, &account.account_id, "cli", &source).await?;
            let delivered = crate::mail::send_due(&app.store, &app.clock, &app.mail, &app.config).await?;
            print_line(json!({"email": account.person.email, "activation_sent": true, "emails_delivered": delivered}));
        }
    }
    Ok(())
}

fn accounts_table(accounts: &[AccountView]) -> String {
    let rows = accounts
        .iter()
        .map(|a| {
            let activation = match &a.activation {
                Some(x) if x.live => format!("live until {}", x.expires_at.as_deref().unwrap_or("-")),
                Some(x) if x.sent_at.is_some() => "expired: resend".to_string(),
                Some(_) => "none: resend".to_string(),
                None => "-".to_string(),
            };
            vec![
                a.person.email.clone(),
                a.state.clone(),
                a.person.partner_id.clone().unwrap_or_else(|| "-".into()),
                format!("{} {}", a.person.given_name, a.person.family_name).trim().to_string(),
                a.person.function.clone(),
                a.last_signin.clone().unwrap_or_else(|| "-".into()),
                activation,
            ]
        })
        .collect();
    table(&["email", "state", "partner", "name", "function", "last_signin", "activation"], rows)
}
