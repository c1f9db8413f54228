//! Cost control through `warden serve`: the response cache, rate limits, token budgets,
//! tiering, prices and the usage report; and the same limits across two nodes sharing Redis.

use crate::{KEYS_ENV, Setup, bin, error_code, sse_events, two_provider_config};
use serde_json::{Value, json};
use std::time::Duration;
use warden_testkit::{MockUpstream, WardenProcess};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn post_with(s: &Setup, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Asserts a 429 with this code and a message containing `words`.
async fn refused_with(r: reqwest::Response, code: &str, words: &str) {
    let (got, body) = error_code(r, 429).await;
    assert_eq!(got, code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(words), "{message}");
}

fn ask(text: &str) -> Value {
    json!({"model": "fast", "temperature": 0, "max_tokens": 20,
           "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_are_free_restored_per_request_and_honour_cache_control() {
    let s = Setup::start_with("[cache]\nenabled = true\n").await;
    let first = post_with(&s, &ask("hello there"), &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-warden-cache"), "MISS");
    assert_eq!(header(&first, "x-warden-model"), "small-a");
    let first: Value = first.json().await.unwrap();
    let again = post_with(&s, &ask("hello there"), &[]).await;
    assert_eq!(header(&again, "x-warden-cache"), "HIT");
    assert_eq!(header(&again, "x-warden-model"), "small-a");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["choices"], first["choices"]);
    assert_eq!(
        s.a.requests().len(),
        1,
        "the hit never reached the provider"
    );

    // A changed parameter is another question.
    let mut hotter = ask("hello there");
    hotter["temperature"] = json!(1);
    assert_eq!(
        header(&post_with(&s, &hotter, &[]).await, "x-warden-cache"),
        "MISS"
    );
    // no-cache skips the lookup; no-store keeps the answer out.
    let r = post_with(&s, &ask("hello there"), &[("cache-control", "no-cache")]).await;
    assert_eq!(header(&r, "x-warden-cache"), "BYPASS");
    let r = post_with(&s, &ask("not kept"), &[("cache-control", "no-store")]).await;
    assert_eq!(header(&r, "x-warden-cache"), "MISS");
    let r = post_with(&s, &ask("not kept"), &[]).await;
    assert_eq!(header(&r, "x-warden-cache"), "MISS");
    assert_eq!(s.a.requests().len(), 5);

    // A streaming request is answered from the cache as a valid SSE stream.
    let mut streamed = ask("hello there");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = post_with(&s, &streamed, &[]).await;
    assert_eq!(header(&r, "x-warden-cache"), "HIT");
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    let events = sse_events(r).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        first["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["usage"]["total_tokens"].is_number())
    );
    assert_eq!(s.a.requests().len(), 5);

    // The cache holds the redacted question and answer: a different email address that
    // redacts to the same placeholder hits, and the answer carries this request's address.
    let r = post_with(&s, &ask("write to ann@example.com"), &[]).await;
    assert_eq!(header(&r, "x-warden-cache"), "MISS");
    let r = post_with(&s, &ask("write to bob@example.org"), &[]).await;
    assert_eq!(header(&r, "x-warden-cache"), "HIT");
    let body: Value = r.json().await.unwrap();
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("bob@example.org"), "{answer}");
    assert!(!answer.contains("ann@example.com"), "{answer}");
    let sent = serde_json::to_string(&s.a.requests().last().unwrap().body).unwrap();
    assert!(!sent.contains("ann@example.com") && sent.contains("<EMAIL_1>"));

    // A streamed answer is stored whole once it completes, and serves plain requests too.
    let mut streamed = ask("stream first to cat@example.com");
    streamed["stream"] = json!(true);
    let r = post_with(&s, &streamed, &[]).await;
    assert_eq!(header(&r, "x-warden-cache"), "MISS");
    let text: String = sse_events(r)
        .await
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(text.contains("cat@example.com"), "{text}");
    let calls = s.a.requests().len();
    // The answer is stored just after the stream ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post_with(&s, &ask("stream first to dan@example.com"), &[]).await;
    assert_eq!(header(&r, "x-warden-cache"), "HIT");
    let hit: Value = r.json().await.unwrap();
    let answer = hit["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(answer, text.replace("cat@example.com", "dan@example.com"));
    assert_eq!(hit["choices"][0]["finish_reason"], "stop");
    assert_eq!(s.a.requests().len(), calls, "served without the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_key_and_user_answer_429_with_openai_headers() {
    let s = Setup::start_with(
        "[limits]\nrequests_per_minute = 3\n[limits.users]\nrequests_per_minute = 2\n",
    )
    .await;
    let alice = [("x-warden-user", "alice")];
    let ok = post_with(&s, &ask("hi"), &alice).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&ok, "x-ratelimit-remaining-requests"), "1");
    assert!(!header(&ok, "x-ratelimit-reset-requests").is_empty());
    assert_eq!(post_with(&s, &ask("hi"), &alice).await.status(), 200);
    let refused = post_with(&s, &ask("hi"), &alice).await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    refused_with(
        refused,
        "rate_limit_exceeded",
        "this user's limit is 2 requests per minute",
    )
    .await;
    // Bob has his own quota but shares the key's: one more, then the key's limit.
    let bob = [("x-warden-user", "bob")];
    assert_eq!(post_with(&s, &ask("hi"), &bob).await.status(), 200);
    refused_with(
        post_with(&s, &ask("hi"), &bob).await,
        "rate_limit_exceeded",
        "this key's",
    )
    .await;
    assert_eq!(
        s.a.requests().len(),
        3,
        "refused requests never reach the provider"
    );
    // A bad user id is refused before anything counts.
    let long = "u".repeat(200);
    let (code, _) = error_code(
        post_with(&s, &ask("hi"), &[("x-warden-user", long.as_str())]).await,
        400,
    )
    .await;
    assert_eq!(code, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_under_200_concurrent_requests_and_survive_a_restart() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let dir = WardenProcess::temp_dir();
    let config = two_provider_config(&a, &b, "[budgets]\nkey_daily_tokens = 1000\n");
    let first = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
    let key = first.create_key("racer", &[]);
    // A slow provider keeps all 200 calls in flight at once: a budget checked only after
    // the fact would let every one of them through.
    a.push((0..200).map(|_| {
        warden_testkit::Reply::Delay(
            Duration::from_millis(300),
            Box::new(warden_testkit::Reply::Text("fine".into())),
        )
    }));
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", first.url);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(&url)
                .bearer_auth(&key)
                .json(&ask(&format!("hello {i}")))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }));
    }
    let mut spent = 0i64;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => spent += body["usage"]["total_tokens"].as_i64().unwrap(),
            429 => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // Each request reserves its prompt (about 10 tokens) plus max_tokens (20): the overspend
    // may not exceed one such estimate.
    assert!(refused > 0, "the budget was reached");
    assert!(spent <= 1000 + 40, "spent {spent} of a 1000-token budget");

    // Spend what is left, then restart: the counter is still there.
    let mut last = None;
    for _ in 0..100 {
        let r = http
            .post(&url)
            .bearer_auth(&key)
            .json(&ask("more"))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            last = Some(r.json::<Value>().await.unwrap());
            break;
        }
    }
    let last = last.expect("the budget ran out");
    let message = last["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("daily token budget of this key (1000 tokens)"),
        "{message}"
    );
    assert!(
        message.contains("resets at") && message.ends_with("T00:00:00Z"),
        "{message}"
    );
    first.signal("TERM");
    let mut first = first;
    tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(10)));
    let second = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
    let r = http
        .post(format!("{}/v1/chat/completions", second.url))
        .bearer_auth(&key)
        .json(&ask("after restart"))
        .send()
        .await
        .unwrap();
    let (code, _) = error_code(r, 429).await;
    assert_eq!(code, "budget_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_budgets_are_per_session() {
    let s = Setup::start_with("[budgets]\nsession_tokens = 100\n").await;
    let one = [("x-warden-session", "task-1")];
    let mut served = 0;
    loop {
        let r = post_with(&s, &ask("hi"), &one).await;
        if r.status() == 429 {
            refused_with(r, "budget_exceeded", "session token budget (100 tokens)").await;
            break;
        }
        assert_eq!(r.status(), 200);
        served += 1;
        assert!(served < 20, "the session budget never ran out");
    }
    assert!(served >= 2, "{served}");
    let other = post_with(&s, &ask("hi"), &[("x-warden-session", "task-2")]).await;
    assert_eq!(other.status(), 200);
    // Without a session header, no session budget applies.
    assert_eq!(post_with(&s, &ask("hi"), &[]).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiering_moves_a_key_that_spent_most_of_its_budget_to_the_cheaper_model() {
    let s = Setup::start_with(
        r#"
[models.cheap]
targets = [{ provider = "primary", model = "tiny-a" }]
[budgets]
key_daily_tokens = 200
[tiering]
when_budget_used = 0.3
cheaper = { fast = "cheap" }
"#,
    )
    .await;
    let mut models = Vec::new();
    for _ in 0..8 {
        let r = post_with(&s, &ask("hi"), &[]).await;
        assert_eq!(r.status(), 200);
        models.push((
            header(&r, "x-warden-model"),
            header(&r, "x-warden-downgraded-from"),
        ));
    }
    // About 11 tokens per call: the first few go to the asked model, then the cheaper one.
    assert_eq!(models[0], ("small-a".to_owned(), String::new()));
    assert_eq!(models[7], ("tiny-a".to_owned(), "fast".to_owned()));
    let sent: Vec<String> =
        s.a.requests()
            .iter()
            .map(|r| r.body["model"].as_str().unwrap().to_owned())
            .collect();
    assert!(sent.contains(&"tiny-a".to_owned()) && sent[0] == "small-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_report_shows_cost_and_refusals_to_admin_keys_only() {
    let s = Setup::start_with(
        r#"
[limits.keys.test]
requests_per_minute = 3
[prices.small-a]
input = 1.0
output = 2.0
"#,
    )
    .await;
    let mut expected = 0.0;
    for _ in 0..4 {
        let r = post_with(&s, &ask("hi"), &[]).await;
        if r.status() == 200 {
            let u = r.json::<Value>().await.unwrap()["usage"].clone();
            let (p, c) = (
                u["prompt_tokens"].as_f64().unwrap(),
                u["completion_tokens"].as_f64().unwrap(),
            );
            expected += (p * 1.0 + c * 2.0) / 1e6;
        }
    }
    assert!(expected > 0.0);
    let get = |key: String, query: &'static str| {
        let req = s
            .http
            .get(s.url(&format!("/v1/usage{query}")))
            .bearer_auth(key);
        async move { req.send().await.unwrap() }
    };
    let (code, _) = error_code(get(s.key.clone(), "").await, 403).await;
    assert_eq!(code, "admin_required");
    let admin = s.warden.create_key("ops", &["--admin"]);
    // Usage rows are written off the request path; give the writer a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = get(admin.clone(), "?group_by=model").await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    let fast = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "fast")
        .unwrap()
        .clone();
    assert_eq!(fast["requests"], 4);
    assert_eq!(fast["rate_limited"], 1);
    // Three answers, prompt tokens at $1/M and completion tokens at $2/M.
    let cost = fast["cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
    let by_key: Value = get(admin.clone(), "?group_by=key")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_key["data"][0]["name"], "test");
    let (code, _) = error_code(get(admin.clone(), "?group_by=week").await, 400).await;
    assert_eq!(code, "invalid_request");
    let (code, _) = error_code(get(admin, "?from=yesterday").await, 400).await;
    assert_eq!(code, "invalid_request");
    let (status, out, err) = s.warden.cli(&["usage", "--group-by", "model", "--json"]);
    assert_eq!(status, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli[0]["requests"], 4);

    // Each audit record carries the request's cost, cache result and refusal.
    let (status, out, err) = s.warden.cli(&["audit", "search", "--key", "test"]);
    assert_eq!(status, 0, "{err}");
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4, "{out}");
    let calls: Vec<&Value> = records.iter().map(|r| &r["event"]).collect();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c["refusal"] == "rate_limited")
            .count(),
        1,
        "{out}"
    );
    let costs: f64 = calls
        .iter()
        .filter_map(|c| c["cost_usd"].as_str())
        .map(|c| c.parse::<f64>().unwrap())
        .sum();
    assert!(
        (costs - expected).abs() < 1e-7,
        "{costs} != {expected}: {out}"
    );
    // The cache is off here; the refused request never got as far as the lookup.
    for c in &calls {
        let expected = if c["status"] == 200 {
            json!("bypass")
        } else {
            Value::Null
        };
        assert_eq!(c["cache"], expected, "{out}");
    }
}

