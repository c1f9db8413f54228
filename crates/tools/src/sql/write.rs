//! The SQL write policy, for `sql_execute`: exactly one `INSERT … VALUES`, `UPDATE` or
//! `DELETE` on one write-allowed table, matched by its full name (schema included).
//!
//! Refused: DDL; every conflict-resolution form (`ON CONFLICT`, `OR REPLACE`, `REPLACE INTO`,
//! `ON DUPLICATE KEY`, `INSERT IGNORE`), which change or delete rows a preview does not show;
//! `UPDATE … FROM`, `DELETE … USING`, `ORDER BY`/`LIMIT` on writes; `INSERT … SELECT`;
//! a model-written `RETURNING` (Warden adds its own, for previews); `UPDATE`/`DELETE` without a
//! `WHERE`, or with one that is always true (`1=1`, `true`, `x = x`), unless the policy allows
//! it. Every expression (values, `SET`, `WHERE`, their subqueries) is held to the read policy:
//! allowed tables and columns, allowed functions.
//!
//! What runs is the statement printed back from the checked tree. Validation says nothing of
//! permission to run it: a write runs only with a human's approval.

use super::resolve::{Relation, Resolver, Scope, Source};
use super::validate::{ReadPolicy, Refusal, Rule, SqlDialect, parse_one, refuse};
use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Delete, Expr, FromTable, Ident, Insert, ObjectName,
    ObjectNamePart, SelectItem, SetExpr, Statement, TableFactor, TableObject, UnaryOperator,
    Update, Value,
};
use std::collections::BTreeSet;

/// What a write may touch.
#[derive(Debug, Clone)]
pub struct WritePolicy {
    /// What expressions and subqueries may read (and the read rules).
    pub read: ReadPolicy,
    /// Tables that may be written (lower case, `table` or `schema.table`).
    pub writable: BTreeSet<String>,
    /// Whether `UPDATE`/`DELETE` without a (meaningful) `WHERE` is allowed (default false).
    pub allow_without_where: bool,
}

impl WritePolicy {
    /// A policy writing these tables (lower case, optionally `schema.table`), subqueries
    /// held to `read`; `UPDATE`/`DELETE` need a `WHERE`.
    pub fn new(read: ReadPolicy, writable: BTreeSet<String>) -> Self {
        Self {
            read,
            writable,
            allow_without_where: false,
        }
    }
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
    /// What kind of write.
    pub kind: WriteKind,
    /// The table it writes: its key in the policy (`table` or `schema.table`).
    pub table: String,
    /// The table's name as written, without quotes (`schema.table` or `table`), for catalog
    /// lookups.
    pub table_name: Vec<String>,
    /// Columns an `UPDATE` assigns (lower case).
    pub assigned: Vec<String>,
    /// Rows an `INSERT` writes.
    pub insert_rows: usize,
    /// The columns a preview may show (`None`: every column).
    pub visible_columns: Option<BTreeSet<String>>,
    dialect: SqlDialect,
    target: ObjectName,
    /// The printed `WHERE` condition (printed, not copied: copying a tree recurses as deep as
    /// it nests).
    selection: Option<String>,
}

impl ValidatedWrite {
    /// `column` as a quoted identifier of this dialect.
    pub(crate) fn quote(&self, column: &str) -> String {
        match self.dialect {
            SqlDialect::Mysql => Ident::with_quote('`', column),
            _ => Ident::with_quote('"', column),
        }
        .to_string()
    }

    /// Select items for `columns`, `*` standing for every column (and none for `*` too).
    fn items(&self, columns: &[String]) -> Vec<SelectItem> {
        if columns.is_empty() {
            return vec![SelectItem::Wildcard(Default::default())];
        }
        columns
            .iter()
            .map(|c| match c.as_str() {
                "*" => SelectItem::Wildcard(Default::default()),
                c => SelectItem::UnnamedExpr(Expr::Identifier(match self.dialect {
                    SqlDialect::Mysql => Ident::with_quote('`', c),
                    _ => Ident::with_quote('"', c),
                })),
            })
            .collect()
    }

