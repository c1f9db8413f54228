//! The SQL write policy, for `sql_execute`: exactly one `INSERT`, `UPDATE` or `DELETE` on one
//! write-allowed table; `UPDATE` and `DELETE` need a `WHERE` unless the policy allows
//! otherwise; no DDL, no `ON CONFLICT`, no `UPDATE … FROM` / `DELETE … USING`; any subquery reads
//! only allowed tables, and the read policy's rules (catalogs, functions) apply throughout.
//! What runs is the statement printed back from the checked tree. Validation says nothing of
//! permission to run it: a write runs only with a human's approval.

use super::validate::{Checker, ReadPolicy, Refusal, Rule, SqlDialect, refuse};
use sqlparser::ast::{
    FromTable, ObjectName, SelectItem, Statement, TableFactor, TableObject, Visit,
    WildcardAdditionalOptions,
};
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// What a write may touch.
#[derive(Debug, Clone)]
pub struct WritePolicy {
    /// Tables subqueries may read (and the read rules).
    pub read: ReadPolicy,
    /// Tables that may be written (lower case).
    pub writable: BTreeSet<String>,
    /// Whether `UPDATE`/`DELETE` without `WHERE` is allowed (default false).
    pub allow_without_where: bool,
}

/// The kind of write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl WriteKind {
    /// `insert`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Insert => "insert",
            WriteKind::Update => "update",
            WriteKind::Delete => "delete",
        }
    }
}

/// An accepted write (not yet approved: see the approvals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedWrite {
    /// The statement, printed from the checked tree.
    pub sql: String,
    /// The same statement with `RETURNING *` (for previews: the rows it would write).
    pub sql_returning: String,
    /// What kind of write.
    pub kind: WriteKind,
    /// The table it writes.
    pub table: String,
    /// For `UPDATE`/`DELETE`: a `SELECT *` of the rows it targets (the "before" of a preview).
    pub select_before: Option<String>,
}

fn table_of(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .map_or_else(|| p.to_string(), |i| i.value.clone())
                .to_lowercase()
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn single_table(relation: &TableFactor, joins: usize, what: &str) -> Result<ObjectName, Refusal> {
    match relation {
        TableFactor::Table {
            name, args: None, ..
        } if joins == 0 => Ok(name.clone()),
        _ => refuse(
            Rule::Unsupported,
            format!("{what} must name exactly one table (no joins)"),
        ),
    }
}

/// Validates `sql` against `policy`.
pub fn validate_write(
    sql: &str,
    dialect: SqlDialect,
    policy: &WritePolicy,
) -> Result<ValidatedWrite, Refusal> {
    let mut statement = super::validate::parse_one(sql, dialect)?;
    let star = || {
        Some(vec![SelectItem::Wildcard(
            WildcardAdditionalOptions::default(),
        )])
    };
    let (kind, name, selection) = match &mut statement {
        Statement::Insert(i) => {
            if i.on.is_some() || i.replace_into || i.overwrite {
                return refuse(
                    Rule::Unsupported,
                    "INSERT … ON CONFLICT / REPLACE / OVERWRITE is not supported",
                );
            }
            let TableObject::TableName(name) = &i.table else {
                return refuse(Rule::Unsupported, "INSERT must name a table");
            };
            (WriteKind::Insert, name.clone(), None)
        }
        Statement::Update(u) => {
            if u.from.is_some() || !u.order_by.is_empty() || u.limit.is_some() {
                return refuse(
                    Rule::Unsupported,
                    "UPDATE … FROM / ORDER BY / LIMIT is not supported",
                );
            }
            let name = single_table(&u.table.relation, u.table.joins.len(), "UPDATE")?;
            (WriteKind::Update, name, u.selection.clone())
        }
        Statement::Delete(d) => {
            if d.using.is_some()
                || !d.tables.is_empty()
                || !d.order_by.is_empty()
                || d.limit.is_some()
            {
                return refuse(
                    Rule::Unsupported,
                    "DELETE … USING / multi-table / ORDER BY / LIMIT is not supported",
                );
            }
            let from = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let [t] = from.as_slice() else {
                return refuse(Rule::Unsupported, "DELETE must name exactly one table");
            };
            let name = single_table(&t.relation, t.joins.len(), "DELETE")?;
            (WriteKind::Delete, name, d.selection.clone())
        }
        other => {
            let text = other.to_string();
            let word = text.split_whitespace().next().unwrap_or("?").to_uppercase();
            return refuse(
                Rule::SelectOnly,
                format!("only INSERT, UPDATE or DELETE may be written, not {word}"),
            );
        }
    };
    let table = table_of(&name);
    let bare = table.rsplit('.').next().unwrap_or(&table).to_owned();
    if !policy.writable.contains(&table) && !policy.writable.contains(&bare) {
        let allowed: Vec<&str> = policy.writable.iter().map(String::as_str).collect();
        return refuse(
            Rule::TableNotAllowed,
            format!(
                "table `{table}` may not be written; writable tables: {}",
                allowed.join(", ")
            ),
        );
    }
    if kind != WriteKind::Insert && selection.is_none() && !policy.allow_without_where {
        return refuse(
            Rule::MissingWhere,
            format!(
                "{} without WHERE would change every row; add a WHERE clause",
                kind.as_str().to_uppercase()
            ),
        );
    }
    // Subqueries, functions and catalogs: the read rules, with the target table readable.
    let mut read = policy.read.clone();
    read.tables.entry(table.clone()).or_insert(None);
    read.tables.entry(bare).or_insert(None);
    let mut check = Checker::new(&read);
    if let ControlFlow::Break(r) = statement.visit(&mut check) {
        return Err(r);
    }
    let sql = statement.to_string();
    match &mut statement {
        Statement::Insert(i) if i.returning.is_none() => i.returning = star(),
        Statement::Update(u) if u.returning.is_none() => u.returning = star(),
        Statement::Delete(d) if d.returning.is_none() => d.returning = star(),
        _ => {}
    }
    let select_before = match kind {
        WriteKind::Insert => None,
        _ => Some(match &selection {
            Some(w) => format!("SELECT * FROM {name} WHERE {w}"),
            None => format!("SELECT * FROM {name}"),
        }),
    };
    Ok(ValidatedWrite {
        sql,
        sql_returning: statement.to_string(),
        kind,
        table,
        select_before,
    })
}