/// Two `warden serve` processes on one data folder, sharing this machine's Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_budgets_and_cache_hold_across_two_nodes_sharing_redis() {
    let Some(redis_url) = std::env::var("WARDEN_TEST_REDIS_URL").ok() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "WARDEN_TEST_REDIS_URL must be set in CI"
        );
        eprintln!(
            "SKIPPED: the two-node Redis test needs WARDEN_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379)"
        );
        return;
    };
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let prefix = format!(
        "warden-test-{}-{}:",
        std::process::id(),
        warden_core::time::unix_millis()
    );
    let extra = format!(
        r#"
[redis]
url_env = "WARDEN_REDIS_URL"
key_prefix = "{prefix}"
[audit]
enabled = false
[cache]
enabled = true
backend = "redis"
[limits]
backend = "redis"
requests_per_minute = 6
[limits.keys.spender]
requests_per_minute = 0
[budgets]
backend = "redis"
[budgets.keys.spender]
daily_tokens = 1000
"#
    );
    let config = two_provider_config(&a, &b, &extra);
    let shared = WardenProcess::temp_dir().join("data");
    let shared_str = shared.to_str().unwrap().to_owned();
    let mut env: Vec<(&str, &str)> = KEYS_ENV.to_vec();
    env.push(("WARDEN_REDIS_URL", &redis_url));
    env.push(("WARDEN_DATA_DIR", &shared_str));
    let one = WardenProcess::start(&bin(), &config, &env);
    let two = WardenProcess::start(&bin(), &config, &env);
    let key = one.create_key("test", &[]);
    let http = reqwest::Client::new();
    let send = |node: &WardenProcess, key: &str, body: Value, no_cache: bool| {
        let mut req = http
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(key)
            .json(&body);
        if no_cache {
            req = req.header("cache-control", "no-cache");
        }
        async move { req.send().await.unwrap() }
    };

    // The cache: stored by one node, served by the other.
    let r = send(&one, &key, ask("shared question"), false).await;
    assert_eq!(header(&r, "x-warden-cache"), "MISS");
    let r = send(&two, &key, ask("shared question"), false).await;
    assert_eq!(header(&r, "x-warden-cache"), "HIT");
    assert_eq!(a.requests().len(), 1);

    // Requests per minute: 6 for the key across both nodes, two used above.
    let mut ok = 0;
    for i in 0..8 {
        let node = if i % 2 == 0 { &one } else { &two };
        let r = send(node, &key, ask("shared question"), false).await;
        match r.status().as_u16() {
            200 => ok += 1,
            429 => assert_eq!(header(&r, "x-ratelimit-limit-requests"), "6"),
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 4, "the limit held across nodes");

    // A budget raced from both nodes at once.
    let spender = one.create_key("spender", &[]);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let node_url = if i % 2 == 0 {
            one.url.clone()
        } else {
            two.url.clone()
        };
        let (http, key) = (http.clone(), spender.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{node_url}/v1/chat/completions"))
                .bearer_auth(&key)
                .header("cache-control", "no-cache")
                .json(&ask(&format!("question {i}")))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let (mut spent, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (200, body) => spent += body["usage"]["total_tokens"].as_i64().unwrap(),
            (429, body) => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused += 1;
            }
            (s, body) => panic!("unexpected {s}: {body}"),
        }
    }
    assert!(
        refused > 0 && spent <= 1000 + 40,
        "spent {spent}, refused {refused}"
    );

    // Redis loses the counter (as in a restart: this Redis keeps nothing on disk). The next
    // reservation seeds it from the store's settled total, so the budget still holds.
    tokio::time::sleep(Duration::from_millis(500)).await; // usage rows (and counters) written
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let counters: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}key:*:day:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(counters.len(), 1, "{counters:?}");
    let _: () = redis::cmd("DEL")
        .arg(&counters)
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = http
        .post(format!("{}/v1/chat/completions", two.url))
        .bearer_auth(&spender)
        .header("cache-control", "no-cache")
        .json(&ask("after a Redis restart"))
        .send()
        .await
        .unwrap();
    let seeded: i64 = redis::cmd("GET")
        .arg(&counters[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(seeded >= spent, "seeded {seeded}, but {spent} were spent");
    if r.status() != 200 {
        refused_with(r, "budget_exceeded", "daily token budget").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_limits_count_estimates_and_settle_to_real_usage() {
    let s = Setup::start_with("[limits]\ntokens_per_minute = 120\n").await;
    // Each call reserves about 30 tokens (prompt and max_tokens 20) and settles at about 12.
    let mut served = 0;
    let mut refused = None;
    for _ in 0..20 {
        let r = post_with(&s, &ask("hi"), &[]).await;
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "120");
        served += 1;
    }
    // Settling to the real count gives tokens back: more calls fit than 120 / 30.
    assert!(served > 4, "{served}");
    let refused = refused.expect("the token limit was reached");
    assert!(!header(&refused, "retry-after").is_empty());
    refused_with(refused, "rate_limit_exceeded", "tokens per minute").await;
    // A request bigger than a whole minute's quota can never fit, and says so.
    let mut huge = ask("hi");
    huge["max_tokens"] = json!(500);
    let r = post_with(&s, &huge, &[]).await;
    assert!(r.headers().get("retry-after").is_none());
    let (_, body) = error_code(r, 429).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("more than this key's limit of 120 tokens per minute"),
        "{message}"
    );
}
