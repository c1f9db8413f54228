//! The SQL read policy. A statement is parsed in the database's dialect and accepted only if
//! it is exactly one `SELECT` (no data-modifying CTE, no `SELECT … INTO`, no locking clause)
//! whose every name resolves, with real scoping, to an allow-listed table and column, a CTE or
//! alias of its own scope, or an allow-listed function (see `resolve` and `functions`). The
//! `LIMIT` is added or capped. What runs is the statement printed back from the checked syntax
//! tree, never the text the model sent: comments and anything the parser did not take as part
//! of the one statement are gone; the printed statement is validated again.
//!
//! Every refusal names the rule it broke, so the model can correct itself. The `sql` modules
//! are the only ones that know the `sqlparser` AST (pinned: it changes most releases).

use super::resolve::{Resolver, Scope};
use sqlparser::ast::{Expr, LimitClause, Query, Statement, Value};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use std::collections::{BTreeMap, BTreeSet};

/// Which database the statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
}

impl SqlDialect {
    pub(crate) fn parser(self) -> Box<dyn Dialect> {
        match self {
            SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
            SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
            SqlDialect::Mysql => Box::new(MySqlDialect {}),
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
    /// Functions allowed on top of the built-in allow-list (lower case). Never widens the
    /// built-in refusal of system, file, network, sleep, lock and sequence functions.
    pub allowed_functions: BTreeSet<String>,
    /// Functions refused even if the built-in allow-list has them (lower case).
    pub denied_functions: BTreeSet<String>,
    /// Every column of column-restricted tables, where known (the connectors read them from
    /// the database before each read): an unqualified name such a table does not have cannot
    /// be one of its columns, so it is resolved elsewhere. Unknown: every restricted table the
    /// name could reach must allow it. Names as the database compares them (PostgreSQL exact,
    /// SQLite and MySQL lower case).
    pub known_columns: BTreeMap<String, BTreeSet<String>>,
}

impl ReadPolicy {
    /// A policy over these tables (lower case, optionally `schema.table`; `None`: every
    /// column), at most `max_rows` rows, with the built-in function allow-list only.
    pub fn new(tables: BTreeMap<String, Option<BTreeSet<String>>>, max_rows: u64) -> Self {
        Self {
            tables,
            max_rows,
            allowed_functions: BTreeSet::new(),
            denied_functions: BTreeSet::new(),
            known_columns: BTreeMap::new(),
        }
    }
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
    /// `pg_catalog`, `information_schema`, `sqlite_master`, `mysql.*` and the like.
    SystemCatalog,
    /// A table-valued function in `FROM`.
    TableFunction,
    /// A clause the policy does not accept (e.g. `FETCH`, use `LIMIT`).
    Unsupported,
    /// `UPDATE` or `DELETE` without `WHERE` (or with one that is always true).
    MissingWhere,
    /// A function that is not on the allow-list.
    FunctionNotAllowed,
    /// A cast to a type that is not on the allow-list (`regclass`, user-defined types …).
    TypeNotAllowed,
    /// Session or server variables (`@@version`, `@x`), parameters (`$1`, `?`).
    VariableNotAllowed,
    /// `ON CONFLICT`, `OR REPLACE`, `REPLACE INTO`, `ON DUPLICATE KEY`, `INSERT IGNORE`.
    ConflictClause,
    /// More rows than `max_affected_rows` would change.
    TooManyRows,
    /// The statement is too long or nested too deep to validate.
    TooComplex,
    /// MySQL executable comments (`/*! … */`).
    ExecutableComment,
    /// The written table has no primary key, so the rows a preview shows cannot be bound.
    NoPrimaryKey,
    /// An approved write would change other rows than its preview showed.
    RowsChangedSincePreview,
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
            Rule::TableFunction => "no_table_functions",
            Rule::Unsupported => "unsupported",
            Rule::MissingWhere => "where_required",
            Rule::FunctionNotAllowed => "function_not_allowed",
            Rule::TypeNotAllowed => "type_not_allowed",
            Rule::VariableNotAllowed => "variable_not_allowed",
            Rule::ConflictClause => "no_conflict_clause",
            Rule::TooManyRows => "too_many_rows",
            Rule::TooComplex => "too_complex",
            Rule::ExecutableComment => "no_executable_comment",
            Rule::NoPrimaryKey => "primary_key_required",
            Rule::RowsChangedSincePreview => "rows_changed_since_preview",
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

/// Statement text accepted at most, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 64 * 1024;

/// Operators (and `AND`/`OR`/`NOT`) one statement may have: each nests its tree one level,
/// and comparing, printing and dropping the tree recurse that deep.
pub const MAX_OPERATORS: usize = 1024;

/// Parses `sql` in `dialect` into exactly one statement (stacked queries are refused). The
/// text is bounded in size and the parser in recursion depth, so neither can exhaust memory or
/// the stack.
pub(crate) fn parse_one(sql: &str, dialect: SqlDialect) -> Result<Statement, Refusal> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return refuse(
            Rule::TooComplex,
            format!(
                "the statement is {} bytes; at most {MAX_STATEMENT_BYTES} are accepted",
                sql.len()
            ),
        );
    }
    // MySQL runs the text of `/*! … */` comments: refuse them outright rather than guess.
    if dialect == SqlDialect::Mysql && sql.contains("/*!") {
        return refuse(
            Rule::ExecutableComment,
            "MySQL executable comments (/*! … */) are refused; write the statement plainly",
        );
    }
    let parser_dialect = dialect.parser();
    // Chains of operators parse in a loop but nest one level per operator: printing and
    // dropping them recurses that deep, and sqlparser copies the whole left side at each
    // MySQL `DIV` and SQLite `GLOB`/`REGEXP`/`MATCH` (quadratic, and recursive). Statements
    // long enough to hold many have their operators counted before they are parsed.
    if sql.len() > MAX_OPERATORS {
        count_operators(sql, parser_dialect.as_ref())?;
    }
    let parser = Parser::new(parser_dialect.as_ref())
        .with_recursion_limit(super::resolve::MAX_DEPTH / 2)
        .try_with_sql(sql);
    let mut statements = match parser.and_then(|mut p| p.parse_statements()) {
        Ok(s) => s,
        Err(sqlparser::parser::ParserError::RecursionLimitExceeded) => {
            return refuse(
                Rule::TooComplex,
                "the statement nests too deep; simplify it",
            );
        }
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

/// Operators sqlparser copies its left side for, at each occurrence.
const COPYING_OPERATORS: &[sqlparser::keywords::Keyword] = {
    use sqlparser::keywords::Keyword as K;
    &[K::DIV, K::GLOB, K::REGEXP, K::RLIKE, K::MATCH]
};

/// Operators one statement may chain that sqlparser copies (see [`COPYING_OPERATORS`]).
const MAX_COPYING_OPERATORS: usize = 32;

/// Refuses a statement with more than [`MAX_OPERATORS`] operators (symbols and word
/// operators) or more than [`MAX_COPYING_OPERATORS`] of the copying kind.
fn count_operators(sql: &str, dialect: &dyn Dialect) -> Result<(), Refusal> {
    use sqlparser::keywords::Keyword as K;
    use sqlparser::tokenizer::Token;
    let tokens = sqlparser::tokenizer::Tokenizer::new(dialect, sql)
        .tokenize()
        .map_err(|e| Refusal {
            rule: Rule::Syntax,
            message: format!("the statement does not parse: {e}"),
        })?;
    let mut operators = 0;
    let mut copying = 0;
    for t in &tokens {
        match t {
            Token::Word(w) => {
                if COPYING_OPERATORS.contains(&w.keyword) {
                    copying += 1;
                    operators += 1;
                } else if matches!(
                    w.keyword,
                    K::AND
                        | K::OR
                        | K::NOT
                        | K::XOR
                        | K::LIKE
                        | K::ILIKE
                        | K::SIMILAR
                        | K::IS
                        | K::IN
                        | K::BETWEEN
                        | K::COLLATE
                        | K::MOD
                ) {
                    operators += 1;
                }
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::Whitespace(_)
            | Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::Period
            | Token::SemiColon => {}
            _ => operators += 1,
        }
    }
    if operators > MAX_OPERATORS || copying > MAX_COPYING_OPERATORS {
        return refuse(
            Rule::TooComplex,
            format!(
                "the statement has too many operators (at most {MAX_OPERATORS}, and {MAX_COPYING_OPERATORS} of DIV, GLOB, REGEXP, MATCH); split it or use IN (…)"
            ),
        );
    }
    Ok(())
}

/// Validates `sql` against `policy`. The statement that runs is printed from the checked tree,
/// and the printed text is validated again and must print to itself, so what runs is what was
/// checked. (Trees are never compared or copied: both recurse as deep as a tree nests.)
pub fn validate(
    sql: &str,
    dialect: SqlDialect,
    policy: &ReadPolicy,
) -> Result<ValidatedRead, Refusal> {
    let first = validate_once(sql, dialect, policy)?;
    match validate_once(&first.sql, dialect, policy) {
        Ok(again) if again == first => Ok(first),
        Err(r) if r.rule == Rule::TooComplex => Err(r),
        _ => refuse(
            Rule::Unsupported,
            "the statement does not print back to itself; rewrite it more plainly",
        ),
    }
}

fn validate_once(
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
    let mut resolver = Resolver::new(policy, dialect);
    resolver.query(query, &Scope::default())?;
    cap_limit(query, policy.max_rows)?;
    Ok(ValidatedRead {
        sql: statement.to_string(),
        tables: resolver.tables,
    })
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
        Some(LimitClause::OffsetCommaLimit { offset, .. }) => {
            // MySQL's `LIMIT offset, count`, printed as `LIMIT count OFFSET offset`.
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(max_expr()),
                offset: Some(sqlparser::ast::Offset {
                    value: offset.clone(),
                    rows: sqlparser::ast::OffsetRows::None,
                }),
                limit_by: Vec::new(),
            });
            return cap_limit(query, max);
        }
    }
    Ok(())
}
