//! THE SCRIPTED DEMO MODEL. Not an LLM: a few lines of rules that let `warden demo` show the
//! whole agent flow on a machine with no API key. It speaks the OpenAI chat completions
//! protocol on a loopback port; given a question and the `sql_query` tool, it picks one of a
//! handful of SQL statements by keywords, and given the tool's rows it words them as an
//! answer. Every answer it writes starts with `[demo model]`. With `OPENAI_API_KEY` set, the
//! demo uses a real model instead and this is not started.

use axum::Json;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// The model name the demo configuration uses for it.
pub const MODEL: &str = "warden-demo-scripted";

/// Starts the scripted model on a free loopback port; returns its address.
pub async fn start() -> std::io::Result<SocketAddr> {
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route(
            "/v1/models",
            get(|| async { Json(json!({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "warden-demo"}]})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// The SQL the scripted model picks for a question.
pub fn sql_for(question: &str) -> &'static str {
    let q = question.to_lowercase();
    if q.contains("salar") || q.contains("payroll") {
        "SELECT employee, salary FROM payroll"
    } else if q.contains("spent") || q.contains("best customer") || q.contains("top customer") {
        "SELECT c.name, c.email, SUM(o.total) AS spent FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY spent DESC LIMIT 3"
    } else if q.contains("product") || q.contains("sell") {
        "SELECT p.name, SUM(o.quantity) AS units FROM products p JOIN orders o ON o.product_id = p.id GROUP BY p.id ORDER BY units DESC LIMIT 5"
    } else if q.contains("status") || q.contains("processing") || q.contains("shipped") {
        "SELECT status, COUNT(*) AS orders FROM orders GROUP BY status ORDER BY orders DESC"
    } else if q.contains("customer") {
        "SELECT COUNT(*) AS customers FROM customers"
    } else {
        "SELECT COUNT(*) AS orders, SUM(total) AS revenue FROM orders"
    }
}

/// The write the scripted model proposes for a request to change an order, if it is one.
pub fn write_for(question: &str) -> Option<String> {
    let q = question.to_lowercase();
    if !(q.contains("cancel") || q.contains("update") || q.contains("mark")) {
        return None;
    }
    let id: String = q
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .unwrap_or("12")
        .to_owned();
    Some(format!(
        "UPDATE orders SET status = 'cancelled' WHERE id = {id}"
    ))
}

/// Words the rows of a `sql_query` result (or its error) as an answer.
pub fn answer_for(tool_result: &str) -> String {
    let v: Value = serde_json::from_str(tool_result).unwrap_or(Value::Null);
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        if err.starts_with("denied") {
            return format!("[demo model] The change was not made: {err}.");
        }
        return format!("[demo model] Warden refused that query, so I cannot answer: {err}");
    }
    if let Some(n) = v.get("rows_affected") {
        return format!(
            "[demo model] Done: the order is cancelled ({n} row changed, after a human approved it)."
        );
    }
    let rows: Vec<String> = v["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            row.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| match v {
                            Value::String(s) => format!("{k} {s}"),
                            other => format!("{k} {other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        })
        .collect();
    if rows.is_empty() {
        return "[demo model] The query returned no rows.".into();
    }
    format!(
        "[demo model] From the shop database (one validated, read-only SQL query): {}.",
        rows.join("; ")
    )
}

fn tokens(text: &str) -> usize {
    text.len().div_ceil(4).max(1)
}

async fn chat(body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let has_tools = req["tools"].as_array().is_some_and(|t| !t.is_empty());
    let prompt_tokens: usize = messages.iter().map(|m| tokens(&m.to_string())).sum();
    let (message, finish, completion) = if last["role"] == "tool" {
        let text = answer_for(last["content"].as_str().unwrap_or_default());
        let n = tokens(&text);
        (json!({"role": "assistant", "content": text}), "stop", n)
    } else if has_tools && last["role"] == "user" {
        let question = last["content"].as_str().unwrap_or_default();
        let offers = |name: &str| {
            req["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == name))
        };
        let (tool, sql) = match write_for(question) {
            Some(sql) if offers("sql_execute") => ("sql_execute", sql),
            _ => ("sql_query", sql_for(question).to_owned()),
        };
        let arguments = json!({"database": "shop", "sql": sql}).to_string();
        let n = tokens(&arguments);
        let call = json!({"id": format!("call_demo_{}", messages.len()), "type": "function",
                          "function": {"name": tool, "arguments": arguments}});
        (
            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            "tool_calls",
            n,
        )
    } else {
        let text = "[demo model] I am Warden's scripted demo model, not a real LLM. Ask the demo agent a question about the shop, or set OPENAI_API_KEY for a real model.".to_owned();
        let n = tokens(&text);
        (json!({"role": "assistant", "content": text}), "stop", n)
    };
    let completion = json!({
        "id": format!("chatcmpl-demo-{}", warden_core::time::unix_millis()),
        "object": "chat.completion",
        "created": warden_core::time::unix_secs(),
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                  "total_tokens": prompt_tokens + completion},
    });
    if req["stream"] == true {
        let mut chunk = completion.clone();
        chunk["object"] = "chat.completion.chunk".into();
        chunk["choices"][0]["delta"] = chunk["choices"][0]["message"].take();
        let usage = chunk["usage"].take();
        let body = format!(
            "data: {chunk}\n\ndata: {}\n\ndata: [DONE]\n\n",
            json!({"id": completion["id"], "object": "chat.completion.chunk", "model": MODEL, "choices": [], "usage": usage})
        );
        return ([("content-type", "text/event-stream")], body).into_response();
    }
    Json(completion).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_sql_by_keywords_and_words_rows() {
        assert!(sql_for("Which customers have spent the most?").contains("SUM(o.total)"));
        assert!(sql_for("What are the salaries?").contains("payroll"));
        assert!(sql_for("best selling product").contains("units"));
        let a = answer_for(r#"{"rows":[{"name":"Ada","spent":1226.0}],"row_count":1}"#);
        assert!(
            a.starts_with("[demo model]") && a.contains("name Ada, spent 1226.0"),
            "{a}"
        );
        let refused = answer_for(r#"{"error":"refused (table_not_allowed): no"}"#);
        assert!(refused.contains("refused"), "{refused}");
    }
}
