//! `warden serve`, the CLI and an agent on the PostgreSQL store (this machine's server).

use crate::{KEYS_ENV, bin, chat_body, two_provider_config};
use serde_json::Value;
use std::time::Duration;
use warden_testkit::{MockUpstream, WardenProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keys_usage_and_agents_run_on_postgres() {
    let Ok(url) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "WARDEN_TEST_POSTGRES_URL must be set in CI"
        );
        eprintln!(
            "\n*** SKIPPED the PostgreSQL end-to-end test: set WARDEN_TEST_POSTGRES_URL ***\n"
        );
        return;
    };
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let schema = format!(
        "we2e_{}_{}",
        std::process::id(),
        warden_core::time::unix_millis()
    );
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let extra = format!(
        "[store]\nbackend = \"postgres\"\npostgres_schema = \"{schema}\"\n[budgets]\nkey_daily_tokens = 100000\n\
         [databases.shop]\nkind = \"sqlite\"\npath = \"{}\"\ntables = [\"orders\"]\n\
         [agents.analyst]\nsystem_prompt = \"You count.\"\nmodel = \"fast\"\ntools = [\"sql_query\"]\ndatabases = [\"shop\"]\n",
        db.display()
    );
    let mut env = KEYS_ENV.to_vec();
    env.push(("WARDEN_POSTGRES_URL", &url));
    let w = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &extra), &env);
    let key = w.create_key("pg-app", &[]);
    let admin = w.create_key("pg-admin", &["--admin"]);
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http
            .post(format!("{}/v1/chat/completions", w.url))
            .bearer_auth(&key)
            .json(&chat_body("fast"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report: Value = http
        .get(format!("{}/v1/usage?group_by=key", w.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["data"][0]["name"], "pg-app", "{report}");
    assert_eq!(report["data"][0]["requests"], 3, "{report}");
    let (code, out, err) = w.cli(&["keys", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pg-app") && out.contains("pg-admin"), "{out}");
    // Nothing went to SQLite: the data folder holds no warden.db.
    assert!(!w.data_dir.join("warden.db").exists());
    // And the rows are in PostgreSQL, in the configured schema.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let sql = format!("SELECT COUNT(*) FROM {schema}.usage");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let sql = format!("SELECT COALESCE(SUM(tokens), 0)::BIGINT FROM {schema}.budget_counters");
    let spent: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(spent > 0);
    // An agent on the PostgreSQL store: its state and journal live there.
    a.push([
        warden_testkit::Reply::ToolCall {
            name: "sql_query".into(),
            arguments:
                serde_json::json!({"database": "shop", "sql": "SELECT COUNT(*) AS n FROM orders"})
                    .to_string(),
        },
        warden_testkit::Reply::Text("3 orders.".into()),
    ]);
    let out: Value = http
        .post(format!("{}/v1/agents/analyst/pg/messages", w.url))
        .bearer_auth(&key)
        .json(&serde_json::json!({"content": "How many orders?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["answer"], "3 orders.", "{out}");
    let sql = format!(
        "SELECT string_agg(kind, ',' ORDER BY seq) FROM {schema}.agent_steps WHERE agent_id = 'analyst/pg'"
    );
    let kinds: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kinds, "task,model,tool,model,answer");
    let drop = format!("DROP SCHEMA {schema} CASCADE");
    drop_after(w, &pool, drop).await;
}

async fn drop_after(w: WardenProcess, pool: &sqlx::PgPool, sql: String) {
    drop(w);
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await;
}
