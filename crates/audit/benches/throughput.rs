//! Sustained audit records per second: 64 concurrent appenders for 3 s against the real
//! writer (group commit), with `fsync = always` (durable) and `never`; medians of 3 runs.
//!
//! `cargo bench -p warden-audit --bench throughput`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warden_audit::{Event, Fsync, ModelCall, Options, Writer};

fn event(i: u64) -> Event {
    Event::ModelCall(Box::new(ModelCall {
        request_id: format!("req_{i:024x}"),
        key_id: "key_0123456789abcdef".into(),
        key_name: "production-agent".into(),
        endpoint: "chat.completions".into(),
        model: "reasoning".into(),
        provider: Some("openai".into()),
        upstream_model: Some("gpt-4o".into()),
        status: 200,
        prompt_tokens: Some(1200),
        completion_tokens: Some(300),
        redactions: [("EMAIL".to_owned(), 2)].into(),
        attempts: 1,
        stream: false,
        latency_ms: 850,
        user: None,
        session: None,
        cache: None,
        refusal: None,
        cost_usd: None,
        downgraded_from: None,
        client_request_id: None,
    }))
}

async fn run(fsync: Fsync) -> (f64, u64) {
    let dir = std::env::temp_dir().join(format!("warden-audit-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = warden_audit::load_or_create_key(&dir).expect("key");
    let (writer, log) = Writer::open(Options {
        dir: dir.join("audit"),
        deployment: "bench".into(),
        fsync,
        max_segment_bytes: 64 * 1024 * 1024,
        max_segment_age: Duration::from_secs(3600),
        checkpoint_interval: Duration::from_secs(1),
        key,
    })
    .expect("open");
    let task = tokio::spawn(writer.run(std::future::pending()));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..64u64 {
        let (log, done) = (log.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w << 32;
            while start.elapsed() < Duration::from_secs(3) {
                log.append(event(i)).await.expect("append");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(log);
    task.await.expect("writer");
    let n = done.load(Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
    (n as f64 / elapsed, n)
}

#[tokio::main]
async fn main() {
    println!("| fsync | records/s (median of 3) | runs |");
    println!("|---|---|---|");
    for (name, fsync) in [
        ("always (durable, group commit)", Fsync::Always),
        ("never", Fsync::Never),
    ] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(run(fsync).await.0);
        }
        rates.sort_by(f64::total_cmp);
        let list: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!("| {name} | {:.0} | {} |", rates[1], list.join(", "));
    }
}
