//! The command line (PRODUCT.md "Command line"). Commands are thin: they
//! parse arguments into domain calls and print results.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

use crate::app::App;
use crate::clock::Clock;
use crate::config::{Config, LogFormat};
use crate::oidc::clients::{self, AuthMethod, Registration};

#[derive(Parser)]
#[command(name = "coop-idp", version, about = "Identity provider of the Coopération platform")]
pub struct Cli {
    /// Configuration file (default: ./coop-idp.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server (migrations are applied on start).
    Serve,
    /// Applies database migrations and exits.
    Migrate,
    /// Relying parties.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Partners (local authorities, associations) and their conventions.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// User accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The email outbox.
    #[command(subcommand)]
    Mail(MailCommand),
    /// The membership convention of a partner.
    #[command(subcommand)]
    Convention(ConventionCommand),
    /// Annex 1: the partner's list of accesses to open and to close.
    #[command(subcommand)]
    Annex1(Annex1Command),
    /// Annex 2: the partner's habilitation manager and security officer.
    #[command(subcommand)]
    Annex2(Annex2Command),
    /// Annex 3: the Caf's habilitation manager, security officer and technical referents.
    #[command(subcommand)]
    Annex3(Annex3Command),
    /// The yearly review of authorisations.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// The connection log, for the security officer.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Runs the retention purges now (connection log, closed accounts, annexes).
    Purge {
        /// Shows what would be destroyed and changes nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Writes the attestation of destruction of a partner's (or one person's)
    /// data: a PDF and its signature (.jws).
    Attestation {
        #[arg(long)]
        partner: String,
        /// Only the destructions about this person (professional address).
        #[arg(long)]
        email: Option<String>,
        /// Folder to write the files to (default: the working folder).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Administrative roles (caf_habilitation, caf_security, partner_habilitation).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Security alerts raised by the detectors.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Writes every table to FILE (JSON lines, created with mode 0600: it
    /// holds password hashes), to move to another database.
    Export { file: PathBuf },
    /// Reads a file written by `export` into this configuration's database,
    /// which must be empty: all of it in one transaction, or nothing.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Grants a role to the account of EMAIL.
    Grant { email: String, role: String },
    /// Revokes a role from the account of EMAIL.
    Revoke { email: String, role: String },
    /// Lists the accounts holding a role.
    List,
    /// Removes the second factor of the account of EMAIL (lost phone, no
    /// recovery code left): its sessions end and it enrols again at its
    /// next sign-in.
    #[command(name = "reset-second-factor")]
    ResetSecondFactor { email: String },
    /// Fresh installation only: creates the first administrator (a Caf staff
    /// account), grants caf_habilitation and caf_security (or --role …) and
    /// emails the activation link.
    Bootstrap(StaffArgs),
    /// Creates (or takes) a Caf staff account, grants the roles and emails
    /// the activation link when no password exists yet.
    Invite(StaffArgs),
}

#[derive(Args)]
struct StaffArgs {
    #[arg(long)]
    email: String,
    #[arg(long = "given-name", default_value = "")]
    given_name: String,
    #[arg(long = "family-name", default_value = "")]
    family_name: String,
    #[arg(long, default_value = "Caf")]
    function: String,
    /// Repeat for each role; default: caf_habilitation and caf_security.
    #[arg(long = "role")]
    roles: Vec<String>,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Alerts raised, oldest first.
    List {
        /// RFC 3339 time or YYYY-MM-DD (inclusive).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Records matching every given filter, oldest first.
    Query(Box<QueryArgs>),
    /// Checks the chain of the connection log; names the first broken record.
    Verify,
}

#[derive(Args)]
struct QueryArgs {
    /// Every record about that account.
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    partner: Option<String>,
    /// An event kind, e.g. signin_failed (an unknown kind is refused
    /// with the list of kinds).
    #[arg(long)]
    event: Option<String>,
    /// success or failure.
    #[arg(long)]
    outcome: Option<String>,
    /// An IPv4 or IPv6 address.
    #[arg(long)]
    ip: Option<String>,
    /// RFC 3339 time or YYYY-MM-DD (inclusive).
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time or YYYY-MM-DD (exclusive).
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
    /// With --format csv: the cell separator. comma (default) writes
    /// RFC 4180 for scripts; semicolon writes for a French spreadsheet,
    /// with a UTF-8 byte-order mark first.
    #[arg(long, value_parser = ["comma", "semicolon"])]
    separator: Option<String>,
    /// Page size (1 to 100000).
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    #[arg(long, default_value_t = 0)]
    offset: i64,
}

#[derive(Subcommand)]
enum Annex2Command {
    /// Records a partner's annex 2 (replaces the previous one).
    Set {
        #[arg(long)]
        partner: String,
        #[arg(long = "habilitation-name")]
        habilitation_name: String,
        #[arg(long = "habilitation-email")]
        habilitation_email: String,
        #[arg(long = "security-name")]
        security_name: String,
        #[arg(long = "security-email")]
        security_email: String,
        /// Transmission date (YYYY-MM-DD).
        #[arg(long)]
        transmitted: String,
    },
}

#[derive(Subcommand)]
enum Annex3Command {
    /// Records the Caf's annex 3 (replaces the previous one).
    Set {
        #[arg(long = "habilitation-name")]
        habilitation_name: String,
        #[arg(long = "habilitation-email")]
        habilitation_email: String,
        #[arg(long = "security-name")]
        security_name: String,
        #[arg(long = "security-email")]
        security_email: String,
        /// "Name <email>"; repeat the option for each referent.
        #[arg(long = "technical-referent")]
        technical_referents: Vec<String>,
        #[arg(long)]
        transmitted: String,
    },
}

#[derive(Subcommand)]
enum ReviewCommand {
    /// Partners with the date of their last annex 1, their deadline, and
    /// whether it is due within 30 days or overdue.
    Status,
}

#[derive(Subcommand)]
enum ConventionCommand {
    /// Records the signature (from then on accesses can be opened).
    Sign {
        #[arg(long)]
        partner: String,
        #[arg(long)]
        date: String,
    },
    /// Records a termination; every access of the partner is closed at once.
    Terminate {
        #[arg(long)]
        partner: String,
        #[arg(long)]
        date: String,
        #[arg(long)]
        reason: String,
    },
    /// Records a notice of non-renewal (at least one month before a term).
    NotRenew {
        #[arg(long)]
        partner: String,
        #[arg(long)]
        date: String,
    },
    /// Withdraws a notice of non-renewal: the convention renews tacitly.
    Renew {
        #[arg(long)]
        partner: String,
    },
}

#[derive(Subcommand)]
enum Annex1Command {
    /// Dry run by default: prints the plan and every problem, changes nothing.
    Import {
        #[arg(long)]
        partner: String,
        /// CSV (comma or semicolon; UTF-8 or Windows-1252) or XLSX.
        file: PathBuf,
        /// Transmission date (YYYY-MM-DD; default: today).
        #[arg(long)]
        transmitted: Option<String>,
        /// Applies the plan, all or nothing.
        #[arg(long)]
        apply: bool,
        /// Prints the plan as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Lists the partners with the state of their convention.
    List,
    /// Changes a partner's name, SIREN or email domains.
    Update {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        siren: Option<String>,
        /// Replaces the list of domains; repeat the option for each.
        #[arg(long = "email-domain")]
        email_domains: Vec<String>,
    },
    /// Shows a partner, its convention and its current annex 1.
    Show { id: String },
    /// Registers a partner; without --convention-signed no access can be opened.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Signature date of the membership convention (YYYY-MM-DD).
        #[arg(long = "convention-signed")]
        convention_signed: Option<String>,
        /// A domain the partner's agents use; repeat the option for each.
        #[arg(long = "email-domain")]
        email_domains: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Opens an access: the agent receives an activation link by email and
    /// creates the password (nobody else ever sets it).
    Invite {
        #[arg(long)]
        partner: String,
        #[arg(long)]
        email: String,
        #[arg(long = "given-name")]
        given_name: String,
        #[arg(long = "family-name")]
        family_name: String,
        #[arg(long)]
        function: String,
    },
}

#[derive(Subcommand)]
enum MailCommand {
    /// How many messages wait in the outbox and how many failed for good.
    Status,
    /// Queues the messages that failed for good again (e.g. after fixing smtp_url).
    Retry,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Registers a relying party; prints {"client_id", "client_secret"}.
    Add(ClientAdd),
}

#[derive(Args)]
struct ClientAdd {
    #[arg(long)]
    id: String,
    #[arg(long)]
    name: String,
    #[arg(long = "redirect-uri", required = true)]
    redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    #[arg(long = "backchannel-logout-uri")]
    backchannel_logout_uri: Option<String>,
    #[arg(long = "auth-method", default_value = "client_secret_basic",
          value_parser = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])]
    auth_method: String,
    /// ID token signing algorithm: RS256 (default), ES256 or EdDSA.
    #[arg(long = "id-token-alg", default_value = "RS256", value_parser = ["RS256", "ES256", "EdDSA"])]
    id_token_alg: String,
    /// File holding the client's public JWK set (for private_key_jwt).
    #[arg(long)]
    jwks: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Adds a new signing key per algorithm; older keys stay published until
    /// the tokens they signed have expired.
    Rotate,
    /// Replaces the key that seals the TOTP secrets at rest, seals every
    /// stored secret again under the new key, and removes the previous key
    /// once nothing needs it.
    RotateTotp,
}

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coop-idp: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BadInput(message)) => {
            eprintln!("coop-idp: {message}");
            ExitCode::from(2)
        }
        Err(CliError::Failure(message)) => {
            eprintln!("coop-idp: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed, for its exit status: 2 for input it refuses (as
/// clap does for a bad option), 1 for anything else. Commands that have not
/// told the two apart yet give plain messages, which are failures.
enum CliError {
    BadInput(String),
    Failure(String),
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Failure(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> Self {
        CliError::Failure(message.to_string())
    }
}

impl From<crate::audit::query::QueryError> for CliError {
    fn from(e: crate::audit::query::QueryError) -> Self {
        if e.is_bad_input() { CliError::BadInput(e.to_string()) } else { CliError::Failure(e.to_string()) }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COOP_IDP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn run(command: Command, config: Config) -> Result<(), CliError> {
    match command {
        Command::Serve => Ok(serve(config).await?),
        Command::Migrate => {
            App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            println!("migrations applied");
            Ok(())
        }
        Command::Client(ClientCommand::Add(a)) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let jwks = match &a.jwks {
                Some(path) => {
                    Some(std::fs::read_to_string(path).map_err(|e| format!("--jwks {}: {e}", path.display()))?)
                }
                None => None,
            };
            let registration = Registration {
                id: a.id.clone(),
                name: a.name,
                redirect_uris: a.redirect_uris,
                post_logout_redirect_uris: a.post_logout_redirect_uris,
                backchannel_logout_uri: a.backchannel_logout_uri,
                auth_method: AuthMethod::parse(&a.auth_method).ok_or("--auth-method")?,
                id_token_alg: crate::keys::parse_alg(&a.id_token_alg).ok_or("--id-token-alg")?,
                jwks,
            };
            let secret = clients::register(&app, registration).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"client_id": a.id, "client_secret": secret}));
            Ok(())
        }
        Command::Partner(PartnerCommand::Add { id, name, convention_signed, email_domains }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let partner = crate::provisioning::NewPartner {
                id: &id,
                name: &name,
                convention_signed: convention_signed.as_deref(),
                email_domains: &email_domains,
            };
            crate::provisioning::add_partner(&app, partner).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"partner_id": id, "convention_signed": convention_signed}));
            Ok(())
        }
        Command::Account(AccountCommand::Invite { partner, email, given_name, family_name, function }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let invitation = crate::provisioning::invite::Invitation {
                partner_id: &partner,
                email: &email,
                given_name: &given_name,
                family_name: &family_name,
                function: &function,
            };
            let outcome = crate::provisioning::invite::invite(&app, invitation).await.map_err(|e| e.to_string())?;
            // Deliver now rather than wait for the server's worker.
            let delivered = crate::mail::send_due(&app).await.map_err(|e| e.to_string())?;
            let (status, id) = match outcome {
                crate::provisioning::invite::Invited::Opened(id) => ("opened", id),
                crate::provisioning::invite::Invited::Reinvited(id) => ("reinvited", id),
            };
            println!("{}", serde_json::json!({"status": status, "account_id": id, "emails_delivered": delivered}));
            Ok(())
        }
        Command::Mail(MailCommand::Status) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let (waiting, failed) = app.store.mail_counts().await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"waiting": waiting, "failed": failed}));
            Ok(())
        }
        Command::Mail(MailCommand::Retry) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let mut tx = app.store.begin_write().await.map_err(|e| e.to_string())?;
            let n = crate::store::retry_failed_mail(&mut tx, app.clock.now_ms()).await.map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"requeued": n}));
            Ok(())
        }
        Command::Partner(PartnerCommand::List) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for p in app.store.partners().await.map_err(|e| e.to_string())? {
                out.push(partner_json(&app, &p).await?);
            }
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(())
        }
        Command::Partner(PartnerCommand::Update { id, name, siren, email_domains }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let domains = (!email_domains.is_empty()).then_some(email_domains.as_slice());
            crate::provisioning::update_partner(&app, &id, name.as_deref(), siren.as_deref(), domains)
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"partner_id": id, "updated": true}));
            Ok(())
        }
        Command::Annex2(Annex2Command::Set {
            partner,
            habilitation_name,
            habilitation_email,
            security_name,
            security_email,
            transmitted,
        }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let annex = crate::provisioning::Annex2 {
                partner_id: &partner,
                habilitation_name: &habilitation_name,
                habilitation_email: &habilitation_email,
                security_name: &security_name,
                security_email: &security_email,
                transmitted: &transmitted,
            };
            crate::provisioning::set_annex2(&app, annex).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"partner_id": partner, "annex2": "replaced"}));
            Ok(())
        }
        Command::Annex3(Annex3Command::Set {
            habilitation_name,
            habilitation_email,
            security_name,
            security_email,
            technical_referents,
            transmitted,
        }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let annex = crate::provisioning::Annex3 {
                habilitation_name: &habilitation_name,
                habilitation_email: &habilitation_email,
                security_name: &security_name,
                security_email: &security_email,
                technical_referents: &technical_referents,
                transmitted: &transmitted,
            };
            crate::provisioning::set_annex3(&app, annex).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"annex3": "replaced"}));
            Ok(())
        }
        Command::Review(ReviewCommand::Status) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let review = crate::provisioning::review::review(&app).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&review).unwrap_or_default());
            Ok(())
        }
        Command::Partner(PartnerCommand::Show { id }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let p =
                app.store.partner(&id).await.map_err(|e| e.to_string())?.ok_or(format!("unknown partner `{id}`"))?;
            println!("{}", serde_json::to_string_pretty(&partner_json(&app, &p).await?).unwrap_or_default());
            Ok(())
        }
        Command::Convention(c) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let result = match c {
                ConventionCommand::Sign { partner, date } => {
                    crate::provisioning::sign_convention(&app, &partner, &date).await.map(|_| serde_json::json!({"partner_id": partner, "signed_on": date}))
                }
                ConventionCommand::Terminate { partner, date, reason } => crate::provisioning::terminate_convention(&app, &partner, &date, &reason)
                    .await
                    .map(|closed| serde_json::json!({"partner_id": partner, "terminated_on": date, "accesses_closed": closed})),
                ConventionCommand::NotRenew { partner, date } => crate::provisioning::set_non_renewal(&app, &partner, Some(&date))
                    .await
                    .map(|ends| serde_json::json!({"partner_id": partner, "notice_on": date, "ends_on": ends})),
                ConventionCommand::Renew { partner } => crate::provisioning::set_non_renewal(&app, &partner, None)
                    .await
                    .map(|_| serde_json::json!({"partner_id": partner, "renewal": "tacit"})),
            };
            println!("{}", result.map_err(|e| e.to_string())?);
            Ok(())
        }
        Command::Annex1(Annex1Command::Import { partner, file, transmitted, apply, json }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let bytes = read_bounded(&file, crate::provisioning::annex1::limits::MAX_FILE_BYTES)?;
            let transmitted = match transmitted {
                Some(t) => Some(
                    crate::dates::parse_iso(&t).ok_or(format!("--transmitted: `{t}` is not a date (YYYY-MM-DD)"))?,
                ),
                None => None,
            };
            let file_name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let outcome = crate::provisioning::annex1::apply::import(
                &app,
                crate::provisioning::annex1::apply::Import {
                    partner_id: &partner,
                    file_name: &file_name,
                    bytes: &bytes,
                    transmitted,
                    apply,
                    operator: "cli",
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            if outcome.applied {
                // Deliver the activation emails now rather than wait for the server.
                let _ = crate::mail::send_due(&app).await;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome.plan).unwrap_or_default());
            } else {
                print!("{}", crate::provisioning::annex1::plan::render_text(&outcome.plan, outcome.applied));
            }
            let clean = outcome.plan.errors.is_empty();
            if outcome.applied || (!apply && clean) {
                Ok(())
            } else {
                Err(CliError::Failure(if apply {
                    "not applied: the annex has errors".into()
                } else {
                    "the annex has errors".into()
                }))
            }
        }
        Command::Logs(LogsCommand::Query(args)) => {
            let QueryArgs { email, partner, event, outcome, ip, since, until, format, separator, limit, offset } =
                *args;
            use crate::audit::export::{CsvLayout, Separator};
            let layout = match (format.as_str(), separator.as_deref()) {
                (_, None) | ("csv", Some("comma")) => CsvLayout::FIELDS,
                // For a French spreadsheet, which also needs the BOM to read UTF-8.
                ("csv", Some(_)) => CsvLayout { separator: Separator::Semicolon, bom: true, ..CsvLayout::FIELDS },
                (_, Some(_)) => {
                    return Err(CliError::BadInput(
                        "--separator ne s'applique qu'à --format csv / applies to --format csv only".into(),
                    ));
                }
            };
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let query = crate::audit::query::LogQuery {
                email,
                partner,
                event,
                outcome,
                ip,
                since,
                until,
                limit: Some(limit),
                offset: Some(offset),
            };
            let filter = query.validate(&app, 1000).await?;
            let access =
                if format == "csv" { crate::audit::query::Access::Export } else { crate::audit::query::Access::Read };
            let source = crate::audit::Source::default();
            let reader = crate::audit::query::Reader { actor: "cli", source: &source, format: &format };
            let rows =
                crate::audit::query::read(&app, &query, &filter, access, reader).await.map_err(|e| e.to_string())?;
            let output = match format.as_str() {
                "csv" => crate::audit::export::to_csv(&rows, &layout),
                "json" => crate::audit::export::to_json(&rows),
                _ => crate::audit::export::to_table(&rows),
            };
            print!("{output}");
            if format == "json" {
                println!();
            }
            Ok(())
        }
        Command::Admin(c) => Ok(admin_command(c, config).await?),
        Command::Alerts(AlertsCommand::List { since, format, limit, offset }) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let since_ms = since
                .as_deref()
                .map(|t| crate::audit::query::parse_time(crate::audit::query::Param::Since, t))
                .transpose()?;
            let alerts = crate::alerts::list(&app, since_ms, limit, offset).await.map_err(|e| e.to_string())?;
            let kind = if format == "csv" { crate::audit::kind::LOG_EXPORTED } else { crate::audit::kind::LOG_READ };
            let e = crate::audit::Event::new(kind, crate::audit::Outcome::Success, "cli").details(
                serde_json::json!({"alerts": true, "since": since, "format": format, "records": alerts.len()}),
            );
            crate::audit::record(&app, vec![e]).await;
            match format.as_str() {
                "csv" => print!("{}", crate::alerts::to_csv(&alerts)),
                "json" => println!("{}", serde_json::to_string_pretty(&alerts).unwrap_or_else(|_| "[]".into())),
                _ => print!("{}", crate::alerts::to_table(&alerts)),
            }
            Ok(())
        }
        Command::Logs(LogsCommand::Verify) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            match crate::audit::verify(&app).await.map_err(|e| e.to_string())? {
                crate::audit::Verification::Intact { records } => {
                    let checkpoints = app.store.checkpoints().await.map_err(|e| e.to_string())?;
                    let purged = app.store.last_log_purge().await.map_err(|e| e.to_string())?;
                    println!(
                        "{}",
                        serde_json::json!({
                            "status": "intact",
                            "records": records,
                            "checkpoints": checkpoints.len(),
                            "latest_checkpoint": checkpoints.last().map(|c| serde_json::json!({
                                "seq": c.seq, "time": crate::clock::rfc3339_ms(c.time_ms), "kid": c.kid, "jws": c.jws,
                            })),
                            "purged_up_to": purged.map(|p| p.up_to_seq),
                        })
                    );
                    Ok(())
                }
                crate::audit::Verification::Broken { seq, reason } => {
                    println!(
                        "{}",
                        serde_json::json!({"status": "broken", "first_broken_record": seq, "reason": reason})
                    );
                    Err(CliError::Failure(format!("connection log broken at record {seq}: {reason}")))
                }
            }
        }
        Command::Purge { dry_run } => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let report = crate::retention::purge(&app, dry_run, "cli").await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            Ok(())
        }
        Command::Attestation { partner, email, out } => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let a = crate::retention::attestation::build(&app, &partner, email.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            let day = crate::dates::format_iso(app.clock.today());
            // The person's file name carries a hash prefix, never the address.
            let who = match &email {
                Some(e) => format!("-{}", &crate::crypto::hash_secret(&e.trim().to_lowercase())[..8]),
                None => String::new(),
            };
            std::fs::create_dir_all(&out).map_err(|e| format!("--out {}: {e}", out.display()))?;
            let pdf = out.join(format!("attestation-destruction-{partner}{who}-{day}.pdf"));
            let jws = out.join(format!("attestation-destruction-{partner}{who}-{day}.pdf.jws"));
            std::fs::write(&pdf, &a.pdf).map_err(|e| format!("{}: {e}", pdf.display()))?;
            std::fs::write(&jws, &a.jws).map_err(|e| format!("{}: {e}", jws.display()))?;
            println!(
                "{}",
                serde_json::json!({
                    "pdf": pdf.display().to_string(),
                    "jws": jws.display().to_string(),
                    "destructions": a.claims.destructions.len(),
                    "pdf_sha256": a.claims.pdf_sha256,
                })
            );
            Ok(())
        }
        Command::Export { file } => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let f = options.open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut out = std::io::BufWriter::new(f);
            let tables = app.store.export(&mut out).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"file": file.display().to_string(), "tables": tables}));
            Ok(())
        }
        Command::Import { file } => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let tables = app.store.import(std::io::BufReader::new(f)).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"imported": tables}));
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => {
            let now = Clock::system().now_ms();
            let kids = crate::keys::rotate(&config.keys_dir, config.max_signed_token_ttl_secs(), now)
                .map_err(|e| e.to_string())?;
            println!("{}", serde_json::json!({"new_kids": kids}));
            Ok(())
        }
        Command::Keys(KeysCommand::RotateTotp) => {
            let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
            let r = crate::auth::vault::rotate(&app).await.map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::json!({
                    "totp_key_id": r.key_id,
                    "resealed": r.resealed,
                    "unreadable": r.unreadable,
                    "retired_kept": r.kept,
                    "retired_removed": r.removed,
                })
            );
            Ok(())
        }
    }
}

