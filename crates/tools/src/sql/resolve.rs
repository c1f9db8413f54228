//! Name resolution with real scoping, over the `sqlparser` syntax tree, by allow-list: every
//! kind of node this module does not know is refused.
//!
//! Each query gets a [`Scope`]: the CTE names its `WITH` defines and the relations its `FROM`
//! brings in, with a link to the enclosing scope. A relation reference is a CTE only where that
//! CTE is visible (inside its own `WITH`: later CTEs, itself only when `RECURSIVE`, and the
//! query's body with its subqueries); anything else is a real table and must be allow-listed.
//! Visibility here is never wider than in any of the three databases, so a name taken for a
//! CTE is a CTE there too.
//!
//! Columns: on a table with a column allow-list every column reference that could be one of
//! its columns must be an allowed one. Column scopes here are wider than the databases' (a
//! derived table sees earlier FROM items, an ON clause the whole FROM), so no scope is taken as
//! where the database stops looking: every restricted table in reach, at every level, must
//! allow an unqualified name, unless its known column list (read from the catalog) says it
//! lacks it; a qualifier matches every relation of that name in reach. Aliases never grant
//! access; `*`, `t.*` and whole-row references (`t`, `row_to_json(t)`) to such a table are
//! refused.

use super::validate::{ReadPolicy, Refusal, Rule, SqlDialect, refuse};
use sqlparser::ast::{
    Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, OrderBy,
    OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator,
    SetQuantifier, TableFactor, TableWithJoins, Value,
};
use std::collections::BTreeSet;

mod columns;
mod expr;

/// How deep queries and expressions may nest.
pub(crate) const MAX_DEPTH: usize = 64;

/// Where a relation's rows come from.
#[derive(Debug, Clone)]
pub(crate) enum Source<'p> {
    /// An allow-listed table: its policy key, if restricted its allowed columns, and if known
    /// all its columns.
    Table {
        key: String,
        columns: Option<&'p BTreeSet<String>>,
        all: Option<&'p BTreeSet<String>>,
    },
    /// A CTE, derived table or `VALUES`: already checked. (Its columns are not used to stop a
    /// name's lookup: scopes here may be wider than the database's.)
    Derived,
}

/// A relation a `FROM` clause brings into scope.
#[derive(Debug, Clone)]
pub(crate) struct Relation<'p> {
    /// The name it is referred to by (its alias, or its table name).
    pub name: String,
    /// For an unaliased real table named with its schema: that schema.
    pub schema: Option<String>,
    pub source: Source<'p>,
}

/// The names visible at one level of a statement.
#[derive(Debug, Default)]
pub(crate) struct Scope<'s, 'p> {
    parent: Option<&'s Scope<'s, 'p>>,
    /// CTE names defined here, with their known columns.
    ctes: Vec<(String, Vec<String>)>,
    pub relations: Vec<Relation<'p>>,
    /// Output aliases of the SELECT, for bare names in its ORDER BY.
    aliases: Vec<String>,
    /// CTE names of enclosing scopes are not visible from here (MySQL/MariaDB CTE bodies).
    cte_barrier: bool,
}

impl<'s, 'p> Scope<'s, 'p> {
    /// An empty scope inside `parent`.
    pub fn child(parent: &'s Scope<'s, 'p>) -> Self {
        Self {
            parent: Some(parent),
            ..Self::default()
        }
    }

    fn chain(&self) -> impl Iterator<Item = &Scope<'s, 'p>> {
        std::iter::successors(Some(self), |s| s.parent)
    }

    fn cte(&self, name: &str) -> Option<&Vec<String>> {
        for s in self.chain() {
            if let Some((_, c)) = s.ctes.iter().rev().find(|(n, _)| n == name) {
                return Some(c);
            }
            if s.cte_barrier {
                return None;
            }
        }
        None
    }
}

/// Which kind of name is normalised: table-like names are case-sensitive in MySQL.
#[derive(Clone, Copy)]
enum NameKind {
    Relation,
    Column,
}

/// Resolves a statement's names against a read policy.
pub(crate) struct Resolver<'p> {
    policy: &'p ReadPolicy,
    dialect: SqlDialect,
    depth: usize,
    /// Allow-listed tables read (their policy keys).
    pub tables: BTreeSet<String>,
    /// Column references resolved so far.
    pub columns_seen: usize,
}

fn unsupported<T>(what: &str) -> Result<T, Refusal> {
    refuse(
        Rule::Unsupported,
        format!("{what} is not supported in a read; rewrite the query without it"),
    )
}

