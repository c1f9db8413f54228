//! Scan-and-mask throughput on realistic prompts (prose, code, JSON, logs with a little
//! personal data), 1 to 64 KB, every detector on, one thread. Also time per byte on
//! adversarial input at two sizes, to show it stays flat (linear).
//!
//! `cargo bench -p warden-redact --bench throughput` (prints medians of 15 runs).

use std::time::{Duration, Instant};
use warden_redact::{Detector, Direction, Policy, Session};

const PROSE: &str = "The quarterly review covered revenue, churn and the migration plan. Customers in the \
EMEA region asked for faster onboarding; the team proposed a two-step rollout in March. ";
const CODE: &str = "fn handle(req: Request) -> Result<Response, Error> {\n    let id = req.param(\"id\")?;\n    \
let user = db.find_user(id).await?;\n    Ok(Response::json(&user))\n}\n";
const JSON: &str = "{\"order_id\": \"ORD-2024-118273\", \"items\": [{\"sku\": \"AB-1234\", \"qty\": 2, \"price\": 19.99}], \
\"status\": \"shipped\", \"updated\": \"2024-11-26T10:30:00Z\"}\n";
const LOG: &str = "2024-11-26T10:30:00Z INFO request_id=req_8f3a2b status=200 latency_ms=12 path=/v1/orders version=1.4.2\n";
const PII: &[&str] = &[
    "Contact jane.doe@example.com about the refund. ",
    "Card on file 4111 1111 1111 1111. ",
    "Call +44 20 7946 0958 tomorrow. ",
    "key AKIAIOSFODNN7EXAMPLE leaked. ",
];

fn prompt(bytes: usize) -> String {
    let parts = [PROSE, CODE, JSON, LOG];
    let mut out = String::new();
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(parts[i % parts.len()]);
        if i % 7 == 3 {
            out.push_str(PII[(i / 7) % PII.len()]);
        }
        i += 1;
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_mask(d: &Detector, text: &str, runs: usize) -> Duration {
    let policy = Policy::default();
    let times = (0..runs)
        .map(|_| {
            let mut s = Session::default();
            let start = Instant::now();
            let out = s.mask(d, &policy, text, Direction::Request);
            std::hint::black_box(out);
            start.elapsed()
        })
        .collect();
    median(times)
}

fn main() {
    let d = Detector::new(&[]).expect("detectors");
    println!("| prompt | findings | median time | throughput |");
    println!("|---|---|---|---|");
    for kb in [1usize, 4, 16, 64] {
        let text = prompt(kb * 1024);
        let findings = d.find(&text).len();
        let runs = if kb <= 4 { 2001 } else { 201 };
        let t = time_mask(&d, &text, runs);
        let mbps = text.len() as f64 / t.as_secs_f64() / 1e6;
        println!(
            "| {kb} KB | {findings} | {:.1} µs | {mbps:.0} MB/s |",
            t.as_secs_f64() * 1e6
        );
    }
    println!();
    println!("| adversarial input | 256 KB | 1 MB | ns/byte at 256 KB | ns/byte at 1 MB |");
    println!("|---|---|---|---|---|");
    for (name, unit) in [
        ("digits", "1"),
        ("near-emails `a@`", "a@"),
        ("digit groups `123-`", "123-"),
        ("`4111 ` groups", "4111 "),
    ] {
        let small = unit.repeat(256 * 1024 / unit.len());
        let large = unit.repeat(1024 * 1024 / unit.len());
        let (ts, tl) = (time_mask(&d, &small, 15), time_mask(&d, &large, 15));
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} | {:.1} |",
            ts.as_secs_f64() * 1e3,
            tl.as_secs_f64() * 1e3,
            ts.as_secs_f64() * 1e9 / small.len() as f64,
            tl.as_secs_f64() * 1e9 / large.len() as f64
        );
    }
}
