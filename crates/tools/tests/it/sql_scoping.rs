//! Properties of the SQL validator's name resolution, on random queries printed from a small
//! AST of this file's own:
//!
//! - **Tables**: table names, CTE names and aliases are drawn from one pool of allowed
//!   (`customers`, `orders`, `products`) and forbidden (`payroll`, `secrets`, `users`) names,
//!   so CTEs shadow real tables, and many table references are pointed at a CTE visible
//!   there. CTEs (some `RECURSIVE`, with an anchor `UNION ALL` a recursive part) sit in every
//!   place a query can: derived tables, scalar subqueries, `EXISTS` / `IN`, `JOIN … ON`, set
//!   operations, `ORDER BY`, subqueries and CTE bodies; names come in any case. The oracle
//!   resolves every table reference with real scoping; the validator must accept exactly the
//!   queries whose real tables are all allowed, refuse the others with `table_not_allowed`,
//!   report the real tables it read, and print a statement that validates to itself.
//! - **Columns**: with `employees` restricted to `id, name` (hidden: `email, salary`), select
//!   lists and `WHERE` clauses name allowed and hidden columns, qualified or not, outer
//!   references from correlated subqueries and whole-row references (`SELECT e FROM employees
//!   e`, PostgreSQL's) included, with aliases named like hidden columns and derived tables or
//!   CTEs that rename columns. Accepted iff no hidden column of `employees` can be what a name
//!   refers to, and refused with `column_not_allowed` otherwise.
//! - **Depth**: queries nested 500 levels (and very long operator chains) are refused with
//!   `too_complex` or accepted, without a stack overflow or a hang (each in a child process,
//!   so a crash fails that test only).
//!
//! Scoping, as checked against SQLite 3.40, PostgreSQL 15 and MariaDB 10.11 by hand: a CTE
//! is visible in the later CTEs of its `WITH`, in itself only if the `WITH` is `RECURSIVE`,
//! and in the `WITH`'s main body with all its subqueries, unless an inner `WITH` binds the
//! name again; never outside. Where the databases differ, the oracle takes the reading that
//! reaches a real table (a name it counts as real must be allowed, so it only refuses more):
//!
//! - A forward reference (`WITH a AS (SELECT * FROM b), b AS (…)`) is the real `b` for
//!   PostgreSQL and MariaDB; SQLite takes the CTE. With `RECURSIVE` all three take the CTE
//!   (MySQL's manual says a CTE cannot see later ones). Real, either way.
//! - A self-reference without `RECURSIVE` is the real table for PostgreSQL and MariaDB; SQLite
//!   makes it recursive (or fails on a "circular reference"). Real.
//! - MariaDB does not see the CTEs of an enclosing `WITH` from inside the body of a CTE of a
//!   nested `WITH`: in `WITH b AS (SELECT 5 AS x) SELECT x FROM (WITH c AS (SELECT x FROM b)
//!   SELECT x FROM c) t` it reads the real table `b`, where SQLite and PostgreSQL read the
//!   CTE. So for `SqlDialect::Mysql` the oracle counts a name in a CTE body as a CTE only when
//!   the CTE's own `WITH` (an earlier sibling, or itself if `RECURSIVE`) or a `WITH` inside
//!   the body binds it. (MariaDB does see them in a few shapes, e.g. from a `WITH` that is
//!   directly the body of an outer CTE; counting those as real too only refuses more.)
//! - MariaDB's table names are case-sensitive (on Linux), its CTE names not; SQLite and
//!   PostgreSQL fold the case of unquoted names. For `SqlDialect::Mysql` the oracle takes a
//!   name as a CTE's only if spelled the same, and a real `CUSTOMERS` is not `customers`.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Display, Formatter};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_tools::sql::{ReadPolicy, Rule, SqlDialect, validate};

const DIALECTS: [SqlDialect; 3] = [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql];

/// Tables the policy allows, every column.
const ALLOWED: [&str; 3] = ["customers", "orders", "products"];
/// Tables it does not.
const FORBIDDEN: [&str; 3] = ["payroll", "secrets", "users"];
/// The pool for CTE names and aliases: allowed and forbidden tables.
const NAMES: [&str; 6] = [
    "customers",
    "orders",
    "products",
    "payroll",
    "secrets",
    "users",
];