    /// `SELECT columns FROM table WHERE …` of the rows an `UPDATE`/`DELETE` targets (`*` when
    /// `columns` is empty), `FOR UPDATE` when `lock`.
    pub fn select_targets(&self, columns: &[String], lock: bool) -> String {
        let items: Vec<String> = self.items(columns).iter().map(|i| i.to_string()).collect();
        self.select_projection(&items.join(", "), lock)
    }

    /// `SELECT projection FROM table WHERE …`, `FOR UPDATE` when `lock`.
    pub(crate) fn select_projection(&self, projection: &str, lock: bool) -> String {
        let mut sql = format!("SELECT {projection} FROM {}", self.target);
        if let Some(w) = &self.selection {
            sql.push_str(&format!(" WHERE {w}"));
        }
        if lock {
            sql.push_str(" FOR UPDATE");
        }
        sql
    }

    /// The written table, as printed in the statement.
    pub(crate) fn target_sql(&self) -> String {
        self.target.to_string()
    }

    /// The statement with `RETURNING columns` (`*` when empty).
    pub fn returning(&self, columns: &[String]) -> String {
        // Appended to the printed statement (its last clause: nothing the policy accepts comes
        // after WHERE or VALUES), not set on a copy of the tree: copying a tree recurses as
        // deep as it nests.
        let items: Vec<String> = self.items(columns).iter().map(|i| i.to_string()).collect();
        format!("{} RETURNING {}", self.sql, items.join(", "))
    }
}

fn single_table(relation: &TableFactor, joins: usize, what: &str) -> Result<ObjectName, Refusal> {
    match relation {
        TableFactor::Table {
            name,
            alias: None,
            args: None,
            with_hints,
            version: None,
            partitions,
            json_path: None,
            sample: None,
            index_directives,
            inheritance: None,
            ..
        } if joins == 0
            && with_hints.is_empty()
            && partitions.is_empty()
            && index_directives.is_empty() =>
        {
            Ok(name.clone())
        }
        _ => refuse(
            Rule::Unsupported,
            format!("{what} must name exactly one table, without alias, joins or hints"),
        ),
    }
}

fn conflict<T>(what: &str) -> Result<T, Refusal> {
    refuse(
        Rule::ConflictClause,
        format!(
            "{what} may change or delete rows the preview does not show; write a plain INSERT, UPDATE or DELETE"
        ),
    )
}

/// Validates `sql` against `policy`. The printed statement is validated again and must print to
/// itself.
pub fn validate_write(
    sql: &str,
    dialect: SqlDialect,
    policy: &WritePolicy,
) -> Result<ValidatedWrite, Refusal> {
    let write = validate_write_once(sql, dialect, policy)?;
    match validate_write_once(&write.sql, dialect, policy) {
        Ok(again) if again.sql == write.sql => Ok(write),
        Err(r) if r.rule == Rule::TooComplex => Err(r),
        _ => refuse(
            Rule::Unsupported,
            "the statement does not print back to itself; rewrite it more plainly",
        ),
    }
}

