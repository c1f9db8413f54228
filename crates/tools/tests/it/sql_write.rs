//! The SQL write policy: one plain write on a writable table (matched by its full name), held
//! to the read policy throughout, with every conflict-resolution form and always-true `WHERE`
//! refused.

use std::collections::{BTreeMap, BTreeSet};
use warden_tools::sql::{ReadPolicy, Rule, SqlDialect, WriteKind, WritePolicy, validate_write};

const ALL: [SqlDialect; 3] = [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql];

fn policy(allow_without_where: bool) -> WritePolicy {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), None);
    tables.insert("orders".to_string(), None);
    let cols: BTreeSet<String> = ["id", "name"].iter().map(|s| s.to_string()).collect();
    tables.insert("employees".to_string(), Some(cols));
    let mut p = WritePolicy::new(
        ReadPolicy::new(tables, 100),
        [
            "orders".to_string(),
            "employees".to_string(),
            "audit_log".to_string(),
        ]
        .into(),
    );
    p.allow_without_where = allow_without_where;
    p
}

fn refused(sql: &str, rule: Rule) {
    for d in ALL {
        refused_in(d, sql, rule);
    }
}

fn refused_in(d: SqlDialect, sql: &str, rule: Rule) {
    match validate_write(sql, d, &policy(false)) {
        Ok(w) => panic!("{d:?} accepted `{sql}` as `{}`", w.sql),
        Err(e) => assert_eq!(e.rule, rule, "{d:?} `{sql}`: {e}"),
    }
}

#[test]
fn one_write_on_a_writable_table_is_accepted_with_its_preview_queries() {
    for d in ALL {
        let w = validate_write(
            "UPDATE orders SET status = 'cancelled' WHERE id = 452",
            d,
            &policy(false),
        )
        .unwrap();
        assert_eq!(w.kind, WriteKind::Update);
        assert_eq!(w.table, "orders");
        assert_eq!(w.assigned, vec!["status".to_string()]);
        assert_eq!(
            w.select_targets(&[], false),
            "SELECT * FROM orders WHERE id = 452"
        );
        let keyed = w.returning(&["id".to_string()]);
        assert!(
            keyed.ends_with("RETURNING id") || keyed.contains("RETURNING"),
            "{keyed}"
        );
        let w = validate_write(
            "DELETE FROM orders WHERE status = 'draft'",
            d,
            &policy(false),
        )
        .unwrap();
        assert_eq!(w.kind, WriteKind::Delete);
        let w = validate_write(
            "INSERT INTO orders (id, customer_id, total) VALUES (99, 1, 5.0), (100, 2, 1.5)",
            d,
            &policy(false),
        )
        .unwrap();
        assert_eq!((w.kind, w.insert_rows), (WriteKind::Insert, 2));
        validate_write(
            "UPDATE orders SET total = 0 WHERE customer_id IN (SELECT id FROM customers WHERE city = 'Oslo')",
            d,
            &policy(false),
        )
        .unwrap();
    }
}

#[test]
fn writes_elsewhere_or_of_other_kinds_are_refused() {
    refused(
        "UPDATE customers SET name = 'x' WHERE id = 1",
        Rule::TableNotAllowed,
    );
    refused("DELETE FROM payroll WHERE id = 1", Rule::TableNotAllowed);
    refused(
        "INSERT INTO orders SELECT * FROM payroll",
        Rule::Unsupported,
    );
    refused(
        "UPDATE orders SET total = (SELECT salary FROM payroll LIMIT 1) WHERE id = 1",
        Rule::TableNotAllowed,
    );
    refused("DROP TABLE orders", Rule::SelectOnly);
    refused("CREATE TABLE x (a INT)", Rule::SelectOnly);
    refused("SELECT * FROM orders", Rule::SelectOnly);
    refused(
        "UPDATE orders SET total = 0 WHERE id = 1; DELETE FROM orders WHERE id = 2",
        Rule::OneStatement,
    );
    refused(
        "UPDATE orders SET total = pg_sleep(5) WHERE id = 1",
        Rule::FunctionNotAllowed,
    );
    refused(
        "DELETE FROM orders WHERE id IN (SELECT oid FROM pg_class)",
        Rule::SystemCatalog,
    );
}

#[test]
fn tables_are_matched_by_their_full_name() {
    // `orders` is writable; `archive.orders` is another table.
    refused(
        "UPDATE archive.orders SET total = 0 WHERE id = 1",
        Rule::TableNotAllowed,
    );
    refused(
        "DELETE FROM archive.orders WHERE id = 1",
        Rule::TableNotAllowed,
    );
    refused_in(
        SqlDialect::Postgres,
        "UPDATE \"Orders\" SET total = 0 WHERE id = 1",
        Rule::TableNotAllowed,
    );
    refused_in(
        SqlDialect::Mysql,
        "UPDATE `Orders` SET total = 0 WHERE id = 1",
        Rule::TableNotAllowed,
    );
    validate_write(
        "UPDATE main.orders SET total = 0 WHERE id = 1",
        SqlDialect::Sqlite,
        &policy(false),
    )
    .unwrap();
}

