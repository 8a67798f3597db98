//! `admin …`: administrative roles and the Caf staff who hold them.

use super::args::{AdminCommand, StaffArgs};
use super::{CliError, open, print_pretty};
use crate::config::Config;

pub(super) async fn admin(command: AdminCommand, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    let output = match command {
        AdminCommand::Grant { email, role } => {
            let changed = crate::admin::grant(&app, &email, &role, "cli").await?;
            serde_json::json!({"email": email.trim(), "role": role.trim(), "granted": changed})
        }
        AdminCommand::Revoke { email, role } => {
            let changed = crate::admin::revoke(&app, &email, &role, "cli").await?;
            serde_json::json!({"email": email.trim(), "role": role.trim(), "revoked": changed})
        }
        AdminCommand::ResetSecondFactor { email } => {
            let removed = crate::admin::reset_second_factor(&app, &email, "cli").await?;
            serde_json::json!({"email": email.trim(), "second_factor_removed": removed})
        }
        AdminCommand::List => serde_json::to_value(crate::admin::list(&app).await?).unwrap_or_default(),
        AdminCommand::Bootstrap(a) => {
            let done = crate::admin::bootstrap(&app, staff(&a)).await?;
            let _ = crate::mail::send_due(&app.store, &app.clock, &app.mail, &app.config).await;
            serde_json::to_value(done).unwrap_or_default()
        }
        AdminCommand::Invite(a) => {
            let done = crate::admin::invite_staff(&app, staff(&a), "cli").await?;
            let _ = crate::mail::send_due(&app.store, &app.clock, &app.mail, &app.config).await;
            serde_json::to_value(done).unwrap_or_default()
        }
    };
    print_pretty(&output);
    Ok(())
}

fn staff(a: &StaffArgs) -> crate::admin::StaffMember<'_> {
    crate::admin::StaffMember {
        email: &a.email,
        given_name: &a.given_name,
        family_name: &a.family_name,
        function: &a.function,
        roles: &a.roles,
    }
}