async fn admin_command(command: AdminCommand, config: Config) -> Result<(), String> {
    let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
    let output = match command {
        AdminCommand::Grant { email, role } => {
            let changed = crate::admin::grant(&app, &email, &role, "cli").await.map_err(|e| e.to_string())?;
            serde_json::json!({"email": email.trim(), "role": role.trim(), "granted": changed})
        }
        AdminCommand::Revoke { email, role } => {
            let changed = crate::admin::revoke(&app, &email, &role, "cli").await.map_err(|e| e.to_string())?;
            serde_json::json!({"email": email.trim(), "role": role.trim(), "revoked": changed})
        }
        AdminCommand::ResetSecondFactor { email } => {
            let removed = crate::admin::reset_second_factor(&app, &email, "cli").await.map_err(|e| e.to_string())?;
            serde_json::json!({"email": email.trim(), "second_factor_removed": removed})
        }
        AdminCommand::List => {
            serde_json::to_value(crate::admin::list(&app).await.map_err(|e| e.to_string())?).unwrap_or_default()
        }
        AdminCommand::Bootstrap(a) => {
            let member = staff(&a);
            let done = crate::admin::bootstrap(&app, member).await.map_err(|e| e.to_string())?;
            let _ = crate::mail::send_due(&app).await;
            serde_json::to_value(done).unwrap_or_default()
        }
        AdminCommand::Invite(a) => {
            let member = staff(&a);
            let done = crate::admin::invite_staff(&app, member, "cli").await.map_err(|e| e.to_string())?;
            let _ = crate::mail::send_due(&app).await;
            serde_json::to_value(done).unwrap_or_default()
        }
    };
    println!("{}", serde_json::to_string_pretty(&output).unwrap_or_default());
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

async fn partner_json(app: &App, p: &crate::store::PartnerRow) -> Result<serde_json::Value, String> {
    crate::admin::actions::partner_summary(app, p).await.map_err(|e| e.to_string())
}

async fn serve(config: Config) -> Result<(), String> {
    let started = std::time::Instant::now();
    let listen = config.listen;
    let app = App::open(config, Clock::system()).await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("listen {listen}: {e}"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(address) = app.config.metrics_listen {
        let metrics =
            tokio::net::TcpListener::bind(address).await.map_err(|e| format!("metrics_listen {address}: {e}"))?;
        let mut stop = stop_rx.clone();
        let served = app.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::web::serve_metrics(served, metrics, shutdown).await {
                tracing::error!(error = %e, "metrics listener");
            }
        });
        tracing::info!(address = %address, "metrics listening");
    }
    app.spawn_jobs(stop_rx);
    tracing::info!(address = %listen, issuer = %app.config.issuer_str(), ready_ms = started.elapsed().as_millis() as u64, "coop-idp listening");
    let shutdown = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    };
    crate::web::serve(app.clone(), listener, shutdown).await.map_err(|e| e.to_string())?;
    app.store.close().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Reads a file the user names, refusing it past `max` bytes before
/// reading more than that.
fn read_bounded(path: &std::path::Path, max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > max {
        return Err(format!(
            "{} : le fichier dépasse {} Mo / the file is over {} MB",
            path.display(),
            max >> 20,
            max >> 20
        ));
    }
    Ok(bytes)
}
