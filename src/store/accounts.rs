//! Accounts (with their partner's name) and their roles.

use super::sql::{execute, fetch, fetch_scalar, queue, queue_insert};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: String,
    pub email_normalized: String,
    #[sqlx(flatten)]
    pub person: Person,
    pub state: String,
    pub password_hash: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// `derefs_to_person!(T)`: a `T` reads as the [`Person`] of its field
/// `person` (`account.email`).
macro_rules! derefs_to_person {
    ($type:ty) => {
        impl std::ops::Deref for $type {
            type Target = $crate::store::accounts::Person;

            fn deref(&self) -> &Self::Target {
                &self.person
            }
        }
    };
}
pub(crate) use derefs_to_person;

derefs_to_person!(AccountRow);

/// An account with the counts that decide its second step (see
/// [`Store::signin_account`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigninAccountRow {
    #[sqlx(flatten)]
    pub account: AccountRow,
    pub totp_count: i64,
    pub role_count: i64,
}

/// Rows of one record joined with its roles (`LEFT JOIN`, so a record without
/// roles is one row with no role) → the record and the roles in row order.
pub(super) fn fold_roles<T>(rows: impl IntoIterator<Item = (T, Option<String>)>) -> Option<(T, Vec<String>)> {
    let mut first = None;
    let mut roles = Vec::new();
    for (record, role) in rows {
        if first.is_none() {
            first = Some(record);
        }
        roles.extend(role);
    }
    first.map(|record| (record, roles))
}

const ACCOUNT_COLUMNS: &str = "a.id, a.email, a.email_normalized, a.given_name, a.family_name, a.function, \
     a.partner_id, p.name AS partner_name, a.state, a.password_hash, a.created_at, a.updated_at";

impl Store {
    pub async fn account_by_email(&self, email_normalized: &str) -> StoreResult<Option<AccountRow>> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN partners p ON p.id = a.partner_id \
             WHERE a.email_normalized = $1"
        );
        Ok(fetch!(fetch_optional(&self.pool), &sql; email_normalized))
    }

    pub async fn account_by_id(&self, id: &str) -> StoreResult<Option<AccountRow>> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN partners p ON p.id = a.partner_id WHERE a.id = $1"
        );
        Ok(fetch!(fetch_optional(&self.pool), &sql; id))
    }

    /// The account behind a typed address with what its sign-in needs to
    /// know next (whether it holds a TOTP factor, whether it holds any
    /// role): one read, so a password sign-in reads nothing else.
    pub async fn signin_account(&self, email_normalized: &str) -> StoreResult<Option<SigninAccountRow>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {ACCOUNT_COLUMNS}, \
                 (SELECT COUNT(*) FROM account_totp t WHERE t.account_id = a.id) AS totp_count, \
                 (SELECT COUNT(*) FROM account_roles r WHERE r.account_id = a.id) AS role_count \
                 FROM accounts a LEFT JOIN partners p ON p.id = a.partner_id WHERE a.email_normalized = $1"
            )
        });
        Ok(fetch!(fetch_optional(&self.pool), SQL.as_str(); email_normalized))
    }

    pub async fn account_roles(&self, account_id: &str) -> StoreResult<Vec<String>> {
        let sql = "SELECT role FROM account_roles WHERE account_id = $1 ORDER BY role";
        Ok(fetch_scalar!(fetch_all(&self.pool), sql; account_id))
    }
}

/// Inserts `a` as it stands (its `partner_name` is the partner's, not stored).
pub async fn insert(tx: &mut WriteTx, a: &AccountRow) -> StoreResult<()> {
    let p = &a.person;
    queue_insert!(
        tx, "account",
        "INSERT INTO accounts (id, email, email_normalized, given_name, family_name, function, partner_id, \
         state, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        &a.id, &p.email, &a.email_normalized, &p.given_name, &p.family_name, &p.function, &p.partner_id, &a.state,
        &a.password_hash, a.created_at, a.updated_at
    );
    Ok(())
}

/// Replaces the stored hash (first password, change, or parameter upgrade).
pub async fn update_password_hash(tx: &mut WriteTx, account_id: &str, hash: &str, now: Millis) -> StoreResult<()> {
    execute!(tx, "UPDATE accounts SET password_hash = $1, updated_at = $2 WHERE id = $3"; hash, now, account_id);
    Ok(())
}

