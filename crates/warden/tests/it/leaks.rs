//! Leak test: known personal data and secrets go through every path that exists (chat, stream,
//! embeddings, tool-call history, the model echoing them, the model inventing a secret, a
//! blocked request, a cached answer, an agent's task and the database rows its SQL tool reads,
//! streamed and not; the kinds and disguises of issue 14 in every string field of the request),
//! with debug logging on; then every byte Warden wrote — its
//! log, the SQLite files, the audit write-ahead files, the shipped audit store and (when this
//! machine's Redis is given) the cached answers in Redis — is scanned for them.

use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::json;
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess};

const SECRETS: &[&str] = &[
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "123-45-6789",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
    "s3cr3t-P4ss",
    "DE89370400440532013000",
    // Kinds and forms of issue 14: other issuers' cards (dots as separators), a registry
    // IBAN with dashes, an international phone number, an internationalised address, an SSN
    // with dots, secrets of more formats, a network in CIDR notation, disguised values.
    "6759.6498.2643.8453",
    "6212345678901234569",
    "NO93-8601-1117-947",
    "+33 6 12 34 56 78",
    "123.45.6789",
    "ASIAY34FZKBOKMUTVV7A",
    "xapp-1-A01B2C3D4E5-1234567890123-0123456789abcdef0123456789abcdef0123456789abcdef",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJqYW5lIn0.",
    "10.24.0.0/16",
    "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    "4111\u{200b}1111\u{200b}1111\u{200b}1111",
    "cust_4111111111111111",
    // National phone formats without a country code (found by the numbering plans), and a
    // 1Password Secret Key.
    "020 7946 0958",
    "8 (495) 123-45-67",
    "A3-K7Q2ZP-9MXT4B-QW3RT-8HJ2L-5NV6C-X1Y9D",
];

