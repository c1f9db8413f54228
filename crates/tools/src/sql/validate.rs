//! The SQL read policy. A statement is parsed in the database's dialect and accepted only if
//! it is exactly one `SELECT` (no data-modifying CTE, no `SELECT … INTO`, no locking clause)
//! over allow-listed tables (and, where configured, columns), touching no system catalog and
//! calling no denied function. The `LIMIT` is added or capped. What runs is the statement
//! printed back from the checked syntax tree, never the text the model sent: comments and
//! anything the parser did not take as part of the one statement are gone.
//!
//! Every refusal names the rule it broke, so the model can correct itself. This is the only
//! module that knows the `sqlparser` AST (pinned: it changes most releases).

use sqlparser::ast::{
    Expr, LimitClause, ObjectName, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    Value, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

/// Which database the statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl SqlDialect {
    pub(crate) fn parser(self) -> Box<dyn Dialect> {
        match self {
            SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
            SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
        }
    }
}

/// What a read may touch.
#[derive(Debug, Clone)]
pub struct ReadPolicy {
    /// Allowed tables (lower case, optionally `schema.table`), each with its allowed columns
    /// (`None`: every column).
    pub tables: BTreeMap<String, Option<BTreeSet<String>>>,
    /// Rows returned at most: a missing `LIMIT` is added, a larger one capped.
    pub max_rows: u64,
    /// Functions refused on top of the built-in list (lower case).
    pub denied_functions: BTreeSet<String>,
}

/// The rule a statement broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Not valid SQL in this dialect.
    Syntax,
    /// Not exactly one statement (stacked queries).
    OneStatement,
    /// Not a `SELECT` (or a data-modifying CTE inside one).
    SelectOnly,
    /// `SELECT … INTO` creates a table.
    SelectInto,
    /// `FOR UPDATE` / `FOR SHARE` and the like take locks.
    Locking,
    /// A table that is not allow-listed.
    TableNotAllowed,
    /// A column that is not allow-listed (or `*` on a table with a column list).
    ColumnNotAllowed,
    /// `pg_catalog`, `information_schema`, `sqlite_master` and the like.
    SystemCatalog,
    /// A function on the deny list.
    FunctionDenied,
    /// A table-valued function in `FROM`.
    TableFunction,
    /// A clause the policy does not accept (e.g. `FETCH`, use `LIMIT`).
    Unsupported,
    /// `UPDATE` or `DELETE` without `WHERE`.
    MissingWhere,
}

impl Rule {
    /// The rule's stable name, as the model and the audit log see it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Syntax => "syntax",
            Rule::OneStatement => "one_statement",
            Rule::SelectOnly => "select_only",
            Rule::SelectInto => "no_select_into",
            Rule::Locking => "no_locking",
            Rule::TableNotAllowed => "table_not_allowed",
            Rule::ColumnNotAllowed => "column_not_allowed",
            Rule::SystemCatalog => "no_system_catalog",
            Rule::FunctionDenied => "function_denied",
            Rule::TableFunction => "no_table_functions",
            Rule::Unsupported => "unsupported",
            Rule::MissingWhere => "where_required",
        }
    }
}

/// A refused statement: the rule and a message for the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused ({}): {message}", rule.name())]
pub struct Refusal {
    /// The rule broken.
    pub rule: Rule,
    /// What exactly, in words the model can act on.
    pub message: String,
}

pub(crate) fn refuse<T>(rule: Rule, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        rule,
        message: message.into(),
    })
}

/// An accepted statement, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRead {
    /// The statement to run, printed from the checked tree, with its `LIMIT`.
    pub sql: String,
    /// The allow-listed tables it reads.
    pub tables: BTreeSet<String>,
}

/// Functions no read may call: they sleep, read or write files, reach other servers, run SQL
/// given as text, change settings or sequences, or load code.
const DENIED_FUNCTIONS: &[&str] = &[
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_put",
    "lo_from_bytea",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "set_config",
    "current_setting",
    "nextval",
    "setval",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "table_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
    "randomblob",
    "zeroblob",
];

