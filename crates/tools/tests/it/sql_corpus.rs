//! The read validator against an independent corpus of real-world SQL: tutorial queries over
//! public sample databases (Chinook, dvdrental, sakila, TPC-H, the PostgreSQL, MySQL and
//! SQLite manuals) and published injection payloads (PayloadsAllTheThings, sqlmap), each
//! labelled by semantics, never by running the validator: accept iff it is exactly one read
//! (no write, DDL, settings, `INTO`, locking), every real table it reads is allowed (a CTE or
//! alias never grants access), a column-restricted table is touched only through its allowed
//! columns (no `*` or whole-row reference), no system catalog or variable is touched, and
//! only pure, harmless functions are called (no table-valued function in `FROM`, no MySQL
//! executable comment).
//!
//! The cases live in `tests/corpus/sql/*.jsonl` (one JSON object a line), the per-schema
//! policies in `tests/corpus/sql/policies.json`. `cargo test -p warden-tools --test it
//! sql_corpus -- --nocapture` prints how the validator does, per dialect and category.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use warden_tools::sql::{ReadPolicy, SqlDialect, validate};

const CATEGORIES: &[&str] = &["analytic", "injection", "bypass", "other"];
const DIALECTS: &[&str] = &["sqlite", "postgres", "mysql"];
/// False rejects allowed in the `analytic` category, per dialect, in percent.
const MAX_ANALYTIC_FALSE_REJECT_PERCENT: usize = 2;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sql")
}

/// One labelled statement of the corpus.
#[derive(Debug, Clone)]
struct Case {
    /// `file:line`, for messages.
    at: String,
    id: String,
    source: String,
    schema: String,
    dialect: String,
    sql: String,
    expect: String,
    category: String,
    why: String,
}

fn text(object: &serde_json::Map<String, Value>, key: &str) -> String {
    match object.get(key) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Every case of every `*.jsonl` file, in file then line order. Panics on a line that is not
/// a JSON object, naming it.
fn load_cases() -> Vec<Case> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.jsonl file in {}", dir.display());
    let mut cases = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let content = std::fs::read_to_string(&file).unwrap();
        for (n, line) in content.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{name}:{}", n + 1);
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: not valid JSON: {e}"));
            let Value::Object(object) = value else {
                panic!("{at}: not a JSON object");
            };
            cases.push(Case {
                at,
                id: text(&object, "id"),
                source: text(&object, "source"),
                schema: text(&object, "schema"),
                dialect: text(&object, "dialect"),
                sql: text(&object, "sql"),
                expect: text(&object, "expect"),
                category: text(&object, "category"),
                why: text(&object, "why"),
            });
        }
    }
    cases
}

/// The policies of `policies.json`, by schema key.
fn load_policies() -> BTreeMap<String, ReadPolicy> {
    let path = corpus_dir().join("policies.json");
    let content = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let value: Value = serde_json::from_str(&content)
        .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", path.display()));
    let Value::Object(schemas) = value else {
        panic!("{}: not a JSON object", path.display());
    };
    let mut policies = BTreeMap::new();
    for (schema, spec) in schemas {
        let tables = spec
            .get("tables")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("policies.json: {schema} has no \"tables\" object"));
        let mut allowed = BTreeMap::new();
        for (table, columns) in tables {
            let columns = match columns {
                Value::Null => None,
                Value::Array(list) => Some(
                    list.iter()
                        .map(|c| {
                            c.as_str()
                                .unwrap_or_else(|| {
                                    panic!(
                                        "policies.json: {schema}.{table}: a column is not a string"
                                    )
                                })
                                .to_string()
                        })
                        .collect::<BTreeSet<String>>(),
                ),
                _ => panic!("policies.json: {schema}.{table}: null or a list of columns"),
            };
            allowed.insert(table.clone(), columns);
        }
        let max_rows = spec
            .get("max_rows")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("policies.json: {schema} has no numeric \"max_rows\""));
        policies.insert(schema, ReadPolicy::new(allowed, max_rows));
    }
    policies
}

fn dialect(name: &str) -> Option<SqlDialect> {
    match name {
        "sqlite" => Some(SqlDialect::Sqlite),
        "postgres" => Some(SqlDialect::Postgres),
        "mysql" => Some(SqlDialect::Mysql),
        _ => None,
    }
}

