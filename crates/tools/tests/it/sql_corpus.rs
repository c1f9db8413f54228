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
//! policies in `tests/corpus/sql/policies.json`, with the full column list of each
//! column-restricted table (`known_columns`, taken from the sample database's public schema)
//! that the connectors read from the catalog before each read. The corpus runs twice: without
//! the schema (the validator alone) and with it (as the connectors run it). `cargo test -p
//! warden-tools --test it sql_corpus -- --nocapture` prints how the validator does in each
//! run, per dialect and category.

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

/// A list of column names, or a panic naming `what`.
fn names(value: &Value, what: &str) -> BTreeSet<String> {
    let Value::Array(list) = value else {
        panic!("policies.json: {what}: null or a list of columns");
    };
    list.iter()
        .map(|c| {
            c.as_str()
                .unwrap_or_else(|| panic!("policies.json: {what}: a column is not a string"))
                .to_string()
        })
        .collect()
}

/// The policies of `policies.json`, by schema key, with their `known_columns` (as the
/// connectors run them).
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
                list => Some(names(list, &format!("{schema}.{table}"))),
            };
            allowed.insert(table.clone(), columns);
        }
        let max_rows = spec
            .get("max_rows")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("policies.json: {schema} has no numeric \"max_rows\""));
        let mut policy = ReadPolicy::new(allowed, max_rows);
        if let Some(known) = spec.get("known_columns") {
            let known = known.as_object().unwrap_or_else(|| {
                panic!("policies.json: {schema}.known_columns is not an object")
            });
            for (table, columns) in known {
                let columns = names(columns, &format!("{schema}.known_columns.{table}"));
                policy.known_columns.insert(table.clone(), columns);
            }
        }
        policies.insert(schema, policy);
    }
    policies
}

/// What is wrong with `policies.json`'s known columns: each column-restricted table has its
/// full column list, which includes its allowed columns, no other table has one, and each
/// schema with lists names where they came from.
fn policy_problems(policies: &BTreeMap<String, ReadPolicy>) -> Vec<String> {
    let path = corpus_dir().join("policies.json");
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut problems = Vec::new();
    for (schema, policy) in policies {
        for (table, columns) in &policy.tables {
            let Some(allowed) = columns else {
                if policy.known_columns.contains_key(table) {
                    problems.push(format!(
                        "policies.json: {schema}.known_columns.{table}: {table} is not column-restricted"
                    ));
                }
                continue;
            };
            match policy.known_columns.get(table) {
                None => problems.push(format!(
                    "policies.json: {schema}: column-restricted {table} has no known_columns"
                )),
                Some(all) => {
                    let missing: Vec<&str> = allowed.difference(all).map(String::as_str).collect();
                    if !missing.is_empty() {
                        problems.push(format!(
                            "policies.json: {schema}.known_columns.{table} lacks allowed column(s) {}",
                            missing.join(", ")
                        ));
                    }
                }
            }
        }
        for table in policy.known_columns.keys() {
            if !policy.tables.contains_key(table) {
                problems.push(format!(
                    "policies.json: {schema}.known_columns.{table}: not a table of the policy"
                ));
            }
        }
        let source = raw
            .get(schema)
            .and_then(|s| s.get("known_columns_source"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !policy.known_columns.is_empty() && source.trim().is_empty() {
            problems.push(format!(
                "policies.json: {schema} has known_columns but no known_columns_source"
            ));
        }
    }
    problems
}

/// The same policies without known columns: the validator alone.
fn without_schema(policies: &BTreeMap<String, ReadPolicy>) -> BTreeMap<String, ReadPolicy> {
    policies
        .iter()
        .map(|(schema, policy)| {
            let mut policy = policy.clone();
            policy.known_columns.clear();
            (schema.clone(), policy)
        })
        .collect()
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
    let mut problems = policy_problems(&policies);
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

/// How the validator did on the whole corpus under one set of policies.
#[derive(Default)]
struct Outcome {
    tallies: BTreeMap<(String, String), Tally>,
    false_accepts: Vec<Miss>,
    false_rejects: Vec<Miss>,
}

impl Outcome {
    fn analytic(&self, dialect: &str) -> Tally {
        self.tallies
            .get(&(dialect.to_string(), "analytic".to_string()))
            .copied()
            .unwrap_or_default()
    }

    fn missed(&self) -> BTreeSet<&str> {
        self.false_accepts
            .iter()
            .chain(&self.false_rejects)
            .map(|m| m.case.id.as_str())
            .collect()
    }
}

/// Validates every case under `policies`.
fn run(cases: &[Case], policies: &BTreeMap<String, ReadPolicy>) -> Outcome {
    let mut outcome = Outcome::default();
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
        let result = validate(&case.sql, sql_dialect, policy);
        let tally = outcome
            .tallies
            .entry((case.dialect.clone(), case.category.clone()))
            .or_default();
        tally.cases += 1;
        match (expect_accept, result) {
            (true, Ok(_)) | (false, Err(_)) => tally.correct += 1,
            (false, Ok(_)) => {
                tally.false_accepts += 1;
                outcome.false_accepts.push(Miss {
                    case: case.clone(),
                    refusal: None,
                });
            }
            (true, Err(refusal)) => {
                tally.false_rejects += 1;
                outcome.false_rejects.push(Miss {
                    case: case.clone(),
                    refusal: Some(format!("{}: {}", refusal.rule.name(), refusal.message)),
                });
            }
        }
    }
    outcome
}

/// The per-dialect, per-category table of one run.
fn write_table(report: &mut String, title: &str, outcome: &Outcome) {
    writeln!(report, "\n### {title}\n").unwrap();
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
            if let Some(tally) = outcome
                .tallies
                .get(&(dialect_name.to_string(), category.to_string()))
            {
                writeln!(report, "{}", tally.row(dialect_name, category)).unwrap();
                dialect_total.add(*tally);
            }
        }
        writeln!(report, "{}", dialect_total.row(dialect_name, "**all**")).unwrap();
        total.add(dialect_total);
    }
    writeln!(report, "{}", total.row("**all**", "**all**")).unwrap();
}