fn validate_write_once(
    sql: &str,
    dialect: SqlDialect,
    policy: &WritePolicy,
) -> Result<ValidatedWrite, Refusal> {
    let statement = parse_one(sql, dialect)?;
    let mut resolver = Resolver::new(&policy.read, dialect);
    let (kind, name, selection) = match &statement {
        Statement::Insert(i) => (WriteKind::Insert, insert_target(i, &mut resolver)?, None),
        Statement::Update(u) => (WriteKind::Update, update_target(u)?, u.selection.as_ref()),
        Statement::Delete(d) => (WriteKind::Delete, delete_target(d)?, d.selection.as_ref()),
        other => {
            let text = other.to_string();
            let word = text.split_whitespace().next().unwrap_or("?").to_uppercase();
            return refuse(
                Rule::SelectOnly,
                format!("only INSERT, UPDATE or DELETE may be written, not {word}"),
            );
        }
    };
    let table = writable_key(&name, dialect, policy)?;
    let table_name: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect();
    // The target's own columns, as the read policy sees them (all, if it is not readable).
    let visible_columns = policy.read.tables.get(&table).cloned().flatten();
    let scope = target_scope(&table, &table_name, policy);
    let insert_rows = match &statement {
        Statement::Insert(i) => match i.source.as_deref().map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(v)) => v.rows.len(),
            _ => 0,
        },
        _ => 0,
    };
    let assigned = match &statement {
        Statement::Update(u) => {
            assigned_columns(u, &table, visible_columns.as_ref(), &mut resolver, &scope)?
        }
        _ => Vec::new(),
    };
    check_selection(kind, selection, dialect, policy, &mut resolver, &scope)?;
    Ok(ValidatedWrite {
        sql: statement.to_string(),
        kind,
        table,
        table_name,
        assigned,
        insert_rows,
        visible_columns,
        dialect,
        target: name,
        selection: selection.map(|w| w.to_string()),
    })
}

/// An INSERT's checks: a plain `INSERT INTO table (columns) VALUES (…)` (no conflict
/// clauses, no `SELECT`, no `RETURNING`) whose values resolve under the read policy; its
/// target table.
fn insert_target(i: &Insert, resolver: &mut Resolver<'_>) -> Result<ObjectName, Refusal> {
    if i.or.is_some() {
        return conflict("INSERT OR …");
    }
    if i.replace_into {
        return conflict("REPLACE INTO");
    }
    if i.ignore {
        return conflict("INSERT IGNORE");
    }
    if i.on.is_some() {
        return conflict("ON CONFLICT / ON DUPLICATE KEY UPDATE");
    }
    if !i.optimizer_hints.is_empty()
        || i.table_alias.is_some()
        || i.by_name
        || i.overwrite
        || i.partitioned.is_some()
        || !i.after_columns.is_empty()
        || i.overriding.is_some()
        || i.output.is_some()
        || i.priority.is_some()
        || i.insert_alias.is_some()
        || i.settings.is_some()
        || i.format_clause.is_some()
        || i.multi_table_insert_type.is_some()
        || !i.assignments.is_empty()
    {
        return refuse(
            Rule::Unsupported,
            "write a plain INSERT INTO table (columns) VALUES (…)",
        );
    }
    if i.returning.is_some() {
        return refuse(
            Rule::Unsupported,
            "RETURNING is not accepted: the preview shows the rows written",
        );
    }
    let TableObject::TableName(name) = &i.table else {
        return refuse(Rule::Unsupported, "INSERT must name a table");
    };
    let Some(source) = &i.source else {
        return refuse(Rule::Unsupported, "INSERT needs VALUES");
    };
    let SetExpr::Values(values) = source.body.as_ref() else {
        return refuse(
            Rule::Unsupported,
            "INSERT … SELECT is not accepted; write the rows with VALUES",
        );
    };
    if source.with.is_some()
        || source.order_by.is_some()
        || source.limit_clause.is_some()
        || source.fetch.is_some()
    {
        return refuse(Rule::Unsupported, "write a plain INSERT … VALUES (…)");
    }
    let scope = Scope::default();
    for row in &values.rows {
        for e in row.iter() {
            resolver.expr(e, &scope)?;
        }
    }
    Ok(name.clone())
}

