//! The bound on redaction work: ordinary text of the largest body costs a fraction of it;
//! bodies built of near-miss candidates stop at it; inputs that used to be quadratic cost
//! linearly; a refused request is refused whole, on every entry point.

use crate::detector;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use warden_redact::{
    Cost, DEFAULT_MAX_COST, Direction, Policy, Redactor, Refusal, Session, TooComplex,
};

const MIB: usize = 1024 * 1024;

/// Ordinary prompt text: prose, code, JSON and log lines with a little personal data.
pub(crate) fn ordinary(bytes: usize) -> String {
    const PARTS: &[&str] = &[
        "The quarterly review covered revenue, churn and the migration plan. Customers in the \
         EMEA region asked for faster onboarding; the team proposed a two-step rollout. ",
        "fn handle(req: Request) -> Result<Response, Error> {\n    let id = req.param(\"id\")?;\n    \
         Ok(Response::json(&db.find_user(id).await?))\n}\n",
        "{\"order_id\": \"ORD-2024-118273\", \"items\": [{\"sku\": \"AB-1234\", \"qty\": 2, \
         \"price\": 19.99}], \"updated\": \"2024-11-26T10:30:00Z\"}\n",
        "2024-11-26T10:30:00Z INFO request_id=req_8f3a2b status=200 latency_ms=12 version=1.4.2\n",
        "Contact jane.doe@example.com about the refund; card on file 4111 1111 1111 1111. ",
    ];
    let mut out = String::with_capacity(bytes + 256);
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(PARTS[i % PARTS.len()]);
        i += 1;
    }
    out.truncate(bytes);
    out
}

/// Near-miss candidates, each repeated to `bytes`: what makes redaction work hardest per byte.
pub(crate) const ADVERSARIAL: &[(&str, &str)] = &[
    ("digit groups", "123-"),
    ("SSN look-alikes", "123-45-678 "),
    ("dotted numbers", "1.2."),
    ("card groups", "4111 "),
    ("IBAN groups", "DE89 "),
    ("phone openings", "+1 (55"),
    (
        "mixed",
        "4111 1111 123-45-6 1.2.3.4.5 a@b +1 (555) 12 DE89 3704 ",
    ),
    ("key openings", "-----BEGIN PRIVATE KEY----- 10.0.0.1 "),
    ("JWT openings", "eyJaaaaa-4111111111111111-"),
];

/// Inputs that took time quadratic in their length before the bound (the regex engine
/// followed an unbounded body past every later match, or a check rescanned the rest of the
/// text from every place): 256 KiB of `password=` took 32 s, of key openings 2 s.
pub(crate) const QUADRATIC: &[(&str, &str)] = &[
    ("key openings", "-----BEGIN PRIVATE KEY----- 10.0.0.1 "),
    ("JWT openings", "eyJaaaaa-4111111111111111-"),
    ("password labels", "password="),
    ("angle brackets", "<"),
];

pub(crate) fn repeat(unit: &str, bytes: usize) -> String {
    unit.repeat(bytes / unit.len())
}

fn cost_of(text: &str) -> u64 {
    let mut cost = Cost::unlimited();
    Session::default()
        .mask_within(
            &detector(),
            &Policy::default(),
            text,
            Direction::Request,
            &mut cost,
        )
        .unwrap();
    cost.spent()
}

#[test]
fn ordinary_text_of_the_largest_body_costs_a_fraction_of_the_bound() {
    let text = ordinary(4 * MIB);
    let cost = cost_of(&text);
    assert!(cost >= text.len() as u64, "every byte is scanned: {cost}");
    // About 11 units a byte, with a card and an email every 450 bytes and a run of digit
    // groups (`ORD-2024-118273`) every 150 that the numbering plans are asked about.
    assert!(
        cost < DEFAULT_MAX_COST / 4 * 3,
        "4 MiB of prose and code: {cost}"
    );
}

#[test]
fn adversarial_bodies_of_4_mib_stop_at_the_bound() {
    let d = detector();
    for (name, unit) in ADVERSARIAL {
        let text = repeat(unit, 4 * MIB);
        let mut cost = Cost::new(Some(DEFAULT_MAX_COST));
        let started = std::time::Instant::now();
        let r = Session::default().mask_within(
            &d,
            &Policy::default(),
            &text,
            Direction::Request,
            &mut cost,
        );
        let elapsed = started.elapsed();
        assert_eq!(
            r.err(),
            Some(TooComplex {
                limit: DEFAULT_MAX_COST
            }),
            "{name}"
        );
        // It stops at the first step past the bound; no step reads more than the text.
        assert!(
            cost.spent() <= DEFAULT_MAX_COST + text.len() as u64,
            "{name}: {}",
            cost.spent()
        );
        eprintln!("{name}: refused after {elapsed:?} (debug build)");
    }
}