fn tables_policy() -> ReadPolicy {
    ReadPolicy::new(ALLOWED.iter().map(|t| (t.to_string(), None)).collect(), 100)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // 256 cases (a few seconds in a debug build) unless PROPTEST_CASES says otherwise.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256),
        // The trees are big: give shrinking room to reach a small statement.
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Tables: the AST, its printing and the oracle.

#[derive(Clone)]
struct Query {
    with: Option<With>,
    body: Body,
    /// `ORDER BY (subquery)`, in the scope of the body.
    order: Option<Box<Query>>,
}

/// How a name is spelled: every database folds the case of CTE names, and the policy's
/// table names are lower case.
#[derive(Debug, Clone, Copy)]
enum Case {
    Lower,
    Upper,
    Title,
}

impl Case {
    fn spell(self, name: &str) -> String {
        match self {
            Case::Lower => name.to_string(),
            Case::Upper => name.to_uppercase(),
            Case::Title => name[..1].to_uppercase() + &name[1..],
        }
    }
}

#[derive(Debug, Clone)]
struct With {
    recursive: bool,
    ctes: Vec<Cte>,
}

#[derive(Debug, Clone)]
struct Cte {
    name: &'static str,
    case: Case,
    /// A column list, `name(id)`.
    columns: bool,
    body: CteBody,
}

impl Cte {
    fn spelled(&self) -> String {
        self.case.spell(self.name)
    }
}

#[derive(Debug, Clone)]
enum CteBody {
    Query(Query),
    /// `anchor UNION ALL SELECT 1 FROM <the CTE itself> [AS alias] [WHERE cond]` (also generated
    /// in a `WITH` without `RECURSIVE`, where the self-reference is the real table).
    Recursive {
        anchor: Select,
        alias: Option<&'static str>,
        cond: Option<Cond>,
    },
}

/// Selects joined by set operators, left to right.
#[derive(Debug, Clone)]
struct Body {
    first: Select,
    rest: Vec<(SetOp, Select)>,
}

#[derive(Debug, Clone, Copy)]
enum SetOp {
    Union,
    UnionAll,
    Intersect,
    Except,
}

#[derive(Debug, Clone)]
struct Select {
    item: Item,
    from: Option<FromClause>,
    cond: Option<Cond>,
}

#[derive(Debug, Clone)]
struct FromClause {
    first: Factor,
    joins: Vec<(Factor, Join)>,
}

#[derive(Debug, Clone)]
enum Join {
    /// `, factor`
    Comma,
    /// `JOIN factor ON cond`
    Inner(Cond),
    /// `LEFT JOIN factor ON cond`
    Left(Cond),
}

#[derive(Debug, Clone)]
enum Factor {
    Table {
        name: &'static str,
        case: Case,
        alias: Option<&'static str>,
        /// Name instead one of the CTEs visible here (by standard scoping), if any: see
        /// `retarget`.
        pick: Option<Index>,
    },
    Derived {
        query: Box<Query>,
        alias: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Item {
    One,
    Scalar(Box<Query>),
}

#[derive(Debug, Clone)]
enum Cond {
    True,
    Exists(Box<Query>),
    In(Box<Query>),
    And(Box<Cond>, Box<Cond>),
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(w) = &self.with {
            f.write_str(if w.recursive {
                "WITH RECURSIVE "
            } else {
                "WITH "
            })?;
            for (i, cte) in w.ctes.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(&cte.spelled())?;
                if cte.columns {
                    f.write_str("(id)")?;
                }
                f.write_str(" AS (")?;
                match &cte.body {
                    CteBody::Query(q) => write!(f, "{q}")?,
                    CteBody::Recursive {
                        anchor,
                        alias,
                        cond,
                    } => {
                        write!(f, "{anchor} UNION ALL SELECT 1 FROM {}", cte.spelled())?;
                        if let Some(a) = alias {
                            write!(f, " AS {a}")?;
                        }
                        if let Some(c) = cond {
                            write!(f, " WHERE {c}")?;
                        }
                    }
                }
                f.write_str(")")?;
            }
            f.write_str(" ")?;
        }
        write!(f, "{}", self.body.first)?;
        for (op, s) in &self.body.rest {
            let op = match op {
                SetOp::Union => "UNION",
                SetOp::UnionAll => "UNION ALL",
                SetOp::Intersect => "INTERSECT",
                SetOp::Except => "EXCEPT",
            };
            write!(f, " {op} {s}")?;
        }
        if let Some(q) = &self.order {
            write!(f, " ORDER BY ({q})")?;
        }
        Ok(())
    }
}

/// Shown as its SQL, so that proptest's minimal failing input reads as a statement.
impl fmt::Debug for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Display for Select {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.item {
            Item::One => f.write_str("SELECT 1")?,
            Item::Scalar(q) => write!(f, "SELECT ({q})")?,
        }
        if let Some(from) = &self.from {
            write!(f, " FROM {}", from.first)?;
            for (factor, join) in &from.joins {
                match join {
                    Join::Comma => write!(f, ", {factor}")?,
                    Join::Inner(on) => write!(f, " JOIN {factor} ON {on}")?,
                    Join::Left(on) => write!(f, " LEFT JOIN {factor} ON {on}")?,
                }
            }
        }
        if let Some(c) = &self.cond {
            write!(f, " WHERE {c}")?;
        }
        Ok(())
    }
}

impl Display for Factor {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Factor::Table {
                name,
                case,
                alias: None,
                ..
            } => f.write_str(&case.spell(name)),
            Factor::Table {
                name,
                case,
                alias: Some(a),
                ..
            } => write!(f, "{} AS {a}", case.spell(name)),
            Factor::Derived { query, alias } => write!(f, "({query}) AS {alias}"),
        }
    }
}

impl Display for Cond {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Cond::True => f.write_str("1 = 1"),
            Cond::Exists(q) => write!(f, "EXISTS ({q})"),
            Cond::In(q) => write!(f, "1 IN ({q})"),
            Cond::And(a, b) => write!(f, "({a} AND {b})"),
        }
    }
}

/// How a dialect resolves names, as far as the oracle needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scoping {
    /// SQLite, PostgreSQL, the SQL standard: the CTEs of enclosing `WITH` clauses are visible
    /// inside a CTE body, and unquoted names ignore case.
    Standard,
    /// MariaDB: they are not (see the module documentation), and table names are
    /// case-sensitive (as on Linux). MariaDB matches CTE names ignoring case; the oracle
    /// takes a CTE only for the same spelling, so that a name whose case differs must be an
    /// allowed table (none is: the policy's names are lower case).
    MariaDb,
}

impl Scoping {
    fn same(self, a: &str, b: &str) -> bool {
        match self {
            Scoping::Standard => a.eq_ignore_ascii_case(b),
            Scoping::MariaDb => a == b,
        }
    }

    /// The table a real name reads.
    fn table(self, name: &str) -> String {
        match self {
            Scoping::Standard => name.to_ascii_lowercase(),
            Scoping::MariaDb => name.to_string(),
        }
    }
}

fn scoping(d: SqlDialect) -> Scoping {
    match d {
        SqlDialect::Mysql => Scoping::MariaDb,
        _ => Scoping::Standard,
    }
}

/// The real tables a query reads: every table name that no visible CTE binds.
fn real_tables(q: &Query, s: Scoping) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    query_reads(q, s, &[], &mut out);
    out
}