/// An UPDATE's checks: one table, no `FROM` / `ORDER BY` / `LIMIT`, no `RETURNING`; its
/// target table (its assignments are checked once the table's policy is known).
fn update_target(u: &Update) -> Result<ObjectName, Refusal> {
    if u.or.is_some() {
        return conflict("UPDATE OR …");
    }
    if u.from.is_some() || !u.order_by.is_empty() || u.limit.is_some() {
        return refuse(
            Rule::Unsupported,
            "UPDATE … FROM / ORDER BY / LIMIT is not supported",
        );
    }
    if !u.optimizer_hints.is_empty()
        || u.on_cluster.is_some()
        || u.output.is_some()
        || u.settings.is_some()
    {
        return refuse(Rule::Unsupported, "write a plain UPDATE … SET … WHERE …");
    }
    if u.returning.is_some() {
        return refuse(
            Rule::Unsupported,
            "RETURNING is not accepted: the preview shows the rows written",
        );
    }
    single_table(&u.table.relation, u.table.joins.len(), "UPDATE")
}

/// A DELETE's checks: one table, no `USING` / `ORDER BY` / `LIMIT`, no `RETURNING`; its
/// target table.
fn delete_target(d: &Delete) -> Result<ObjectName, Refusal> {
    if d.using.is_some() || !d.tables.is_empty() || !d.order_by.is_empty() || d.limit.is_some() {
        return refuse(
            Rule::Unsupported,
            "DELETE … USING / multi-table / ORDER BY / LIMIT is not supported",
        );
    }
    if !d.optimizer_hints.is_empty()
        || d.on_cluster.is_some()
        || d.output.is_some()
        || d.settings.is_some()
    {
        return refuse(Rule::Unsupported, "write a plain DELETE FROM … WHERE …");
    }
    if d.returning.is_some() {
        return refuse(
            Rule::Unsupported,
            "RETURNING is not accepted: the preview shows the rows written",
        );
    }
    let from = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [t] = from.as_slice() else {
        return refuse(Rule::Unsupported, "DELETE must name exactly one table");
    };
    single_table(&t.relation, t.joins.len(), "DELETE")
}

/// The scope a write's expressions resolve in: its target table, with the columns the read
/// policy allows (all, if it is not readable) and those known to exist.
fn target_scope<'s, 'p>(
    table: &str,
    table_name: &[String],
    policy: &'p WritePolicy,
) -> Scope<'s, 'p> {
    let mut scope = Scope::default();
    scope.relations.push(Relation {
        name: table_name
            .last()
            .cloned()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        schema: None,
        source: Source::Table {
            key: table.to_owned(),
            columns: policy.read.tables.get(table).and_then(|c| c.as_ref()),
            all: policy.read.known_columns.get(table),
        },
    });
    scope
}

/// An UPDATE's assigned columns, each visible to the tools (a hidden column's change could
/// not be shown in the preview), with their values resolved under the read policy.
fn assigned_columns<'p>(
    u: &Update,
    table: &str,
    visible_columns: Option<&BTreeSet<String>>,
    resolver: &mut Resolver<'p>,
    scope: &Scope<'_, 'p>,
) -> Result<Vec<String>, Refusal> {
    let mut assigned = Vec::new();
    for a in &u.assignments {
        let targets: Vec<&ObjectName> = match &a.target {
            AssignmentTarget::ColumnName(n) => vec![n],
            AssignmentTarget::Tuple(ns) => ns.iter().collect(),
        };
        for t in targets {
            match t.0.last() {
                Some(ObjectNamePart::Identifier(i)) => {
                    let c = i.value.to_ascii_lowercase();
                    // A hidden column's change could not be shown in the preview.
                    if let Some(v) = visible_columns
                        && !v.contains(&c)
                    {
                        return refuse(
                            Rule::ColumnNotAllowed,
                            format!(
                                "column `{c}` of {table} is not visible to the tools, so its change cannot be previewed; allowed columns: {}",
                                v.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
                            ),
                        );
                    }
                    assigned.push(c)
                }
                _ => return refuse(Rule::Unsupported, "SET must name columns"),
            }
        }
        resolver.expr(&a.value, scope)?;
    }
    Ok(assigned)
}

