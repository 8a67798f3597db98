//! `coop-idp export` / `coop-idp import`: every table as JSON lines, to move
//! an installation from SQLite to PostgreSQL (or back).
//!
//! Both databases have the same tables with the same columns (one migration
//! text per database, identical), each column a `BIGINT` or a `TEXT`, so a
//! row is a JSON object of numbers, strings and nulls. The file:
//!
//! ```text
//! {"format":"coop-idp-export","version":1,"migrations":[1,2,…]}
//! {"table":"partners","row":{"id":"cc-girou","name":"…","created_at":…}}
//! …
//! {"end":true,"rows":1234}
//! ```
//!
//! Tables come parents first (foreign keys), so an import inserts in file
//! order. The import runs in one transaction into an empty, migrated
//! database at the same migration: all of it or nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write};

use futures::TryStreamExt;
use serde_json::{Map, Value, json};
use sqlx::{AnyConnection, Row};

use super::{Backend, Store, StoreError, StoreResult};

const FORMAT: &str = "coop-idp-export";
const VERSION: i64 = 1;
/// Filled by the migrations themselves (the alert cursor's starting
/// point): replaced by the file's rows rather than counted as data.
const SEEDED: &[&str] = &["job_cursors"];

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Format { line: usize, reason: String },
    #[error(
        "la base cible n'est pas vide (table {table} : {rows} lignes) ; l'import exige une base neuve / \
         the target database is not empty (table {table}: {rows} rows); import needs a fresh database"
    )]
    NotEmpty { table: String, rows: i64 },
    #[error(
        "the file was written at migrations {file:?}, this database is at {target:?}: use the same coop-idp version"
    )]
    Migrations { file: Vec<i64>, target: Vec<i64> },
}

impl From<sqlx::Error> for TransferError {
    fn from(e: sqlx::Error) -> Self {
        TransferError::Store(StoreError::Database(e))
    }
}

fn format_error(line: usize, reason: impl Into<String>) -> TransferError {
    TransferError::Format { line, reason: reason.into() }
}