/// Name prefixes of functions and tables that belong to the database itself.
const SYSTEM_PREFIXES: &[&str] = &["pg_", "sqlite_", "lo_", "dblink"];
/// Schemas that are the database's own catalogs.
const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema", "pg_toast", "temp"];

fn lower_name(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) => i.value.to_lowercase(),
            None => p.to_string().to_lowercase(),
        })
        .collect()
}

/// Parses `sql` in `dialect` into exactly one statement (stacked queries are refused).
pub(crate) fn parse_one(sql: &str, dialect: SqlDialect) -> Result<Statement, Refusal> {
    let mut statements = match Parser::parse_sql(dialect.parser().as_ref(), sql) {
        Ok(s) => s,
        Err(e) => return refuse(Rule::Syntax, format!("the statement does not parse: {e}")),
    };
    if statements.len() != 1 {
        return refuse(
            Rule::OneStatement,
            format!(
                "send exactly one statement ({} found); stacked queries are refused",
                statements.len()
            ),
        );
    }
    Ok(statements.remove(0))
}

/// Validates `sql` against `policy`.
pub fn validate(
    sql: &str,
    dialect: SqlDialect,
    policy: &ReadPolicy,
) -> Result<ValidatedRead, Refusal> {
    let mut statement = parse_one(sql, dialect)?;
    let Statement::Query(query) = &mut statement else {
        let kind = statement.to_string();
        let kind = kind.split_whitespace().next().unwrap_or("?").to_uppercase();
        return refuse(
            Rule::SelectOnly,
            format!("only SELECT is allowed, not {kind}"),
        );
    };
    let mut check = Checker {
        policy,
        ctes: BTreeSet::new(),
        tables: BTreeSet::new(),
        aliases: BTreeSet::new(),
    };
    collect_names(query, &mut check.ctes, &mut check.aliases);
    if let ControlFlow::Break(r) = query.visit(&mut check) {
        return Err(r);
    }
    check.columns(query)?;
    cap_limit(query, policy.max_rows)?;
    Ok(ValidatedRead {
        sql: statement.to_string(),
        tables: check.tables,
    })
}