/// Schemas that are the databases' own catalogs.
const SYSTEM_SCHEMAS: &[&str] = &[
    "pg_catalog",
    "information_schema",
    "pg_toast",
    "mysql",
    "performance_schema",
    "sys",
];

impl<'p> Resolver<'p> {
    pub fn new(policy: &'p ReadPolicy, dialect: SqlDialect) -> Self {
        Self {
            policy,
            dialect,
            depth: 0,
            tables: BTreeSet::new(),
            columns_seen: 0,
        }
    }

    /// Names compare as the database compares them: PostgreSQL folds unquoted names to lower
    /// case and keeps quoted ones; SQLite ignores ASCII case; MySQL table names are
    /// case-sensitive (as on Linux), its column names not. Only ASCII is folded, as the
    /// databases do.
    fn norm(&self, ident: &Ident, kind: NameKind) -> String {
        let name = match (self.dialect, kind) {
            (SqlDialect::Postgres, _) if ident.quote_style.is_some() => ident.value.clone(),
            (SqlDialect::Mysql, NameKind::Relation) => ident.value.clone(),
            _ => ident.value.to_ascii_lowercase(),
        };
        // PostgreSQL cuts every name to 63 bytes (NAMEDATALEN - 1), at a character boundary.
        if self.dialect == SqlDialect::Postgres && name.len() > 63 {
            let mut end = 63;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            return name[..end].to_owned();
        }
        name
    }

