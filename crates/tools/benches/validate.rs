//! SQL validation time (parse, check, print back) per statement, one thread, for a short
//! query, a typical analytic one (~1 KB: joins, a CTE, window functions, GROUP BY, CASE, date
//! arithmetic), a long one (~8 KB) and one nested 50 subqueries deep, in each dialect.
//!
//! `cargo bench -p warden-tools --bench validate` (prints p50 and p99 of 2,001 runs after 200
//! warm-up runs, as a Markdown table).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use warden_tools::sql::{ReadPolicy, SqlDialect, validate};

const RUNS: usize = 2001;
const WARM_UP: usize = 200;

const SHORT: &str = "SELECT id, name FROM customers WHERE id = 42";

/// The analytic query, with `{RECENT}` standing for "created in the last 30 days" in the
/// dialect's own date arithmetic.
const ANALYTIC: &str = "WITH recent AS (
    SELECT o.id, o.customer_id, o.product_id, o.total, o.status, o.created_at
    FROM orders o
    WHERE {RECENT} AND o.status <> 'cancelled'
),
per_customer AS (
    SELECT c.id AS customer_id, c.name, c.city,
           COUNT(r.id) AS n_orders,
           SUM(r.total) AS revenue,
           AVG(r.total) AS avg_order,
           MAX(r.created_at) AS last_order
    FROM customers c
    JOIN recent r ON r.customer_id = c.id
    LEFT JOIN products p ON p.id = r.product_id
    WHERE c.city IS NOT NULL AND (p.category IN ('tools', 'garden', 'kitchen') OR p.id IS NULL)
    GROUP BY c.id, c.name, c.city
    HAVING COUNT(r.id) >= 2
)
SELECT pc.customer_id, pc.name, pc.city, pc.n_orders, pc.revenue,
       ROUND(pc.avg_order, 2) AS avg_order,
       CASE WHEN pc.revenue >= 10000 THEN 'gold'
            WHEN pc.revenue >= 1000 THEN 'silver'
            ELSE 'bronze' END AS tier,
       ROW_NUMBER() OVER (PARTITION BY pc.city ORDER BY pc.revenue DESC) AS city_rank,
       SUM(pc.revenue) OVER (PARTITION BY pc.city) AS city_revenue,
       COALESCE(pc.last_order, '1970-01-01') AS last_order
FROM per_customer pc
WHERE pc.revenue > 0
ORDER BY pc.city, city_rank
LIMIT 50";

fn recent(d: SqlDialect) -> &'static str {
    match d {
        SqlDialect::Postgres => "o.created_at >= CURRENT_DATE - INTERVAL '30 days'",
        SqlDialect::Mysql => "o.created_at >= CURRENT_DATE - INTERVAL 30 DAY",
        SqlDialect::Sqlite => "o.created_at >= date('now', '-30 days')",
    }
}

fn analytic(d: SqlDialect) -> String {
    ANALYTIC.replace("{RECENT}", recent(d))
}

/// About 8 KB: per-status and per-threshold aggregates joined by UNION ALL.
fn long() -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while parts.iter().map(|p: &String| p.len() + 11).sum::<usize>() < 8 * 1024 {
        parts.push(format!(
            "SELECT c.id, c.name, '{i}' AS bucket, COUNT(o.id) AS n, SUM(o.total) AS total \
             FROM customers c JOIN orders o ON o.customer_id = c.id \
             WHERE o.status IN ('paid', 'shipped') AND o.total > {} AND c.city <> 'x{i}' \
             GROUP BY c.id, c.name",
            i * 10
        ));
        i += 1;
    }
    parts.join(" UNION ALL ")
}

/// 50 derived tables, one in another.
fn nested() -> String {
    let mut sql = "SELECT id, name FROM customers".to_string();
    for i in 0..50 {
        sql = format!("SELECT id, name FROM ({sql}) AS t{i}");
    }
    sql
}

fn policy() -> ReadPolicy {
    let tables: BTreeMap<String, Option<BTreeSet<String>>> = ["customers", "orders", "products"]
        .iter()
        .map(|t| (t.to_string(), None))
        .collect();
    ReadPolicy::new(tables, 1000)
}

/// p50 and p99 of `RUNS` validations, and the outcome.
fn time(sql: &str, d: SqlDialect, policy: &ReadPolicy) -> (Duration, Duration, String) {
    for _ in 0..WARM_UP {
        std::hint::black_box(validate(std::hint::black_box(sql), d, policy)).ok();
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let out = validate(std::hint::black_box(sql), d, policy);
            let t = start.elapsed();
            std::hint::black_box(out).ok();
            t
        })
        .collect();
    times.sort();
    let outcome = match validate(sql, d, policy) {
        Ok(_) => "accepted".to_string(),
        Err(e) => format!("refused ({})", e.rule.name()),
    };
    (times[RUNS / 2], times[RUNS * 99 / 100], outcome)
}

/// p50 of parsing `sql` alone with sqlparser (the floor: validation parses twice).
fn parse_p50(sql: &str, d: SqlDialect) -> Duration {
    use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
    let dialect: Box<dyn Dialect> = match d {
        SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
        SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
        SqlDialect::Mysql => Box::new(MySqlDialect {}),
    };
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let out =
                sqlparser::parser::Parser::parse_sql(dialect.as_ref(), std::hint::black_box(sql));
            let t = start.elapsed();
            std::hint::black_box(out).ok();
            t
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn us(t: Duration) -> String {
    format!("{:.1} µs", t.as_secs_f64() * 1e6)
}

fn main() {
    let policy = policy();
    let (long, nested) = (long(), nested());
    let queries: [(&str, &dyn Fn(SqlDialect) -> String); 4] = [
        ("short", &|_| SHORT.to_string()),
        ("analytic (~1 KB)", &analytic),
        ("long (~8 KB)", &|_| long.clone()),
        ("nested 50 deep", &|_| nested.clone()),
    ];
    println!(
        "| query | bytes | dialect | outcome | p50 | p99 | sqlparser parse alone, p50 | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, sql) in queries {
        for d in [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql] {
            let sql = sql(d);
            let (p50, p99, outcome) = time(&sql, d, &policy);
            let parse = parse_p50(&sql, d);
            println!(
                "| {name} | {} | {d:?} | {outcome} | {} | {} | {} | {:.1}× |",
                sql.len(),
                us(p50),
                us(p99),
                us(parse),
                p50.as_secs_f64() / parse.as_secs_f64()
            );
        }
    }
}
