//! The layout invariants (ARCHITECTURE.md, "Invariants"; DESIGN.md, "Layout") checked against
//! the workspace, in the spirit of rust-analyzer's tidy tests: the compiler does not know that
//! libraries never depend on `server`, that only `store` has SQL, or that only `warden` reads
//! the environment, so these tests do.
//!
//! Each rule is a function over plain data (an edge list, or a file's path and text) that
//! returns what it found, and the `#[test]`s at the end feed each one a violating sample, so a
//! rule that stops seeing anything fails its own test instead of passing quietly.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The intended dependency direction: the workspace crates (short names, without `warden-`)
/// each crate may have as a normal or build dependency. Arrows point down: `warden` and
/// `server` wire; no library depends on `server` or `warden`; `core` depends on nothing;
/// `redact` is pure and depends on `core` only. `testkit` is dev-only and appears in no list.
/// A new crate, or a new arrow, is a decision: add it here, with the design's reasons.
const ALLOWED_DEPENDENCIES: &[(&str, &[&str])] = &[
    (
        "warden",
        &[
            "server", "agents", "gateway", "tools", "redact", "audit", "store", "config", "core",
        ],
    ),
    // The server reaches tools and approvals only through the agents' one approvals API.
    (
        "server",
        &[
            "agents", "gateway", "redact", "audit", "store", "config", "core",
        ],
    ),
    // Agents call the model pipeline in-process and run tools.
    (
        "agents",
        &[
            "gateway", "tools", "redact", "audit", "store", "config", "core",
        ],
    ),
    // The model pipeline knows no HTTP server and no tools.
    ("gateway", &["redact", "audit", "store", "config", "core"]),
    ("tools", &["redact", "audit", "store", "config", "core"]),
    ("audit", &["config", "core"]),
    ("store", &["config", "core"]),
    ("config", &["core"]),
    ("redact", &["core"]),
    ("core", &[]),
    // Fixtures may use the shared vocabulary and the config model. A testkit that depended on
    // a product crate would make that crate's own tests build it twice (two sets of types).
    ("testkit", &["config", "core"]),
];

/// What kind of dependency an edge is, as `cargo metadata` says (`null` is normal).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Normal,
    Build,
    Dev,
}

/// A dependency between two workspace crates, by short name.
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    kind: Kind,
}

/// The rule over the dependency graph: returns one message per offending edge.
fn dependency_violations(edges: &[Edge]) -> Vec<String> {
    let allowed = |from: &str| {
        ALLOWED_DEPENDENCIES
            .iter()
            .find(|(name, _)| *name == from)
            .map(|(_, deps)| *deps)
    };
    let mut found = Vec::new();
    for e in edges {
        let Some(deps) = allowed(&e.from) else {
            found.push(not_in_table(&e.from));
            continue;
        };
        if e.kind == Kind::Dev {
            // Tests may use any crate, testkit included.
            continue;
        }
        if e.to == "testkit" {
            found.push(format!(
                "`{}` → `testkit` is a {:?} dependency: testkit is dev-only, make it a \
                 [dev-dependencies] entry",
                e.from, e.kind
            ));
        } else if !deps.contains(&e.to.as_str()) {
            let why = match e.to.as_str() {
                "warden" | "server" => "libraries never depend on `server` or `warden`",
                _ => "arrows point down (ARCHITECTURE.md, Invariants)",
            };
            found.push(format!(
                "`{}` → `{}` ({:?}) is not an allowed dependency: {why}; allowed for `{}`: {:?}",
                e.from, e.to, e.kind, e.from, deps
            ));
        }
    }
    found
}

fn not_in_table(name: &str) -> String {
    format!(
        "crate `{name}` is not in ALLOWED_DEPENDENCIES (tidy.rs): add it with the crates it may \
         depend on"
    )
}

/// The rule over third-party dependencies: `anyhow` belongs to the binary; libraries return
/// typed errors. `deps` holds (crate, dependency package name, kind).
fn anyhow_violations(deps: &[(String, String, Kind)]) -> Vec<String> {
    deps.iter()
        .filter(|(krate, dep, _)| dep == "anyhow" && krate != "warden")
        .map(|(krate, _, kind)| {
            format!(
                "`{krate}` depends on anyhow ({kind:?}): anyhow lives in crates/warden only; \
                 libraries return typed errors (thiserror)"
            )
        })
        .collect()
}

