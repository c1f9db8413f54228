//! Agent journal speed on the real SQLite store (WAL, one file): the latency of one step
//! commit (journal row + state update + lease check, one transaction), steps per second with
//! 32 writers across many agents, and the latency of waking an agent (the lease takeover of
//! `acquire_agent`). Medians of 3 runs. With `WARDEN_TEST_POSTGRES_URL` set, PostgreSQL too.
//!
//! `cargo bench -p warden-store --bench journal`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warden_store::{AgentUpdate, NewStep, SqlStore, Store};

const AGENTS: usize = 1000;

fn step(task: &str) -> NewStep {
    NewStep {
        task_id: task.into(),
        kind: "model".into(),
        data: r#"{"message":{"role":"assistant","content":"There are <NUMBER> orders in the table."},"usage":{"prompt_tokens":812,"completion_tokens":24},"latency_ms":850}"#.into(),
        tokens: Some(836),
        started_at: 1,
        finished_at: 2,
    }
}

fn update() -> AgentUpdate {
    AgentUpdate {
        status: "running".into(),
        status_reason: None,
        task_id: Some("task_1".into()),
        task: Some("How many orders are there?".into()),
        tokens_used: 836,
    }
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn run(store: Arc<dyn Store>, label: &str) {
    let epochs: Vec<i64> = {
        let mut e = Vec::new();
        for i in 0..AGENTS {
            let r = store
                .acquire_agent(
                    &format!("bench/a{i}"),
                    "bench",
                    &format!("a{i}"),
                    "key",
                    "node",
                    0,
                )
                .await
                .expect("acquire");
            e.push(r.epoch);
        }
        e
    };
    let epochs = Arc::new(std::sync::Mutex::new(epochs));
    let (mut p50s, mut p99s, mut rates, mut wake50s, mut wake99s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        // One writer: latency of a commit.
        let mut lat = Vec::new();
        for i in 0..2000 {
            let a = i % AGENTS;
            let epoch = epochs.lock().expect("lock")[a];
            let t = Instant::now();
            store
                .commit_step(&format!("bench/a{a}"), epoch, &step("task_1"), &update())
                .await
                .expect("commit");
            lat.push(t.elapsed());
        }
        p50s.push(percentile(lat.clone(), 0.5).as_secs_f64() * 1e6);
        p99s.push(percentile(lat, 0.99).as_secs_f64() * 1e6);
        // 32 writers, each on its own agents, for 3 seconds.
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for w in 0..32usize {
            let (store, done, epochs) = (store.clone(), done.clone(), epochs.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < until {
                    let a = i % AGENTS;
                    let epoch = epochs.lock().expect("lock")[a];
                    store
                        .commit_step(&format!("bench/a{a}"), epoch, &step("task_1"), &update())
                        .await
                        .expect("commit");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 32;
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
        rates.push(done.load(Ordering::Relaxed) as f64 / 3.0);
        // Waking: the lease takeover of a stored agent.
        let mut wake = Vec::new();
        for i in 0..2000 {
            let a = i % AGENTS;
            let t = Instant::now();
            let r = store
                .acquire_agent(
                    &format!("bench/a{a}"),
                    "bench",
                    &format!("a{a}"),
                    "key",
                    "node",
                    0,
                )
                .await
                .expect("acquire");
            wake.push(t.elapsed());
            epochs.lock().expect("lock")[a] = r.epoch;
        }
        wake50s.push(percentile(wake.clone(), 0.5).as_secs_f64() * 1e6);
        wake99s.push(percentile(wake, 0.99).as_secs_f64() * 1e6);
    }
    println!(
        "| {label} | {:.0} µs | {:.0} µs | {:.0} | {:.0} µs | {:.0} µs |",
        median(p50s),
        median(p99s),
        median(rates),
        median(wake50s),
        median(wake99s)
    );
}

#[tokio::main]
async fn main() {
    println!("| store | step commit p50 | p99 | steps/s (32 writers) | wake p50 | wake p99 |");
    println!("|---|---|---|---|---|---|");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqlStore::open_sqlite_dir(dir.path()).await.expect("sqlite"));
    run(sqlite, "SQLite (WAL)").await;
    if let Ok(url) = std::env::var("WARDEN_TEST_POSTGRES_URL") {
        let schema = format!("wbench_{}", std::process::id());
        let pg: Arc<dyn Store> = Arc::new(
            SqlStore::connect_postgres(&url, Some(&schema))
                .await
                .expect("postgres"),
        );
        run(pg, "PostgreSQL (loopback)").await;
        let pool = sqlx::PgPool::connect(&url).await.expect("pg");
        let drop = format!("DROP SCHEMA {schema} CASCADE");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await;
    }
}
