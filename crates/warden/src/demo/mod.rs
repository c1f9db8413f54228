//! `warden demo`: Warden on its embedded defaults with a sample company database (customers,
//! products, orders in SQLite), a demo agent allowed to read it, and, without an API key, the
//! clearly labelled scripted demo model (see `model.rs`). It asks the agent one question,
//! prints each step as it happens, then prints what to try next and keeps serving.

mod model;

use crate::cli::{DemoArgs, Global, ServeArgs};
use crate::settings::Failure;
use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The question the demo asks first.
const QUESTION: &str = "Which customers have spent the most, and how do I reach them?";
/// The write it asks for next.
const WRITE: &str = "Please cancel order 12.";
/// The demo's approver.
const APPROVER: &str = "demo-approver";

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// Creates the sample database if it is not there yet.
async fn shop(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("demo-shop.db");
    if path.exists() {
        return Ok(path);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .context("create the demo database")?;
    sqlx::raw_sql(include_str!("shop.sql"))
        .execute(&pool)
        .await
        .context("fill the demo database")?;
    pool.close().await;
    Ok(path)
}

fn config_text(
    dir: &Path,
    db: &Path,
    listen: &str,
    provider: &str,
    model: &str,
    approver_key: &str,
) -> String {
    format!(
        r#"# Written by `warden demo`.
deployment = "demo"
[server]
listen = "{listen}"
[store]
data_dir = "{dir}"
{provider}
[databases.shop]
kind = "sqlite"
path = "{db}"
tables = ["customers", "products", "orders"]
writable_tables = ["orders"]
max_rows = 50
[agents.analyst]
system_prompt = "You are the shop's data analyst. Answer questions about customers, products and orders by reading the shop database with the sql_query tool (SQLite). To change an order, propose one UPDATE with sql_execute: a human approves it first. Be brief."
model = "{model}"
permissions = "read-write"
tools = ["sql_query", "sql_execute"]
databases = ["shop"]
max_steps = 6
step_timeout = "60s"
[approvers.{APPROVER}]
public_key = "{approver_key}"
tools = ["sql_execute"]
"#,
        dir = dir.display(),
        db = db.display(),
    )
}

/// Runs the demo.
pub async fn run(global: &Global, args: DemoArgs) -> Result<(), Failure> {
    let dir = global
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("warden-demo"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().context("data directory")?;
    let db = shop(&dir).await?;
    let real = env_nonempty("OPENAI_API_KEY").is_some();
    let (provider, model_name) = if real {
        let base =
            env_nonempty("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".into());
        (
            format!(
                "[providers.openai]\nbase_url = \"{base}\"\napi_key_env = \"OPENAI_API_KEY\"\n[routing]\ndefault_provider = \"openai\""
            ),
            args.model.clone().unwrap_or_else(|| "gpt-4o-mini".into()),
        )
    } else {
        let addr = model::start()
            .await
            .context("start the scripted demo model")?;
        (
            format!(
                "[providers.demo-model]\nbase_url = \"http://{addr}/v1\"\n[routing]\ndefault_provider = \"demo-model\""
            ),
            model::MODEL.to_owned(),
        )
    };
    let listen = args
        .listen
        .map_or_else(|| "127.0.0.1:8787".to_owned(), |a| a.to_string());
    let key_file = dir.join(format!("{APPROVER}.key"));
    let approver_key = if key_file.exists() {
        std::fs::read_to_string(dir.join(format!("{APPROVER}.pub")))
            .context("read the demo approver's public key")?
            .trim()
            .to_owned()
    } else {
        crate::approvals_cmd::write_keypair(APPROVER, &dir)?.2
    };
    let config_path = dir.join("demo.toml");
    std::fs::write(
        &config_path,
        config_text(&dir, &db, &listen, &provider, &model_name, &approver_key),
    )
    .context("write the demo configuration")?;
    let demo_global = Global {
        config: Some(config_path.clone()),
        data_dir: Some(dir.clone()),
    };
    let stamp = warden_core::time::unix_secs();
    let key = crate::keys_cmd::create_quietly(
        &demo_global,
        &format!("demo-{stamp}"),
        false,
        &["analyst"],
    )
    .await?;
    let admin =
        crate::keys_cmd::create_quietly(&demo_global, &format!("demo-admin-{stamp}"), true, &[])
            .await?;
    let server = tokio::spawn(async move {
        let global = demo_global;
        crate::serve::run(&global, ServeArgs { listen: None }).await
    });
    let url = format!("http://{listen}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if server.is_finished() {
            break;
        }
        if http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        return match server.await {
            Ok(Err(e)) => Err(e),
            _ => Err(Failure::Runtime(anyhow::anyhow!(
                "the demo server did not start on {listen}"
            ))),
        };
    }
    println!();
    println!("Warden demo: {url}  (data in {})", dir.display());
    if real {
        println!("Model: {model_name} via OpenAI (OPENAI_API_KEY is set).");
    } else {
        println!(
            "Model: the SCRIPTED DEMO MODEL: a few rules, not an LLM. Set OPENAI_API_KEY for a real one."
        );
    }
    println!("Demo key (printed once; Warden stores only its hash): {key}");
    println!();
    // A new agent each run: an agent belongs to the key that created it.
    let agent = format!("analyst/demo-{stamp}");
    println!("Asking the agent {agent}: {QUESTION}");
    if let Err(e) = ask(&http, &url, &agent, &key, QUESTION).await {
        println!("  the demo question failed: {e}");
    }
    println!();
    println!("Asking it to change data: {WRITE}");
    match ask(&http, &url, &agent, &key, WRITE).await {
        Ok(done) if done["result"] == "awaiting_approval" => {
            if let Err(e) = approve(&http, &url, &agent, &key, &admin, &dir, &done).await {
                println!("  the approval step failed: {e}");
            }
        }
        Ok(done) => println!("  (no write was proposed: {})", done["result"]),
        Err(e) => println!("  the demo write failed: {e}"),
    }
    print_next(&url, &agent, &key, &admin, &dir);
    match server.await {
        Ok(result) => result,
        Err(e) => Err(Failure::Runtime(anyhow::anyhow!(
            "the server task failed: {e}"
        ))),
    }
}

/// Shows the waiting approval, signs it as the demo approver (what `warden approve` does),
/// and prints how the agent finished.
async fn approve(
    http: &reqwest::Client,
    url: &str,
    agent: &str,
    key: &str,
    admin: &str,
    dir: &Path,
    done: &Value,
) -> anyhow::Result<()> {
    let id = done["reason"]
        .as_str()
        .and_then(|r| r.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    let a: Value = get_json(http, format!("{url}/v1/approvals/{id}"), admin).await?;
    println!("  Waiting for a human: approval {id}");
    println!(
        "    statement: {}",
        a["preview"]["statement"].as_str().unwrap_or("?")
    );
    println!(
        "    rows that would change: {}",
        a["preview"]["rows_affected"]
    );
    println!("    before: {}", a["preview"]["before"]);
    println!("    after:  {}", a["preview"]["after"]);
    let key_file = dir.join(format!("{APPROVER}.key"));
    println!(
        "  Signing it as `{APPROVER}`, as this command does:\n    warden approve {id} --approver {APPROVER} --key {} --url {url} --api-key <admin key>",
        key_file.display()
    );
    let remote = crate::cli::Remote {
        url: url.to_owned(),
        api_key: Some(admin.to_owned()),
    };
    crate::approvals_cmd::decide(
        remote,
        id.clone(),
        APPROVER.to_owned(),
        key_file,
        warden_tools::approval::Decision::Approve,
        Some("approved in the demo".into()),
    )
    .await
    .map_err(|e| match e {
        Failure::Config(m) => anyhow::anyhow!(m),
        Failure::Runtime(e) => e,
    })?;
    for _ in 0..100 {
        let state: Value = get_json(http, format!("{url}/v1/agents/{agent}"), key).await?;
        if state["status"] != "awaiting_approval" && state["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a: Value = get_json(http, format!("{url}/v1/approvals/{id}"), admin).await?;
    println!(
        "  The write ran once: approval {} ({})",
        a["state"].as_str().unwrap_or("?"),
        a["result"]
    );
    let history: Value = get_json(
        http,
        format!("{url}/v1/agents/{agent}/history?limit=500"),
        key,
    )
    .await?;
    if let Some(answer) = history["data"]
        .as_array()
        .and_then(|s| s.iter().rev().find(|s| s["kind"] == "answer"))
    {
        println!(
            "  [model] {}",
            answer["data"]["content"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// GETs a Warden API path with a bearer key and reads the JSON body, whatever the status.
async fn get_json(http: &reqwest::Client, url: String, key: &str) -> anyhow::Result<Value> {
    Ok(http.get(url).bearer_auth(key).send().await?.json().await?)
}

/// Sends the question with `stream: true`, prints each event, and returns the `done` event.
async fn ask(
    http: &reqwest::Client,
    url: &str,
    agent: &str,
    key: &str,
    question: &str,
) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{url}/v1/agents/{agent}/messages"))
        .bearer_auth(key)
        .json(&json!({"content": question, "stream": true}))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut last = Value::Null;
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let mut lines = event.lines();
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .unwrap_or("");
            let data: Value = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            match name {
                "state" => println!("  [state] {}", data["status"].as_str().unwrap_or("?")),
                "tool_call" => {
                    let args: Value =
                        serde_json::from_str(data["arguments"].as_str().unwrap_or("{}"))
                            .unwrap_or(Value::Null);
                    println!(
                        "  [tool]  {} ({}): {}",
                        data["tool"].as_str().unwrap_or("?"),
                        data["classification"].as_str().unwrap_or("?"),
                        args["sql"].as_str().unwrap_or_default()
                    );
                }
                "tool_result" => println!(
                    "  [tool]  -> {}: {}",
                    data["outcome"].as_str().unwrap_or("?"),
                    data["summary"].as_str().unwrap_or_default()
                ),
                "model_text" => {
                    println!("  [model] {}", data["content"].as_str().unwrap_or_default())
                }
                "done" => {
                    println!(
                        "  [done]  {} after {} model steps, {} tokens",
                        data["result"].as_str().unwrap_or("?"),
                        data["model_steps"],
                        data["tokens_used"]
                    );
                    last = data.clone();
                }
                "error" => println!(
                    "  [error] {}",
                    data["error"]["message"].as_str().unwrap_or("?")
                ),
                _ => {}
            }
        }
    }
    Ok(last)
}

fn print_next(url: &str, agent: &str, key: &str, admin: &str, dir: &Path) {
    println!();
    println!("Try next (the server keeps running; Ctrl-C stops it):");
    println!("  # another question (the demo model knows products, order status, customers)");
    println!(
        "  curl -s {url}/v1/agents/{agent}/messages -H 'Authorization: Bearer {key}' -d '{{\"content\": \"Which products sell best?\"}}'"
    );
    println!("  # a question that needs a table the agent may not read: Warden refuses the SQL");
    println!(
        "  curl -s {url}/v1/agents/{agent}/messages -H 'Authorization: Bearer {key}' -d '{{\"content\": \"What are the salaries in payroll?\"}}'"
    );
    println!("  # the agent's state and its journal of steps");
    println!("  curl -s {url}/v1/agents/{agent} -H 'Authorization: Bearer {key}'");
    println!("  curl -s {url}/v1/agents/{agent}/history -H 'Authorization: Bearer {key}'");
    println!("  # another write: it waits for a signed approval (the admin key reads approvals)");
    println!(
        "  curl -s {url}/v1/agents/{agent}/messages -H 'Authorization: Bearer {key}' -d '{{\"content\": \"Please cancel order 11.\"}}'"
    );
    println!(
        "  WARDEN_API_KEY={admin} cargo run -q --release -p warden -- approvals list --url {url}"
    );
    println!(
        "  WARDEN_API_KEY={admin} cargo run -q --release -p warden -- approve APPROVAL_ID --approver {APPROVER} --key {}/{APPROVER}.key --url {url}",
        dir.display()
    );
    println!("  # the OpenAI-compatible gateway itself");
    println!(
        "  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {key}' -d '{{\"model\": \"any\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'"
    );
    println!("  # the tamper-evident audit log of all of it");
    println!(
        "  cargo run -q --release -p warden -- --data-dir {} audit search --limit 5",
        dir.display()
    );
    println!();
}