pub async fn update_state(tx: &mut WriteTx, account_id: &str, state: &str, now: Millis) -> StoreResult<()> {
    execute!(tx, "UPDATE accounts SET state = $1, updated_at = $2 WHERE id = $3"; state, now, account_id);
    Ok(())
}

/// Grants a role; false when the account already held it.
pub async fn grant_role(tx: &mut WriteTx, account_id: &str, role: &str) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "INSERT INTO account_roles (account_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        account_id, role
    );
    Ok(done == 1)
}

/// Revokes a role; false when the account did not hold it.
pub async fn revoke_role(tx: &mut WriteTx, account_id: &str, role: &str) -> StoreResult<bool> {
    let done = execute!(tx, "DELETE FROM account_roles WHERE account_id = $1 AND role = $2"; account_id, role);
    Ok(done == 1)
}

const PARTNER_ACCOUNT_COLUMNS: &str =
    "id, email, email_normalized, given_name, family_name, function, state, closure_requested_on, closed_at";

/// The partner's accounts, read inside the transaction that will change them.
pub async fn of_partner(tx: &mut WriteTx, partner_id: &str) -> StoreResult<Vec<PartnerAccountRow>> {
    let sql = format!("SELECT {PARTNER_ACCOUNT_COLUMNS} FROM accounts WHERE partner_id = $1 ORDER BY email_normalized");
    Ok(fetch!(fetch_all(tx.conn().await?), &sql; partner_id))
}

/// Which of `emails` (normalised) already belong to an account outside
/// `partner_id`: another partner's agent or an administrator.
pub async fn taken_elsewhere(tx: &mut WriteTx, partner_id: &str, emails: &[String]) -> StoreResult<Vec<String>> {
    // Well under the bound parameters both databases take in one statement.
    const PER_QUERY: usize = 500;
    let mut taken = Vec::new();
    for some in emails.chunks(PER_QUERY) {
        let marks: Vec<String> = (0..some.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT email_normalized FROM accounts WHERE email_normalized IN ({}) \
             AND (partner_id IS NULL OR partner_id <> $1)",
            marks.join(", ")
        );
        let query = some.iter().fold(sqlx::query_scalar::<_, String>(&sql).bind(partner_id), |q, e| q.bind(e));
        taken.extend(query.fetch_all(tx.conn().await?).await?);
    }
    Ok(taken)
}

/// Writes an account's name and function; with `reopen`, a closed access
/// becomes pending again too (a new activation link will follow).
pub async fn set_identity(
    tx: &mut WriteTx,
    id: &str,
    given_name: &str,
    family_name: &str,
    function: &str,
    now: Millis,
    reopen: bool,
) -> StoreResult<()> {
    let sql = if reopen {
        "UPDATE accounts SET state = 'pending', closure_requested_on = NULL, closed_at = NULL, password_hash = NULL, \
         given_name = $1, family_name = $2, function = $3, updated_at = $4 WHERE id = $5"
    } else {
        "UPDATE accounts SET given_name = $1, family_name = $2, function = $3, updated_at = $4 WHERE id = $5"
    };
    queue!(tx, sql; given_name, family_name, function, now, id);
    Ok(())
}

/// Closes an access: the state, the closure request date, no password left.
pub async fn close(tx: &mut WriteTx, id: &str, closure_requested_on: &str, now: Millis) -> StoreResult<()> {
    queue!(
        tx,
        "UPDATE accounts SET state = 'closed', closure_requested_on = $1, closed_at = $2, password_hash = NULL, \
         updated_at = $2 WHERE id = $3";
        closure_requested_on, now, id
    );
    Ok(())
}

/// Deletes the habilitation record (the account row) of a closed account.
pub async fn delete(tx: &mut WriteTx, account_id: &str) -> StoreResult<u64> {
    Ok(execute!(tx, "DELETE FROM accounts WHERE id = $1 AND state = 'closed'"; account_id))
}

