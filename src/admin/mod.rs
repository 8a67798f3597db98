//! Administration (R16, R18): the three administrative roles, who holds
//! them, the check every admin request goes through (`require_admin`), and
//! the actions on accesses that the console offers. The command line and
//! the admin API call these same functions; each change is recorded in the
//! connection log with its actor (`cli` or the administrator's email).

pub mod actions;
pub mod annex1;

use serde::Serialize;
use serde_json::json;

use crate::accounts::{AccountState, Names, ProfessionalEmail};
use crate::app::App;
use crate::audit::{self, Event, Outcome};
use crate::auth::session::Session;
use crate::error::AppError;
use crate::store::{self, StoreError, accounts::AccountRow};

/// The administrative roles (issue 5; they also flow into the `roles` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Caf habilitation manager: partners, annexes, accounts.
    CafHabilitation,
    /// Caf security officer: the connection log and the alerts.
    CafSecurity,
    /// A partner's habilitation manager: its own partner only, read-only
    /// except for proposing (dry-running) an annex 1.
    PartnerHabilitation,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::CafHabilitation, Role::CafSecurity, Role::PartnerHabilitation];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::CafHabilitation => "caf_habilitation",
            Role::CafSecurity => "caf_security",
            Role::PartnerHabilitation => "partner_habilitation",
        }
    }

    pub fn parse(s: &str) -> Result<Role, AdminError> {
        Role::ALL.into_iter().find(|r| r.as_str() == s.trim()).ok_or_else(|| AdminError::UnknownRole(s.to_string()))
    }

    /// The roles of the Caf's own staff, never of a partner's agent.
    pub fn is_caf(self) -> bool {
        matches!(self, Role::CafHabilitation | Role::CafSecurity)
    }
}

/// Whether `account` belongs to the Caf itself: the Caf is no partner, so
/// its staff's accounts have none (README "Administration", bootstrap), and
/// when `caf_email_domains` is set their address is at one of those domains.
pub fn is_caf_staff(app: &App, email: &str, partner_id: Option<&str>) -> bool {
    let domains = &app.config.caf_email_domains;
    let domain = email.rsplit_once('@').map(|(_, d)| d.trim().to_ascii_lowercase()).unwrap_or_default();
    partner_id.is_none() && (domains.is_empty() || domains.contains(&domain))
}

