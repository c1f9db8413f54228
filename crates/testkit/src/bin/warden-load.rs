//! A small load generator for `bench/`: sends the same chat request either at a fixed rate
//! (open loop: requests start on schedule whatever the server's speed) or as fast as `--concurrency` workers can (saturation), and
//! prints one JSON line of results. Test tooling only: never part of the product.
//!
//! `warden-load URL [--key K] [--rate N | --concurrency N] [--seconds S] [--stream]`
//! `warden-load http://HOST/v1/agents/DEF --agents N [--key K] [--concurrency C]`: one message
//! to each of N agents (`DEF/a0` … `DEF/a{N-1}`), then stop.

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

struct Args {
    url: String,
    key: Option<String>,
    rate: Option<u64>,
    concurrency: usize,
    seconds: u64,
    stream: bool,
    prompt_bytes: usize,
    agents: Option<u64>,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: String::new(),
        key: None,
        rate: None,
        concurrency: 32,
        seconds: 10,
        stream: false,
        prompt_bytes: 0,
        agents: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("missing value");
        match a.as_str() {
            "--key" => args.key = Some(value()),
            "--rate" => args.rate = Some(value().parse().expect("rate")),
            "--concurrency" => args.concurrency = value().parse().expect("concurrency"),
            "--seconds" => args.seconds = value().parse().expect("seconds"),
            "--stream" => args.stream = true,
            "--prompt-bytes" => args.prompt_bytes = value().parse().expect("prompt bytes"),
            "--agents" => args.agents = Some(value().parse().expect("agents")),
            url => args.url = url.to_owned(),
        }
    }
    assert!(
        !args.url.is_empty(),
        "usage: warden-load URL [--key K] [--rate N | --concurrency N] [--seconds S] [--stream]"
    );
    args
}

/// A realistic prompt of about `bytes` bytes: prose, code, JSON and logs, with an email, a
/// card number, a phone number and a cloud key every few hundred bytes.
fn prompt(bytes: usize) -> String {
    let parts = [
        "The quarterly review covered revenue, churn and the migration plan; the team proposed a two-step rollout. ",
        "fn handle(req: Request) -> Result<Response, Error> { let id = req.param(\"id\")?; Ok(Response::json(&db.find(id)?)) }\n",
        "{\"order_id\": \"ORD-2024-118273\", \"qty\": 2, \"price\": 19.99, \"updated\": \"2024-11-26T10:30:00Z\"}\n",
        "Contact jane.doe@example.com, card 4111 1111 1111 1111, phone +44 20 7946 0958, key AKIAIOSFODNN7EXAMPLE. ",
    ];
    let mut out = String::new();
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(parts[i % parts.len()]);
        i += 1;
    }
    out.truncate(bytes);
    while !out.is_char_boundary(out.len()) {
        out.pop();
    }
    out
}

async fn one(client: &reqwest::Client, args: &Args, body: &bytes::Bytes, i: u64) -> bool {
    let url = match args.agents {
        Some(_) => format!("{}/a{i}/messages", args.url),
        None => args.url.clone(),
    };
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.clone());
    if let Some(k) = &args.key {
        req = req.bearer_auth(k);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => {
            // Read to the end: for streams that is the last event.
            resp.bytes()
                .await
                .is_ok_and(|b| !args.stream || b.ends_with(b"data: [DONE]\n\n"))
        }
        _ => false,
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let user = if args.prompt_bytes == 0 {
        "Summarise the quarterly report in three short bullet points.".to_owned()
    } else {
        prompt(args.prompt_bytes)
    };
    let body = if args.agents.is_some() {
        bytes::Bytes::from(json!({"content": user}).to_string())
    } else {
        bytes::Bytes::from(
            json!({"model": "bench", "stream": args.stream,
                "messages": [{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": user}]})
            .to_string(),
        )
    };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Duration::from_secs(args.seconds);
    // Warm-up: open connections (not in agent mode, where each agent gets one message).
    if args.agents.is_none() {
        for _ in 0..20 {
            one(&client, &args, &body, 0).await;
        }
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    if let Some(rate) = args.rate {
        let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
        let total = rate * args.seconds;
        for i in 0..total {
            let scheduled = started + period * i as u32;
            tokio::time::sleep_until(scheduled.into()).await;
            let (client, args, body, lat, err) = (
                client.clone(),
                args.clone(),
                body.clone(),
                latencies.clone(),
                errors.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                if one(&client, &args, &body, i).await {
                    lat.lock().await.push(t.elapsed().as_micros() as u64);
                } else {
                    err.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    } else {
        for _ in 0..args.concurrency {
            let (client, args, body, lat, err, next) = (
                client.clone(),
                args.clone(),
                body.clone(),
                latencies.clone(),
                errors.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let done = match args.agents {
                        Some(n) => i >= n,
                        None => started.elapsed() >= deadline,
                    };
                    if done {
                        break;
                    }
                    let t = Instant::now();
                    if one(&client, &args, &body, i).await {
                        mine.push(t.elapsed().as_micros() as u64);
                    } else {
                        err.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                lat.lock().await.extend(mine);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = latencies.lock().await.clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{}",
        json!({"ok": l.len(), "errors": errors.load(std::sync::atomic::Ordering::Relaxed),
            "rps": l.len() as f64 / elapsed, "p50_us": pct(0.50), "p90_us": pct(0.90),
            "p99_us": pct(0.99), "max_us": l.last().copied().unwrap_or(0)})
    );
}