    fn name_parts(&self, name: &ObjectName, kind: NameKind) -> Result<Vec<String>, Refusal> {
        name.0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => Ok(self.norm(i, kind)),
                ObjectNamePart::Function(_) => unsupported("a function in a name"),
            })
            .collect()
    }

    fn enter(&mut self) -> Result<(), Refusal> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return refuse(
                Rule::TooComplex,
                format!("the statement nests deeper than {MAX_DEPTH} levels; simplify it"),
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// The policy key of a real table, or why it may not be read.
    pub fn table_key(&self, parts: &[String]) -> Result<String, Refusal> {
        let shown = parts.join(".");
        let system = parts[..parts.len().saturating_sub(1)]
            .iter()
            .any(|s| SYSTEM_SCHEMAS.contains(&s.to_ascii_lowercase().as_str()))
            || parts.last().is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                t.starts_with("pg_") || t.starts_with("sqlite_")
            });
        if system {
            return refuse(
                Rule::SystemCatalog,
                format!("`{shown}` is a system catalog; only the allowed tables may be read"),
            );
        }
        let candidates = key_candidates(self.dialect, parts);
        match candidates
            .into_iter()
            .find(|c| self.policy.tables.contains_key(c))
        {
            Some(key) => Ok(key),
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

    /// A real, allow-listed table as a relation source (recording that it is read).
    pub fn table_source(&mut self, parts: &[String]) -> Result<Source<'p>, Refusal> {
        let key = self.table_key(parts)?;
        let columns = self.policy.tables.get(&key).and_then(|c| c.as_ref());
        let all = self.policy.known_columns.get(&key);
        self.tables.insert(key.clone());
        Ok(Source::Table { key, columns, all })
    }

    // ---- queries -------------------------------------------------------------------------

    /// Resolves a query inside `parent`; returns the columns its result is known to have.
    pub fn query(&mut self, q: &Query, parent: &Scope<'_, 'p>) -> Result<Vec<String>, Refusal> {
        self.enter()?;
        let out = self.query_inner(q, parent);
        self.leave();
        out
    }

    fn query_inner(&mut self, q: &Query, parent: &Scope<'_, 'p>) -> Result<Vec<String>, Refusal> {
        if !q.locks.is_empty() {
            return refuse(
                Rule::Locking,
                "locking clauses (FOR UPDATE, FOR SHARE …) are refused in reads",
            );
        }
        if q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() {
            return unsupported("a FOR / SETTINGS / FORMAT clause");
        }
        if !q.pipe_operators.is_empty() {
            return unsupported("pipe syntax");
        }
        if q.fetch.is_some() {
            return refuse(Rule::Unsupported, "FETCH is not supported; use LIMIT");
        }
        let mut scope = Scope::child(parent);
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                if cte.from.is_some() {
                    return unsupported("CTE … FROM");
                }
                let name = self.norm(&cte.alias.name, NameKind::Relation);
                let renamed: Vec<String> = cte
                    .alias
                    .columns
                    .iter()
                    .map(|c| self.norm(&c.name, NameKind::Column))
                    .collect();
                // Visible in its own body only with RECURSIVE; its columns are those it is
                // given, if any.
                if with.recursive {
                    scope.ctes.push((name.clone(), renamed.clone()));
                }
                let known = if self.dialect == SqlDialect::Mysql {
                    // MariaDB resolves a CTE body's names without the CTEs of enclosing
                    // WITH clauses: only this WITH's are visible there.
                    let mut body = Scope::child(&scope);
                    body.ctes = scope.ctes.clone();
                    body.cte_barrier = true;
                    self.query(&cte.query, &body)?
                } else {
                    self.query(&cte.query, &scope)?
                };
                if with.recursive {
                    scope.ctes.pop();
                }
                let cols = if renamed.is_empty() { known } else { renamed };
                scope.ctes.push((name, cols));
            }
        }
        let columns = self.set_expr(&q.body, &scope, q.order_by.as_ref())?;
        if let Some(limit) = &q.limit_clause {
            match limit {
                sqlparser::ast::LimitClause::LimitOffset {
                    limit,
                    offset,
                    limit_by,
                } => {
                    if !limit_by.is_empty() {
                        return unsupported("LIMIT BY");
                    }
                    if let Some(l) = limit {
                        self.expr(l, &scope)?;
                    }
                    if let Some(o) = offset {
                        self.expr(&o.value, &scope)?;
                    }
                }
                sqlparser::ast::LimitClause::OffsetCommaLimit { offset, limit } => {
                    self.expr(offset, &scope)?;
                    self.expr(limit, &scope)?;
                }
            }
        }
        Ok(columns)
    }

    /// A query body. `order_by` is the enclosing query's: for a plain SELECT it may name the
    /// SELECT's columns; for set operations only output names and positions.
    fn set_expr(
        &mut self,
        body: &SetExpr,
        scope: &Scope<'_, 'p>,
        order_by: Option<&OrderBy>,
    ) -> Result<Vec<String>, Refusal> {
        self.enter()?;
        let out = self.set_expr_inner(body, scope, order_by);
        self.leave();
        out
    }

    fn set_expr_inner(
        &mut self,
        body: &SetExpr,
        scope: &Scope<'_, 'p>,
        order_by: Option<&OrderBy>,
    ) -> Result<Vec<String>, Refusal> {
        match body {
            SetExpr::Select(s) => self.select(s, scope, order_by),
            SetExpr::Query(q) => {
                let cols = self.query(q, scope)?;
                self.outer_order_by(order_by, &cols, scope, false)?;
                Ok(cols)
            }
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                if !matches!(
                    op,
                    SetOperator::Union | SetOperator::Except | SetOperator::Intersect
                ) || !matches!(
                    set_quantifier,
                    SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None
                ) {
                    return unsupported("this set operation");
                }
                let cols = self.set_expr(left, scope, None)?;
                self.set_expr(right, scope, None)?;
                // Every dialect takes a bare name in a set operation's ORDER BY for one of its
                // output columns (or fails): it cannot reach the inputs.
                self.outer_order_by(order_by, &cols, scope, true)?;
                Ok(cols)
            }
            SetExpr::Values(v) => {
                for row in &v.rows {
                    for e in row.iter() {
                        self.expr(e, scope)?;
                    }
                }
                self.outer_order_by(order_by, &[], scope, false)?;
                Ok(Vec::new())
            }
            SetExpr::Table(t) => {
                let Some(name) = &t.table_name else {
                    return unsupported("TABLE without a name");
                };
                let mut parts = Vec::new();
                if let Some(s) = &t.schema_name {
                    parts.push(self.norm(s, NameKind::Relation));
                }
                parts.push(self.norm(name, NameKind::Relation));
                if parts.len() == 1 && scope.cte(&parts[0]).is_some() {
                    return Ok(scope.cte(&parts[0]).cloned().unwrap_or_default());
                }
                if let Source::Table {
                    key,
                    columns: Some(_),
                    ..
                } = self.table_source(&parts)?
                {
                    return refuse(
                        Rule::ColumnNotAllowed,
                        format!(
                            "`TABLE {key}` reads every column of {key}; name the allowed columns in a SELECT"
                        ),
                    );
                }
                self.outer_order_by(order_by, &[], scope, false)?;
                Ok(Vec::new())
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                refuse(
                    Rule::SelectOnly,
                    "data-modifying statements are refused, in a WITH clause too",
                )
            }
        }
    }

    /// ORDER BY of a set operation or parenthesised query: output names and positions only.
    /// (PostgreSQL moves the ORDER BY of `(SELECT …) ORDER BY e` into the inner SELECT, and
    /// MariaDB resolves it against the inner FROM: any other expression could reach columns
    /// the outer scope cannot see.)
    fn outer_order_by(
        &mut self,
        order_by: Option<&OrderBy>,
        output: &[String],
        scope: &Scope<'_, 'p>,
        any_bare_name: bool,
    ) -> Result<(), Refusal> {
        for expr in order_by_exprs(order_by)? {
            match expr {
                Expr::Identifier(i)
                    if any_bare_name || output.contains(&self.norm(i, NameKind::Column)) => {}
                Expr::Value(v) if matches!(v.value, Value::Number(..)) => {}
                // Names nothing, subqueries included: cannot reach a column.
                e if !mentions_name(e) => self.expr(e, scope)?,
                _ => {
                    return refuse(
                        Rule::Unsupported,
                        "the ORDER BY of a UNION or of a parenthesised query may name only its output columns or their positions; move it inside the SELECT",
                    );
                }
            }
        }
        Ok(())
    }

    fn select(
        &mut self,
        s: &Select,
        parent: &Scope<'_, 'p>,
        order_by: Option<&OrderBy>,
    ) -> Result<Vec<String>, Refusal> {
        if s.into.is_some() {
            return refuse(
                Rule::SelectInto,
                "SELECT … INTO creates a table or writes a file; it is refused",
            );
        }
        if !s.optimizer_hints.is_empty() {
            return unsupported("an optimizer hint");
        }
        if s.top.is_some()
            || s.exclude.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.qualify.is_some()
            || s.value_table_mode.is_some()
            || !matches!(s.flavor, sqlparser::ast::SelectFlavor::Standard)
        {
            return unsupported("this SELECT clause");
        }
        if let Some(m) = &s.select_modifiers
            && (m.sql_calc_found_rows || m.high_priority || m.sql_buffer_result)
        {
            return unsupported("this SELECT modifier");
        }
        let mut scope = Scope::child(parent);
        for twj in &s.from {
            self.join_tree(twj, &mut scope)?;
        }
        if let Some(sqlparser::ast::Distinct::On(exprs)) = &s.distinct {
            for e in exprs {
                self.expr(e, &scope)?;
            }
        }
        let mut known = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    self.expr(e, &scope)?;
                    match e {
                        Expr::Identifier(i) => known.push(self.norm(i, NameKind::Column)),
                        Expr::CompoundIdentifier(parts) => {
                            if let Some(last) = parts.last() {
                                known.push(self.norm(last, NameKind::Column));
                            }
                        }
                        _ => {}
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    self.expr(expr, &scope)?;
                    let a = self.norm(alias, NameKind::Column);
                    scope.aliases.push(a.clone());
                    known.push(a);
                }
                SelectItem::ExprWithAliases { .. } => return unsupported("several aliases"),
                SelectItem::Wildcard(opts) => {
                    wildcard_options(opts)?;
                    if let Some(r) = scope.relations.iter().find(|r| restricted(r).is_some()) {
                        return refuse(
                            Rule::ColumnNotAllowed,
                            star_message(&r.name, restricted(r)),
                        );
                    }
                }
                SelectItem::QualifiedWildcard(kind, opts) => {
                    wildcard_options(opts)?;
                    let SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                        return unsupported("`expression.*`");
                    };
                    self.qualified_star(name, &scope)?;
                }
            }
        }
        if let Some(w) = &s.selection {
            self.expr(w, &scope)?;
        }
        match &s.group_by {
            GroupByExpr::All(_) => return unsupported("GROUP BY ALL"),
            GroupByExpr::Expressions(exprs, modifiers) => {
                for e in exprs {
                    self.expr(e, &scope)?;
                }
                for m in modifiers {
                    if let sqlparser::ast::GroupByWithModifier::GroupingSets(e) = m {
                        self.expr(e, &scope)?;
                    } else if matches!(m, sqlparser::ast::GroupByWithModifier::Totals) {
                        return unsupported("WITH TOTALS");
                    }
                }
            }
        }
        if let Some(h) = &s.having {
            self.expr(h, &scope)?;
        }
        for w in &s.named_window {
            match &w.1 {
                sqlparser::ast::NamedWindowExpr::WindowSpec(spec) => {
                    self.window_spec(spec, &scope)?
                }
                sqlparser::ast::NamedWindowExpr::NamedWindow(_) => {}
            }
        }
        for expr in order_by_exprs(order_by)? {
            match expr {
                // A bare output alias: every dialect takes it for the alias.
                Expr::Identifier(i) if scope.aliases.contains(&self.norm(i, NameKind::Column)) => {}
                e => self.expr(e, &scope)?,
            }
        }
        Ok(known)
    }

    fn join_tree(
        &mut self,
        twj: &TableWithJoins,
        scope: &mut Scope<'_, 'p>,
    ) -> Result<(), Refusal> {
        let first = scope.relations.len();
        self.table_factor(&twj.relation, scope)?;
        for join in &twj.joins {
            if join.global {
                return unsupported("GLOBAL JOIN");
            }
            let left_end = scope.relations.len();
            self.table_factor(&join.relation, scope)?;
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => c,
                _ => return unsupported("this kind of join"),
            };
            match constraint {
                JoinConstraint::On(e) => self.expr(e, scope)?,
                JoinConstraint::Using(cols) => {
                    for c in cols {
                        let [ObjectNamePart::Identifier(i)] = c.0.as_slice() else {
                            return unsupported("a qualified USING column");
                        };
                        self.column(i, scope)?;
                    }
                }
                JoinConstraint::Natural => {
                    // Joins on every shared column, hidden ones included.
                    if let Some(r) = scope.relations[first..]
                        .iter()
                        .find(|r| restricted(r).is_some())
                    {
                        return refuse(
                            Rule::ColumnNotAllowed,
                            format!(
                                "NATURAL JOIN would compare every column of {}, hidden ones included; join with ON and the allowed columns",
                                r.name
                            ),
                        );
                    }
                    let _ = left_end;
                }
                JoinConstraint::None => {}
                JoinConstraint::UsingAlias(..) => return unsupported("USING … AS"),
            }
        }
        Ok(())
    }

    fn table_factor(&mut self, t: &TableFactor, scope: &mut Scope<'_, 'p>) -> Result<(), Refusal> {
        match t {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality: _,
                partitions,
                json_path,
                sample,
                index_directives: _,
                inheritance: _,
            } => {
                if args.is_some() {
                    return refuse(
                        Rule::TableFunction,
                        "table-valued functions are refused in FROM; read the allowed tables",
                    );
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                {
                    return unsupported("this table clause");
                }
                let parts = self.name_parts(name, NameKind::Relation)?;
                let source = match parts.as_slice() {
                    [one] if scope.cte(one).is_some() => Source::Derived,
                    _ => self.table_source(&parts)?,
                };
                let (rel_name, schema) = match alias {
                    Some(a) => (self.norm(&a.name, NameKind::Relation), None),
                    None => (
                        parts.last().cloned().unwrap_or_default(),
                        (parts.len() == 2).then(|| parts[0].clone()),
                    ),
                };
                let source = match (alias, source) {
                    (Some(a), Source::Table { key, columns, .. }) if !a.columns.is_empty() => {
                        // Renamed columns of a real table: which ones they are is positional
                        // and unknown here.
                        if columns.is_some() {
                            return refuse(
                                Rule::ColumnNotAllowed,
                                format!(
                                    "renaming the columns of {key} is refused; name its allowed columns"
                                ),
                            );
                        }
                        Source::Table {
                            key,
                            columns,
                            all: None,
                        }
                    }
                    (_, s) => s,
                };
                scope.relations.push(Relation {
                    name: rel_name,
                    schema,
                    source,
                });
                Ok(())
            }
            TableFactor::Derived {
                lateral: _,
                subquery,
                alias,
                sample,
            } => {
                if sample.is_some() {
                    return unsupported("TABLESAMPLE");
                }
                // Earlier FROM items stay visible (as with LATERAL): wider than some databases,
                // which the column checks allow for.
                self.query(subquery, scope)?;
                let name = match alias {
                    Some(a) => self.norm(&a.name, NameKind::Relation),
                    None => String::new(),
                };
                scope.relations.push(Relation {
                    name,
                    schema: None,
                    source: Source::Derived,
                });
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return unsupported("an alias on a parenthesised join");
                }
                self.join_tree(table_with_joins, scope)
            }
            _ => refuse(
                Rule::TableFunction,
                "table-valued functions and this kind of FROM item are refused; read the allowed tables",
            ),
        }
    }
}

