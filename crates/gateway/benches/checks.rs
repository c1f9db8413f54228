//! The in-process cost checks, without HTTP: one request-rate check (key and user limits) and
//! one budget reservation plus settlement (session, day and month). Medians of 5 runs of
//! 200,000 operations each; the target is under 5 µs per check.
//!
//! `cargo bench -p warden-gateway --bench checks`

use std::sync::Arc;
use std::time::Duration;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    const N: u32 = 200_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn warden_store::Store> = Arc::new(
        warden_store::SqliteStore::open_dir(dir.path())
            .await
            .expect("store"),
    );
    let mut limits = Vec::new();
    let mut budgets = Vec::new();
    for _ in 0..5 {
        limits.push(warden_gateway::bench_api::rate_limit_checks(N).await);
        budgets.push(warden_gateway::bench_api::budget_checks(store.clone(), N).await);
    }
    println!("| check | median per operation | runs |");
    println!("|---|---|---|");
    for (name, runs) in [
        ("rate limit (key + user)", limits),
        ("budget reserve + settle (session + day + month)", budgets),
    ] {
        let text: Vec<String> = runs
            .iter()
            .map(|d| format!("{:.2}", d.as_nanos() as f64 / 1000.0))
            .collect();
        println!(
            "| {name} | {:.2} µs | {} |",
            median(runs.clone()).as_nanos() as f64 / 1000.0,
            text.join(", ")
        );
    }
}