/// CTE names (which may be read like tables) and the aliases the query defines (which may be
/// named like columns), anywhere in it.
fn collect_names(query: &Query, ctes: &mut BTreeSet<String>, aliases: &mut BTreeSet<String>) {
    struct Names<'a> {
        ctes: &'a mut BTreeSet<String>,
        aliases: &'a mut BTreeSet<String>,
    }
    impl Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.ctes.insert(cte.alias.name.value.to_lowercase());
                    for c in &cte.alias.columns {
                        self.aliases.insert(c.name.value.to_lowercase());
                    }
                }
            }
            if let SetExpr::Select(s) = q.body.as_ref() {
                for item in &s.projection {
                    if let SelectItem::ExprWithAlias { alias, .. } = item {
                        self.aliases.insert(alias.value.to_lowercase());
                    }
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            let alias = match t {
                TableFactor::Table { alias, .. } | TableFactor::Derived { alias, .. } => alias,
                _ => &None,
            };
            if let Some(a) = alias {
                self.aliases.insert(a.name.value.to_lowercase());
                for c in &a.columns {
                    self.aliases.insert(c.name.value.to_lowercase());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = query.visit(&mut Names { ctes, aliases });
}

pub(crate) struct Checker<'a> {
    policy: &'a ReadPolicy,
    ctes: BTreeSet<String>,
    /// Allow-listed tables read (their policy keys).
    tables: BTreeSet<String>,
    aliases: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    /// A checker of relations, functions and catalogs under `policy` (for statements other
    /// than a top-level query: no CTE names are known).
    pub(crate) fn new(policy: &'a ReadPolicy) -> Self {
        Self {
            policy,
            ctes: BTreeSet::new(),
            tables: BTreeSet::new(),
            aliases: BTreeSet::new(),
        }
    }

    /// The policy key of a relation, or why it is refused.
    fn table(&self, parts: &[String]) -> Result<Option<String>, Refusal> {
        let shown = parts.join(".");
        if parts.iter().any(|p| SYSTEM_SCHEMAS.contains(&p.as_str()))
            || parts
                .last()
                .is_some_and(|t| SYSTEM_PREFIXES.iter().any(|p| t.starts_with(p)))
        {
            return refuse(
                Rule::SystemCatalog,
                format!("`{shown}` is a system catalog; only the allowed tables may be read"),
            );
        }
        if parts.len() == 1 && self.ctes.contains(&parts[0]) {
            return Ok(None);
        }
        let candidates: Vec<String> = match parts {
            [t] => vec![t.clone()],
            [s, t] if s == "public" || s == "main" => vec![format!("{s}.{t}"), t.clone()],
            [s, t] => vec![format!("{s}.{t}")],
            _ => vec![shown.clone()],
        };
        match candidates
            .into_iter()
            .find(|c| self.policy.tables.contains_key(c))
        {
            Some(key) => Ok(Some(key)),
            None => {
                let allowed: Vec<&str> = self.policy.tables.keys().map(String::as_str).collect();
                refuse(
                    Rule::TableNotAllowed,
                    format!(
                        "table `{shown}` is not allowed; allowed tables: {}",
                        allowed.join(", ")
                    ),
                )
            }
        }
    }

    /// With a column-restricted table in the query: no `*`, and every column named must be
    /// allowed for one of the restricted tables read (or be an alias the query defines).
    fn columns(&self, query: &Query) -> Result<(), Refusal> {
        let restricted: Vec<(&String, &BTreeSet<String>)> = self
            .tables
            .iter()
            .filter_map(|t| {
                self.policy
                    .tables
                    .get(t)
                    .and_then(|c| c.as_ref())
                    .map(|c| (t, c))
            })
            .collect();
        if restricted.is_empty() {
            return Ok(());
        }
        let allowed: BTreeSet<&str> = restricted
            .iter()
            .flat_map(|(_, c)| c.iter().map(String::as_str))
            .collect();
        let names: Vec<&str> = restricted.iter().map(|(t, _)| t.as_str()).collect();
        struct Columns<'a> {
            allowed: &'a BTreeSet<&'a str>,
            aliases: &'a BTreeSet<String>,
            tables: &'a [&'a str],
        }
        impl Visitor for Columns<'_> {
            type Break = Refusal;
            fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<Refusal> {
                for item in &s.projection {
                    if matches!(
                        item,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                    ) {
                        return ControlFlow::Break(Refusal {
                            rule: Rule::ColumnNotAllowed,
                            message: format!(
                                "`*` is not allowed on {}: name the columns ({})",
                                self.tables.join(", "),
                                self.allowed.iter().copied().collect::<Vec<_>>().join(", ")
                            ),
                        });
                    }
                }
                ControlFlow::Continue(())
            }
            fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<Refusal> {
                let column = match e {
                    Expr::Identifier(i) => Some(&i.value),
                    Expr::CompoundIdentifier(parts) => parts.last().map(|i| &i.value),
                    _ => None,
                };
                if let Some(c) = column {
                    let c = c.to_lowercase();
                    if !self.allowed.contains(c.as_str()) && !self.aliases.contains(&c) {
                        return ControlFlow::Break(Refusal {
                            rule: Rule::ColumnNotAllowed,
                            message: format!(
                                "column `{c}` is not allowed on {}; allowed columns: {}",
                                self.tables.join(", "),
                                self.allowed.iter().copied().collect::<Vec<_>>().join(", ")
                            ),
                        });
                    }
                }
                ControlFlow::Continue(())
            }
        }
        match query.visit(&mut Columns {
            allowed: &allowed,
            aliases: &self.aliases,
            tables: &names,
        }) {
            ControlFlow::Break(r) => Err(r),
            ControlFlow::Continue(()) => Ok(()),
        }
    }
}