/// An account as provisioning sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartnerAccountRow {
    pub id: String,
    pub email: String,
    pub email_normalized: String,
    pub given_name: String,
    pub family_name: String,
    pub function: String,
    pub state: String,
    pub closure_requested_on: Option<String>,
    pub closed_at: Option<Millis>,
}

/// A partner's account with its last sign-in (from the connection log).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AdminAccountRow {
    pub id: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub function: String,
    pub state: String,
    pub closure_requested_on: Option<String>,
    pub last_signin_ms: Option<Millis>,
}

impl Store {
    /// Every (account, role) pair, by email then role.
    pub async fn administrators(&self) -> StoreResult<Vec<(AccountRow, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            account: AccountRow,
            role: String,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT a.id, a.email, a.email_normalized, a.given_name, a.family_name, a.function, a.partner_id, \
             p.name AS partner_name, a.state, a.password_hash, a.created_at, a.updated_at, r.role \
             FROM account_roles r JOIN accounts a ON a.id = r.account_id LEFT JOIN partners p ON p.id = a.partner_id \
             ORDER BY a.email_normalized, r.role",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.account, r.role)).collect())
    }

    pub async fn partner_accounts(&self, partner_id: &str) -> StoreResult<Vec<AdminAccountRow>> {
        Ok(sqlx::query_as(
            "SELECT a.id, a.email, a.given_name, a.family_name, a.function, a.state, a.closure_requested_on, \
             (SELECT MAX(e.time_ms) FROM events e WHERE e.account_id = a.id AND e.kind = 'signin') AS last_signin_ms \
             FROM accounts a WHERE a.partner_id = $1 ORDER BY a.email_normalized",
        )
        .bind(partner_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Who an account is, as its list, its views and its tokens show it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Person {
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub function: String,
    pub partner_id: Option<String>,
    pub partner_name: Option<String>,
}

/// An account as the command line lists and shows it: never its password
/// hash; its last sign-in and its live activation link, if any.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountListRow {
    pub id: String,
    #[sqlx(flatten)]
    pub person: Person,
    pub state: String,
    pub closure_requested_on: Option<String>,
    pub closed_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_signin_ms: Option<Millis>,
    /// When the newest activation link was made.
    pub activation_sent_at: Option<Millis>,
    /// The expiry of the activation link still usable (not used, not
    /// superseded; it may have expired: compare with now).
    pub activation_expires_at: Option<Millis>,
}

/// Which accounts a list holds.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter<'a> {
    pub partner_id: Option<&'a str>,
    pub state: Option<&'a str>,
    /// The normalized address of one account.
    pub email_normalized: Option<&'a str>,
}

impl Store {
    /// The accounts matching every filter given, by address; at most `limit`
    /// from `offset`.
    pub async fn account_list(
        &self,
        f: &AccountFilter<'_>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<AccountListRow>> {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        for (column, value) in
            [("a.partner_id", f.partner_id), ("a.state", f.state), ("a.email_normalized", f.email_normalized)]
        {
            if let Some(v) = value {
                values.push(v);
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!(
            "SELECT a.id, a.email, a.given_name, a.family_name, a.function, a.partner_id, p.name AS partner_name, \
             a.state, a.closure_requested_on, a.closed_at, a.created_at, a.updated_at, \
             (SELECT MAX(e.time_ms) FROM events e WHERE e.account_id = a.id AND e.kind = 'signin') AS last_signin_ms, \
             (SELECT MAX(l.created_at) FROM credential_links l \
              WHERE l.account_id = a.id AND l.purpose = 'activation') AS activation_sent_at, \
             (SELECT MAX(l.expires_at) FROM credential_links l WHERE l.account_id = a.id \
              AND l.purpose = 'activation' AND l.used_at IS NULL AND l.superseded_at IS NULL) AS activation_expires_at \
             FROM accounts a LEFT JOIN partners p ON p.id = a.partner_id {filter} \
             ORDER BY a.email_normalized LIMIT ${} OFFSET ${}",
            values.len() + 1,
            values.len() + 2
        );
        let mut query = sqlx::query_as(&sql);
        for v in values {
            query = query.bind(v);
        }
        Ok(query.bind(limit).bind(offset).fetch_all(&self.pool).await?)
    }
}