#[test]
fn inputs_that_were_quadratic_cost_linearly() {
    for (name, unit) in QUADRATIC {
        let small = cost_of(&repeat(unit, MIB / 4));
        let large = cost_of(&repeat(unit, MIB));
        assert!(
            large < 5 * small,
            "{name}: 256 KiB cost {small}, 1 MiB cost {large}"
        );
        assert!(large < 64 * MIB as u64, "{name}: {large} for 1 MiB");
    }
    // And they are still redacted right: one password (its value runs on), every address.
    let d = detector();
    let found = d.find(&"password=".repeat(4096));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].entity.name(), "PASSWORD");
    let keys = "-----BEGIN PRIVATE KEY----- 10.0.0.1 ".repeat(4096);
    assert_eq!(d.find(&keys).len(), 4096);
    let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----";
    let text = format!(
        "{} {key} 10.0.0.2",
        "-----BEGIN PRIVATE KEY----- ".repeat(100)
    );
    let found = d.find(&text);
    let found: Vec<&str> = found.iter().map(|f| f.entity.name()).collect();
    assert_eq!(found, ["PRIVATE_KEY", "IP_ADDRESS"]);
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn redactor() -> Redactor {
    Redactor::new(detector(), Policy::default(), HashMap::new(), true, true)
}

#[test]
fn a_request_too_complex_to_redact_is_refused_whole_on_every_entry_point() {
    let r = redactor();
    let bad = repeat("123-45-678 ", 4 * MIB);
    let good = ordinary(4 * MIB);
    // Chat: the bound is per request, over all its fields together.
    let half = repeat("123-45-678 ", 2 * MIB);
    let chat = |content: Vec<&str>| {
        let messages: Vec<Value> = content
            .into_iter()
            .map(|c| json!({"role": "user", "content": c}))
            .collect();
        obj(json!({"model": "m", "messages": messages}))
    };
    let mut x = r.exchange("k");
    match x.chat_request(chat(vec![&half, &half])) {
        Err(Refusal::TooComplex(t)) => {
            assert_eq!(t.limit, DEFAULT_MAX_COST);
            assert!(t.to_string().contains("redaction.max_cost"));
            assert!(
                !t.to_string().contains("123-45"),
                "no content in the message"
            );
        }
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    assert!(r.exchange("k").chat_request(chat(vec![&good])).is_ok());
    // Embeddings.
    let embed = obj(json!({"model": "e", "input": [bad.clone()]}));
    assert!(matches!(
        r.exchange("k").embeddings_request(embed),
        Err(Refusal::TooComplex(_))
    ));
    // Free texts (an agent's task, a tool's result): each has the bound of a request.
    let mut x = r.exchange("agent");
    assert!(matches!(x.redact_text(&bad), Err(Refusal::TooComplex(_))));
    let ok = x.redact_text("mail ann@example.com").unwrap();
    assert_eq!(
        ok.get(),
        "mail <EMAIL_1>",
        "the exchange goes on afterwards"
    );
    assert!(x.request_cost() > 0);
    // The bound is the operator's: lower, or off.
    let strict = redactor().with_max_cost(Some(10_000));
    assert!(matches!(
        strict.exchange("k").redact_text(&ordinary(64 * 1024)),
        Err(Refusal::TooComplex(TooComplex { limit: 10_000 }))
    ));
    let off = redactor().with_max_cost(None);
    assert!(
        off.exchange("k")
            .redact_text(&repeat("123-45-678 ", MIB / 4))
            .is_ok()
    );
}

/// Random text from `chars`, in lines of 76 characters (as base64 is wrapped).
fn random(chars: &[u8], bytes: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = String::with_capacity(bytes + 80);
    while out.len() < bytes {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(chars[(x % chars.len() as u64) as usize] as char);
        }
        out.push('\n');
    }
    out
}

#[test]
fn random_base64_and_text_like_it_cost_what_ordinary_text_costs() {
    // One lazy DFA over every pattern thrashed on these (a microsecond a byte, at one unit a
    // byte); the patterns that made it thrash are searched for on their own now, and every
    // search is charged the span it scans (`cargo bench` shows the time per unit).
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let per_byte = |text: &str| cost_of(text) as f64 / text.len() as f64;
    let ordinary = per_byte(&ordinary(MIB));
    let lock: String = random(BASE64, MIB)
        .lines()
        .map(|hash| format!("      \"integrity\": \"sha512-{hash}==\"\n"))
        .collect();
    for (name, text) in [
        ("base64", random(BASE64, MIB)),
        ("`abcXYZ019+.-`", random(b"abcXYZ019+.-", MIB)),
        ("lock file", lock),
    ] {
        let cost = per_byte(&text);
        assert!(
            cost < 2.0 * ordinary,
            "{name}: {cost:.2} units a byte, ordinary text {ordinary:.2}"
        );
        assert!(cost_of(&text) < DEFAULT_MAX_COST / 8, "{name}");
    }
}
