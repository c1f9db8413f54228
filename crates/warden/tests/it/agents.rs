//! Durable agents through `warden serve`, against the scripted mock model: the tool loop with
//! validated SQL reads, each limit of the dead man's switch, resume, hibernation, ordering and
//! parallelism, ownership, and the journal after `kill -9`.

use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use warden_testkit::{MockUpstream, Reply, WardenProcess};

/// A small shop database for `sql_query`.
pub(crate) async fn shop_db(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("shop.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, city TEXT);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL);
         CREATE TABLE staff_salaries (id INTEGER, salary REAL);
         INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', 'London'), (2, 'Bo', 'bo@example.org', 'Oslo');
         INSERT INTO orders VALUES (1, 1, 10.0), (2, 1, 20.5), (3, 2, 5.0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    path
}

struct Agents {
    a: MockUpstream,
    hook: MockUpstream,
    warden: WardenProcess,
    key: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Agents {
    async fn start(agent_extra: &str) -> Self {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let hook = MockUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let db = shop_db(dir.path()).await;
        let extra = format!(
            r#"
[server]
agent_idle = "400ms"
[databases.shop]
kind = "sqlite"
path = "{db}"
tables = ["customers", "orders"]
[agents.analyst]
system_prompt = "You answer questions about the shop's data."
model = "fast"
tools = ["sql_query"]
databases = ["shop"]
max_steps = 4
step_timeout = "1500ms"
max_identical_tool_calls = 2
webhook_url_env = "AGENT_HOOK"
{agent_extra}
"#,
            db = db.display()
        );
        // The second provider fails, so a failure of the first is final.
        b.push((0..50).map(|_| Reply::Status {
            status: 500,
            retry_after: None,
            message: "down".into(),
        }));
        let hook_url = format!("{}/chat/completions", hook.base_url());
        let mut env = KEYS_ENV.to_vec();
        env.push(("AGENT_HOOK", &hook_url));
        let warden = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &extra), &env);
        let key = warden.create_key("agents", &[]);
        Self {
            a,
            hook,
            warden,
            key,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.post_as(&self.key, path, body).await
    }

    async fn post_as(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/agents/{path}", self.warden.url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn ask(&self, name: &str, content: &str) -> Value {
        let r = self
            .post(
                &format!("analyst/{name}/messages"),
                json!({"content": content}),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/v1/agents/{path}", self.warden.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn history(&self, name: &str) -> Vec<Value> {
        let page = self.get(&format!("analyst/{name}/history?limit=500")).await;
        page["data"].as_array().unwrap().clone()
    }
}

fn sql(query: &str) -> Reply {
    Reply::ToolCall {
        name: "sql_query".into(),
        arguments: json!({"database": "shop", "sql": query}).to_string(),
    }
}

fn kinds(steps: &[Value]) -> Vec<String> {
    steps
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_reads_through_validated_sql_and_journals_every_step() {
    let s = Agents::start("").await;
    s.a.push([
        sql("SELECT COUNT(*) AS n FROM orders"),
        Reply::Text("There are 3 orders.".into()),
    ]);
    let out = s.ask("ada", "How many orders are there?").await;
    assert_eq!(out["result"], "answered", "{out}");
    assert_eq!(out["answer"], "There are 3 orders.");
    assert_eq!(out["status"], "idle");
    assert_eq!(out["model_steps"], 2);
    // The model saw the tool and, on its second call, the tool's rows.
    let reqs = s.a.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body["tools"][0]["function"]["name"], "sql_query");
    assert_eq!(reqs[0].body["messages"][0]["role"], "system");
    let tool_msg = &reqs[1].body["messages"][3];
    assert_eq!(tool_msg["role"], "tool");
    assert!(
        tool_msg["content"].as_str().unwrap().contains("\"n\":3"),
        "{tool_msg}"
    );
    let steps = s.history("ada").await;
    assert_eq!(kinds(&steps), ["task", "model", "tool", "model", "answer"]);
    let tool = &steps[2]["data"];
    assert_eq!(tool["classification"], "read");
    assert_eq!(tool["outcome"], "ok");
    assert_eq!(tool["summary"], "1 rows");
    assert!(steps[1]["tokens"].as_i64().unwrap() > 0);
    let state = s.get("analyst/ada").await;
    assert_eq!(state["status"], "idle");
    assert_eq!(state["steps"], 5);
    assert_eq!(state["permissions"], "read-only");
    assert!(state["last_verified_at"].is_string());
    // Personal data from the database reaches the model masked, and the user unmasked.
    s.a.push([
        sql("SELECT email FROM customers WHERE id = 1"),
        Reply::Text("Write to <EMAIL_1>.".into()),
    ]);
    let out = s.ask("ada", "What is Ada's email?").await;
    assert_eq!(out["answer"], "Write to ada@example.com.", "{out}");
    let sent = s.a.requests()[3].body.to_string();
    assert!(
        !sent.contains("ada@example.com") && sent.contains("<EMAIL_1>"),
        "{sent}"
    );
    let journal = json!(s.history("ada").await).to_string();
    assert!(
        !journal.contains("ada@example.com"),
        "the journal holds redacted text only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sql_goes_back_to_the_model_with_the_rule() {
    let s = Agents::start("").await;
    s.a.push([
        sql("DELETE FROM orders"),
        sql("SELECT * FROM staff_salaries"),
        Reply::Text("I may only read orders and customers.".into()),
    ]);
    let out = s.ask("bo", "Clean up").await;
    assert_eq!(out["result"], "answered");
    let reqs = s.a.requests();
    let refusal = reqs[1].body["messages"][3]["content"].as_str().unwrap();
    assert!(refusal.contains("select_only"), "{refusal}");
    let refusal = reqs[2].body["messages"][5]["content"].as_str().unwrap();
    assert!(
        refusal.contains("table_not_allowed") && refusal.contains("customers"),
        "{refusal}"
    );
    let steps = s.history("bo").await;
    assert_eq!(steps[2]["data"]["outcome"], "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_mans_switch_halts_loops_caps_steps_and_times_out() {
    let s = Agents::start("").await;
    // The same call three times in a row (the limit is two).
    s.a.push((0..3).map(|_| sql("SELECT 1 FROM orders")));
    let out = s.ask("loop", "go").await;
    assert_eq!(out["result"], "halted", "{out}");
    assert_eq!(out["status"], "halted");
    assert!(
        out["reason"].as_str().unwrap().starts_with("loop:"),
        "{out}"
    );
    // Different calls, but more steps than allowed (4).
    s.a.push((0..4).map(|i| sql(&format!("SELECT {i} FROM orders"))));
    let out = s.ask("steps", "go").await;
    assert_eq!(out["result"], "halted");
    assert!(
        out["reason"].as_str().unwrap().starts_with("max_steps"),
        "{out}"
    );
    // A model call longer than the step timeout (1.5 s).
    s.a.push([Reply::Delay(
        Duration::from_secs(3),
        Box::new(Reply::Text("late".into())),
    )]);
    let out = s.ask("slow", "go").await;
    assert_eq!(out["result"], "timed_out", "{out}");
    assert_eq!(out["status"], "idle", "back to idle after a timeout");
    let steps = s.history("slow").await;
    assert_eq!(kinds(&steps), ["task", "timed_out"]);
    // The webhook heard of all three.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notes: Vec<Value> = s.hook.requests().into_iter().map(|r| r.body).collect();
    let results: Vec<&str> = notes
        .iter()
        .map(|n| n["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["halted", "halted", "timed_out"], "{notes:?}");
    assert_eq!(notes[2]["agent"], "analyst/slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_resumes_from_the_journal_without_calling_the_model_again() {
    let s = Agents::start("").await;
    s.a.push([sql("SELECT COUNT(*) AS n FROM customers")]);
    // Both attempts on the first provider fail (the second provider is down throughout).
    s.a.push((0..2).map(|_| Reply::Status {
        status: 500,
        retry_after: None,
        message: "down".into(),
    }));
    let out = s.ask("cy", "How many customers?").await;
    assert_eq!(out["result"], "failed", "{out}");
    assert_eq!(out["status"], "failed");
    let before = s.a.requests().len();
    s.a.push([Reply::Text("There are 2 customers.".into())]);
    let r = s.post("analyst/cy/resume", json!({})).await;
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["result"], "answered", "{out}");
    assert_eq!(out["answer"], "There are 2 customers.");
    // One new model call: the journalled model answer and tool result were replayed.
    assert_eq!(s.a.requests().len(), before + 1);
    let last = &s.a.requests()[before].body["messages"];
    assert_eq!(last[3]["role"], "tool", "{last}");
    let steps = s.history("cy").await;
    assert_eq!(
        kinds(&steps),
        [
            "task", "model", "tool", "failed", "resumed", "model", "answer"
        ]
    );
    // Nothing left to resume.
    let r = s.post("analyst/cy/resume", json!({})).await;
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_agents_hibernate_and_wake_with_their_state() {
    let s = Agents::start("").await;
    s.a.push([Reply::Text("one".into())]);
    s.ask("dora", "first").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let metrics = reqwest::get(format!("{}/metrics", s.warden.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("warden_agent_hibernations_total"),
        "{metrics}"
    );
    // Reloaded from the store on the next message, under a new lease epoch.
    let state = s.get("analyst/dora").await;
    assert_eq!(state["lease_epoch"], 1);
    s.a.push([Reply::Text("two".into())]);
    let out = s.ask("dora", "second").await;
    assert_eq!(out["answer"], "two");
    let state = s.get("analyst/dora").await;
    assert_eq!(state["lease_epoch"], 2);
    assert_eq!(
        kinds(&s.history("dora").await),
        ["task", "model", "answer", "task", "model", "answer"]
    );
    // Reset keeps the history.
    let r = s.post("analyst/dora/reset", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.history("dora").await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_takes_messages_in_order_and_different_agents_run_in_parallel() {
    let s = Agents::start("").await;
    let slow = |t: &str| Reply::Delay(Duration::from_millis(400), Box::new(Reply::Text(t.into())));
    // Three messages to one agent: handled one at a time, never interleaved.
    s.a.push([slow("a"), slow("b"), slow("c")]);
    let mut tasks = Vec::new();
    for i in 0..3 {
        let http = s.http.clone();
        let url = format!("{}/v1/agents/analyst/eve/messages", s.warden.url);
        let key = s.key.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"content": format!("m{i}")}))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap()["result"], "answered");
    }
    let steps = s.history("eve").await;
    let tasks: Vec<&str> = steps
        .iter()
        .map(|s| s["task_id"].as_str().unwrap())
        .collect();
    for w in tasks.windows(2).enumerate() {
        // A task's steps are contiguous: once a task ends, it never appears again.
        if w.1[0] != w.1[1] {
            assert!(
                !tasks[w.0 + 1..].contains(&w.1[0]),
                "interleaved: {tasks:?}"
            );
        }
    }
    assert_eq!(kinds(&steps).iter().filter(|k| *k == "answer").count(), 3);
    // Four agents at once take about as long as one.
    s.a.push((0..4).map(|_| slow("p")));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let http = s.http.clone();
        let url = format!("{}/v1/agents/analyst/par{i}/messages", s.warden.url);
        let key = s.key.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"content": "go"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_belong_to_their_key_and_bad_requests_are_refused() {
    let s = Agents::start("").await;
    s.a.push([Reply::Text("hi".into())]);
    s.ask("fay", "hello").await;
    let other = s.warden.create_key("other", &[]);
    let r = s
        .post_as(
            &other,
            "analyst/fay/messages",
            json!({"content": "mine now"}),
        )
        .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "agent_forbidden");
    let r = s.post("nobody/x/messages", json!({"content": "hi"})).await;
    assert_eq!(r.status(), 404);
    let r = s.post("analyst/fay/messages", json!({"content": ""})).await;
    assert_eq!(r.status(), 400);
    let r = s.post("analyst/fay/messages", json!({"text": "hi"})).await;
    assert_eq!(r.status(), 400);
    let r = s
        .post("analyst/bad%20name/messages", json!({"content": "hi"}))
        .await;
    assert_eq!(r.status(), 400);
    let r = s
        .http
        .get(format!("{}/v1/agents/analyst/ghost", s.warden.url))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .http
        .get(format!("{}/v1/agents/analyst/fay", s.warden.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tasks_send_each_step_as_an_event() {
    let s = Agents::start("").await;
    s.a.push([
        sql("SELECT name FROM customers ORDER BY id"),
        Reply::Text("Ada and Bo.".into()),
    ]);
    let r = s
        .post(
            "analyst/gil/messages",
            json!({"content": "Who are the customers?", "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let names: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.lines().next()?.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "state",
            "tool_call",
            "tool_result",
            "model_text",
            "state",
            "done"
        ],
        "{text}"
    );
    assert!(text.contains("\"answer\":\"Ada and Bo.\""), "{text}");
}

/// Reads an agent's SSE stream until it ends or breaks; returns the event names seen.
async fn events_until_cut(
    resp: reqwest::Response,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use futures_util::StreamExt;
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(name) = event.lines().next().and_then(|l| l.strip_prefix("event: ")) {
                seen.lock().unwrap().push(name.to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_step_and_resumes() {
    use rand::Rng;
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let work = tempfile::tempdir().unwrap();
    let db = shop_db(work.path()).await;
    let extra = format!(
        r#"
[databases.shop]
kind = "sqlite"
path = "{}"
tables = ["customers", "orders"]
[agents.analyst]
system_prompt = "You answer questions about the shop's data."
model = "fast"
tools = ["sql_query"]
databases = ["shop"]
step_timeout = "5s"
"#,
        db.display()
    );
    let config = two_provider_config(&a, &b, &extra);
    let slow = |r: Reply| Reply::Delay(Duration::from_millis(120), Box::new(r));
    for run in 0..10 {
        let dir = WardenProcess::temp_dir();
        let first = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
        let key = first.create_key("crash", &[]);
        a.clear();
        a.push([
            slow(sql("SELECT COUNT(*) AS n FROM orders")),
            slow(sql("SELECT COUNT(*) AS n FROM customers")),
            slow(Reply::Text("3 orders, 2 customers.".into())),
        ]);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/agents/analyst/crash/messages", first.url))
            .bearer_auth(&key)
            .json(&json!({"content": "Count orders and customers", "stream": true}))
            .send()
            .await
            .unwrap();
        let reader = tokio::spawn(events_until_cut(resp, seen.clone()));
        let wait = rand::rng().random_range(20..450);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        first.signal("KILL");
        let mut first = first;
        tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(5)));
        let _ = reader.await;
        let acknowledged = seen.lock().unwrap().clone();
        // Each `tool_call` event follows a committed model step, each `tool_result` a
        // committed tool step, `done` the committed answer.
        let acked_models = acknowledged.iter().filter(|e| *e == "tool_call").count()
            + usize::from(acknowledged.iter().any(|e| e == "model_text"));
        let acked_tools = acknowledged.iter().filter(|e| *e == "tool_result").count();

        a.clear();
        a.push([
            sql("SELECT COUNT(*) AS n FROM orders"),
            sql("SELECT COUNT(*) AS n FROM customers"),
            Reply::Text("3 orders, 2 customers.".into()),
        ]);
        let second = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
        let http = reqwest::Client::new();
        let get = |path: String| {
            let req = http
                .get(format!("{}/v1/agents/analyst/crash{path}", second.url))
                .bearer_auth(&key);
            async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let steps = get("/history?limit=500".into()).await["data"]
            .as_array()
            .unwrap()
            .clone();
        let seqs: Vec<i64> = steps.iter().map(|s| s["seq"].as_i64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "run {run} (killed at {wait} ms): {seqs:?}"
        );
        let ks = kinds(&steps);
        let models = ks.iter().filter(|k| *k == "model").count();
        let tools = ks.iter().filter(|k| *k == "tool").count();
        assert!(
            models >= acked_models && tools >= acked_tools,
            "run {run} (killed at {wait} ms): acknowledged {acknowledged:?}, journal {ks:?}"
        );
        // No step twice: each tool step answers a different model step.
        assert!(tools <= models, "run {run}: {ks:?}");
        eprintln!("run {run}: killed at {wait} ms after {acknowledged:?}; journal {ks:?}");
        let state = get(String::new()).await;
        if ks.last().map(String::as_str) == Some("answer") {
            assert_eq!(state["status"], "idle", "run {run}: {state}");
            continue;
        }
        assert_eq!(state["status"], "failed", "run {run}: {ks:?} {state}");
        assert_eq!(
            ks.last().map(String::as_str),
            Some("interrupted"),
            "run {run}: {ks:?}"
        );
        // Resume replays the journal: only the model calls not yet journalled are made.
        let before = a.requests().len();
        let r = http
            .post(format!("{}/v1/agents/analyst/crash/resume", second.url))
            .bearer_auth(&key)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let out: Value = r.json().await.unwrap();
        assert_eq!(out["result"], "answered", "run {run}: {out}");
        let after = get("/history?limit=500".into()).await["data"]
            .as_array()
            .unwrap()
            .clone();
        let models_after = kinds(&after).iter().filter(|k| *k == "model").count();
        assert_eq!(
            a.requests().len() - before,
            models_after - models,
            "run {run}: only new model calls"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_spends_its_session_tokens_is_halted() {
    let s = Agents::start(
        r#"
[agents.tight]
system_prompt = "You answer questions about the shop's data."
model = "fast"
tools = ["sql_query"]
databases = ["shop"]
session_tokens = 40
"#,
    )
    .await;
    s.a.push((0..5).map(|i| sql(&format!("SELECT {i} AS x FROM orders"))));
    let r = s.post("tight/hal/messages", json!({"content": "go"})).await;
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["result"], "halted", "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .starts_with("budget_exceeded"),
        "{out}"
    );
    assert!(out["tokens_used"].as_i64().unwrap() >= 40, "{out}");
    // Each model call asked for no more output than the budget had left.
    let asks: Vec<i64> =
        s.a.requests()
            .iter()
            .map(|r| r.body["max_tokens"].as_i64().unwrap())
            .collect();
    assert!(asks.windows(2).all(|w| w[1] < w[0]), "{asks:?}");
}