fn query_reads(q: &Query, s: Scoping, visible: &[String], out: &mut BTreeSet<String>) {
    let mut body_scope = visible.to_vec();
    if let Some(w) = &q.with {
        let names: Vec<String> = w.ctes.iter().map(Cte::spelled).collect();
        for (i, cte) in w.ctes.iter().enumerate() {
            let mut inside = match s {
                Scoping::Standard => visible.to_vec(),
                Scoping::MariaDb => Vec::new(),
            };
            inside.extend(names[..i].iter().cloned());
            if w.recursive {
                inside.push(names[i].clone());
            }
            match &cte.body {
                CteBody::Query(q) => query_reads(q, s, &inside, out),
                CteBody::Recursive { anchor, cond, .. } => {
                    select_reads(anchor, s, &inside, out);
                    table_reads(&names[i], s, &inside, out);
                    if let Some(c) = cond {
                        cond_reads(c, s, &inside, out);
                    }
                }
            }
        }
        body_scope.extend(names);
    }
    select_reads(&q.body.first, s, &body_scope, out);
    for (_, sel) in &q.body.rest {
        select_reads(sel, s, &body_scope, out);
    }
    if let Some(order) = &q.order {
        query_reads(order, s, &body_scope, out);
    }
}

fn table_reads(name: &str, s: Scoping, visible: &[String], out: &mut BTreeSet<String>) {
    if !visible.iter().any(|v| s.same(v, name)) {
        out.insert(s.table(name));
    }
}

fn select_reads(sel: &Select, s: Scoping, visible: &[String], out: &mut BTreeSet<String>) {
    if let Item::Scalar(q) = &sel.item {
        query_reads(q, s, visible, out);
    }
    if let Some(from) = &sel.from {
        factor_reads(&from.first, s, visible, out);
        for (factor, join) in &from.joins {
            factor_reads(factor, s, visible, out);
            if let Join::Inner(on) | Join::Left(on) = join {
                cond_reads(on, s, visible, out);
            }
        }
    }
    if let Some(c) = &sel.cond {
        cond_reads(c, s, visible, out);
    }
}

fn factor_reads(factor: &Factor, s: Scoping, visible: &[String], out: &mut BTreeSet<String>) {
    match factor {
        Factor::Table { name, case, .. } => table_reads(&case.spell(name), s, visible, out),
        Factor::Derived { query, .. } => query_reads(query, s, visible, out),
    }
}