/// The WHERE of an UPDATE or DELETE: on MySQL free of values that change from moment to
/// moment (its rows are locked by one statement and written by another), resolved under the
/// read policy, and filtering on the table's columns unless `allow_without_where`.
fn check_selection<'p>(
    kind: WriteKind,
    selection: Option<&Expr>,
    dialect: SqlDialect,
    policy: &WritePolicy,
    resolver: &mut Resolver<'p>,
    scope: &Scope<'_, 'p>,
) -> Result<(), Refusal> {
    // MySQL locks the target rows with one statement and writes with another: a WHERE whose
    // value changes between them (the clock, randomness) could write rows other than those
    // locked and previewed.
    if dialect == SqlDialect::Mysql
        && let Some(w) = selection
        && let Some(f) = super::resolve::time_dependent_call(w)
    {
        return refuse(
            Rule::FunctionNotAllowed,
            format!(
                "`{f}` changes from one moment to the next: it may not choose the rows a write changes; compare with a fixed value"
            ),
        );
    }
    let meaningful = match selection {
        Some(w) => {
            let before = resolver.columns_seen;
            resolver.expr(w, scope)?;
            resolver.columns_seen > before && !always_true(w)
        }
        None => false,
    };
    if kind != WriteKind::Insert && !meaningful && !policy.allow_without_where {
        return refuse(
            Rule::MissingWhere,
            format!(
                "{} without a WHERE that filters on the table's columns would change every row; add one",
                kind.as_str().to_uppercase()
            ),
        );
    }
    Ok(())
}

/// The policy key of a writable table, matched by its full name: `archive.orders` is not
/// `orders`. PostgreSQL's `public` and SQLite's `main` are the default schemas.
fn writable_key(
    name: &ObjectName,
    dialect: SqlDialect,
    policy: &WritePolicy,
) -> Result<String, Refusal> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if dialect == SqlDialect::Postgres && i.quote_style.is_some() => {
                i.value.clone()
            }
            Some(i) if dialect == SqlDialect::Mysql => i.value.clone(),
            Some(i) => i.value.to_ascii_lowercase(),
            None => p.to_string(),
        })
        .collect();
    let candidates = super::resolve::key_candidates(dialect, &parts);
    match candidates.into_iter().find(|c| policy.writable.contains(c)) {
        Some(k) => Ok(k),
        None => {
            let allowed: Vec<&str> = policy.writable.iter().map(String::as_str).collect();
            refuse(
                Rule::TableNotAllowed,
                format!(
                    "table `{}` may not be written; writable tables: {}",
                    parts.join("."),
                    allowed.join(", ")
                ),
            )
        }
    }
}

/// Whether a `WHERE` clause keeps every row, as far as can be told without data: one that
/// names no column (`1=1`, `true`, `EXISTS (SELECT 1 …)`), compares an expression with itself
/// (`id = id`), matches everything with `LIKE '%'`, or is an `OR` with such a side.
fn always_true(e: &Expr) -> bool {
    match e {
        Expr::Nested(x) => always_true(x),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => always_true(left) || always_true(right),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => always_true(left) && always_true(right),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq | BinaryOperator::GtEq | BinaryOperator::LtEq,
            right,
        } if left == right => true,
        Expr::IsNotDistinctFrom(a, b) if a == b => true,
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } if expr == low && expr == high => true,
        Expr::Like {
            negated: false,
            pattern,
            ..
        }
        | Expr::ILike {
            negated: false,
            pattern,
            ..
        } if matches!(pattern.as_ref(), Expr::Value(v)
            if matches!(&v.value, Value::SingleQuotedString(s) if !s.is_empty() && s.chars().all(|c| c == '%'))) =>
        {
            true
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => !mentions_column(expr),
        _ => !mentions_column(e),
    }
}

/// Whether `e` names a column anywhere (subqueries included).
fn mentions_column(e: &Expr) -> bool {
    super::resolve::mentions_name(e)
}
