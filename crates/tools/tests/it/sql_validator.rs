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

/// The bypasses found against the released binary (issue 11), and their variants, per dialect.
#[test]
fn the_known_bypasses_are_refused_in_every_dialect() {
    // A CTE defined in an inner scope never hides a real table of an outer one.
    for sql in [
        "SELECT * FROM payroll WHERE EXISTS (WITH payroll AS (SELECT 1) SELECT 1 FROM payroll)",
        "SELECT (WITH payroll AS (SELECT 1 AS x) SELECT x FROM payroll), salary FROM payroll",
        "SELECT * FROM payroll, (WITH payroll AS (SELECT 1) SELECT * FROM payroll) p",
        "WITH x AS (WITH payroll AS (SELECT 1) SELECT 1) SELECT * FROM payroll",
        "SELECT * FROM customers WHERE id IN (WITH payroll AS (SELECT 1 AS id) SELECT id FROM payroll) UNION SELECT * FROM payroll",
        "WITH payroll AS (SELECT * FROM payroll) SELECT * FROM payroll",
    ] {
        refused(sql, Rule::TableNotAllowed);
    }
    // Aliases never grant access to a hidden column; whole rows of a restricted table stay out.
    for sql in [
        "SELECT email AS email FROM employees",
        "SELECT salary AS name FROM employees",
        "SELECT e.name FROM employees e WHERE e.salary > 0",
        "SELECT name FROM (SELECT salary AS name FROM employees) t",
        "SELECT (SELECT salary FROM employees LIMIT 1) AS name FROM customers",
        "SELECT e FROM employees e",
        "SELECT name FROM customers WHERE EXISTS (SELECT 1 FROM employees e WHERE e.salary > 10)",
    ] {
        refused(sql, Rule::ColumnNotAllowed);
    }
    for d in [SqlDialect::Postgres] {
        for sql in [
            "SELECT row_to_json(e) FROM employees e",
            "SELECT to_jsonb(e) FROM employees e",
            "SELECT json_agg(e) FROM employees e",
            "SELECT (e).salary FROM employees e",
            "SELECT row_to_json(e.*) FROM employees e",
            "SELECT e::text FROM employees e",
        ] {
            refused_in(d, sql, Rule::ColumnNotAllowed);
        }
    }
    // Functions by allow-list: what a deny-list forgot is refused too.
    for sql in [
        "SELECT version()",
        "SELECT query_to_xml('select * from payroll', true, true, '')",
        "SELECT table_to_xmlschema('payroll', true, true, '')",
        "SELECT schema_to_xml('public', true, true, '')",
        "SELECT ts_stat('select salary::text::tsvector from payroll')",
        "SELECT update_everything() FROM customers",
        "SELECT public.my_function(1)",
        "SELECT current_setting('data_directory')",
        "SELECT inet_server_addr()",
        "SELECT pg_backend_pid()",
        "SELECT txid_current()",
    ] {
        refused_in(SqlDialect::Postgres, sql, Rule::FunctionNotAllowed);
    }
    for sql in [
        "SELECT current_user",
        "SELECT session_user",
        "SELECT user",
        "SELECT current_schema",
    ] {
        match validate(sql, SqlDialect::Postgres, &policy()) {
            Err(e) => assert!(
                matches!(e.rule, Rule::FunctionNotAllowed | Rule::Syntax),
                "{sql}: {e}"
            ),
            Ok(v) => panic!("accepted {sql} as {}", v.sql),
        }
    }
    for sql in [
        "SELECT SLEEP(5)",
        "SELECT BENCHMARK(100000000, MD5('x'))",
        "SELECT LOAD_FILE('/etc/passwd')",
        "SELECT USER()",
        "SELECT DATABASE()",
        "SELECT CURRENT_USER",
        "SELECT GET_LOCK('x', 10)",
        "SELECT name FROM customers WHERE id = 1 AND SLEEP(5) = 0",
    ] {
        refused_in(SqlDialect::Mysql, sql, Rule::FunctionNotAllowed);
    }
    refused_in(
        SqlDialect::Mysql,
        "SELECT @@version",
        Rule::VariableNotAllowed,
    );
    refused_in(
        SqlDialect::Mysql,
        "SELECT name FROM customers WHERE @x := 1",
        Rule::Unsupported,
    );
    refused_in(
        SqlDialect::Mysql,
        "SELECT /*!50000 version() */ 1",
        Rule::ExecutableComment,
    );
    for sql in [
        "SELECT sqlite_version()",
        "SELECT randomblob(1000000000)",
        "SELECT changes()",
    ] {
        refused_in(SqlDialect::Sqlite, sql, Rule::FunctionNotAllowed);
    }
    // Casts to catalog types.
    for sql in [
        "SELECT 'payroll'::regclass",
        "SELECT CAST('pg_sleep' AS regproc)",
        "SELECT 'x'::regtype",
        "SELECT '1'::oid",
    ] {
        refused_in(SqlDialect::Postgres, sql, Rule::TypeNotAllowed);
    }
    // `TABLE name` is a relation like any other; quoted names are exact where the database
    // makes them exact.
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM (TABLE pg_authid) p",
        Rule::SystemCatalog,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM (TABLE payroll) p",
        Rule::TableNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM (TABLE employees) p",
        Rule::ColumnNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "SELECT * FROM \"Orders\"",
        Rule::TableNotAllowed,
    );
    refused_in(
        SqlDialect::Mysql,
        "SELECT * FROM `Orders`",
        Rule::TableNotAllowed,
    );
    validate("SELECT * FROM \"Orders\"", SqlDialect::Sqlite, &policy()).unwrap();
    // Unicode case folding is not the databases': the Kelvin sign is not a `k`.
    for d in BOTH {
        match validate("SELECT * FROM \u{212A}ustomers", d, &policy()) {
            Err(e) => assert!(
                matches!(e.rule, Rule::Syntax | Rule::TableNotAllowed),
                "{d:?}: {e}"
            ),
            Ok(v) => panic!("{d:?} accepted {}", v.sql),
        }
    }
}

#[test]
fn known_columns_resolve_unqualified_names_to_the_right_table() {
    let mut p = policy();
    p.known_columns.insert(
        "employees".into(),
        ["id", "name", "city", "salary", "ssn"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    for d in BOTH {
        // `total` is not a column of employees: it belongs to orders.
        validate(
            "SELECT name, total FROM employees JOIN orders ON orders.id = employees.id",
            d,
            &p,
        )
        .unwrap();
        for sql in [
            "SELECT salary FROM employees JOIN orders ON orders.id = employees.id",
            "SELECT name FROM orders o JOIN employees e ON o.id = e.id WHERE ssn = '1'",
            "SELECT e FROM employees e JOIN orders o ON o.id = e.id",
            "SELECT (SELECT max(salary) FROM orders) FROM employees",
        ] {
            match validate(sql, d, &p) {
                Err(e) => assert_eq!(e.rule, Rule::ColumnNotAllowed, "{d:?} {sql}: {e}"),
                Ok(v) => panic!("{d:?} accepted {sql} as {}", v.sql),
            }
        }
    }
}
