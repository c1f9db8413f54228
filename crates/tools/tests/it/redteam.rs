//! Red-team harness (work in progress).

use std::collections::{BTreeMap, BTreeSet};
use warden_tools::sql::{ReadPolicy, SqlDialect, WritePolicy, validate, validate_write};

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn policy(known: bool) -> ReadPolicy {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), Some(set(&["id", "name"])));
    tables.insert("orders".to_string(), None);
    tables.insert("clients".to_string(), Some(set(&["id", "nom"])));
    tables.insert("gcust".to_string(), Some(set(&["id", "name"])));
    let mut p = ReadPolicy::new(tables, 100);
    if known {
        p.known_columns
            .insert("customers".into(), set(&["id", "name", "email", "ssn"]));
        p.known_columns
            .insert("clients".into(), set(&["id", "nom", "numéro_sécu"]));
        p.known_columns.insert(
            "gcust".into(),
            set(&["id", "name", "ssn", "rowid", "oid", "_rowid_"]),
        );
    }
    p
}

fn write_policy(known: bool) -> WritePolicy {
    WritePolicy::new(policy(known), set(&["customers", "orders"]))
}

fn dialect(c: &str) -> Vec<SqlDialect> {
    match c {
        "s" => vec![SqlDialect::Sqlite],
        "p" => vec![SqlDialect::Postgres],
        "m" => vec![SqlDialect::Mysql],
        _ => vec![SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql],
    }
}

#[test]
#[ignore]
fn probe() {
    let text = std::fs::read_to_string("/tmp/rt/probe.txt").unwrap();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, sql) = line.split_once('|').unwrap();
        let (d, write) = match head.strip_prefix('w') {
            Some(d) => (d, true),
            None => (head, false),
        };
        for dl in dialect(d) {
            for known in [false, true] {
                let out = if write {
                    validate_write(sql, dl, &write_policy(known)).map(|v| v.sql)
                } else {
                    validate(sql, dl, &policy(known)).map(|v| v.sql)
                };
                match out {
                    Ok(s) => println!("ACCEPT {dl:?} known={known}: {sql}\n    => {s}"),
                    Err(e) => println!("refuse {dl:?} known={known}: {sql}\n    -- {e}"),
                }
            }
        }
    }
}