/// Refuses what may not appear in a set expression (the body of any query in the tree).
fn check_body(body: &SetExpr) -> Result<(), Refusal> {
    match body {
        SetExpr::Select(s) => {
            if s.into.is_some() {
                return refuse(
                    Rule::SelectInto,
                    "SELECT … INTO creates a table; it is refused",
                );
            }
            Ok(())
        }
        SetExpr::SetOperation { left, right, .. } => {
            check_body(left)?;
            check_body(right)
        }
        SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => Ok(()),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => refuse(
            Rule::SelectOnly,
            "data-modifying statements are refused, in a WITH clause too",
        ),
        #[allow(unreachable_patterns)]
        _ => refuse(Rule::Unsupported, "this kind of query is not supported"),
    }
}

impl Visitor for Checker<'_> {
    type Break = Refusal;

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<Refusal> {
        if !q.locks.is_empty() {
            return ControlFlow::Break(Refusal {
                rule: Rule::Locking,
                message: "locking clauses (FOR UPDATE, FOR SHARE …) are refused in reads".into(),
            });
        }
        if q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() {
            return ControlFlow::Break(Refusal {
                rule: Rule::Unsupported,
                message: "FOR/SETTINGS/FORMAT clauses are not supported".into(),
            });
        }
        if !q.pipe_operators.is_empty() {
            return ControlFlow::Break(Refusal {
                rule: Rule::Unsupported,
                message: "pipe syntax is not supported".into(),
            });
        }
        match check_body(&q.body) {
            Ok(()) => ControlFlow::Continue(()),
            Err(r) => ControlFlow::Break(r),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Refusal> {
        match self.table(&lower_name(relation)) {
            Ok(Some(key)) => {
                self.tables.insert(key);
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(r) => ControlFlow::Break(r),
        }
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<Refusal> {
        let table_function = match t {
            TableFactor::Table { args, .. } => args.is_some(),
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => false,
            _ => true,
        };
        if table_function {
            return ControlFlow::Break(Refusal {
                rule: Rule::TableFunction,
                message: "table-valued functions are refused in FROM; read the allowed tables"
                    .into(),
            });
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<Refusal> {
        if let Expr::Function(f) = e {
            let parts = lower_name(&f.name);
            let name = parts.last().cloned().unwrap_or_default();
            let denied = DENIED_FUNCTIONS.contains(&name.as_str())
                || self.policy.denied_functions.contains(&name)
                || SYSTEM_PREFIXES.iter().any(|p| name.starts_with(p))
                || parts[..parts.len().saturating_sub(1)]
                    .iter()
                    .any(|s| SYSTEM_SCHEMAS.contains(&s.as_str()));
            if denied {
                return ControlFlow::Break(Refusal {
                    rule: Rule::FunctionDenied,
                    message: format!("the function `{}` is not allowed", parts.join(".")),
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// Adds `LIMIT max` or caps a larger one; refuses `FETCH` (use `LIMIT`).
fn cap_limit(query: &mut Query, max: u64) -> Result<(), Refusal> {
    if query.fetch.is_some() {
        return refuse(Rule::Unsupported, "FETCH is not supported; use LIMIT");
    }
    let max_expr = || Expr::value(Value::Number(max.to_string(), false));
    match &mut query.limit_clause {
        None => {
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(max_expr()),
                offset: None,
                limit_by: Vec::new(),
            });
        }
        Some(LimitClause::LimitOffset { limit, .. }) => {
            let keep = match limit {
                Some(Expr::Value(v)) => match &v.value {
                    Value::Number(n, _) => n.parse::<u64>().is_ok_and(|n| n <= max),
                    _ => false,
                },
                _ => false,
            };
            if !keep {
                *limit = Some(max_expr());
            }
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => {
            return refuse(Rule::Unsupported, "LIMIT offset, count is not supported");
        }
    }
    Ok(())
}