/// A token the model produces on its own.
const INVENTED: &str = "ghp_9z8Y7x6W5v4U3t2S1r0Q9p8O7n6M5l4K3j2I";

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log_record_or_stored_byte() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let redis_url = std::env::var("WARDEN_TEST_REDIS_URL").ok();
    let prefix = format!(
        "warden-leak-{}-{}:",
        std::process::id(),
        warden_core::time::unix_millis()
    );
    // The agents' database holds personal data too (outside Warden's data folder).
    let dbdir = tempfile::tempdir().unwrap();
    let db = dbdir.path().join("people.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, ssn TEXT, iban TEXT);
         INSERT INTO people VALUES (1, 'jane.doe@example.com', '123-45-6789', 'DE89370400440532013000');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    // A write agent whose previews hold those rows, with a webhook that hears of them.
    let hook = MockUpstream::start().await;
    let keys = tempfile::tempdir().unwrap();
    let alice = crate::approvals::keygen(keys.path(), "alice");
    let mut extra = format!(
        "[redaction.keys.strict]\nCREDIT_CARD = \"block\"\n\
         [databases.hr]\nkind = \"sqlite\"\npath = \"{}\"\ntables = [\"people\"]\nwritable_tables = [\"people\"]\n\
         [agents.clerk]\nsystem_prompt = \"You look people up.\"\nmodel = \"fast\"\n\
         tools = [\"sql_query\"]\ndatabases = [\"hr\"]\n\
         [agents.editor]\nsystem_prompt = \"You fix records.\"\nmodel = \"fast\"\npermissions = \"read-write\"\n\
         tools = [\"sql_execute\"]\ndatabases = [\"hr\"]\nwebhook_url_env = \"LEAK_HOOK\"\n\
         [approvers.alice]\npublic_key = \"{alice}\"\ntools = [\"sql_execute\"]\n\
         [cache]\nenabled = true\n",
        db.display()
    );
    if redis_url.is_some() {
        extra += &format!(
            "backend = \"redis\"\n[redis]\nurl_env = \"WARDEN_REDIS_URL\"\nkey_prefix = \"{prefix}\"\n"
        );
    } else {
        eprintln!(
            "note: WARDEN_TEST_REDIS_URL unset: the leak test caches in memory and cannot scan Redis"
        );
    }
    let mut env = KEYS_ENV.to_vec();
    env.push(("RUST_LOG", "debug"));
    let hook_url = format!("{}/chat/completions", hook.base_url());
    env.push(("LEAK_HOOK", &hook_url));
    if let Some(url) = &redis_url {
        env.push(("WARDEN_REDIS_URL", url));
    }
    let mut w = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &extra), &env);
    let key = w.create_key("leaks", &[]);
    let strict = w.create_key("strict", &[]);
    // A bare password cannot be recognised; in a connection string it can.
    let all = SECRETS
        .iter()
        .map(|s| {
            if *s == "s3cr3t-P4ss" {
                "postgres://u:s3cr3t-P4ss@db/x"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(" and ");
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", w.url);
    let chat = json!({"model": "fast", "messages": [
        {"role": "system", "content": format!("Context: {all}")},
        {"role": "user", "name": "jane.doe@example.com", "content": [{"type": "text", "text": all.clone()}]},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": json!({"dsn": "postgres://u:s3cr3t-P4ss@db/x", "ssn": "123-45-6789"}).to_string()}}]},
        {"role": "tool", "tool_call_id": "c", "content": all.clone()},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://img.example/x.png?owner=jane.doe@example.com"}}]},
    ],
    // Fields no list of content fields would name: every string is scanned.
    "tools": [{"type": "function", "function": {"name": "lookup", "description": format!("Look up {all}"),
        "parameters": {"type": "object", "properties": {"who": {"type": "string", "default": "jane.doe@example.com", "description": all.clone()}}}}}],
    "metadata": {"note": all.clone()},
    "user": "jane.doe@example.com",
    "stop": ["123-45-6789"],
    });
    // Echoed back (restored for the client), streamed (a cache hit, replayed), and a secret
    // the model invents.
    assert_eq!(
        http.post(&url)
            .bearer_auth(&key)
            .json(&chat)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    let text = http
        .post(&url)
        .bearer_auth(&key)
        .json(&stream)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("jane.doe@example.com"),
        "the client gets its own data back"
    );
    // A value the client itself sent comes back to it; one the model invents does not.
    a.push([Reply::Text(format!("here: {INVENTED}"))]);
    let invented = http
        .post(&url)
        .bearer_auth(&key)
        .header("cache-control", "no-cache")
        .json(&chat)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !invented.contains(INVENTED) && invented.contains("<GITHUB_TOKEN_2>"),
        "{invented}"
    );
    let embed = json!({"model": "fast", "input": [all.clone()]});
    assert_eq!(
        http.post(format!("{}/v1/embeddings", w.url))
            .bearer_auth(&key)
            .json(&embed)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let blocked = http
        .post(&url)
        .bearer_auth(&strict)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 400);
    assert!(!blocked.text().await.unwrap().contains("4111"));

    // An agent: secrets in its task, and in the rows its tool reads; streamed and not.
    a.push([
        Reply::ToolCall {
            name: "sql_query".into(),
            arguments: json!({"database": "hr", "sql": "SELECT email, ssn, iban FROM people"})
                .to_string(),
        },
        Reply::Text("Found <EMAIL_1>, <US_SSN_1> and <IBAN_1>.".into()),
    ]);
    for stream in [false, true] {
        if stream {
            a.push([
                Reply::ToolCall {
                    name: "sql_query".into(),
                    arguments: json!({"database": "hr", "sql": "SELECT email FROM people"})
                        .to_string(),
                },
                Reply::Text("Found <EMAIL_1>.".into()),
            ]);
        }
        let r = http
            .post(format!("{}/v1/agents/clerk/c1/messages", w.url))
            .bearer_auth(&key)
            .json(&json!({"content": format!("Look up {all}"), "stream": stream}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("jane.doe@example.com"),
            "the user gets the rows' values: {text}"
        );
    }

    // A write: its preview (the rows before and after) is stored, journalled, sent to the
    // webhook and shown redacted; approved, it runs, and its result is stored redacted too.
    let admin = w.create_key("leaks-admin", &["--admin"]);
    a.clear();
    a.push([
        Reply::ToolCall {
            name: "sql_execute".into(),
            arguments:
                json!({"database": "hr", "sql": "UPDATE people SET iban = 'none' WHERE id = 1"})
                    .to_string(),
        },
        Reply::Text("Done.".into()),
    ]);
    let out: serde_json::Value = http
        .post(format!("{}/v1/agents/editor/e1/messages", w.url))
        .bearer_auth(&key)
        .json(&json!({"content": "touch record 1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["result"], "awaiting_approval", "{out}");
    let id = crate::approvals::awaited_approval(&out);
    let get = |path: String, bearer: String| {
        let req = http.get(format!("{}{path}", w.url)).bearer_auth(bearer);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let shown = get(format!("/v1/approvals/{id}"), admin.clone()).await;
    assert!(
        shown.contains("<EMAIL_"),
        "the preview is there, masked: {shown}"
    );
    // The real values only through the live view, computed again for an admin.
    let live = get(format!("/v1/approvals/{id}/preview"), admin.clone()).await;
    assert!(
        live.contains("jane.doe@example.com") && live.contains("\"matches_stored_preview\":true"),
        "{live}"
    );
    assert!(
        get(format!("/v1/approvals/{id}/preview"), key.clone())
            .await
            .contains("admin_required")
    );
    let approval: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let signing = warden_tools::approval::parse_private_key(
        &std::fs::read_to_string(keys.path().join("alice.key")).unwrap(),
    )
    .unwrap();
    let m = crate::approvals::message(&approval, warden_tools::approval::Decision::Approve);
    let r = http
        .post(format!("{}/v1/approvals/{id}/decision", w.url))
        .bearer_auth(&admin)
        .json(
            &json!({"approver": "alice", "decision": "approve", "signature": m.sign(&signing),
                      "comment": "fine for jane.doe@example.com"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut done = String::new();
    for _ in 0..100 {
        done = get(format!("/v1/approvals/{id}"), admin.clone()).await;
        if done.contains("\"state\":\"succeeded\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done.contains("\"state\":\"succeeded\""), "{done}");
    let history = get("/v1/agents/editor/e1/history".into(), key.clone()).await;
    assert!(history.contains("\"kind\":\"approval\""), "{history}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notes: Vec<String> = hook.requests().iter().map(|r| r.body.to_string()).collect();
    assert!(
        notes.iter().any(|n| n.contains("approval_requested")),
        "{notes:?}"
    );
    let shown_everywhere = [
        ("approval API", shown),
        ("approval API after", done),
        ("history API", history),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t))
    .chain(notes.into_iter().map(|n| ("webhook".to_owned(), n)));
    let shown_everywhere: Vec<(String, String)> = shown_everywhere.collect();
    for (name, text) in &shown_everywhere {
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{secret} shown in the {name}: {text}"
            );
        }
    }

    // What reached the provider, the agent's model calls included.
    let upstream: String = a.requests().iter().map(|r| r.body.to_string()).collect();
    let reached: Vec<&&str> = SECRETS.iter().filter(|s| upstream.contains(**s)).collect();
    assert!(reached.is_empty(), "{reached:?} reached the provider");

    tokio::time::sleep(Duration::from_millis(1200)).await; // key events copied
    w.signal("TERM");
    assert_eq!(
        tokio::task::block_in_place(|| w.wait_exit(Duration::from_secs(10))),
        Some(0)
    );
    let logs = w.logs();
    assert!(logs.contains("DEBUG"), "debug logging was on");
    let mut files = Vec::new();
    files_under(&w.data_dir, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("audit-store")),
        "{files:?}"
    );
    let mut scanned = vec![("warden log".to_owned(), logs.into_bytes())];
    if let Some(url) = &redis_url {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            keys.iter().any(|k| k.contains(":cache:")),
            "answers were cached: {keys:?}"
        );
        for k in keys {
            let value: Vec<u8> = redis::cmd("GET")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
            scanned.push((format!("redis {k}"), value));
        }
    }
    for f in files {
        scanned.push((f.display().to_string(), std::fs::read(&f).unwrap()));
    }
    for (name, bytes) in &scanned {
        let text = String::from_utf8_lossy(bytes);
        for secret in SECRETS.iter().chain([&INVENTED]) {
            assert!(!text.contains(secret), "{secret} found in {name}");
        }
    }
}
