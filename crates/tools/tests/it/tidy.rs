//! Rules of the codebase that the compiler does not check, read from the source tree.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "fuzz")
            {
                continue;
            }
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace_sources() -> Vec<(String, String)> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    sources(&crates, &mut files);
    files
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
        .collect()
}

#[test]
fn unsafe_code_lives_only_in_the_sqlite_limits() {
    // The workspace denies unsafe code; one audited block sets SQLite's per-connection limits.
    let allowed = "tools/src/sql/connector/sqlite.rs";
    let mut found = Vec::new();
    for (path, text) in workspace_sources() {
        if path.ends_with("tests/it/tidy.rs") {
            continue;
        }
        let n = text.matches("unsafe {").count() + text.matches("allow(unsafe_code)").count();
        if n > 0 {
            found.push((path, n));
        }
    }
    assert_eq!(
        found,
        vec![(allowed.to_owned(), 2)],
        "unsafe code outside its one audited place"
    );
}

#[test]
fn only_the_sql_modules_know_the_sqlparser_syntax_tree() {
    for (path, text) in workspace_sources() {
        if path.contains("/src/")
            && text.contains("sqlparser::")
            && !path.starts_with("tools/src/sql/")
        {
            panic!("{path} uses sqlparser; keep the pinned AST behind tools::sql");
        }
    }
}