fn cond_reads(c: &Cond, s: Scoping, visible: &[String], out: &mut BTreeSet<String>) {
    match c {
        Cond::True => {}
        Cond::Exists(q) | Cond::In(q) => query_reads(q, s, visible, out),
        Cond::And(a, b) => {
            cond_reads(a, s, visible, out);
            cond_reads(b, s, visible, out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tables: the generator.

/// A CTE name or an alias.
fn name() -> impl Strategy<Value = &'static str> + Clone {
    select(&NAMES[..])
}

/// A table reference: more often allowed, so that bigger queries are not all refused.
fn table() -> impl Strategy<Value = &'static str> + Clone {
    prop_oneof![4 => select(&ALLOWED[..]), 1 => select(&FORBIDDEN[..])]
}

/// Whether a table reference is turned into a reference to a visible CTE.
fn pick() -> impl Strategy<Value = Option<Index>> + Clone {
    option::weighted(0.4, any::<Index>())
}

fn case() -> impl Strategy<Value = Case> + Clone {
    prop_oneof![6 => Just(Case::Lower), 1 => Just(Case::Upper), 1 => Just(Case::Title)]
}

fn leaf_query() -> impl Strategy<Value = Query> {
    let table = (table(), case(), option::weighted(0.3, name()), pick());
    option::weighted(0.8, table).prop_map(|table| Query {
        with: None,
        order: None,
        body: Body {
            first: Select {
                item: Item::One,
                from: table.map(|(name, case, alias, pick)| FromClause {
                    first: Factor::Table {
                        name,
                        case,
                        alias,
                        pick,
                    },
                    joins: Vec::new(),
                }),
                cond: None,
            },
            rest: Vec::new(),
        },
    })
}

/// A condition: `1 = 1`, `EXISTS (q)`, `1 IN (q)`, or two of those.
fn cond(inner: BoxedStrategy<Query>) -> BoxedStrategy<Cond> {
    let atom = prop_oneof![
        1 => Just(Cond::True),
        2 => inner.clone().prop_map(|q| Cond::Exists(Box::new(q))),
        2 => inner.prop_map(|q| Cond::In(Box::new(q))),
    ]
    .boxed();
    prop_oneof![
        3 => atom.clone(),
        1 => (atom.clone(), atom).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
    ]
    .boxed()
}

fn select_of(inner: BoxedStrategy<Query>) -> BoxedStrategy<Select> {
    let factor = prop_oneof![
        3 => (table(), case(), option::weighted(0.4, name()), pick())
            .prop_map(|(name, case, alias, pick)| Factor::Table { name, case, alias, pick }),
        1 => (inner.clone(), name())
            .prop_map(|(q, alias)| Factor::Derived { query: Box::new(q), alias }),
    ]
    .boxed();
    let join = prop_oneof![
        1 => Just(Join::Comma),
        2 => cond(inner.clone()).prop_map(Join::Inner),
        1 => cond(inner.clone()).prop_map(Join::Left),
    ];
    let from = (factor.clone(), option::weighted(0.4, (factor, join))).prop_map(|(first, join)| {
        FromClause {
            first,
            joins: join.into_iter().collect(),
        }
    });
    let item = prop_oneof![
        3 => Just(Item::One),
        1 => inner.clone().prop_map(|q| Item::Scalar(Box::new(q))),
    ];
    (
        item,
        option::weighted(0.85, from),
        option::weighted(0.3, cond(inner)),
    )
        .prop_map(|(item, from, cond)| Select { item, from, cond })
        .boxed()
}

fn with_of(inner: BoxedStrategy<Query>) -> BoxedStrategy<With> {
    let body = prop_oneof![
        2 => inner.clone().prop_map(CteBody::Query),
        1 => (
            select_of(inner.clone()),
            option::weighted(0.3, name()),
            option::weighted(0.5, cond(inner)),
        )
            .prop_map(|(anchor, alias, cond)| CteBody::Recursive { anchor, alias, cond }),
    ]
    .boxed();
    // Distinct names: a name twice in one WITH is an error in every database.
    (
        prop::bool::weighted(0.4),
        subsequence(NAMES.to_vec(), 1..=3).prop_shuffle(),
    )
        .prop_flat_map(move |(recursive, names)| {
            let n = names.len();
            (
                Just(recursive),
                Just(names),
                vec((body.clone(), case(), prop::bool::weighted(0.2)), n),
            )
        })
        .prop_map(|(recursive, names, ctes)| With {
            recursive,
            ctes: names
                .into_iter()
                .zip(ctes)
                .map(|(name, (body, case, columns))| Cte {
                    name,
                    case,
                    columns,
                    body,
                })
                .collect(),
        })
        .boxed()
}

/// Points the table references that have a `pick` at one of the CTEs visible there (by
/// standard scoping), so that queries often name CTEs where they are, or in some dialect are
/// not, visible; names drawn at random alone rarely meet their CTE.
fn retarget(q: &mut Query, visible: &[&'static str]) {
    let mut body_scope = visible.to_vec();
    if let Some(w) = &mut q.with {
        let names: Vec<&'static str> = w.ctes.iter().map(|c| c.name).collect();
        let recursive = w.recursive;
        for (i, cte) in w.ctes.iter_mut().enumerate() {
            let mut inside = visible.to_vec();
            inside.extend(&names[..i]);
            if recursive {
                inside.push(names[i]);
            }
            match &mut cte.body {
                CteBody::Query(q) => retarget(q, &inside),
                CteBody::Recursive { anchor, cond, .. } => {
                    retarget_select(anchor, &inside);
                    if let Some(c) = cond {
                        retarget_cond(c, &inside);
                    }
                }
            }
        }
        body_scope.extend(names);
    }
    retarget_select(&mut q.body.first, &body_scope);
    for (_, sel) in &mut q.body.rest {
        retarget_select(sel, &body_scope);
    }
    if let Some(order) = &mut q.order {
        retarget(order, &body_scope);
    }
}

fn retarget_select(sel: &mut Select, visible: &[&'static str]) {
    if let Item::Scalar(q) = &mut sel.item {
        retarget(q, visible);
    }
    if let Some(from) = &mut sel.from {
        let factors =
            std::iter::once(&mut from.first).chain(from.joins.iter_mut().map(|j| &mut j.0));
        for factor in factors {
            match factor {
                Factor::Table {
                    name,
                    pick: Some(p),
                    ..
                } if !visible.is_empty() => *name = visible[p.index(visible.len())],
                Factor::Table { .. } => {}
                Factor::Derived { query, .. } => retarget(query, visible),
            }
        }
        for (_, join) in &mut from.joins {
            if let Join::Inner(on) | Join::Left(on) = join {
                retarget_cond(on, visible);
            }
        }
    }
    if let Some(c) = &mut sel.cond {
        retarget_cond(c, visible);
    }
}

fn retarget_cond(c: &mut Cond, visible: &[&'static str]) {
    match c {
        Cond::True => {}
        Cond::Exists(q) | Cond::In(q) => retarget(q, visible),
        Cond::And(a, b) => {
            retarget_cond(a, visible);
            retarget_cond(b, visible);
        }
    }
}

fn query() -> impl Strategy<Value = Query> {
    query_tree().prop_map(|mut q| {
        retarget(&mut q, &[]);
        q
    })
}

fn query_tree() -> impl Strategy<Value = Query> {
    // About a third of the queries are accepted; most have a WITH; the median is 400 bytes.
    leaf_query().prop_recursive(3, 16, 3, |inner| {
        let select = select_of(inner.clone());
        let op = prop_oneof![
            Just(SetOp::Union),
            Just(SetOp::UnionAll),
            Just(SetOp::Intersect),
            Just(SetOp::Except),
        ];
        (
            option::weighted(0.6, with_of(inner.clone())),
            select.clone(),
            vec((op, select), 0..=1),
            option::weighted(0.1, inner),
        )
            .prop_map(|(with, first, rest, order)| Query {
                with,
                // The ORDER BY of a UNION may name only output columns.
                order: order.filter(|_| rest.is_empty()).map(Box::new),
                body: Body { first, rest },
            })
    })
}

/// Checks one query in one dialect against the oracle; `Err` says how the validator was wrong.
fn check_tables(q: &Query, d: SqlDialect) -> Result<(), String> {
    let sql = q.to_string();
    let real = real_tables(q, scoping(d));
    let forbidden: Vec<&String> = real
        .iter()
        .filter(|t| !ALLOWED.contains(&t.as_str()))
        .collect();
    match validate(&sql, d, &tables_policy()) {
        Ok(v) if forbidden.is_empty() => {
            if v.tables != real {
                return Err(format!(
                    "{d:?} reported tables {:?} for `{sql}`; it reads {real:?}",
                    v.tables
                ));
            }
            match validate(&v.sql, d, &tables_policy()) {
                Ok(again) if again.sql == v.sql => Ok(()),
                Ok(again) => Err(format!(
                    "{d:?}: `{sql}` printed as `{}`, which prints as `{}`",
                    v.sql, again.sql
                )),
                Err(e) => Err(format!(
                    "{d:?}: `{sql}` printed as `{}`, which is refused: {e}",
                    v.sql
                )),
            }
        }
        Ok(v) => Err(format!(
            "{d:?} accepted `{sql}` (as `{}`), which reads the real {forbidden:?}",
            v.sql
        )),
        Err(e) if !forbidden.is_empty() && e.rule == Rule::TableNotAllowed => Ok(()),
        Err(e) if !forbidden.is_empty() => Err(format!(
            "{d:?} refused `{sql}` (real {forbidden:?}) with `{}`, not `table_not_allowed`: {e}",
            e.rule.name()
        )),
        Err(e) => Err(format!(
            "{d:?} refused `{sql}`, whose real tables {real:?} are all allowed: {e}"
        )),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ctes_shadow_tables_only_where_they_are_visible(q in query()) {
        for d in DIALECTS {
            if let Err(e) = check_tables(&q, d) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Columns.

/// `employees` shows `id, name`; `email, salary` are hidden.
const COLUMNS: [&str; 4] = ["id", "name", "email", "salary"];
const HIDDEN: [&str; 2] = ["email", "salary"];
/// Output aliases and renamed columns: named like visible and hidden columns.
const OUT_NAMES: [&str; 6] = ["id", "name", "email", "salary", "x", "y"];
/// Aliases of `employees` (`None`: unaliased, qualified as `employees`).
const EMP_ALIASES: [Option<&str>; 4] = [None, Some("e"), Some("t"), Some("salary")];
/// Names of the derived table or CTE over `employees`.
const WRAP_NAMES: [&str; 3] = ["t", "employees", "email"];

fn columns_policy() -> ReadPolicy {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), None);
    tables.insert(
        "employees".to_string(),
        Some(["id", "name"].iter().map(|c| c.to_string()).collect()),
    );
    ReadPolicy::new(tables, 100)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qual {
    /// Unqualified.
    Bare,
    /// `employees`, or its alias.
    Emp,
    /// `customers` (only where it is in scope).
    Cust,
    /// Not a column: `employees` or its alias alone, which PostgreSQL reads as the whole row.
    WholeRow,
}

#[derive(Debug, Clone, Copy)]
struct ColRef {
    qual: Qual,
    col: &'static str,
}

#[derive(Debug, Clone, Copy)]
enum Pred {
    /// `ref = 1`
    Eq(ColRef),
    /// `EXISTS (SELECT 1 FROM customers WHERE customers.id = ref)`: a bare name may be an outer
    /// reference to `employees`.
    Exists(ColRef),
}

#[derive(Debug, Clone)]
enum Items {
    Star,
    QualifiedStar,
    Columns(Vec<(ColRef, Option<&'static str>)>),
}

/// `SELECT items FROM employees [AS alias] [JOIN customers ON customers.id = ref] [WHERE pred]`
#[derive(Debug, Clone)]
struct Inner {
    items: Items,
    alias: Option<&'static str>,
    join: Option<ColRef>,
    pred: Option<Pred>,
}

/// `SELECT items FROM (inner) AS name [WHERE ref = 1]` or
/// `WITH name[(renames)] AS (inner) SELECT items FROM name [WHERE ref = 1]`; a reference is an
/// index into the derived columns, qualified or not.
#[derive(Debug, Clone)]
struct Outer {
    cte: bool,
    name: &'static str,
    renames: Option<Vec<&'static str>>,
    /// A derived column (`None`: the whole row, `name` alone), qualified or not, and its alias.
    items: Vec<(Option<Index>, bool, Option<&'static str>)>,
    pred: Option<(Index, bool)>,
}

#[derive(Clone)]
struct ColQuery {
    inner: Inner,
    outer: Option<Outer>,
}

impl Inner {
    fn qualifier(&self) -> &'static str {
        self.alias.unwrap_or("employees")
    }

    fn col(&self, r: ColRef) -> String {
        match r.qual {
            Qual::Bare => r.col.to_string(),
            Qual::Emp => format!("{}.{}", self.qualifier(), r.col),
            Qual::Cust => format!("customers.{}", r.col),
            Qual::WholeRow => self.qualifier().to_string(),
        }
    }

    /// The names of its output columns.
    fn outputs(&self) -> Vec<&'static str> {
        match &self.items {
            Items::Star | Items::QualifiedStar => COLUMNS.to_vec(),
            Items::Columns(cols) => cols
                .iter()
                .map(|(r, a)| match (a, r.qual) {
                    (Some(a), _) => *a,
                    (None, Qual::WholeRow) => self.qualifier(),
                    (None, _) => r.col,
                })
                .collect(),
        }
    }

    /// Whether it may read a hidden column of `employees`: `*`, the whole row, or a hidden
    /// name that is not qualified by `customers` (a bare one may be `employees`' in every place
    /// it appears).
    fn reads_hidden(&self) -> bool {
        let hidden = |r: &ColRef| {
            r.qual == Qual::WholeRow || (r.qual != Qual::Cust && HIDDEN.contains(&r.col))
        };
        let pred = match self.pred {
            Some(Pred::Eq(r) | Pred::Exists(r)) => hidden(&r),
            None => false,
        };
        match &self.items {
            Items::Star | Items::QualifiedStar => true,
            Items::Columns(cols) => {
                cols.iter().any(|(r, _)| hidden(r))
                    || self.join.as_ref().is_some_and(hidden)
                    || pred
            }
        }
    }
}

impl Display for Inner {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        match &self.items {
            Items::Star => f.write_str("*")?,
            Items::QualifiedStar => write!(f, "{}.*", self.qualifier())?,
            Items::Columns(cols) => {
                for (i, (r, alias)) in cols.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&self.col(*r))?;
                    if let Some(a) = alias {
                        write!(f, " AS {a}")?;
                    }
                }
            }
        }
        f.write_str(" FROM employees")?;
        if let Some(a) = self.alias {
            write!(f, " AS {a}")?;
        }
        if let Some(r) = self.join {
            write!(f, " JOIN customers ON customers.id = {}", self.col(r))?;
        }
        match self.pred {
            Some(Pred::Eq(r)) => write!(f, " WHERE {} = 1", self.col(r))?,
            Some(Pred::Exists(r)) => write!(
                f,
                " WHERE EXISTS (SELECT 1 FROM customers WHERE customers.id = {})",
                self.col(r)
            )?,
            None => {}
        }
        Ok(())
    }
}

impl Display for ColQuery {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let Some(o) = &self.outer else {
            return write!(f, "{}", self.inner);
        };
        let names = o.renames.clone().unwrap_or_else(|| self.inner.outputs());
        let col = |i: &Index, qualified: bool| {
            let c = names[i.index(names.len())];
            if qualified {
                format!("{}.{c}", o.name)
            } else {
                c.to_string()
            }
        };
        let renames = o
            .renames
            .as_ref()
            .map(|r| format!("({})", r.join(", ")))
            .unwrap_or_default();
        if o.cte {
            write!(f, "WITH {}{renames} AS ({}) ", o.name, self.inner)?;
        }
        f.write_str("SELECT ")?;
        for (n, (i, qualified, alias)) in o.items.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            match i {
                Some(i) => f.write_str(&col(i, *qualified))?,
                None => f.write_str(o.name)?,
            }
            if let Some(a) = alias {
                write!(f, " AS {a}")?;
            }
        }
        if o.cte {
            write!(f, " FROM {}", o.name)?;
        } else {
            write!(f, " FROM ({}) AS {}", self.inner, o.name)?;
        }
        if let Some((i, qualified)) = &o.pred {
            write!(f, " WHERE {} = 1", col(i, *qualified))?;
        }
        Ok(())
    }
}

/// Shown as its SQL.
impl fmt::Debug for ColQuery {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

fn col_ref() -> impl Strategy<Value = ColRef> {
    (
        prop_oneof![
            4 => Just(Qual::Bare),
            4 => Just(Qual::Emp),
            2 => Just(Qual::Cust),
            1 => Just(Qual::WholeRow),
        ],
        select(&COLUMNS[..]),
    )
        .prop_map(|(qual, col)| ColRef { qual, col })
}

fn inner() -> impl Strategy<Value = Inner> {
    let items = prop_oneof![
        1 => Just(Items::Star),
        1 => Just(Items::QualifiedStar),
        8 => vec((col_ref(), option::weighted(0.4, select(&OUT_NAMES[..]))), 1..=3)
            .prop_map(Items::Columns),
    ];
    let pred = prop_oneof![
        col_ref().prop_map(Pred::Eq),
        col_ref().prop_map(Pred::Exists),
    ];
    (
        items,
        select(&EMP_ALIASES[..]),
        option::weighted(0.25, col_ref()),
        option::weighted(0.5, pred),
    )
        .prop_map(|(items, alias, join, pred)| {
            // `customers.x` only where customers is in scope: in the join, or the EXISTS.
            let scoped = |r: ColRef| match r.qual {
                Qual::Cust if join.is_none() => ColRef {
                    qual: Qual::Emp,
                    ..r
                },
                _ => r,
            };
            let items = match items {
                Items::Columns(cols) => {
                    Items::Columns(cols.into_iter().map(|(r, a)| (scoped(r), a)).collect())
                }
                star => star,
            };
            let pred = match pred {
                Some(Pred::Eq(r)) => Some(Pred::Eq(scoped(r))),
                other => other,
            };
            Inner {
                items,
                alias,
                join,
                pred,
            }
        })
}

fn col_query() -> impl Strategy<Value = ColQuery> {
    let outer_items = vec(
        (
            option::weighted(0.9, any::<Index>()),
            any::<bool>(),
            option::weighted(0.4, select(&OUT_NAMES[..])),
        ),
        1..=3,
    );
    inner()
        .prop_flat_map(move |inner| {
            let n = inner.outputs().len();
            let outer = (
                any::<bool>(),
                select(&WRAP_NAMES[..]),
                option::weighted(0.3, subsequence(OUT_NAMES.to_vec(), n).prop_shuffle()),
                outer_items.clone(),
                option::weighted(0.4, (any::<Index>(), any::<bool>())),
            )
                .prop_map(|(cte, name, renames, items, pred)| Outer {
                    // Only CTEs rename columns in every database (`AS t(a, b)` on a derived
                    // table is PostgreSQL's).
                    renames: renames.filter(|_| cte),
                    cte,
                    name,
                    items,
                    pred,
                });
            (Just(inner), option::weighted(0.6, outer))
        })
        .prop_map(|(inner, outer)| ColQuery { inner, outer })
        // A derived table with two columns of one name cannot be read by that name.
        .prop_filter("distinct derived column names", |q| match &q.outer {
            Some(o) if o.renames.is_none() => {
                let names = q.inner.outputs();
                names.iter().collect::<BTreeSet<_>>().len() == names.len()
            }
            _ => true,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hidden_columns_are_refused_and_aliases_grant_nothing(q in col_query()) {
        let sql = q.to_string();
        let hidden = q.inner.reads_hidden();
        for d in DIALECTS {
            match validate(&sql, d, &columns_policy()) {
                Ok(v) => prop_assert!(
                    !hidden,
                    "{:?} accepted `{}` (as `{}`), which reads a hidden column", d, sql, v.sql
                ),
                Err(e) => {
                    prop_assert!(
                        hidden,
                        "{:?} refused `{}`, which reads no hidden column: {}", d, sql, e
                    );
                    prop_assert_eq!(
                        e.rule, Rule::ColumnNotAllowed,
                        "{:?} `{}`: {}", d, &sql, &e
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-picked cases of the properties above, so a regression names the construct.

#[test]
fn cte_scoping_examples() {
    let policy = tables_policy();
    let ok = |sql: &str| {
        for d in DIALECTS {
            if let Err(e) = validate(sql, d, &policy) {
                panic!("{d:?} refused `{sql}`: {e}");
            }
        }
    };
    let refused = |sql: &str, dialects: &[SqlDialect]| {
        for &d in dialects {
            match validate(sql, d, &policy) {
                Ok(v) => panic!("{d:?} accepted `{sql}` as `{}`", v.sql),
                Err(e) => assert_eq!(e.rule, Rule::TableNotAllowed, "{d:?} `{sql}`: {e}"),
            }
        }
    };
    // A CTE named like a forbidden table is fine where it is visible.
    ok("WITH payroll AS (SELECT 1 FROM customers) SELECT 1 FROM payroll");
    ok("WITH payroll AS (SELECT 1) SELECT (SELECT 1 FROM payroll)");
    ok("WITH payroll AS (SELECT 1) SELECT 1 FROM (SELECT 1 FROM payroll) AS t");
    ok("WITH a AS (SELECT 1), payroll AS (SELECT 1 FROM a) SELECT 1 FROM payroll");
    ok(
        "WITH RECURSIVE payroll AS (SELECT 1 UNION ALL SELECT 1 FROM payroll WHERE 1 = 0) \
         SELECT 1 FROM payroll",
    );
    // …and nowhere else.
    refused(
        "SELECT 1 FROM (WITH payroll AS (SELECT 1) SELECT 1 FROM payroll) AS t, payroll",
        &DIALECTS,
    );
    refused(
        "SELECT (WITH users AS (SELECT 1) SELECT 1) FROM users",
        &DIALECTS,
    );
    refused(
        "SELECT 1 FROM customers WHERE EXISTS (WITH secrets AS (SELECT 1) SELECT 1) \
         AND 1 IN (SELECT 1 FROM secrets)",
        &DIALECTS,
    );
    // Not in itself without RECURSIVE, nor in earlier CTEs of the same WITH.
    refused(
        "WITH payroll AS (SELECT 1 FROM payroll) SELECT 1 FROM payroll",
        &DIALECTS,
    );
    refused(
        "WITH a AS (SELECT 1 FROM payroll), payroll AS (SELECT 1) SELECT 1 FROM a",
        &DIALECTS,
    );
    refused(
        "WITH payroll AS (SELECT 1 UNION ALL SELECT 1 FROM payroll) SELECT 1 FROM payroll",
        &DIALECTS,
    );
    // A table alias never hides a table.
    refused(
        "SELECT 1 FROM customers AS payroll WHERE EXISTS (SELECT 1 FROM payroll)",
        &DIALECTS,
    );
    refused(
        "SELECT 1 FROM (SELECT 1 FROM orders) AS secrets JOIN secrets ON 1 = 1",
        &DIALECTS,
    );
}

/// MariaDB reads the real table here (checked on MariaDB 10.11: `WITH b AS (SELECT 5 AS x)
/// SELECT * FROM (WITH c AS (SELECT * FROM b) SELECT * FROM c) AS t` returns the rows of the
/// table `b`); SQLite and PostgreSQL read the CTE.
#[test]
fn mariadb_does_not_see_outer_ctes_in_nested_cte_bodies() {
    let policy = tables_policy();
    for sql in [
        "WITH payroll AS (SELECT 1) \
         SELECT 1 FROM (WITH c AS (SELECT 1 FROM payroll) SELECT 1 FROM c) AS t",
        "WITH payroll AS (SELECT 1) SELECT (WITH c AS (SELECT 1 FROM payroll) SELECT 1 FROM c)",
        "WITH payroll AS (SELECT 1), \
         c AS (SELECT 1 FROM (WITH d AS (SELECT 1 FROM payroll) SELECT 1 FROM d) AS t) \
         SELECT 1 FROM c",
    ] {
        match validate(sql, SqlDialect::Mysql, &policy) {
            Ok(v) => panic!("Mysql accepted `{sql}` as `{}`", v.sql),
            Err(e) => assert_eq!(e.rule, Rule::TableNotAllowed, "`{sql}`: {e}"),
        }
        for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
            if let Err(e) = validate(sql, d, &policy) {
                panic!("{d:?} refused `{sql}`: {e}");
            }
        }
    }
}

#[test]
fn column_examples() {
    let policy = columns_policy();
    let verdict = |sql: &str, accept: bool| {
        for d in DIALECTS {
            match validate(sql, d, &policy) {
                Ok(v) => assert!(accept, "{d:?} accepted `{sql}` as `{}`", v.sql),
                Err(e) => {
                    assert!(!accept, "{d:?} refused `{sql}`: {e}");
                    assert_eq!(e.rule, Rule::ColumnNotAllowed, "{d:?} `{sql}`: {e}");
                }
            }
        }
    };
    verdict("SELECT name AS email FROM employees", true);
    verdict(
        "SELECT email FROM (SELECT name AS email FROM employees) AS t",
        true,
    );
    verdict(
        "SELECT employees.salary FROM (SELECT name AS salary FROM employees) AS employees",
        true,
    );
    verdict(
        "WITH employees AS (SELECT name AS salary FROM employees) SELECT salary FROM employees",
        true,
    );
    verdict(
        "WITH t(email) AS (SELECT name FROM employees) SELECT email FROM t",
        true,
    );
    verdict("SELECT salary.id FROM employees AS salary", true);
    verdict(
        "SELECT e.name FROM employees AS e JOIN customers ON customers.id = e.id \
         WHERE customers.email = 1",
        true,
    );
    // Aliases grant nothing: WHERE sees the table's columns.
    verdict("SELECT name AS email FROM employees WHERE email = 1", false);
    verdict(
        "SELECT x FROM (SELECT salary AS x FROM employees) AS t",
        false,
    );
    verdict(
        "WITH t(x) AS (SELECT email FROM employees) SELECT x FROM t",
        false,
    );
    verdict("SELECT * FROM employees", false);
    // PostgreSQL reads a relation's name alone as its whole row.
    verdict("SELECT e FROM employees AS e", false);
    verdict("SELECT employees FROM employees", false);
    verdict("SELECT t FROM (SELECT name FROM employees) AS t", true);
    verdict("SELECT e.* FROM employees AS e", false);
    // A bare name in a correlated subquery may be the outer table's.
    verdict(
        "SELECT name FROM employees \
         WHERE EXISTS (SELECT 1 FROM customers WHERE customers.id = salary)",
        false,
    );
    verdict(
        "SELECT name FROM employees AS e JOIN customers ON customers.id = email",
        false,
    );
}

// ---------------------------------------------------------------------------------------------
// Depth.

/// Deeply nested (or very long) statements: a name, and the statement at a depth.
type DeepCase = (&'static str, fn(usize) -> String);

fn nest(n: usize, open: &str, leaf: &str, close: &str) -> String {
    format!("{}{leaf}{}", open.repeat(n), close.repeat(n))
}

const DEEP_CASES: [DeepCase; 15] = [
    ("derived tables", |n| {
        format!(
            "SELECT 1 FROM {}",
            nest(n, "(SELECT 1 FROM ", "customers", ") AS t")
        )
    }),
    ("scalar subqueries", |n| {
        nest(n, "SELECT (", "SELECT 1", ")")
    }),
    ("IN subqueries", |n| {
        let inner = nest(n, "(SELECT id FROM customers WHERE id IN ", "(1)", ")");
        format!("SELECT 1 FROM customers WHERE id IN {inner}")
    }),
    ("EXISTS subqueries", |n| {
        nest(n, "SELECT 1 FROM customers WHERE EXISTS (", "SELECT 1", ")")
    }),
    ("CTE bodies", |n| {
        nest(n, "WITH a AS (", "SELECT 1", ") SELECT 1 FROM a")
    }),
    ("parenthesised queries", |n| nest(n, "(", "SELECT 1", ")")),
    ("parenthesised expressions", |n| {
        format!("SELECT {}", nest(n, "(", "1", ")"))
    }),
    ("NOT chain", |n| format!("SELECT {}1", "NOT ".repeat(n))),
    ("unary minus chain", |n| {
        format!("SELECT {}1", "- ".repeat(n))
    }),
    ("nested joins", |n| {
        format!(
            "SELECT 1 FROM {}",
            nest(n, "(", "customers JOIN orders ON 1 = 1", ")")
        )
    }),
    ("CASE expressions", |n| {
        format!("SELECT {}", nest(n, "CASE WHEN 1 = 1 THEN ", "1", " END"))
    }),
    // Long rather than nested in the text, but parsed into a left-deep tree.
    ("additions (x8)", |n| {
        format!("SELECT 1{}", "+1".repeat(8 * n))
    }),
    ("ORs (x8)", |n| {
        format!(
            "SELECT 1 FROM customers WHERE id = 1{}",
            " OR id = 1".repeat(8 * n)
        )
    }),
    ("UNIONs (x8)", |n| {
        format!("SELECT 1{}", " UNION SELECT 1".repeat(8 * n))
    }),
    ("additions (x60)", |n| {
        format!("SELECT 1{}", "+1".repeat(60 * n))
    }),
];

/// How deep the deep cases are nested.
const DEPTH: usize = 500;

/// The same statements 3 levels deep are accepted: what fails deep fails for its depth.
#[test]
fn the_deep_cases_are_accepted_when_shallow() {
    for (name, case) in DEEP_CASES {
        let sql = case(3);
        for d in DIALECTS {
            if let Err(e) = validate(&sql, d, &tables_policy()) {
                panic!("{d:?}, {name}: `{sql}` refused: {e}");
            }
        }
    }
}

/// Set in the child process: the case to run there.
const CHILD_ENV: &str = "WARDEN_SQL_DEEP_CASE";

/// Runs one case on a thread with the 2 MiB stack a tokio worker has; panics on a wrong answer
/// (a stack overflow aborts the process).
fn run_deep_case(name: &str) {
    let (name, case) = DEEP_CASES
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no case `{name}`"));
    let sql = case(DEPTH);
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for d in DIALECTS {
                match validate(&sql, d, &tables_policy()) {
                    Ok(_) => {}
                    Err(e) if e.rule == Rule::TooComplex => {}
                    // Past the parser's recursion limit, sqlparser reports some deep chains
                    // (`NOT NOT …`, nested CASE) as syntax errors: refused all the same.
                    Err(e) if e.rule == Rule::Syntax => {}
                    Err(e) => {
                        let mut m = e.message.clone();
                        m.truncate(200);
                        panic!(
                            "{d:?}, {name}: refused with `{}`, not `too_complex`: {m}",
                            e.rule.name()
                        );
                    }
                }
            }
        })
        .expect("thread")
        .join()
        .unwrap_or_else(|_| panic!("the case panicked"));
}

#[test]
fn deep_nesting_is_refused_or_accepted_without_overflow() {
    if let Ok(case) = std::env::var(CHILD_ENV) {
        run_deep_case(&case);
        return;
    }
    // This test's name as the harness knows it (the module path without the crate).
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let test = format!("{module}::deep_nesting_is_refused_or_accepted_without_overflow");
    let exe = std::env::current_exe().expect("test binary");
    let mut failures = Vec::new();
    for (case, _) in DEEP_CASES {
        let mut child = Command::new(&exe)
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, case)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the test binary");
        let pipes = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .map(|p| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut p) = p {
                    let _ = p.read_to_string(&mut s);
                }
                s
            })
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out: String = pipes
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect();
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                // The panic message follows the "panicked at" line; an overflow says so.
                let lines: Vec<&str> = out.lines().collect();
                let why = lines
                    .iter()
                    .position(|l| l.contains(" panicked at "))
                    .and_then(|i| lines.get(i + 1).copied())
                    .or_else(|| {
                        lines
                            .iter()
                            .copied()
                            .find(|l| l.contains("has overflowed its stack"))
                    })
                    .map_or_else(|| s.to_string(), |l| format!("{l} ({s})"));
                failures.push(format!("{case}: {why}"));
            }
            None => failures.push(format!("{case}: no answer in 60 s")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} deep cases failed:\n{}",
        failures.len(),
        DEEP_CASES.len(),
        failures.join("\n")
    );
}