/// The cases one run got wrong, with their ids.
fn write_misses(report: &mut String, title: &str, outcome: &Outcome) {
    for (kind, misses) in [
        ("false accepts", &outcome.false_accepts),
        ("false rejects", &outcome.false_rejects),
    ] {
        writeln!(report, "\n#### {title}: {kind} ({})\n", misses.len()).unwrap();
        for miss in misses {
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
}

/// Why one run misses the bar: false accepts, and if `analytic_bar`, too many analytic false
/// rejects.
fn failures(name: &str, outcome: &Outcome, analytic_bar: bool) -> Vec<String> {
    let mut failures = Vec::new();
    if !outcome.false_accepts.is_empty() {
        let ids: Vec<&str> = outcome
            .false_accepts
            .iter()
            .map(|m| m.case.id.as_str())
            .collect();
        failures.push(format!(
            "{name}: {} false accept(s): {}",
            ids.len(),
            ids.join(", ")
        ));
    }
    if analytic_bar {
        for dialect_name in DIALECTS {
            let analytic = outcome.analytic(dialect_name);
            // false_rejects / cases <= MAX %, in integers.
            if analytic.false_rejects * 100 > MAX_ANALYTIC_FALSE_REJECT_PERCENT * analytic.cases {
                failures.push(format!(
                    "{name}: {dialect_name}: {} false reject(s) of {} analytic cases (more than {}%)",
                    analytic.false_rejects, analytic.cases, MAX_ANALYTIC_FALSE_REJECT_PERCENT
                ));
            }
        }
    }
    failures
}

#[test]
fn the_validator_on_the_sql_corpus() {
    let cases = load_cases();
    let with_schema = load_policies();
    let alone = run(&cases, &without_schema(&with_schema));
    let schema = run(&cases, &with_schema);

    let mut report = String::new();
    writeln!(report, "\n## The read validator on the SQL corpus").unwrap();
    write_table(
        &mut report,
        "Without schema (the validator alone, no known columns)",
        &alone,
    );
    write_table(
        &mut report,
        "With schema (known columns of the restricted tables, as the connectors run it)",
        &schema,
    );
    let (before, after) = (alone.missed(), schema.missed());
    let fixed: Vec<&str> = before.difference(&after).copied().collect();
    let broken: Vec<&str> = after.difference(&before).copied().collect();
    writeln!(
        report,
        "\nThe schema fixes {} case(s) and breaks {}{}",
        fixed.len(),
        broken.len(),
        if broken.is_empty() {
            ".".to_string()
        } else {
            format!(": {}", broken.join(", "))
        }
    )
    .unwrap();
    writeln!(report, "\n### Misses").unwrap();
    write_misses(&mut report, "With schema", &schema);
    write_misses(&mut report, "Without schema", &alone);
    println!("{report}");

    // Zero false accepts in both runs; the analytic bar is the connectors' run.
    let mut missed = failures("without schema", &alone, false);
    missed.extend(failures("with schema", &schema, true));
    assert!(
        missed.is_empty(),
        "the validator misses the SQL corpus bar:\n{}",
        missed.join("\n")
    );
}
