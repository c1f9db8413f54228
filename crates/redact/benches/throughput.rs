//! Scan-and-mask throughput on realistic prompts (prose, code, JSON, logs with a little
//! personal data), 1 to 64 KB, every detector on, one thread. Also time per byte on
//! adversarial input at two sizes, to show it stays flat (linear), and 4 MiB bodies (the
//! largest by default) with their cost in units and the time until the default bound
//! (`redaction.max_cost`) refuses them.
//!
//! `cargo bench -p warden-redact --bench throughput` (prints medians of 15 runs, 5 for the
//! 4 MiB bodies).

use std::time::{Duration, Instant};
use warden_redact::{Cost, DEFAULT_MAX_COST, Detector, Direction, Policy, Session};

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

/// Median time and cost of masking `text` with the count `limit`; whether it was refused.
fn time_bounded(
    d: &Detector,
    text: &str,
    limit: Option<u64>,
    runs: usize,
) -> (Duration, u64, bool) {
    let policy = Policy::default();
    let mut spent = 0;
    let mut refused = false;
    let times = (0..runs)
        .map(|_| {
            let mut s = Session::default();
            let mut cost = Cost::new(limit);
            let start = Instant::now();
            let out = s.mask_within(d, &policy, text, Direction::Request, &mut cost);
            let t = start.elapsed();
            refused = out.is_err();
            std::hint::black_box(out.ok());
            spent = cost.spent();
            t
        })
        .collect();
    (median(times), spent, refused)
}

/// Random text: a xorshift generator, so the bodies are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick(&mut self, chars: &[u8]) -> char {
        chars[(self.next() % chars.len() as u64) as usize] as char
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| self.pick(b"0123456789")).collect()
    }
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Ordinary bodies that are not prose: encoded data, lock files, tables of numbers, logs,
/// each about `bytes` long. Random base64 and text like it made one lazy DFA over every
/// pattern thrash (a microsecond a byte); the number-heavy ones were refused well under the
/// largest body.
fn data_bodies(bytes: usize) -> Vec<(&'static str, String)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut fill = |line: &mut dyn FnMut(&mut Rng) -> String| {
        let mut out = String::with_capacity(bytes + 256);
        while out.len() < bytes {
            out.push_str(&line(&mut rng));
        }
        out
    };
    let b64 = fill(&mut |r| {
        let body: String = (0..76).map(|_| r.pick(BASE64)).collect();
        body + "\n"
    });
    let random = fill(&mut |r| (0..64).map(|_| r.pick(b"abcXYZ019+.-")).collect());
    let lock = fill(&mut |r| {
        let hash: String = (0..86).map(|_| r.pick(BASE64)).collect();
        format!(
            "    \"node_modules/pkg{}\": {{\n      \"version\": \"1.2.3\",\n      \"integrity\": \"sha512-{hash}==\"\n    }},\n",
            r.next() % 100_000
        )
    });
    let epoch = fill(&mut |r| format!("17{} 16{} {}\n", r.digits(11), r.digits(11), r.digits(6)));
    let ids = fill(&mut |r| {
        format!(
            "{{\"id\": \"1{}\", \"author\": {{\"id\": \"7{}\"}}, \"content\": \"looks good\"}},\n",
            r.digits(18),
            r.digits(17)
        )
    });
    let nginx = fill(&mut |r| {
        format!(
            "{}.{}.{}.{} - - [01/May/2024:17:08:49 +0000] \"GET /api/v1/items/{}?page={} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0\"\n",
            r.next() % 223 + 1,
            r.next() % 256,
            r.next() % 256,
            r.next() % 256,
            r.digits(6),
            r.next() % 50,
            r.digits(5)
        )
    });
    vec![
        ("random base64", b64),
        ("random `abcXYZ019+.-`", random),
        ("npm lock file (`sha512-…` integrity lines)", lock),
        ("millisecond timestamps", epoch),
        ("JSON with 19-digit ids", ids),
        ("nginx access log", nginx),
    ]
}

/// Large bodies: ordinary ones (1 and 4 MiB of prompt text, 1 MiB of dense log lines), and
/// 4 MiB of near-miss candidates (the last three took time quadratic in their length before
/// the bound: the first two now cost linearly, the third is cheap).
fn large_bodies(d: &Detector) {
    const MIB: usize = 1024 * 1024;
    let repeat = |unit: &str| unit.repeat(4 * MIB / unit.len());
    let mut logs = String::new();
    let mut i = 0u64;
    while logs.len() < 4 * MIB {
        logs.push_str(&format!(
            "2024-11-26T10:30:{:02}Z INFO client=10.0.{}.{} user=u{i}@corp.example id={}\n",
            i % 60,
            (i / 256) % 256,
            i % 256,
            1_000_000_000_000 + i * 37
        ));
        i += 1;
    }
    let mut bodies = vec![
        ("1 MiB of prompt text (as above)", prompt(MIB)),
        ("prompt text (as above)", prompt(4 * MIB)),
        (
            "1 MiB of logs with an address, an email and an id per line",
            {
                logs.truncate(MIB);
                logs
            },
        ),
        ("digit groups `123-`", repeat("123-")),
        ("SSN look-alikes `123-45-678 `", repeat("123-45-678 ")),
        ("IBAN groups `DE89 `", repeat("DE89 ")),
        (
            "mixed near-misses",
            repeat("4111 1111 123-45-6 1.2.3.4.5 a@b +1 (555) 12 DE89 3704 "),
        ),
        (
            "key openings without footer",
            repeat("-----BEGIN PRIVATE KEY----- 10.0.0.1 "),
        ),
        ("JWT openings", repeat("eyJaaaaa-4111111111111111-")),
        ("`password=`", repeat("password=")),
    ];
    bodies.splice(3..3, data_bodies(4 * MIB));
    println!(
        "| body (4 MiB unless said) | cost (units) | unbounded | with the default bound ({DEFAULT_MAX_COST}) | ns/unit |"
    );
    println!("|---|---|---|---|---|");
    for (name, text) in &bodies {
        let (free, cost, _) = time_bounded(d, text, None, 5);
        let (bounded, _, refused) = time_bounded(d, text, Some(DEFAULT_MAX_COST), 5);
        let outcome = if refused {
            "refused after"
        } else {
            "passes in"
        };
        println!(
            "| {name} | {cost} | {:.1} ms | {outcome} {:.1} ms | {:.2} |",
            free.as_secs_f64() * 1e3,
            bounded.as_secs_f64() * 1e3,
            free.as_secs_f64() * 1e9 / cost as f64
        );
    }
}

fn main() {
    let d = Detector::new(&[]).expect("detectors");
    // `WARDEN_BENCH_INSTRUCTIONS=N`: only mask the 64 KB prompt (`WARDEN_BENCH_KB` to choose
    // another size) N times, for an instruction count under `valgrind --tool=callgrind`
    // (repeatable on a noisy machine).
    if let Some(n) = std::env::var_os("WARDEN_BENCH_INSTRUCTIONS") {
        let kb = std::env::var("WARDEN_BENCH_KB").map_or(64, |kb| kb.parse().unwrap_or(64));
        let text = prompt(kb * 1024);
        std::hint::black_box(d.find(&text));
        let n = n.to_str().and_then(|n| n.parse().ok()).unwrap_or(10);
        if n > 0 {
            time_mask(&d, &text, n);
        }
        return;
    }
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
    println!();
    large_bodies(&d);
}