#[test]
fn update_and_delete_need_a_meaningful_where_unless_allowed() {
    refused("UPDATE orders SET total = 0", Rule::MissingWhere);
    refused("DELETE FROM orders", Rule::MissingWhere);
    for always in [
        "1=1",
        "1 = 1 OR id = 3",
        "true",
        "id = id",
        "(total >= total)",
        "'a' = 'a'",
        "status LIKE '%'",
        "EXISTS (SELECT 1)",
        "NOT false",
        "id = 5 OR 2 > 1",
        "id BETWEEN id AND id",
    ] {
        for d in ALL {
            for stmt in [
                format!("DELETE FROM orders WHERE {always}"),
                format!("UPDATE orders SET total = 0 WHERE {always}"),
            ] {
                match validate_write(&stmt, d, &policy(false)) {
                    Err(e) if e.rule == Rule::MissingWhere => {}
                    Err(e) if e.rule == Rule::Syntax => {}
                    other => panic!("{d:?} `{stmt}`: {other:?}"),
                }
            }
        }
    }
    for d in ALL {
        assert!(validate_write("DELETE FROM orders", d, &policy(true)).is_ok());
        assert!(
            validate_write(
                "DELETE FROM orders WHERE id = 1 AND 1 = 1",
                d,
                &policy(false)
            )
            .is_ok()
        );
    }
}

#[test]
fn every_conflict_resolution_form_is_refused() {
    refused_in(
        SqlDialect::Sqlite,
        "INSERT OR REPLACE INTO orders (id, total) VALUES (1, 0)",
        Rule::ConflictClause,
    );
    refused_in(
        SqlDialect::Sqlite,
        "INSERT OR IGNORE INTO orders (id, total) VALUES (1, 0)",
        Rule::ConflictClause,
    );
    refused_in(
        SqlDialect::Sqlite,
        "UPDATE OR REPLACE orders SET id = 2 WHERE id = 1",
        Rule::ConflictClause,
    );
    refused_in(
        SqlDialect::Sqlite,
        "REPLACE INTO orders (id, total) VALUES (1, 0)",
        Rule::ConflictClause,
    );
    refused_in(
        SqlDialect::Mysql,
        "REPLACE INTO orders (id, total) VALUES (1, 0)",
        Rule::ConflictClause,
    );
    refused_in(
        SqlDialect::Mysql,
        "INSERT IGNORE INTO orders (id, total) VALUES (1, 0)",
        Rule::ConflictClause,
    );
    refused_in(
        SqlDialect::Mysql,
        "INSERT INTO orders (id, total) VALUES (1, 0) ON DUPLICATE KEY UPDATE total = 5",
        Rule::ConflictClause,
    );
    for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
        refused_in(
            d,
            "INSERT INTO orders (id, total) VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET total = 5",
            Rule::ConflictClause,
        );
        refused_in(
            d,
            "INSERT INTO orders (id, total) VALUES (1, 0) ON CONFLICT DO NOTHING",
            Rule::ConflictClause,
        );
    }
}

#[test]
fn a_proposal_is_not_a_read_channel() {
    // RETURNING is Warden's, not the model's.
    for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
        refused_in(
            d,
            "UPDATE orders SET total = 0 WHERE id = 1 RETURNING (SELECT salary FROM payroll)",
            Rule::Unsupported,
        );
        refused_in(
            d,
            "DELETE FROM orders WHERE id = 1 RETURNING *",
            Rule::Unsupported,
        );
    }
    // SET, VALUES and WHERE subqueries are reads: the read policy holds.
    refused(
        "UPDATE orders SET note = (SELECT group_concat(name) FROM payroll) WHERE id = 1",
        Rule::TableNotAllowed,
    );
    refused(
        "INSERT INTO orders (id, note) VALUES (7, (SELECT password FROM users LIMIT 1))",
        Rule::TableNotAllowed,
    );
    refused(
        "DELETE FROM orders WHERE id IN (WITH orders AS (SELECT id FROM payroll) SELECT id FROM orders)",
        Rule::TableNotAllowed,
    );
    // Hidden columns of the written table stay hidden in its own WHERE and SET.
    refused(
        "UPDATE employees SET name = name WHERE salary > 100000",
        Rule::ColumnNotAllowed,
    );
    refused(
        "UPDATE employees SET name = salary WHERE id = 1",
        Rule::ColumnNotAllowed,
    );
    // A writable table that is not readable cannot be read through a subquery.
    refused(
        "UPDATE orders SET total = (SELECT count(*) FROM audit_log) WHERE id = 1",
        Rule::TableNotAllowed,
    );
    refused(
        "UPDATE orders SET total = 0 WHERE id = 1 AND version() IS NOT NULL",
        Rule::FunctionNotAllowed,
    );
}
