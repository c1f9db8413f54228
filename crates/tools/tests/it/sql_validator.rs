use std::collections::{BTreeMap, BTreeSet};
use warden_tools::sql::{ReadPolicy, Rule, SqlDialect, validate};

const BOTH: [SqlDialect; 3] = [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql];

fn policy() -> ReadPolicy {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), None);
    tables.insert("orders".to_string(), None);
    tables.insert("products".to_string(), None);
    let cols: BTreeSet<String> = ["id", "name", "city"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    tables.insert("employees".to_string(), Some(cols));
    let mut p = ReadPolicy::new(tables, 100);
    p.denied_functions = ["lower".to_string()].into();
    p
}

fn accepted(sql: &str) -> String {
    let mut out = String::new();
    for d in BOTH {
        match validate(sql, d, &policy()) {
            Ok(v) => out = v.sql,
            Err(e) => panic!("{d:?} refused `{sql}`: {e}"),
        }
    }
    out
}

fn refused(sql: &str, rule: Rule) {
    for d in BOTH {
        refused_in(d, sql, rule);
    }
}

fn refused_in(d: SqlDialect, sql: &str, rule: Rule) {
    match validate(sql, d, &policy()) {
        Ok(v) => panic!("{d:?} accepted `{sql}` as `{}`", v.sql),
        Err(e) => assert_eq!(e.rule, rule, "{d:?} `{sql}`: {e}"),
    }
}

#[test]
fn plain_reads_are_accepted_with_a_limit() {
    for sql in [
        "SELECT * FROM customers",
        "select id, name from customers where city = 'Paris' order by name",
        "SELECT c.name, COUNT(o.id) AS n FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name HAVING COUNT(o.id) > 2",
        "SELECT * FROM orders WHERE total > (SELECT AVG(total) FROM orders)",
        "SELECT name FROM products WHERE id IN (SELECT product_id FROM orders)",
        "WITH big AS (SELECT * FROM orders WHERE total > 100) SELECT COUNT(*) FROM big",
        "SELECT name FROM customers UNION SELECT name FROM products",
        "SELECT DISTINCT city FROM customers",
        "SELECT id, CASE WHEN total > 10 THEN 'big' ELSE 'small' END FROM orders",
        "SELECT upper(name), length(name), coalesce(city, '?') FROM customers",
        "SELECT * FROM customers LIMIT 5 OFFSET 10",
        "  SELECT 1  ;  ",
        "SELECT id, name, city FROM employees WHERE city = 'Oslo'",
        "SELECT e.name AS who FROM employees e ORDER BY who",
    ] {
        let out = accepted(sql);
        assert!(out.contains("LIMIT"), "{out}");
    }
}

#[test]
fn the_limit_is_added_capped_or_kept() {
    assert!(accepted("SELECT * FROM orders").ends_with("LIMIT 100"));
    assert!(accepted("SELECT * FROM orders LIMIT 5000").ends_with("LIMIT 100"));
    assert!(accepted("SELECT * FROM orders LIMIT 7").ends_with("LIMIT 7"));
    assert!(accepted("SELECT * FROM orders LIMIT ALL").ends_with("LIMIT 100"));
    assert!(accepted("SELECT * FROM orders LIMIT (SELECT 100000)").ends_with("LIMIT 100"));
    refused(
        "SELECT * FROM orders FETCH FIRST 5 ROWS ONLY",
        Rule::Unsupported,
    );
}

