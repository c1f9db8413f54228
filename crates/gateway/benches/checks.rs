//! The in-process cost checks, without HTTP: one request-rate check (key and user limits) and
//! one budget reservation plus settlement (session, day and month), 200,000 operations a run;
//! and the tokenizer's count of a 4 KB prompt that a budget or token limit needs first, 2,000
//! a run. Medians of 5 runs; the target is under 5 µs per check.
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
        warden_store::SqlStore::open_sqlite_dir(dir.path())
            .await
            .expect("store"),
    );
    // A 4 KB prompt of prose, code and JSON.
    let text = "The quarterly review covered revenue, churn and the migration plan. \
        fn handle(req: Request) -> Result<Response, Error> { Ok(Response::json(&db.find(id)?)) } \
        {\"order_id\": \"ORD-2024-118273\", \"qty\": 2, \"price\": 19.99} "
        .repeat(20);
    let text = &text[..4096];
    let mut limits = Vec::new();
    let mut budgets = Vec::new();
    let mut fresh = Vec::new();
    let mut again = Vec::new();
    use warden_gateway::bench_api::token_estimates;
    for _ in 0..5 {
        limits.push(warden_gateway::bench_api::rate_limit_checks(N).await);
        budgets.push(warden_gateway::bench_api::budget_checks(store.clone(), N).await);
        fresh.push(token_estimates("gpt-4o", text, 2000, true));
        again.push(token_estimates("gpt-4o", text, 2000, false));
    }
    println!("| check | median per operation | runs |");
    println!("|---|---|---|");
    for (name, runs) in [
        ("rate limit (key + user)", limits),
        ("budget reserve + settle (session + day + month)", budgets),
        ("token estimate, new 4 KB message (o200k_base)", fresh),
        ("token estimate, 4 KB message seen before", again),
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
