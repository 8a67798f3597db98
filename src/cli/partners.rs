//! Partners and what they sign and send: `partner`, `convention`,
//! `annex1`, `annex2`, `annex3`, `review`.

use std::path::Path;

use serde_json::json;

use super::args::{Annex1Command, Annex2Command, Annex3Command, ConventionCommand, PartnerCommand, ReviewCommand};
use super::{CliError, open, print_line, print_pretty};
use crate::app::App;
use crate::config::Config;
use crate::provisioning::annex1::apply::{Import, import_holding_mail};

pub(super) async fn partner(command: PartnerCommand, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    match command {
        PartnerCommand::Add { id, name, convention_signed, email_domains } => {
            let partner = crate::provisioning::NewPartner {
                id: &id,
                name: &name,
                convention_signed: convention_signed.as_deref(),
                email_domains: &email_domains,
            };
            crate::provisioning::add_partner(&app, partner).await?;
            print_line(json!({"partner_id": id, "convention_signed": convention_signed}));
        }
        PartnerCommand::List => {
            let mut out = Vec::new();
            for p in app.store.partners().await? {
                out.push(summary(&app, &p).await?);
            }
            print_pretty(&out);
        }
        PartnerCommand::Update { id, name, siren, email_domains } => {
            let domains = (!email_domains.is_empty()).then_some(email_domains.as_slice());
            crate::provisioning::update_partner(&app, &id, name.as_deref(), siren.as_deref(), domains).await?;
            print_line(json!({"partner_id": id, "updated": true}));
        }
        PartnerCommand::Show { id } => {
            let p =
                app.store.partner(&id).await?.ok_or_else(|| CliError::NotFound(format!("unknown partner `{id}`")))?;
            print_pretty(&summary(&app, &p).await?);
        }
    }
    Ok(())
}

async fn summary(app: &App, p: &crate::store::partners::PartnerRow) -> Result<serde_json::Value, CliError> {
    Ok(crate::admin::actions::partner_summary(app, p).await?)
}

pub(super) async fn convention(command: ConventionCommand, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    let output = match command {
        ConventionCommand::Sign { partner, date } => {
            crate::provisioning::sign_convention(&app, &partner, &date).await?;
            json!({"partner_id": partner, "signed_on": date})
        }
        ConventionCommand::Terminate { partner, date, reason } => {
            let closed = crate::provisioning::terminate_convention(&app, &partner, &date, &reason).await?;
            json!({"partner_id": partner, "terminated_on": date, "accesses_closed": closed})
        }
        ConventionCommand::NotRenew { partner, date } => {
            let ends = crate::provisioning::set_non_renewal(&app, &partner, Some(&date)).await?;
            json!({"partner_id": partner, "notice_on": date, "ends_on": ends})
        }
        ConventionCommand::Renew { partner } => {
            crate::provisioning::set_non_renewal(&app, &partner, None).await?;
            json!({"partner_id": partner, "renewal": "tacit"})
        }
    };
    print_line(output);
    Ok(())
}

/// Exit status 0 only when applied, or when a dry run would apply cleanly;
/// an annex with errors is input refused (2).
pub(super) async fn annex1(command: Annex1Command, config: Config) -> Result<(), CliError> {
    let Annex1Command::Import { partner, file, transmitted, apply, json } = command;
    let app = open(config).await?;
    let bytes = read_bounded(&file, crate::provisioning::annex1::limits::MAX_FILE_BYTES)?;
    let transmitted = match transmitted {
        Some(t) => Some(
            crate::dates::parse_day(&t)
                .map_err(|e| CliError::BadInput(format!("date de transmission / transmission date : {e}")))?,
        ),
        None => None,
    };
    let file_name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let request =
        Import { partner_id: &partner, file_name: &file_name, bytes: &bytes, transmitted, apply, operator: "cli" };
    // The activation emails are queued held for this command, which
    // delivers them now, server running or not. They are in the outbox
    // already: what fails now, the server retries; should the command stop
    // first, the server sends the rest once their hold ends.
    let (outcome, held) = import_holding_mail(&app, request, crate::mail::hold_ms(&app.mail)).await?;
    let mut delivered = 0;
    if outcome.applied {
        match crate::mail::deliver_held(&app.store, &app.clock, &app.mail, &app.config, held).await {
            Ok(n) => delivered = n,
            Err(e) => tracing::warn!(error = %e, "delivering the activation emails; the server will retry"),
        }
    }
    if json {
        print_pretty(&outcome.plan);
    } else {
        print!("{}", crate::provisioning::annex1::plan::render_text(&outcome.plan, outcome.applied));
        let invited = outcome.plan.open.len() + outcome.plan.reopen.len();
        if outcome.applied && invited > 0 {
            println!(
                "\nCourriels d'activation : {invited} ; courriels envoyés maintenant : {delivered} (ce qui reste part avec le serveur). / Activation emails: {invited}; emails sent now: {delivered} (the server sends what is left)."
            );
        }
    }
    // The plan is French (the annex's language): what follows it too.
    let clean = outcome.plan.errors.is_empty();
    if outcome.applied || (!apply && clean) {
        if !outcome.applied && !json {
            println!("\nRien n'a changé. Pour appliquer ce plan, relancez la commande avec --apply.");
        }
        Ok(())
    } else if apply {
        Err(CliError::BadInput("annexe non appliquée : elle contient des erreurs (voir « Erreurs »)".into()))
    } else {
        Err(CliError::BadInput(
            "l'annexe contient des erreurs (voir « Erreurs ») : elle ne peut pas être appliquée".into(),
        ))
    }
}

/// Reads a file the user names, refusing it past `max` bytes before
/// reading more than that.
fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| CliError::file(path.display(), e))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| CliError::file(path.display(), e))?;
    if bytes.len() > max {
        return Err(CliError::BadInput(format!(
            "{} : le fichier dépasse {} Mo / the file is over {} MB",
            path.display(),
            max >> 20,
            max >> 20
        )));
    }
    Ok(bytes)
}

pub(super) async fn annex2(command: Annex2Command, config: Config) -> Result<(), CliError> {
    let Annex2Command::Set { partner, contacts, transmitted } = command;
    let app = open(config).await?;
    let annex =
        crate::provisioning::Annex2 { partner_id: &partner, contacts: contacts.contacts(), transmitted: &transmitted };
    crate::provisioning::set_annex2(&app, annex).await?;
    print_line(json!({"partner_id": partner, "annex2": "replaced"}));
    Ok(())
}

pub(super) async fn annex3(command: Annex3Command, config: Config) -> Result<(), CliError> {
    let Annex3Command::Set { contacts, technical_referents, transmitted } = command;
    let app = open(config).await?;
    let annex = crate::provisioning::Annex3 {
        contacts: contacts.contacts(),
        technical_referents: &technical_referents,
        transmitted: &transmitted,
    };
    crate::provisioning::set_annex3(&app, annex).await?;
    print_line(json!({"annex3": "replaced"}));
    Ok(())
}

pub(super) async fn review(command: ReviewCommand, config: Config) -> Result<(), CliError> {
    let ReviewCommand::Status = command;
    let app = open(config).await?;
    print_pretty(&crate::provisioning::review::review(&app.store, &app.clock).await?);
    Ok(())
}