#[test]
fn only_one_statement_and_only_select() {
    refused("SELECT 1; SELECT 2", Rule::OneStatement);
    refused(
        "SELECT * FROM customers; DROP TABLE customers",
        Rule::OneStatement,
    );
    refused(
        "SELECT * FROM customers; DELETE FROM orders",
        Rule::OneStatement,
    );
    refused("", Rule::OneStatement);
    refused("DELETE FROM orders", Rule::SelectOnly);
    refused("UPDATE orders SET total = 0", Rule::SelectOnly);
    refused("INSERT INTO orders VALUES (1)", Rule::SelectOnly);
    refused("DROP TABLE customers", Rule::SelectOnly);
    refused("CREATE TABLE x (a INT)", Rule::SelectOnly);
    refused("ATTACH DATABASE '/tmp/x.db' AS x", Rule::SelectOnly);
    refused_in(
        SqlDialect::Sqlite,
        "PRAGMA writable_schema = 1",
        Rule::SelectOnly,
    );
    refused_in(
        SqlDialect::Postgres,
        "SET statement_timeout = 0",
        Rule::SelectOnly,
    );
    refused_in(
        SqlDialect::Postgres,
        "COPY customers TO '/tmp/x'",
        Rule::SelectOnly,
    );
    refused_in(SqlDialect::Postgres, "BEGIN", Rule::SelectOnly);
}

#[test]
fn comments_cannot_hide_a_second_statement() {
    // Whatever the comments hold, the statement run is printed back from the parsed tree.
    let out = accepted("SELECT * FROM customers -- ; DROP TABLE customers");
    assert!(!out.contains("DROP") && !out.contains("--"), "{out}");
    let out = accepted("SELECT /* ; DELETE FROM orders */ name FROM customers");
    assert!(!out.contains("DELETE"), "{out}");
    refused("SELECT 1 /* */; DELETE FROM orders", Rule::OneStatement);
    for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
        refused_in(
            d,
            "SELECT * FROM customers WHERE name = ''; DROP TABLE orders; --'",
            Rule::OneStatement,
        );
    }
    // MySQL needs a space after `--`: the quote opens a string that never ends.
    refused_in(
        SqlDialect::Mysql,
        "SELECT * FROM customers WHERE name = ''; DROP TABLE orders; --'",
        Rule::Syntax,
    );
}

#[test]
fn data_modifying_ctes_select_into_and_locks_are_refused() {
    refused_in(
        SqlDialect::Postgres,
        "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
        Rule::SelectOnly,
    );
    refused_in(
        SqlDialect::Postgres,
        "WITH x AS (UPDATE orders SET total = 0 RETURNING id) SELECT * FROM x",
        Rule::SelectOnly,
    );
    refused_in(
        SqlDialect::Postgres,
        "WITH x AS (INSERT INTO orders (id) VALUES (1) RETURNING id) SELECT * FROM x",
        Rule::SelectOnly,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * INTO copy FROM customers",
        Rule::SelectInto,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM orders FOR UPDATE",
        Rule::Locking,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM orders FOR SHARE NOWAIT",
        Rule::Locking,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM (SELECT * FROM orders FOR UPDATE) t",
        Rule::Locking,
    );
}

#[test]
fn only_allowed_tables_even_through_unions_subqueries_and_ctes() {
    refused("SELECT * FROM secrets", Rule::TableNotAllowed);
    refused(
        "SELECT name FROM customers UNION SELECT password FROM users",
        Rule::TableNotAllowed,
    );
    refused(
        "SELECT * FROM customers WHERE id IN (SELECT id FROM users)",
        Rule::TableNotAllowed,
    );
    refused(
        "SELECT * FROM (SELECT * FROM users) u",
        Rule::TableNotAllowed,
    );
    refused(
        "WITH u AS (SELECT * FROM users) SELECT * FROM u",
        Rule::TableNotAllowed,
    );
    refused(
        "SELECT * FROM customers JOIN users ON true",
        Rule::TableNotAllowed,
    );
    refused(
        "SELECT (SELECT max(x) FROM users) FROM customers",
        Rule::TableNotAllowed,
    );
    refused(
        "SELECT * FROM other_schema.customers",
        Rule::TableNotAllowed,
    );
    // `public` is whatever search_path says in PostgreSQL: only the name as listed is allowed.
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM public.customers",
        Rule::TableNotAllowed,
    );
    validate(
        "SELECT * FROM main.customers",
        SqlDialect::Sqlite,
        &policy(),
    )
    .unwrap();
    refused("SELECT * FROM \"Users\"", Rule::TableNotAllowed);
    let err = validate("SELECT * FROM users", SqlDialect::Sqlite, &policy()).unwrap_err();
    assert!(
        err.message.contains("`users` is not allowed"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("customers"),
        "the model is told what it may read"
    );
}