/// The rule of the Caf roles (`caf_habilitation`, `caf_security`), checked
/// before anything changes wherever a role is granted.
fn check_caf_role(app: &App, role: Role, email: &str, partner_id: Option<&str>) -> AdminResult<()> {
    if role.is_caf() && !is_caf_staff(app, email, partner_id) {
        return Err(AdminError::NotCafStaff { email: email.to_string(), role: role.as_str() });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "rôle inconnu « {0} » (rôles : caf_habilitation, caf_security, partner_habilitation) / unknown role `{0}` (roles: caf_habilitation, caf_security, partner_habilitation)"
    )]
    UnknownRole(String),
    #[error("aucun compte pour « {0} » / no account for `{0}`")]
    UnknownAccount(String),
    #[error(
        "le compte « {0} » n'est rattaché à aucun partenaire : partner_habilitation impossible / account `{0}` belongs to no partner: partner_habilitation is not possible"
    )]
    NoPartner(String),
    #[error("l'accès de « {0} » est clôturé / the access of `{0}` is closed")]
    Closed(String),
    #[error(
        "l'accès de « {0} » est déjà activé : pas de lien d'activation / the access of `{0}` is already active: no activation link"
    )]
    NotPending(String),
    #[error(
        "un administrateur existe déjà : utilisez `admin invite` ou `admin grant` / an administrator already exists: use `admin invite` or `admin grant`"
    )]
    AlreadyBootstrapped,
    #[error("{0}")]
    Invalid(String),
    /// A partner (or its account) this administrator may not see.
    #[error("rôle insuffisant / this role may not do that")]
    Forbidden,
    #[error("partenaire inconnu « {0} » / unknown partner `{0}`")]
    UnknownPartner(String),
    #[error("date de transmission / transmission date : {0}")]
    BadDate(#[from] crate::dates::NotADate),
    /// A Caf role for an account that is not the Caf's (a partner's agent,
    /// or an address outside `caf_email_domains`).
    #[error(
        "« {email} » n'est pas un compte de la Caf : le rôle {role} est réservé à son personnel (compte sans partenaire, adresse dans caf_email_domains) / `{email}` is not an account of the Caf: the role {role} is for its staff only (no partner, an address in caf_email_domains)"
    )]
    NotCafStaff { email: String, role: &'static str },
    /// An annex 1 older than the partner's current one.
    #[error(transparent)]
    OlderAnnex(#[from] crate::provisioning::annex1::apply::OlderAnnex),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::App(AppError::Store(e))
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

async fn account_by_email(app: &App, email: &str) -> AdminResult<AccountRow> {
    let normalized = email.trim().to_lowercase();
    app.store.account_by_email(&normalized).await?.ok_or_else(|| AdminError::UnknownAccount(email.trim().to_string()))
}

/// A success done by `actor` on `account`.
fn account_event(kind: &'static str, actor: &str, account: &AccountRow) -> Event {
    Event::new(kind, Outcome::Success, actor)
        .email(account.email.clone())
        .account(account.id.clone())
        .partner(account.partner_id.clone())
}

fn role_event(kind: &'static str, actor: &str, account: &AccountRow, role: Role) -> Event {
    account_event(kind, actor, account).details(json!({"role": role.as_str()}))
}

/// Grants `role` to the account of `email`; false when it already held it
/// (nothing recorded then). Checked before anything changes.
pub async fn grant(app: &App, email: &str, role: &str, actor: &str) -> AdminResult<bool> {
    let role = Role::parse(role)?;
    let account = account_by_email(app, email).await?;
    if AccountState::parse(&account.state) == Some(AccountState::Closed) {
        return Err(AdminError::Closed(account.person.email));
    }
    if role == Role::PartnerHabilitation && account.partner_id.is_none() {
        return Err(AdminError::NoPartner(account.person.email));
    }
    check_caf_role(app, role, &account.email, account.partner_id.as_deref())?;
    change_role(app, &account, role, actor, true).await
}

/// Grants (`grant`) or revokes `role` in one transaction, recorded only when
/// it changed something; whether it did.
async fn change_role(app: &App, account: &AccountRow, role: Role, actor: &str, grant: bool) -> AdminResult<bool> {
    let mut tx = app.store.begin_write().await?;
    let (changed, kind) = if grant {
        (store::accounts::grant_role(&mut tx, &account.id, role.as_str()).await?, audit::kind::ROLE_GRANTED)
    } else {
        (store::accounts::revoke_role(&mut tx, &account.id, role.as_str()).await?, audit::kind::ROLE_REVOKED)
    };
    if changed {
        audit::append(&app.clock, &mut tx, vec![role_event(kind, actor, account, role)]).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Removes an account's second factor (a lost phone and no recovery code
/// left): its TOTP secret and recovery codes go and its sessions end; it
/// enrols again at its next sign-in (an administrator must, an agent may).
/// False when the account had no second factor (nothing recorded then).
pub async fn reset_second_factor(app: &App, email: &str, actor: &str) -> AdminResult<bool> {
    let account = account_by_email(app, email).await?;
    let mut tx = app.store.begin_write().await?;
    let removed = store::totp::delete(&mut tx, &account.id).await?;
    let mut notices = 0;
    if removed {
        let e = account_event(audit::kind::SECOND_FACTOR_RESET, actor, &account);
        audit::append(&app.clock, &mut tx, vec![e]).await?;
        // Its sessions were opened with the factor removed: they end with it.
        let now = app.clock.now_ms();
        notices =
            crate::auth::session::end_all_of_account_in(app, &mut tx, &account.id, "second_factor_reset", now).await?;
    }
    tx.commit().await?;
    if notices > 0 {
        app.backchannel_wake.notify_one();
    }
    Ok(removed)
}

/// Revokes `role`; false when the account did not hold it.
pub async fn revoke(app: &App, email: &str, role: &str, actor: &str) -> AdminResult<bool> {
    let role = Role::parse(role)?;
    let account = account_by_email(app, email).await?;
    change_role(app, &account, role, actor, false).await
}

#[derive(Debug, Clone, Serialize)]
pub struct Administrator {
    pub email: String,
    pub account_id: String,
    pub partner_id: Option<String>,
    pub state: String,
    pub roles: Vec<String>,
}

/// Every account holding at least one role.
pub async fn list(app: &App) -> AdminResult<Vec<Administrator>> {
    let mut out: Vec<Administrator> = Vec::new();
    for (account, role) in app.store.administrators().await? {
        match out.last_mut() {
            Some(last) if last.account_id == account.id => last.roles.push(role),
            _ => out.push(Administrator {
                email: account.person.email,
                account_id: account.id,
                partner_id: account.person.partner_id,
                state: account.state,
                roles: vec![role],
            }),
        }
    }
    Ok(out)
}

/// A member of the Caf's staff to create as an administrator.
pub struct StaffMember<'a> {
    pub email: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub function: &'a str,
    pub roles: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct StaffInvited {
    pub account_id: String,
    pub created: bool,
    pub roles: Vec<String>,
    pub activation_sent: bool,
}

/// The first administrator of a fresh installation: refused once any
/// account holds a role, so that it can sit in an install script.
pub async fn bootstrap(app: &App, member: StaffMember<'_>) -> AdminResult<StaffInvited> {
    if !app.store.administrators().await?.is_empty() {
        return Err(AdminError::AlreadyBootstrapped);
    }
    invite_staff(app, member, "cli").await
}

/// Creates a Caf staff account (it belongs to no partner, so the partner
/// convention rules do not apply) or takes the existing one, grants the
/// roles, and mails an activation link when no password exists yet: the
/// administrator creates it, nobody else ever sets it (R1).
pub async fn invite_staff(app: &App, member: StaffMember<'_>, actor: &str) -> AdminResult<StaffInvited> {
    let email = ProfessionalEmail::parse(member.email)
        .map_err(|e| AdminError::Invalid(format!("adresse électronique / email : {e}")))?;
    let roles: Vec<Role> = if member.roles.is_empty() {
        vec![Role::CafHabilitation, Role::CafSecurity]
    } else {
        member.roles.iter().map(|r| Role::parse(r)).collect::<Result<_, _>>()?
    };
    let existing = app.store.account_by_email(email.normalized()).await?;
    if roles.contains(&Role::PartnerHabilitation) && existing.as_ref().is_none_or(|a| a.partner_id.is_none()) {
        return Err(AdminError::NoPartner(email.as_str().to_string()));
    }
    let partner_id = existing.as_ref().and_then(|a| a.partner_id.as_deref());
    for role in &roles {
        check_caf_role(app, *role, email.as_str(), partner_id)?;
    }
    if existing.is_none() {
        Names::parse(member.given_name, member.family_name, member.function)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
    }
    if let Some(a) = &existing
        && AccountState::parse(&a.state) == Some(AccountState::Closed)
    {
        return Err(AdminError::Closed(a.email.clone()));
    }
    let now = app.clock.now_ms();
    let mut tx = app.store.begin_write().await?;
    let (account, created) = match existing {
        Some(a) => (a, false),
        None => {
            let names = Names {
                given_name: member.given_name.trim(),
                family_name: member.family_name.trim(),
                function: member.function.trim(),
            };
            let row = crate::accounts::pending_row(crate::accounts::new_subject(), &email, names, None, now);
            store::accounts::insert(&mut tx, &row).await?;
            (row, true)
        }
    };
    let mut events = Vec::new();
    let base = |kind| {
        Event::new(kind, Outcome::Success, actor)
            .email(account.email.clone())
            .account(account.id.clone())
            .partner(account.partner_id.clone())
    };
    if created {
        events.push(base(audit::kind::ACCESS_OPENED).details(json!({"staff": true})));
    }
    for role in &roles {
        if store::accounts::grant_role(&mut tx, &account.id, role.as_str()).await? {
            events.push(role_event(audit::kind::ROLE_GRANTED, actor, &account, *role));
        }
    }
    let activation_sent = AccountState::parse(&account.state) == Some(AccountState::Pending);
    if activation_sent {
        store::credentials::supersede_links_of_account(&mut tx, &account.id, now).await?;
        crate::auth::links::create_and_mail(app, &mut tx, &account, crate::auth::links::Purpose::Activation).await?;
        events.push(base(audit::kind::ACTIVATION_SENT));
    }
    audit::append(&app.clock, &mut tx, events).await?;
    tx.commit().await?;
    app.mail_wake.notify_one();
    Ok(StaffInvited {
        account_id: account.id,
        created,
        roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
        activation_sent,
    })
}

/// An administrator, as established for one request.
#[derive(Debug, Clone)]
pub struct Admin {
    pub account_id: String,
    pub email: String,
    pub partner_id: Option<String>,
    pub roles: Vec<Role>,
}

impl Admin {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Caf habilitation managers see every partner; a partner's manager
    /// only its own.
    pub fn may_see_partner(&self, partner_id: &str) -> bool {
        self.has(Role::CafHabilitation)
            || (self.has(Role::PartnerHabilitation) && self.partner_id.as_deref() == Some(partner_id))
    }
}

/// Why an admin request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessDenied {
    #[error("connexion requise / sign-in required")]
    Unauthenticated,
    #[error("rôle insuffisant / this role may not do that")]
    Forbidden,
    /// An administrator's session opened without the second factor (R18).
    #[error("second facteur requis / second factor required")]
    SecondFactorRequired,
    #[error(transparent)]
    Internal(#[from] AppError),
}

/// The one gate of every administrative request: a live session of an
/// active account holding one of `allowed`, opened with the second factor
/// (R18: `amr` holds `otp`). Every console page and admin API endpoint goes
/// through here, so none can be reached on a password alone.
pub async fn require_admin(app: &App, session: Option<&Session>, allowed: &[Role]) -> Result<Admin, AccessDenied> {
    let session = session.ok_or(AccessDenied::Unauthenticated)?;
    let account = app.store.account_by_id(&session.account_id).await.map_err(AppError::from)?;
    let account = account.ok_or(AccessDenied::Unauthenticated)?;
    if AccountState::parse(&account.state) != Some(AccountState::Active) {
        return Err(AccessDenied::Unauthenticated);
    }
    let roles: Vec<Role> = app
        .store
        .account_roles(&account.id)
        .await
        .map_err(AppError::from)?
        .iter()
        .filter_map(|r| Role::parse(r).ok())
        .collect();
    if !roles.iter().any(|r| allowed.contains(r)) {
        return Err(AccessDenied::Forbidden);
    }
    if !session.has_second_factor() {
        return Err(AccessDenied::SecondFactorRequired);
    }
    Ok(Admin { account_id: account.id, email: account.person.email, partner_id: account.person.partner_id, roles })
}