/// A table's columns and whether each holds integers.
struct Table {
    name: String,
    columns: Vec<(String, bool)>,
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The tables (without sqlx's own), parents before children.
async fn tables(conn: &mut AnyConnection, backend: Backend) -> StoreResult<Vec<Table>> {
    let (names_sql, links_sql) = match backend {
        Backend::Sqlite => (
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            "SELECT m.name, p.\"table\" FROM sqlite_master m, pragma_foreign_key_list(m.name) p \
             WHERE m.type = 'table'",
        ),
        Backend::Postgres => (
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            "SELECT DISTINCT tc.table_name::text, ccu.table_name::text \
             FROM information_schema.table_constraints tc \
             JOIN information_schema.constraint_column_usage ccu \
               ON tc.constraint_name = ccu.constraint_name AND tc.constraint_schema = ccu.constraint_schema \
             WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()",
        ),
    };
    let names: BTreeSet<String> = sqlx::query_scalar::<_, String>(names_sql)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .filter(|n| !n.starts_with("_sqlx"))
        .collect();
    let links: Vec<(String, String)> = sqlx::query_as(links_sql).fetch_all(&mut *conn).await?;
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = names.iter().map(|n| (n.as_str(), BTreeSet::new())).collect();
    for (child, parent) in &links {
        if child != parent
            && names.contains(parent)
            && let Some(p) = parents.get_mut(child.as_str())
        {
            p.insert(parent.as_str());
        }
    }
    // Kahn's order; a cycle (none in the schema) would leave tables out, so
    // they are appended at the end rather than lost.
    let mut ordered: Vec<String> = Vec::new();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    loop {
        let ready: Vec<&str> = parents
            .iter()
            .filter(|(n, ps)| !done.contains(*n) && ps.iter().all(|p| done.contains(p)))
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            break;
        }
        for n in ready {
            done.insert(n);
            ordered.push(n.to_string());
        }
    }
    ordered.extend(names.iter().filter(|n| !done.contains(n.as_str())).cloned());

    let mut out = Vec::new();
    for name in ordered {
        let columns_sql = match backend {
            Backend::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
            Backend::Postgres => {
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        let columns: Vec<(String, String)> = sqlx::query_as(columns_sql).bind(&name).fetch_all(&mut *conn).await?;
        let columns = columns.into_iter().map(|(c, t)| (c, t.to_ascii_lowercase().contains("int"))).collect();
        out.push(Table { name, columns });
    }
    Ok(out)
}

async fn migrations(conn: &mut AnyConnection) -> StoreResult<Vec<i64>> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(conn).await?)
}

impl Store {
    /// Writes every table to `out` from one consistent snapshot; returns the
    /// number of rows per table.
    pub async fn export(&self, out: &mut impl Write) -> Result<BTreeMap<String, i64>, TransferError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        }
        let versions = migrations(&mut tx).await?;
        writeln!(out, "{}", json!({"format": FORMAT, "version": VERSION, "migrations": versions}))?;
        let mut counts = BTreeMap::new();
        let mut total = 0i64;
        for table in tables(&mut tx, self.backend).await? {
            let list: Vec<String> = table.columns.iter().map(|(c, _)| quoted(c)).collect();
            let sql = format!("SELECT {} FROM {} ORDER BY 1", list.join(", "), quoted(&table.name));
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            let mut n = 0i64;
            while let Some(row) = rows.try_next().await? {
                let mut object = Map::new();
                for (i, (column, integer)) in table.columns.iter().enumerate() {
                    let value = if *integer {
                        row.try_get::<Option<i64>, _>(i)?.map(Value::from)
                    } else {
                        row.try_get::<Option<String>, _>(i)?.map(Value::from)
                    };
                    object.insert(column.clone(), value.unwrap_or(Value::Null));
                }
                writeln!(out, "{}", json!({"table": table.name, "row": object}))?;
                n += 1;
            }
            drop(rows);
            total += n;
            counts.insert(table.name, n);
        }
        writeln!(out, "{}", json!({"end": true, "rows": total}))?;
        out.flush()?;
        tx.rollback().await?;
        Ok(counts)
    }

    /// Reads a file written by [`Store::export`] into this database, which
    /// must be migrated, at the same migrations, and empty. One transaction:
    /// a bad line or an interruption leaves the database as it was.
    pub async fn import(&self, input: impl BufRead) -> Result<BTreeMap<String, i64>, TransferError> {
        let mut tx = self.begin_write().await?;
        let conn = tx.conn().await?;
        let target = migrations(conn).await?;
        let tables = tables(conn, self.backend).await?;
        for t in &tables {
            let (rows,): (i64,) =
                sqlx::query_as(&format!("SELECT COUNT(*) FROM {}", quoted(&t.name))).fetch_one(&mut *conn).await?;
            if rows > 0 && !SEEDED.contains(&t.name.as_str()) {
                return Err(TransferError::NotEmpty { table: t.name.clone(), rows });
            }
        }
        for seeded in SEEDED {
            sqlx::query(&format!("DELETE FROM {}", quoted(seeded))).execute(&mut *conn).await?;
        }
        let by_name: HashMap<&str, &Table> = tables.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        let mut total = 0i64;
        let mut ended = false;
        for (index, line) in input.lines().enumerate() {
            let number = index + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if ended {
                return Err(format_error(number, "data after the end line"));
            }
            let value: Value = serde_json::from_str(&line).map_err(|e| format_error(number, e.to_string()))?;
            if number == 1 {
                if value["format"] != FORMAT || value["version"] != VERSION {
                    return Err(format_error(1, format!("not a {FORMAT} file of version {VERSION}")));
                }
                let file: Vec<i64> = value["migrations"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                if file != target {
                    return Err(TransferError::Migrations { file, target });
                }
                continue;
            }
            if value["end"] == true {
                if value["rows"].as_i64() != Some(total) {
                    return Err(format_error(
                        number,
                        format!("the file announces {} rows, it holds {total}", value["rows"]),
                    ));
                }
                ended = true;
                continue;
            }
            let name = value["table"].as_str().ok_or_else(|| format_error(number, "no table"))?;
            let table = by_name.get(name).ok_or_else(|| format_error(number, format!("unknown table {name}")))?;
            let row = value["row"].as_object().ok_or_else(|| format_error(number, "no row"))?;
            insert(&mut tx, table, row, number).await?;
            *counts.entry(name.to_string()).or_default() += 1;
            total += 1;
        }
        if !ended {
            return Err(format_error(0, "the file ends before its end line: truncated"));
        }
        tx.commit().await?;
        Ok(counts)
    }
}

async fn insert(
    tx: &mut super::WriteTx,
    table: &Table,
    row: &Map<String, Value>,
    line: usize,
) -> Result<(), TransferError> {
    for column in row.keys() {
        if !table.columns.iter().any(|(c, _)| c == column) {
            return Err(format_error(line, format!("unknown column {}.{column}", table.name)));
        }
    }
    let present: Vec<&(String, bool)> = table.columns.iter().filter(|(c, _)| row.contains_key(c)).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quoted(&table.name),
        present.iter().map(|(c, _)| quoted(c)).collect::<Vec<_>>().join(", "),
        (1..=present.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (column, integer) in present {
        let value = &row[column.as_str()];
        // Typed even when null: PostgreSQL refuses a text-typed null in a
        // BIGINT column.
        query = match (integer, value) {
            (true, Value::Null) => query.bind(None::<i64>),
            (true, Value::Number(n)) => {
                query.bind(n.as_i64().ok_or_else(|| format_error(line, format!("{column}: not a whole number")))?)
            }
            (false, Value::Null) => query.bind(None::<String>),
            (false, Value::String(s)) => query.bind(s.clone()),
            _ => return Err(format_error(line, format!("{column}: unexpected value {value}"))),
        };
    }
    query.execute(tx.conn().await?).await?;
    Ok(())
}