/// The rule over a library's root: it opens with a `//!` paragraph saying what the crate is.
fn lib_doc_violation(path: &str, text: &str) -> Option<String> {
    let first = text.lines().next().unwrap_or_default();
    match first.strip_prefix("//!") {
        Some(rest) if !rest.trim().is_empty() => None,
        _ => Some(format!(
            "{path} does not open with a `//!` paragraph saying what the crate is and owns"
        )),
    }
}

/// Calls into sqlx that run SQL.
const SQLX_CALLS: &[&str] = &[
    "sqlx::query",
    "sqlx::raw_sql",
    "query_as(",
    "query_as::<",
    "query_scalar(",
    "query_scalar::<",
    "raw_sql(",
];

/// SQL keywords at the start of a string literal.
const SQL_LITERALS: &[&str] = &[
    "\"SELECT ",
    "\"INSERT INTO",
    "\"UPDATE ",
    "\"DELETE FROM",
    "\"CREATE TABLE",
    "\"ALTER TABLE",
    "\"DROP TABLE",
];

/// SQL outside `crates/store` that is not Warden's own: (file, text on the lines allowed,
/// why). Warden's own SQL is the SQL over Warden's state; these lines hold the company's.
/// An entry that no longer matches anything fails the test, so the list stays short.
const SQL_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "warden/src/demo/mod.rs",
        "sqlx::raw_sql",
        "`warden demo` creates its sample company database (customers, products, orders) \
         from shop.sql: the data the SQL tools query, not Warden's state",
    ),
    (
        "warden/src/demo/model.rs",
        "\"SELECT ",
        "the clearly labelled scripted demo model: the statements a model sends to \
         `sql_query`, which validates them like any model's",
    ),
    (
        "warden/src/demo/model.rs",
        "\"UPDATE ",
        "the scripted demo model's proposed write, which goes through approval like any \
         model's",
    ),
];

/// Reading the process's environment, arguments and signals.
const PROCESS_ACCESS: &[&str] = &[
    "env::var",
    "env::args",
    "env::set_var",
    "env::remove_var",
    "tokio::signal",
    "signal_hook",
];

/// Tests, benchmarks and fuzz targets: code that never ships in the binary.
fn is_test_file(path: &str) -> bool {
    ["/tests/", "/benches/", "/fuzz/"]
        .iter()
        .any(|d| path.contains(d))
        || path.ends_with("/tests.rs")
}

