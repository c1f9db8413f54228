use std::collections::{BTreeMap, BTreeSet};
use warden_tools::sql::{ReadPolicy, Rule, SqlDialect, WriteKind, WritePolicy, validate_write};

const BOTH: [SqlDialect; 2] = [SqlDialect::Sqlite, SqlDialect::Postgres];

fn policy(allow_without_where: bool) -> WritePolicy {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), None);
    tables.insert("orders".to_string(), None);
    WritePolicy {
        read: ReadPolicy {
            tables,
            max_rows: 100,
            denied_functions: BTreeSet::new(),
        },
        writable: ["orders".to_string()].into(),
        allow_without_where,
    }
}

fn refused(sql: &str, rule: Rule) {
    for d in BOTH {
        match validate_write(sql, d, &policy(false)) {
            Ok(w) => panic!("{d:?} accepted `{sql}` as `{}`", w.sql),
            Err(e) => assert_eq!(e.rule, rule, "{d:?} `{sql}`: {e}"),
        }
    }
}

#[test]
fn one_write_on_a_writable_table_is_accepted_with_its_preview_queries() {
    for d in BOTH {
        let w = validate_write(
            "UPDATE orders SET status = 'cancelled' WHERE id = 452",
            d,
            &policy(false),
        )
        .unwrap();
        assert_eq!(w.kind, WriteKind::Update);
        assert_eq!(w.table, "orders");
        assert!(
            w.sql_returning.ends_with("RETURNING *"),
            "{}",
            w.sql_returning
        );
        assert_eq!(
            w.select_before.as_deref(),
            Some("SELECT * FROM orders WHERE id = 452")
        );
        let w = validate_write(
            "DELETE FROM orders WHERE status = 'draft'",
            d,
            &policy(false),
        )
        .unwrap();
        assert_eq!(w.kind, WriteKind::Delete);
        let w = validate_write(
            "INSERT INTO orders (id, customer_id, total) VALUES (99, 1, 5.0)",
            d,
            &policy(false),
        )
        .unwrap();
        assert_eq!((w.kind, w.select_before), (WriteKind::Insert, None));
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
        Rule::TableNotAllowed,
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
        Rule::FunctionDenied,
    );
    refused(
        "DELETE FROM orders WHERE id IN (SELECT oid FROM pg_class)",
        Rule::SystemCatalog,
    );
}

#[test]
fn update_and_delete_need_a_where_unless_allowed() {
    refused("UPDATE orders SET total = 0", Rule::MissingWhere);
    refused("DELETE FROM orders", Rule::MissingWhere);
    for d in BOTH {
        assert!(validate_write("DELETE FROM orders", d, &policy(true)).is_ok());
    }
}