#[test]
fn system_catalogs_are_refused() {
    refused_in(
        SqlDialect::Sqlite,
        "SELECT * FROM sqlite_master",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Sqlite,
        "SELECT sql FROM sqlite_schema",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Sqlite,
        "SELECT * FROM sqlite_temp_master",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM pg_catalog.pg_user",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM pg_shadow",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM information_schema.tables",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT usename FROM pg_stat_activity",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT name FROM customers UNION SELECT passwd FROM pg_shadow",
        Rule::SystemCatalog,
    );
}

#[test]
fn denied_functions_are_refused_anywhere() {
    refused_in(
        SqlDialect::Postgres,
        "SELECT pg_sleep(10)",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM orders WHERE pg_sleep(5) IS NULL",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT pg_read_file('/etc/passwd')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT lo_import('/etc/passwd')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT dblink('host=x', 'select 1')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT query_to_xml('select * from users', true, true, '')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT set_config('x', 'y', false)",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT PG_CATALOG.PG_SLEEP(1)",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT nextval('orders_id_seq')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Sqlite,
        "SELECT load_extension('/tmp/evil.so')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Sqlite,
        "SELECT readfile('/etc/passwd')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Sqlite,
        "SELECT writefile('/tmp/x', 'y')",
        Rule::FunctionNotAllowed,
    );
    refused_in(
        SqlDialect::Sqlite,
        "SELECT sqlite_version()",
        Rule::FunctionNotAllowed,
    );
    refused(
        "SELECT secret_fn(id) FROM customers",
        Rule::FunctionNotAllowed,
    );
    // Configuration may take a built-in function away.
    refused(
        "SELECT lower(name) FROM customers",
        Rule::FunctionNotAllowed,
    );
    refused(
        "SELECT name FROM customers ORDER BY (SELECT pg_sleep(1))",
        Rule::FunctionNotAllowed,
    );
}

#[test]
fn table_functions_are_refused() {
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM generate_series(1, 1000000000)",
        Rule::TableFunction,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM unnest(ARRAY[1,2])",
        Rule::TableFunction,
    );
    refused_in(
        SqlDialect::Sqlite,
        "SELECT * FROM pragma_table_info('customers')",
        Rule::TableFunction,
    );
}

#[test]
fn column_lists_are_enforced() {
    refused("SELECT * FROM employees", Rule::ColumnNotAllowed);
    refused("SELECT e.* FROM employees e", Rule::ColumnNotAllowed);
    refused("SELECT salary FROM employees", Rule::ColumnNotAllowed);
    refused(
        "SELECT name FROM employees WHERE salary > 100",
        Rule::ColumnNotAllowed,
    );
    refused(
        "SELECT name FROM employees ORDER BY ssn",
        Rule::ColumnNotAllowed,
    );
    refused("SELECT max(salary) FROM employees", Rule::ColumnNotAllowed);
    let err = validate(
        "SELECT salary FROM employees",
        SqlDialect::Sqlite,
        &policy(),
    )
    .unwrap_err();
    assert!(err.message.contains("city, id, name"), "{}", err.message);
    // Allowed columns and the query's own aliases pass.
    accepted("SELECT count(*) AS n FROM employees WHERE city = 'Oslo' ORDER BY n");
}

#[test]
fn syntax_errors_say_where() {
    let err = validate("SELEC * FROM customers", SqlDialect::Sqlite, &policy()).unwrap_err();
    assert_eq!(err.rule, Rule::Syntax);
    assert!(err.message.contains("does not parse"), "{}", err.message);
    refused("SELECT * FROM", Rule::Syntax);
    refused(
        "SELECT * FROM customers WHERE name = 'unterminated",
        Rule::Syntax,
    );
}

#[test]
fn every_refusal_names_its_rule() {
    let e = validate("DELETE FROM orders", SqlDialect::Postgres, &policy()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "refused (select_only): only SELECT is allowed, not DELETE"
    );
}