/// The lines of shipped code with their numbers: without `#[cfg(test)] mod … { … }` blocks
/// (their end is the `}` at the `mod` line's indentation, as rustfmt writes it) and without
/// comment lines.
fn shipped_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]"
            && let Some((_, next)) = lines.peek()
        {
            let next_trimmed = next.trim_start();
            let is_mod = next_trimmed.starts_with("mod ")
                || next_trimmed.starts_with("pub mod ")
                || next_trimmed.starts_with("pub(crate) mod ");
            if is_mod && next_trimmed.ends_with('{') {
                let indent = &next[..next.len() - next_trimmed.len()];
                let end = format!("{indent}}}");
                for (_, l) in lines.by_ref() {
                    if l == end {
                        break;
                    }
                }
                continue;
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

/// A needle found in shipped code.
#[derive(Debug)]
struct Hit {
    needle: &'static str,
    /// `path:line`.
    at: String,
    line: String,
}

/// Where `needles` occur in a file's shipped code.
fn occurrences(path: &str, text: &str, needles: &[&'static str]) -> Vec<Hit> {
    let mut found = Vec::new();
    for (n, line) in shipped_lines(text) {
        for needle in needles {
            let hit = line.match_indices(needle).any(|(at, _)| {
                // `\"SELECT` is inside a string (JSON in a literal), not the start of one.
                !(needle.starts_with('"') && line[..at].ends_with('\\'))
            });
            if hit {
                found.push(Hit {
                    needle,
                    at: format!("{path}:{n}"),
                    line: line.to_owned(),
                });
            }
        }
    }
    found
}

/// Whether the SQL rule reads this file: every crate but `store`; not the SQL tools'
/// connectors (they run the company's validated statements and their catalog lookups); not
/// tests.
fn sql_rule_applies(path: &str) -> bool {
    !path.starts_with("store/") && !path.starts_with("tools/src/sql/") && !is_test_file(path)
}

/// The SQL rule over one file: each piece of SQL found.
fn own_sql_findings(path: &str, text: &str) -> Vec<Hit> {
    if !sql_rule_applies(path) {
        return Vec::new();
    }
    let mut needles = SQLX_CALLS.to_vec();
    needles.extend_from_slice(SQL_LITERALS);
    occurrences(path, text, &needles)
}

/// Whether the process rule reads this file: every crate but `warden` (which owns the
/// process) and `testkit` (which starts processes for tests); not tests.
fn process_rule_applies(path: &str) -> bool {
    !path.starts_with("warden/") && !path.starts_with("testkit/") && !is_test_file(path)
}

/// The process rule over one file: one message per access found.
fn process_access_violations(path: &str, text: &str) -> Vec<String> {
    if !process_rule_applies(path) {
        return Vec::new();
    }
    occurrences(path, text, PROCESS_ACCESS)
        .into_iter()
        .map(|Hit { needle, at, .. }| {
            format!(
                "{at}: `{needle}`: only crates/warden reads the environment, arguments and \
                 signals; pass a typed value (config, `KeySpec`, a shutdown future) instead"
            )
        })
        .collect()
}

// ---- reading the workspace ----

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo metadata --no-deps` for the workspace, with the cargo that runs the tests.
fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(workspace_root().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

fn short_name(package: &str) -> String {
    package
        .strip_prefix("warden-")
        .unwrap_or(package)
        .to_owned()
}

fn packages(meta: &Value) -> &Vec<Value> {
    meta["packages"].as_array().expect("packages")
}

/// Every dependency of every workspace crate: (crate, dependency package, kind).
fn all_dependencies(meta: &Value) -> Vec<(String, String, Kind)> {
    let mut out = Vec::new();
    for p in packages(meta) {
        let from = short_name(p["name"].as_str().expect("name"));
        for d in p["dependencies"].as_array().expect("dependencies") {
            let kind = match d["kind"].as_str() {
                None => Kind::Normal,
                Some("build") => Kind::Build,
                Some("dev") => Kind::Dev,
                Some(other) => panic!("unknown dependency kind {other}"),
            };
            let name = d["name"].as_str().expect("dependency name").to_owned();
            out.push((from.clone(), name, kind));
        }
    }
    out
}

/// The edges between workspace crates.
fn workspace_edges(meta: &Value) -> Vec<Edge> {
    let members: Vec<&str> = packages(meta)
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    all_dependencies(meta)
        .into_iter()
        .filter(|(_, dep, _)| members.contains(&dep.as_str()))
        .map(|(from, to, kind)| Edge {
            from,
            to: short_name(&to),
            kind,
        })
        .collect()
}

fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "fuzz")
            {
                continue;
            }
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `.rs` file under `crates/`: (path relative to `crates/`, text).
fn workspace_sources() -> Vec<(String, String)> {
    let crates = workspace_root().join("crates");
    let mut files = Vec::new();
    collect_sources(&crates, &mut files);
    let sources: Vec<(String, String)> = files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p
                .strip_prefix(&crates)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, text)
        })
        .collect();
    assert!(
        sources.iter().any(|(p, _)| p == "store/src/lib.rs"),
        "the source walk found no crates/store/src/lib.rs; is the workspace root right?"
    );
    sources
}

fn report(rule: &str, found: &[String]) {
    assert!(found.is_empty(), "{rule}:\n  {}", found.join("\n  "));
}

// ---- the invariants ----

#[test]
fn dependencies_point_down_and_testkit_is_dev_only() {
    let meta = metadata();
    let edges = workspace_edges(&meta);
    assert!(
        edges
            .iter()
            .any(|e| e.from == "warden" && e.to == "server" && e.kind == Kind::Normal),
        "cargo metadata shows no warden → server edge; the graph was not read"
    );
    // Crates without dependencies still have to be in the table.
    let mut found = dependency_violations(&edges);
    for p in packages(&meta) {
        let name = short_name(p["name"].as_str().expect("name"));
        if !ALLOWED_DEPENDENCIES.iter().any(|(n, _)| *n == name) {
            found.push(not_in_table(&name));
        }
    }
    found.sort();
    found.dedup();
    report("dependencies against the layout", &found);
}

#[test]
fn only_the_store_contains_wardens_own_sql() {
    let mut found = Vec::new();
    let mut used = vec![false; SQL_ALLOWED.len()];
    for (path, text) in workspace_sources() {
        for hit in own_sql_findings(&path, &text) {
            let allowed = SQL_ALLOWED
                .iter()
                .position(|(file, what, _)| *file == path && hit.line.contains(what));
            match allowed {
                Some(i) => used[i] = true,
                None => found.push(format!(
                    "{}: `{}`: Warden's own SQL belongs in crates/store (behind the Store \
                     trait); the company's statements in crates/tools/src/sql",
                    hit.at,
                    hit.needle.trim_start_matches('"')
                )),
            }
        }
    }
    for (i, (file, what, _)) in SQL_ALLOWED.iter().enumerate() {
        if !used[i] {
            found.push(format!(
                "SQL_ALLOWED names `{what}` in {file}, which is no longer there: remove the entry"
            ));
        }
    }
    report("SQL outside crates/store", &found);
}

#[test]
fn only_warden_reads_the_environment_arguments_and_signals() {
    let found: Vec<String> = workspace_sources()
        .iter()
        .flat_map(|(path, text)| process_access_violations(path, text))
        .collect();
    report("process access outside crates/warden", &found);
}

#[test]
fn anyhow_is_a_dependency_of_warden_only() {
    let deps = all_dependencies(&metadata());
    assert!(
        deps.iter().any(|(k, d, _)| k == "warden" && d == "anyhow"),
        "crates/warden no longer depends on anyhow: update this test"
    );
    report("anyhow outside crates/warden", &anyhow_violations(&deps));
}

#[test]
fn every_library_opens_with_a_doc_paragraph() {
    let meta = metadata();
    let mut found = Vec::new();
    let mut libraries = 0;
    for p in packages(&meta) {
        for t in p["targets"].as_array().expect("targets") {
            let is_lib = t["kind"]
                .as_array()
                .expect("target kind")
                .iter()
                .any(|k| k.as_str().is_some_and(|k| k == "lib" || k == "rlib"));
            if !is_lib {
                continue;
            }
            libraries += 1;
            let path = t["src_path"].as_str().expect("src_path");
            let text = std::fs::read_to_string(path).expect("read lib.rs");
            found.extend(lib_doc_violation(path, &text));
        }
    }
    assert!(libraries >= 10, "found only {libraries} library crates");
    report("library roots without a doc paragraph", &found);
}

// ---- each rule fails on a violating sample ----

fn edge(from: &str, to: &str, kind: Kind) -> Edge {
    Edge {
        from: from.into(),
        to: to.into(),
        kind,
    }
}

#[test]
fn tidy_dependency_rule_names_the_offending_edge() {
    let ok = [
        edge("warden", "server", Kind::Normal),
        edge("server", "agents", Kind::Normal),
        edge("agents", "gateway", Kind::Normal),
        edge("gateway", "testkit", Kind::Dev),
        edge("store", "server", Kind::Dev),
        edge("redact", "core", Kind::Normal),
    ];
    assert_eq!(dependency_violations(&ok), Vec::<String>::new());
    for (bad, says) in [
        (edge("store", "server", Kind::Normal), "`store` → `server`"),
        (edge("gateway", "warden", Kind::Normal), "never depend on"),
        (edge("core", "redact", Kind::Normal), "`core` → `redact`"),
        (edge("redact", "store", Kind::Normal), "`redact` → `store`"),
        (
            edge("gateway", "tools", Kind::Build),
            "`gateway` → `tools` (Build)",
        ),
        (
            edge("server", "testkit", Kind::Normal),
            "testkit is dev-only",
        ),
        (
            edge("newcrate", "core", Kind::Normal),
            "not in ALLOWED_DEPENDENCIES",
        ),
    ] {
        let found = dependency_violations(std::slice::from_ref(&bad));
        assert_eq!(found.len(), 1, "{bad:?}: {found:?}");
        assert!(found[0].contains(says), "{bad:?}: {}", found[0]);
    }
}

#[test]
fn tidy_sql_rule_finds_queries_and_statements_outside_the_store() {
    let sample = r#"
pub async fn count(pool: &sqlx::SqlitePool) -> i64 {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage")
        .fetch_one(pool)
        .await
        .unwrap();
    let _ = sqlx::raw_sql("DELETE FROM usage").execute(pool).await;
    let q = query_as::<_, (i64,)>("UPDATE usage SET status = 1");
    let sql = format!("INSERT INTO t VALUES ({n})");
    n
}
"#;
    let found: Vec<String> = own_sql_findings("gateway/src/x.rs", sample)
        .into_iter()
        .map(|h| format!("{} {}", h.at, h.needle))
        .collect();
    for expected in [
        "gateway/src/x.rs:3 sqlx::query",
        "gateway/src/x.rs:3 \"SELECT ",
        "gateway/src/x.rs:7 sqlx::raw_sql",
        "gateway/src/x.rs:7 \"DELETE FROM",
        "gateway/src/x.rs:8 query_as::<",
        "gateway/src/x.rs:8 \"UPDATE ",
        "gateway/src/x.rs:9 \"INSERT INTO",
    ] {
        assert!(found.iter().any(|f| f == expected), "{expected}: {found:?}");
    }
    // Not SQL: Redis calls, JSON inside a literal, comments, test modules.
    let clean = r#"
//! Talks to Redis: "SELECT 1" is not sent anywhere.
fn get(conn: &mut C) { redis::cmd("GET").query_async(conn); }
const ARGS: &str = "{\"sql\":\"SELECT 1\"}";
#[cfg(test)]
mod tests {
    fn t() {
        let _ = sqlx::query("SELECT 1");
    }
}
fn after() {}
"#;
    let found = own_sql_findings("gateway/src/x.rs", clean);
    assert!(found.is_empty(), "{found:?}");
    // Where the rule does not look.
    for path in [
        "store/src/sqlite.rs",
        "tools/src/sql/connector/postgres.rs",
        "tools/tests/it/connector.rs",
        "tools/benches/validate.rs",
    ] {
        let found = own_sql_findings(path, sample);
        assert!(found.is_empty(), "{path}: {found:?}");
    }
    assert!(!own_sql_findings("tools/src/approval.rs", sample).is_empty());
    assert!(!own_sql_findings("warden/src/serve.rs", sample).is_empty());
}

#[test]
fn tidy_process_rule_finds_env_args_and_signals_outside_warden() {
    let sample = r#"
use std::env;
fn key() -> Option<String> {
    std::env::var("OPENAI_API_KEY").ok()
}
fn first() -> Option<String> { env::args().nth(1) }
fn os() -> bool { env::var_os("HOME").is_some() }
async fn stop() { tokio::signal::ctrl_c().await.unwrap(); }
fn hook() { signal_hook::flag::register(15, flag); }
"#;
    let found = process_access_violations("gateway/src/provider.rs", sample);
    let lines: Vec<&str> = found
        .iter()
        .map(|f| f.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "gateway/src/provider.rs:4",
            "gateway/src/provider.rs:6",
            "gateway/src/provider.rs:7",
            "gateway/src/provider.rs:8",
            "gateway/src/provider.rs:9",
        ],
        "{found:?}"
    );
    let clean = r#"
/// Unlike std::env::var, takes the key from the config.
fn dir() -> PathBuf { std::env::temp_dir() }
#[cfg(test)]
mod tests {
    #[test]
    fn t() {
        let _ = std::env::var("X");
    }
}
"#;
    assert_eq!(
        process_access_violations("server/src/x.rs", clean),
        Vec::<String>::new()
    );
    for path in [
        "warden/src/serve.rs",
        "testkit/src/lib.rs",
        "store/tests/it/main.rs",
        "store/benches/journal.rs",
    ] {
        assert_eq!(
            process_access_violations(path, sample),
            Vec::<String>::new(),
            "{path}"
        );
    }
}

#[test]
fn tidy_anyhow_rule_finds_anyhow_in_a_library() {
    let deps = [
        ("warden".to_owned(), "anyhow".to_owned(), Kind::Normal),
        ("gateway".to_owned(), "thiserror".to_owned(), Kind::Normal),
        ("store".to_owned(), "anyhow".to_owned(), Kind::Dev),
        ("tools".to_owned(), "anyhow".to_owned(), Kind::Normal),
    ];
    let found = anyhow_violations(&deps);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("`store` depends on anyhow (Dev)"));
    assert!(found[1].starts_with("`tools` depends on anyhow (Normal)"));
}

#[test]
fn tidy_lib_doc_rule_wants_a_paragraph_first() {
    assert_eq!(lib_doc_violation("a/lib.rs", "//! Does one thing.\n"), None);
    for bad in [
        "use std::fmt;\n",
        "//!\n//! Late text.\n",
        "\n//! After a blank line.\n",
        "/// An item doc, not the crate's.\npub struct S;\n",
        "#![allow(x)]\n//! After an attribute.\n",
        "",
    ] {
        assert!(lib_doc_violation("a/lib.rs", bad).is_some(), "{bad:?}");
    }
}
