//! Any text as SQL, in any dialect (the first byte picks it): the read and write validators
//! never panic, and what they accept is printed as a statement that validates to exactly
//! itself (the statement run is a fixed point of validation). First byte mod 3: 0 SQLite,
//! 1 PostgreSQL, 2 MySQL (the seeds start with `0`, `1` or `2`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use warden_tools::sql::{ReadPolicy, SqlDialect, WritePolicy, validate, validate_write};

static POLICIES: OnceLock<(ReadPolicy, WritePolicy)> = OnceLock::new();

fn policies() -> &'static (ReadPolicy, WritePolicy) {
    POLICIES.get_or_init(|| {
        let mut tables: BTreeMap<String, Option<BTreeSet<String>>> =
            ["customers", "orders", "products"]
                .iter()
                .map(|t| (t.to_string(), None))
                .collect();
        tables.insert(
            "employees".to_string(),
            Some(["id", "name"].iter().map(|c| c.to_string()).collect()),
        );
        let read = ReadPolicy::new(tables, 100);
        let writable = ["orders", "customers"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        (read.clone(), WritePolicy::new(read, writable))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let dialect = match first % 3 {
        0 => SqlDialect::Sqlite,
        1 => SqlDialect::Postgres,
        _ => SqlDialect::Mysql,
    };
    let sql = String::from_utf8_lossy(rest);
    let (read, write) = policies();
    if let Ok(v) = validate(&sql, dialect, read) {
        match validate(&v.sql, dialect, read) {
            Ok(again) => {
                assert_eq!(
                    again.sql, v.sql,
                    "{dialect:?}: `{sql}` printed as `{}`",
                    v.sql
                );
                assert_eq!(again.tables, v.tables, "{dialect:?}: `{}`", v.sql);
            }
            Err(e) => panic!(
                "{dialect:?}: `{sql}` printed as `{}`, which is refused: {e}",
                v.sql
            ),
        }
    }
    if let Ok(w) = validate_write(&sql, dialect, write) {
        match validate_write(&w.sql, dialect, write) {
            Ok(again) => {
                assert_eq!(
                    again.sql, w.sql,
                    "{dialect:?}: `{sql}` printed as `{}`",
                    w.sql
                );
                assert_eq!(again.table, w.table, "{dialect:?}: `{}`", w.sql);
            }
            Err(e) => panic!(
                "{dialect:?}: `{sql}` printed as `{}`, which is refused: {e}",
                w.sql
            ),
        }
    }
});
