//! The command line's arguments (clap): the contract of PRODUCT.md
//! "Command line". Names, options and defaults here are what users type.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "coop-idp", version, about = "Identity provider of the Coopération platform")]
pub struct Cli {
    /// Configuration file (default: ./coop-idp.toml when present).
    #[arg(long, global = true)]
    pub(super) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand)]
pub(super) enum Command {
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
pub(super) enum AdminCommand {
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
pub(super) struct StaffArgs {
    #[arg(long)]
    pub(super) email: String,
    #[arg(long = "given-name", default_value = "")]
    pub(super) given_name: String,
    #[arg(long = "family-name", default_value = "")]
    pub(super) family_name: String,
    #[arg(long, default_value = "Caf")]
    pub(super) function: String,
    /// Repeat for each role; default: caf_habilitation and caf_security.
    #[arg(long = "role")]
    pub(super) roles: Vec<String>,
}

#[derive(Subcommand)]
pub(super) enum AlertsCommand {
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
pub(super) enum LogsCommand {
    /// Records matching every given filter, oldest first.
    Query(Box<QueryArgs>),
    /// Checks the chain of the connection log; names the first broken record.
    Verify,
}

#[derive(Args)]
pub(super) struct QueryArgs {
    /// Every record about that account.
    #[arg(long)]
    pub(super) email: Option<String>,
    #[arg(long)]
    pub(super) partner: Option<String>,
    /// An event kind, e.g. signin_failed (an unknown kind is refused
    /// with the list of kinds).
    #[arg(long)]
    pub(super) event: Option<String>,
    /// success or failure.
    #[arg(long)]
    pub(super) outcome: Option<String>,
    /// An IPv4 or IPv6 address.
    #[arg(long)]
    pub(super) ip: Option<String>,
    /// RFC 3339 time or YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub(super) since: Option<String>,
    /// RFC 3339 time or YYYY-MM-DD (exclusive).
    #[arg(long)]
    pub(super) until: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    pub(super) format: String,
    /// With --format csv: the cell separator. comma (default) writes
    /// RFC 4180 for scripts; semicolon writes for a French spreadsheet,
    /// with a UTF-8 byte-order mark first.
    #[arg(long, value_parser = ["comma", "semicolon"])]
    pub(super) separator: Option<String>,
    /// Page size (1 to 100000).
    #[arg(long, default_value_t = 1000)]
    pub(super) limit: i64,
    #[arg(long, default_value_t = 0)]
    pub(super) offset: i64,
}

#[derive(Subcommand)]
pub(super) enum Annex2Command {
    /// Records a partner's annex 2 (replaces the previous one).
    Set {
        #[arg(long)]
        partner: String,
        #[command(flatten)]
        contacts: ContactArgs,
        /// Transmission date (YYYY-MM-DD).
        #[arg(long)]
        transmitted: String,
    },
}

#[derive(Subcommand)]
pub(super) enum Annex3Command {
    /// Records the Caf's annex 3 (replaces the previous one).
    Set {
        #[command(flatten)]
        contacts: ContactArgs,
        /// "Name <email>"; repeat the option for each referent.
        #[arg(long = "technical-referent")]
        technical_referents: Vec<String>,
        #[arg(long)]
        transmitted: String,
    },
}

/// The habilitation manager and the security officer of an annex 2 or 3.
#[derive(Args)]
pub(super) struct ContactArgs {
    #[arg(long = "habilitation-name")]
    habilitation_name: String,
    #[arg(long = "habilitation-email")]
    habilitation_email: String,
    #[arg(long = "security-name")]
    security_name: String,
    #[arg(long = "security-email")]
    security_email: String,
}

impl ContactArgs {
    pub(super) fn contacts(&self) -> crate::provisioning::Contacts<'_> {
        crate::provisioning::Contacts {
            habilitation_name: &self.habilitation_name,
            habilitation_email: &self.habilitation_email,
            security_name: &self.security_name,
            security_email: &self.security_email,
        }
    }
}

#[derive(Subcommand)]
pub(super) enum ReviewCommand {
    /// Partners with the date of their last annex 1, their deadline, and
    /// whether it is due within 30 days or overdue.
    Status,
}

#[derive(Subcommand)]
pub(super) enum ConventionCommand {
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
pub(super) enum Annex1Command {
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
pub(super) enum PartnerCommand {
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
pub(super) enum AccountCommand {
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
    /// Lists accounts by address: state, partner, last sign-in, activation.
    List(AccountListArgs),
    /// Shows one account (JSON), its roles and second factor; never a password.
    Show { email: String },
    /// Closes an access at once, as annex 1 does: sessions and tokens end,
    /// relying parties are told; recorded with the reason.
    Close {
        email: String,
        /// Why (kept in the connection log; one line, at most 500 characters).
        #[arg(long)]
        reason: String,
    },
    /// Emails a fresh activation link to an account still pending; the
    /// previous links stop working.
    #[command(name = "resend-activation")]
    ResendActivation { email: String },
}

#[derive(Args)]
pub(super) struct AccountListArgs {
    /// Only the accounts of this partner.
    #[arg(long)]
    pub(super) partner: Option<String>,
    #[arg(long, value_parser = ["pending", "active", "closed"])]
    pub(super) state: Option<String>,
    /// Only the accounts whose password is not created yet (state pending).
    #[arg(long = "pending-activation")]
    pub(super) pending_activation: bool,
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub(super) format: String,
    /// Page size (1 to 100000).
    #[arg(long, default_value_t = 1000)]
    pub(super) limit: i64,
    #[arg(long, default_value_t = 0)]
    pub(super) offset: i64,
}

#[derive(Subcommand)]
pub(super) enum MailCommand {
    /// How many messages wait in the outbox and how many failed for good.
    Status,
    /// Queues the messages that failed for good again (e.g. after fixing smtp_url).
    Retry,
    /// Prints the live activation or reset link last mailed to a person
    /// (file outbox only: smtp_url unset).
    Links {
        /// The person's professional address.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub(super) enum ClientCommand {
    /// Registers a relying party; prints {"client_id", "client_secret"}.
    Add(ClientAdd),
    /// Lists the relying parties (never a secret).
    List {
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Shows one relying party's registration (JSON; never a secret).
    Show { id: String },
}

#[derive(Args)]
pub(super) struct ClientAdd {
    #[arg(long)]
    pub(super) id: String,
    #[arg(long)]
    pub(super) name: String,
    #[arg(long = "redirect-uri", required = true)]
    pub(super) redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    pub(super) post_logout_redirect_uris: Vec<String>,
    #[arg(long = "backchannel-logout-uri")]
    pub(super) backchannel_logout_uri: Option<String>,
    #[arg(long = "auth-method", default_value = "client_secret_basic",
          value_parser = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])]
    pub(super) auth_method: String,
    /// ID token signing algorithm: RS256 (default), ES256 or EdDSA.
    #[arg(long = "id-token-alg", default_value = "RS256", value_parser = ["RS256", "ES256", "EdDSA"])]
    pub(super) id_token_alg: String,
    /// File holding the client's public JWK set (for private_key_jwt).
    #[arg(long)]
    pub(super) jwks: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Adds a new signing key per algorithm; older keys stay published until
    /// the tokens they signed have expired.
    Rotate,
    /// Replaces the key that seals the TOTP secrets at rest, seals every
    /// stored secret again under the new key, and removes the previous key
    /// once nothing needs it.
    RotateTotp,
}
