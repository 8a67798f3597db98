//! PostgreSQL: the transactions of one batch of the group writer that have
//! the same statements, run as one statement over arrays.
//!
//! Under load a batch holds a dozen transactions of two or three kinds (a
//! code issued, a code exchanged, a refresh): the same statements with
//! other values. Each statement costs PostgreSQL its start-up (a portal, the
//! plan's executor state, the triggers' end of query) and one answer sent
//! over the socket, more than the rows it writes (BENCHMARKS.md, "The
//! scale-out path, second pass"). So the transactions of one shape become
//! one statement: each of their statements turned into one over the arrays
//! of its parameters' values, `unnest($1, $2, …) AS u_(v1, v2, …)`, one row
//! per transaction, and the statements of the shape joined as
//! data-modifying `WITH` clauses of the last (as `one_statement` does for
//! one transaction).
//!
//! That is the same as running the transactions one after the other:
//! - an `INSERT … VALUES (…)` of one row becomes `INSERT … SELECT … FROM
//!   unnest(…)`: the rows are the same, and a unique violation between two
//!   of them still fails the statement;
//! - an `UPDATE … WHERE key = $n AND …` becomes `UPDATE … FROM unnest(…)
//!   WHERE key = u_.vn AND …`, only when the transactions' values of `$n`
//!   all differ: a row has one value of `key`, so each row is matched by one
//!   transaction at most, as it would be alone; the `WHERE` must be a plain
//!   conjunction (no `OR`, no parentheses) for that to hold;
//! - the transactions of a batch are concurrent requests, none of which can
//!   know a row that another of the batch writes (it is committed with the
//!   batch, after both were made): running them in one snapshot changes
//!   nothing they read.
//!
//! Anything else (a `DELETE`, a statement whose error names what it creates,
//! one that returns rows, an `ON CONFLICT … DO UPDATE`, two transactions
//! updating the same key) runs as before. When the merged statement fails
//! (a code exchanged twice), the writer runs the batch again with one
//! savepoint per transaction, as it does for any failure, and each
//! transaction gets its own outcome.

use tokio_postgres::types::{ToSql, Type};

use super::write_tx::{Param, Queued, push_decimal, rewrite_parameters};

/// One statement standing for transactions of one shape: its text, its
/// parameters (one array per parameter of each of the shape's statements),
/// and the transactions it stands for (their indices in the batch).
pub(super) struct Merged {
    pub(super) sql: String,
    pub(super) columns: Vec<Column>,
    pub(super) jobs: Vec<usize>,
}

/// The values of one parameter across the transactions merged.
#[derive(Debug, PartialEq)]
pub(super) enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

impl Column {
    pub(super) fn pg_type(&self) -> Type {
        match self {
            Column::Text(_) => Type::TEXT_ARRAY,
            Column::Int(_) => Type::INT8_ARRAY,
        }
    }

    pub(super) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Text(v) => v,
            Column::Int(v) => v,
        }
    }
}

/// The groups of at least two transactions of `batch` (each one's queued
/// statements) that merge, each as one statement; the transactions in no
/// group run as they are. Of transactions that update the same key, the
/// first joins the group and the others stay apart.
pub(super) fn merge(batch: &[&[Queued]]) -> Vec<Merged> {
    let mut taken = vec![false; batch.len()];
    let mut merged = Vec::new();
    for first in 0..batch.len() {
        if taken[first] {
            continue;
        }
        let Some(forms) = batch[first].iter().map(Form::of).collect::<Option<Vec<_>>>() else { continue };
        // The updates' keys: (statement, parameter), and the values taken.
        let keys: Vec<(usize, usize)> = forms
            .iter()
            .enumerate()
            .filter_map(|(i, f)| if let Form::Update { key, .. } = f { Some((i, key - 1)) } else { None })
            .collect();
        let mut seen: Vec<Vec<&Param>> = vec![Vec::new(); keys.len()];
        let mut jobs = Vec::new();
        for (j, statements) in batch.iter().enumerate().skip(first) {
            if taken[j] || !same_shape(batch[first], statements) {
                continue;
            }
            let values: Vec<&Param> = keys.iter().map(|&(i, p)| &statements[i].params[p]).collect();
            if values.iter().zip(&seen).any(|(v, taken)| taken.contains(v)) {
                continue;
            }
            for (v, taken) in values.into_iter().zip(&mut seen) {
                taken.push(v);
            }
            jobs.push(j);
        }
        if jobs.len() < 2 {
            continue;
        }
        for &j in &jobs {
            taken[j] = true;
        }
        let members: Vec<&[Queued]> = jobs.iter().map(|&j| batch[j]).collect();
        let (sql, columns) = merged_statement(&forms, &members);
        merged.push(Merged { sql, columns, jobs });
    }
    merged
}