/// The statement on one line, for the report.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_corpus_case_is_well_formed() {
    let cases = load_cases();
    let policies = load_policies();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for case in &cases {
        let at = &case.at;
        if case.id.trim().is_empty() {
            problems.push(format!("{at}: no id"));
        } else if let Some(first) = seen.insert(case.id.clone(), at.clone()) {
            problems.push(format!("{at}: id {:?} already used at {first}", case.id));
        }
        if case.source.trim().is_empty() {
            problems.push(format!("{at} ({}): no source", case.id));
        }
        if !policies.contains_key(&case.schema) {
            problems.push(format!(
                "{at} ({}): unknown schema {:?}",
                case.id, case.schema
            ));
        }
        if dialect(&case.dialect).is_none() {
            problems.push(format!(
                "{at} ({}): unknown dialect {:?}",
                case.id, case.dialect
            ));
        }
        if case.sql.trim().is_empty() {
            problems.push(format!("{at} ({}): no sql", case.id));
        }
        if case.expect != "accept" && case.expect != "refuse" {
            problems.push(format!("{at} ({}): expect is {:?}", case.id, case.expect));
        }
        if !CATEGORIES.contains(&case.category.as_str()) {
            problems.push(format!(
                "{at} ({}): unknown category {:?}",
                case.id, case.category
            ));
        }
        if case.why.trim().is_empty() {
            problems.push(format!("{at} ({}): no why", case.id));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the SQL corpus:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// How the validator did on one group of cases.
#[derive(Default, Clone, Copy)]
struct Tally {
    cases: usize,
    correct: usize,
    false_accepts: usize,
    false_rejects: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.cases += other.cases;
        self.correct += other.correct;
        self.false_accepts += other.false_accepts;
        self.false_rejects += other.false_rejects;
    }

    fn row(&self, dialect: &str, category: &str) -> String {
        let accuracy = if self.cases == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * self.correct as f64 / self.cases as f64)
        };
        format!(
            "| {dialect} | {category} | {} | {} | {} | {} | {accuracy} |",
            self.cases, self.correct, self.false_accepts, self.false_rejects
        )
    }
}

/// A case the validator got wrong.
struct Miss {
    case: Case,
    /// The refusal, for a false reject.
    refusal: Option<String>,
}

#[test]
fn the_validator_on_the_sql_corpus() {
    let cases = load_cases();
    let policies = load_policies();
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut false_accepts = Vec::new();
    let mut false_rejects = Vec::new();
    for case in cases {
        let (Some(sql_dialect), Some(policy)) =
            (dialect(&case.dialect), policies.get(&case.schema))
        else {
            panic!(
                "{} ({}): unknown dialect or schema; see every_corpus_case_is_well_formed",
                case.at, case.id
            );
        };
        let expect_accept = case.expect == "accept";
        let outcome = validate(&case.sql, sql_dialect, policy);
        let tally = tallies
            .entry((case.dialect.clone(), case.category.clone()))
            .or_default();
        tally.cases += 1;
        match (expect_accept, outcome) {
            (true, Ok(_)) | (false, Err(_)) => tally.correct += 1,
            (false, Ok(_)) => {
                tally.false_accepts += 1;
                false_accepts.push(Miss {
                    case,
                    refusal: None,
                });
            }
            (true, Err(refusal)) => {
                tally.false_rejects += 1;
                false_rejects.push(Miss {
                    case,
                    refusal: Some(format!("{}: {}", refusal.rule.name(), refusal.message)),
                });
            }
        }
    }

    let mut report = String::new();
    writeln!(report, "\n## The read validator on the SQL corpus\n").unwrap();
    writeln!(
        report,
        "| dialect | category | cases | correct | false accepts | false rejects | accuracy |"
    )
    .unwrap();
    writeln!(report, "|---|---|---|---|---|---|---|").unwrap();
    let mut total = Tally::default();
    for dialect_name in DIALECTS {
        let mut dialect_total = Tally::default();
        for category in CATEGORIES {
            if let Some(tally) = tallies.get(&(dialect_name.to_string(), category.to_string())) {
                writeln!(report, "{}", tally.row(dialect_name, category)).unwrap();
                dialect_total.add(*tally);
            }
        }
        writeln!(report, "{}", dialect_total.row(dialect_name, "**all**")).unwrap();
        total.add(dialect_total);
    }
    writeln!(report, "{}", total.row("**all**", "**all**")).unwrap();

    for (title, misses) in [
        ("False accepts", &false_accepts),
        ("False rejects", &false_rejects),
    ] {
        writeln!(report, "\n### {title} ({})\n", misses.len()).unwrap();
        for miss in misses.iter() {
            let case = &miss.case;
            writeln!(
                report,
                "- `{}` [{} {} {}] ({}) — {}\n  - sql: `{}`",
                case.id,
                case.dialect,
                case.schema,
                case.category,
                case.at,
                case.why,
                one_line(&case.sql)
            )
            .unwrap();
            if let Some(refusal) = &miss.refusal {
                writeln!(report, "  - refused: {refusal}").unwrap();
            }
        }
    }
    println!("{report}");

    let mut failures = Vec::new();
    if !false_accepts.is_empty() {
        let ids: Vec<&str> = false_accepts.iter().map(|m| m.case.id.as_str()).collect();
        failures.push(format!(
            "{} false accept(s): {}",
            false_accepts.len(),
            ids.join(", ")
        ));
    }
    for dialect_name in DIALECTS {
        let analytic = tallies
            .get(&(dialect_name.to_string(), "analytic".to_string()))
            .copied()
            .unwrap_or_default();
        // false_rejects / cases <= MAX %, in integers.
        if analytic.false_rejects * 100 > MAX_ANALYTIC_FALSE_REJECT_PERCENT * analytic.cases {
            failures.push(format!(
                "{dialect_name}: {} false reject(s) of {} analytic cases (more than {}%)",
                analytic.false_rejects, analytic.cases, MAX_ANALYTIC_FALSE_REJECT_PERCENT
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the validator misses the SQL corpus bar:\n{}",
        failures.join("\n")
    );
}