/// The expressions of an ORDER BY (none without one), refusing its exotic forms.
fn order_by_exprs(order_by: Option<&OrderBy>) -> Result<Vec<&Expr>, Refusal> {
    let Some(ob) = order_by else {
        return Ok(Vec::new());
    };
    let OrderByKind::Expressions(items) = &ob.kind else {
        return unsupported("ORDER BY ALL");
    };
    if ob.interpolate.is_some() {
        return unsupported("INTERPOLATE");
    }
    items
        .iter()
        .map(|item| match item.with_fill {
            Some(_) => unsupported("WITH FILL"),
            None => Ok(&item.expr),
        })
        .collect()
}

/// Whether `e` names a column, a relation or `*` anywhere (subqueries included).
pub(crate) fn mentions_name(e: &Expr) -> bool {
    use sqlparser::ast::{Visit, Visitor};
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
            if matches!(
                e,
                Expr::Identifier(_)
                    | Expr::CompoundIdentifier(_)
                    | Expr::Wildcard(_)
                    | Expr::QualifiedWildcard(..)
            ) {
                self.0 = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_relation(&mut self, _: &ObjectName) -> std::ops::ControlFlow<()> {
            self.0 = true;
            std::ops::ControlFlow::Break(())
        }
        fn pre_visit_query(&mut self, q: &Query) -> std::ops::ControlFlow<()> {
            // `SELECT *` or a FROM anywhere inside reaches relations.
            if let SetExpr::Select(s) = q.body.as_ref()
                && (!s.from.is_empty()
                    || s.projection.iter().any(|i| {
                        matches!(
                            i,
                            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                        )
                    }))
            {
                self.0 = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut f = Finder(false);
    let _ = e.visit(&mut f);
    f.0
}

/// The first call in `e` (subqueries included) whose value depends on the moment it runs.
pub(crate) fn time_dependent_call(e: &Expr) -> Option<String> {
    use sqlparser::ast::{Visit, Visitor};
    const MOMENT: &[&str] = &[
        "now",
        "sysdate",
        "curdate",
        "curtime",
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
        "utc_date",
        "utc_time",
        "utc_timestamp",
        "unix_timestamp",
        "rand",
        "random",
        "uuid",
        "microsecond",
        "second",
    ];
    struct Finder(Option<String>);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
            if let Expr::Function(f) = e {
                // The name as the database reads it: quotes do not hide `now`.
                let name = match f.name.0.last() {
                    Some(ObjectNamePart::Identifier(i)) => i.value.to_ascii_lowercase(),
                    _ => f.name.to_string().to_ascii_lowercase(),
                };
                if MOMENT.contains(&name.as_str()) {
                    self.0 = Some(name);
                    return std::ops::ControlFlow::Break(());
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut f = Finder(None);
    let _ = e.visit(&mut f);
    f.0
}

/// The policy keys a table name may match: `table`, `schema.table`, and for SQLite `main.t`
/// as `t`. (SQLite searches `main` for unqualified names: temp tables cannot be made through
/// the tools and attaching is off. PostgreSQL's depends on `search_path`, so `public.t` is not
/// taken for `t`.)
pub(crate) fn key_candidates(dialect: SqlDialect, parts: &[String]) -> Vec<String> {
    match parts {
        [t] => vec![t.clone()],
        [s, t] if dialect == SqlDialect::Sqlite && s.eq_ignore_ascii_case("main") => {
            vec![format!("main.{t}"), t.clone()]
        }
        [s, t] => vec![format!("{s}.{t}")],
        _ => vec![],
    }
}

fn restricted<'p>(r: &Relation<'p>) -> Option<&'p BTreeSet<String>> {
    match &r.source {
        Source::Table { columns, .. } => *columns,
        Source::Derived => None,
    }
}

fn wildcard_options(o: &sqlparser::ast::WildcardAdditionalOptions) -> Result<(), Refusal> {
    if o.opt_ilike.is_some()
        || o.opt_exclude.is_some()
        || o.opt_except.is_some()
        || o.opt_replace.is_some()
        || o.opt_rename.is_some()
        || o.opt_alias.is_some()
    {
        return unsupported("`*` with options");
    }
    Ok(())
}

fn list(cols: &BTreeSet<String>) -> String {
    cols.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn column_message(name: &str, table: &str, cols: &BTreeSet<String>) -> String {
    format!(
        "column `{name}` is not allowed on {table}; allowed columns: {}",
        list(cols)
    )
}

fn star_message(name: &str, cols: Option<&BTreeSet<String>>) -> String {
    format!(
        "`*` and whole-row references are not allowed on {name}: name the columns ({})",
        cols.map(list).unwrap_or_default()
    )
}