/// The same statements, with parameters of the same kinds.
fn same_shape(a: &[Queued], b: &[Queued]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.sql == y.sql
                && x.params.len() == y.params.len()
                && x.params.iter().zip(&y.params).all(|(p, q)| std::mem::discriminant(p) == std::mem::discriminant(q))
        })
}

/// The statement for `members`, transactions of one shape whose statements
/// have the `forms`.
fn merged_statement(forms: &[Form<'_>], members: &[&[Queued]]) -> (String, Vec<Column>) {
    let mut sql = String::new();
    let mut columns = Vec::new();
    let last = forms.len().saturating_sub(1);
    for (i, form) in forms.iter().enumerate() {
        if i == 0 && last > 0 {
            sql.push_str("WITH ");
        }
        if i != last {
            sql.push_str(if i > 0 { ", m" } else { "m" });
            push_decimal(&mut sql, i);
            sql.push_str(" AS (");
        }
        let offset = columns.len();
        let count = members.first().map_or(0, |m| m[i].params.len());
        for p in 0..count {
            columns.push(column(members.iter().map(|m| &m[i].params[p])));
        }
        form.write(offset, count, &mut sql);
        if i != last {
            sql.push_str(") ");
        }
    }
    (sql, columns)
}

/// A statement that merges, in its parts.
enum Form<'s> {
    /// `head VALUES (values)tail`: `head` names the table and columns.
    Insert { head: &'s str, values: &'s str, tail: &'s str },
    /// `UPDATE table SET assignments WHERE condition`, whose condition
    /// starts with `column = $key`.
    Update { table: &'s str, assignments: &'s str, condition: &'s str, key: usize },
}

impl<'s> Form<'s> {
    fn of(q: &'s Queued) -> Option<Self> {
        if q.conflict.is_some() || q.sql.contains("RETURNING") || q.params.is_empty() {
            return None;
        }
        if q.sql.starts_with("INSERT INTO ") {
            Self::insert(q.sql)
        } else if let Some(rest) = q.sql.strip_prefix("UPDATE ") {
            Self::update(rest)
        } else {
            None
        }
    }

    fn insert(sql: &'s str) -> Option<Self> {
        let at = sql.find(" VALUES (")?;
        let open = at + " VALUES ".len();
        let close = matching_parenthesis(sql, open)?;
        let tail = &sql[close + 1..];
        // One row; no parameter, nor update, after it.
        let plain_tail = tail.is_empty() || tail == " ON CONFLICT DO NOTHING";
        (plain_tail && !sql[..at].contains('$')).then(|| Form::Insert {
            head: &sql[..at],
            values: &sql[open + 1..close],
            tail,
        })
    }

    fn update(rest: &'s str) -> Option<Self> {
        let (table, rest) = rest.split_once(" SET ")?;
        let (assignments, condition) = rest.split_once(" WHERE ")?;
        let plain = |s: &str| !s.contains(" FROM ") && !s.contains(" WHERE ");
        let conjunction = !condition.contains(['(', ')']) && !condition.to_ascii_uppercase().contains(" OR ");
        if !plain(table) || table.contains(' ') || !plain(assignments) || !conjunction {
            return None;
        }
        let (column, rest) = condition.split_once(" = $")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let key: usize = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        let column_only = !column.is_empty() && column.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        (column_only && key > 0 && (after.is_empty() || after.starts_with(" AND "))).then_some(Form::Update {
            table,
            assignments,
            condition,
            key,
        })
    }

    /// The statement over the arrays `$(offset + 1)` … `$(offset + count)`.
    fn write(&self, offset: usize, count: usize, out: &mut String) {
        let as_column = |n: usize, out: &mut String| {
            out.push_str("u_.v");
            push_decimal(out, n);
            Some(())
        };
        let mut unnest = String::from("unnest(");
        for p in 1..=count {
            if p > 1 {
                unnest.push_str(", ");
            }
            unnest.push('$');
            push_decimal(&mut unnest, offset + p);
        }
        unnest.push_str(") AS u_(");
        for p in 1..=count {
            if p > 1 {
                unnest.push_str(", ");
            }
            unnest.push('v');
            push_decimal(&mut unnest, p);
        }
        unnest.push(')');
        match self {
            Form::Insert { head, values, tail } => {
                out.push_str(head);
                out.push_str(" SELECT ");
                rewrite_parameters(values, out, as_column);
                out.push_str(" FROM ");
                out.push_str(&unnest);
                out.push_str(tail);
            }
            Form::Update { table, assignments, condition, .. } => {
                out.push_str("UPDATE ");
                out.push_str(table);
                out.push_str(" SET ");
                rewrite_parameters(assignments, out, as_column);
                out.push_str(" FROM ");
                out.push_str(&unnest);
                out.push_str(" WHERE ");
                rewrite_parameters(condition, out, as_column);
            }
        }
    }
}

/// The index of the parenthesis that closes the one at `open`, outside
/// string literals.
fn matching_parenthesis(sql: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, b) in sql.bytes().enumerate().skip(open) {
        match b {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// One parameter's values; the shape guarantees one kind.
fn column<'p>(values: impl Iterator<Item = &'p Param>) -> Column {
    let values: Vec<&Param> = values.collect();
    match values.first() {
        Some(Param::Int(_)) => {
            Column::Int(values.iter().map(|v| if let Param::Int(i) = v { *i } else { None }).collect())
        }
        _ => Column::Text(values.iter().map(|v| if let Param::Text(t) = v { t.clone() } else { None }).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(new: &str, old: &str) -> Vec<Queued> {
        vec![
            Queued::new(
                "INSERT INTO refresh_tokens (token_hash, family_id, parent_hash) VALUES ($1, $2, $3)",
                vec![new.into(), "f".into(), Param::Text(Some(old.into()))],
            ),
            Queued::new(
                "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
                vec![7i64.into(), old.into()],
            ),
        ]
    }

    #[test]
    fn transactions_of_one_shape_become_one_statement_over_arrays() {
        let (a, b, c) = (refresh("n1", "o1"), refresh("n2", "o2"), refresh("n3", "o3"));
        let single = vec![Queued::new("INSERT INTO other (x) VALUES ($1)", vec!["y".into()])];
        let batch: Vec<&[Queued]> = vec![&a, &single, &b, &c];
        let merged = merge(&batch);
        assert_eq!(merged.len(), 1, "the one shape of three; the lone one stays apart");
        let m = &merged[0];
        assert_eq!(m.jobs, vec![0, 2, 3]);
        assert_eq!(
            m.sql,
            "WITH m0 AS (INSERT INTO refresh_tokens (token_hash, family_id, parent_hash) SELECT u_.v1, u_.v2, u_.v3 \
             FROM unnest($1, $2, $3) AS u_(v1, v2, v3)) \
             UPDATE refresh_tokens SET used_at = u_.v1 FROM unnest($4, $5) AS u_(v1, v2) \
             WHERE token_hash = u_.v2 AND used_at IS NULL"
        );
        assert_eq!(m.columns[0], Column::Text(vec![Some("n1".into()), Some("n2".into()), Some("n3".into())]));
        assert_eq!(m.columns[3], Column::Int(vec![Some(7), Some(7), Some(7)]));
        assert_eq!(m.columns[4], Column::Text(vec![Some("o1".into()), Some("o2".into()), Some("o3".into())]));
        assert_eq!(m.columns.len(), 5);
    }

    #[test]
    fn expressions_and_a_tail_keep_their_place() {
        let q = |v: &str| {
            vec![Queued::new(
                "INSERT INTO f (id, s) VALUES ($1, (SELECT id FROM s WHERE id = $2 AND x = ')' FOR SHARE)) \
                 ON CONFLICT DO NOTHING",
                vec![v.into(), "s".into()],
            )]
        };
        let (a, b) = (q("a"), q("b"));
        let merged = merge(&[&a, &b]);
        assert_eq!(
            merged[0].sql,
            "INSERT INTO f (id, s) SELECT u_.v1, (SELECT id FROM s WHERE id = u_.v2 AND x = ')' FOR SHARE) \
             FROM unnest($1, $2) AS u_(v1, v2) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn updates_of_one_key_by_two_transactions_stay_apart() {
        let (a, b) = (refresh("n1", "same"), refresh("n2", "same"));
        assert!(merge(&[&a, &b]).is_empty(), "one row would be updated once instead of twice");
        let (c, d, e) = (refresh("n3", "o1"), refresh("n4", "same"), refresh("n5", "o2"));
        let merged = merge(&[&a, &b, &c, &d, &e]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].jobs, vec![0, 2, 4], "the first of each key; the others apart");
    }

    #[test]
    fn statements_that_may_not_merge_keep_their_transactions_apart() {
        let twice = |sql: &'static str| {
            let a = vec![Queued::new(sql, vec!["1".into(), "k1".into()])];
            let b = vec![Queued::new(sql, vec!["2".into(), "k2".into()])];
            merge(&[&a, &b]).len()
        };
        assert_eq!(twice("UPDATE t SET a = $1 WHERE k = $2"), 1, "the plain form merges");
        assert_eq!(twice("DELETE FROM t WHERE a = $1 AND k = $2"), 0, "a delete");
        assert_eq!(twice("UPDATE t SET a = $1 WHERE k = $2 OR k IS NULL"), 0, "a disjunction");
        assert_eq!(twice("UPDATE t SET a = $1 WHERE k = $2 AND (a = 1 OR a = 2)"), 0, "parentheses");
        assert_eq!(twice("UPDATE t SET a = a + 1 WHERE k > $2 AND a = $1"), 0, "no key first");
        assert_eq!(twice("UPDATE t SET a = $1 WHERE k = $2 RETURNING a"), 0, "rows to read");
        assert_eq!(twice("UPDATE t AS x SET a = $1 WHERE k = $2"), 0, "an alias");
        assert_eq!(twice("INSERT INTO t (a, k) VALUES ($1, $2), ($2, $1)"), 0, "two rows");
        assert_eq!(twice("INSERT INTO t (a, k) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET a = $1"), 0, "an upsert");
        assert_eq!(twice("INSERT INTO t (a, k) SELECT $1, $2"), 0, "no VALUES");
        let named = |v: &str| {
            vec![Queued { conflict: Some("account"), ..Queued::new("INSERT INTO t (a) VALUES ($1)", vec![v.into()]) }]
        };
        let (a, b) = (named("1"), named("2"));
        assert!(merge(&[&a, &b]).is_empty(), "its error names what it creates");
    }

    #[test]
    fn parameters_of_other_kinds_are_other_shapes() {
        let a = vec![Queued::new("INSERT INTO t (a) VALUES ($1)", vec![1i64.into()])];
        let b = vec![Queued::new("INSERT INTO t (a) VALUES ($1)", vec!["1".into()])];
        assert!(merge(&[&a, &b]).is_empty());
    }
}
