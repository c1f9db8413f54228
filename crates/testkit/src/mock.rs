//! The mock upstream. Replies are taken from a FIFO queue the test fills; when it is empty the
//! mock echoes the last user message, so load tests and smoke tests need no script.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A chat completion with this text (streamed word by word if the request streams).
    Text(String),
    /// A chat completion calling one tool (streamed in two argument pieces if streaming).
    ToolCall {
        /// Function name.
        name: String,
        /// JSON arguments, as a string.
        arguments: String,
    },
    /// An error status with an OpenAI-shaped body and optional `retry-after`.
    Status {
        /// HTTP status.
        status: u16,
        /// Value of `retry-after`, if any.
        retry_after: Option<String>,
        /// Error message in the body.
        message: String,
    },
    /// A 200 whose body is not JSON.
    Malformed,
    /// A stream of these text pieces, `delay` apart, then `[DONE]`.
    Stream {
        /// Content deltas.
        pieces: Vec<String>,
        /// Pause before each piece.
        delay: Duration,
    },
    /// A stream that sends `pieces` and then resets the connection.
    StreamReset {
        /// Content deltas sent before the reset.
        pieces: Vec<String>,
    },
    /// A stream that sends `pieces` and ends cleanly but without `[DONE]`.
    StreamTruncated {
        /// Content deltas.
        pieces: Vec<String>,
    },
    /// Waits, then gives the inner reply.
    Delay(Duration, Box<Reply>),
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Parsed JSON body (`Null` for GET).
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Recorded>>,
    record: bool,
}

/// A running mock upstream on 127.0.0.1; stops when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    inner: Arc<Inner>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl MockUpstream {
    /// Starts a mock on a free port, recording every request.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), true).await
    }

    /// Starts a mock on `addr`; `record` keeps every request for assertions (off for load).
    pub async fn start_on(addr: SocketAddr, record: bool) -> Self {
        let inner = Arc::new(Inner {
            record,
            ..Default::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind mock");
        let addr = listener.local_addr().expect("addr");
        // Like real providers, send each small SSE write at once (no Nagle delay).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            inner,
            _shutdown: tx,
        }
    }

    /// Base URL to configure as a provider, e.g. `http://127.0.0.1:4321/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues replies, answered in order.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.queue.lock().expect("lock").extend(replies);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.seen.lock().expect("lock").clone()
    }

    /// Drops the scripted replies not used yet.
    pub fn clear(&self) {
        self.inner.queue.lock().expect("lock").clear();
    }

    /// How many requests were received.
    pub fn hits(&self) -> usize {
        self.inner.seen.lock().expect("lock").len()
    }
}

fn record(inner: &Inner, path: &str, headers: &HeaderMap, body: &Value) {
    if inner.record {
        inner.seen.lock().expect("lock").push(Recorded {
            path: path.into(),
            headers: headers.clone(),
            body: body.clone(),
        });
    }
}

fn next_reply(inner: &Inner) -> Option<Reply> {
    inner.queue.lock().expect("lock").pop_front()
}

async fn chat(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&inner, "/v1/chat/completions", &headers, &body);
    let reply = next_reply(&inner).unwrap_or_else(|| default_reply(&body));
    answer(reply, &body).await
}

/// With no script: call the first tool offered (arguments echo the prompt), else echo.
fn default_reply(body: &Value) -> Reply {
    let first_tool = body["tools"][0]["function"]["name"].as_str();
    match first_tool {
        Some(name) if body["tool_choice"] != "none" => Reply::ToolCall {
            name: name.to_owned(),
            arguments: json!({"echo": echo(body)}).to_string(),
        },
        _ => Reply::Text(echo(body)),
    }
}

fn echo(body: &Value) -> String {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    format!("echo: {last}")
}

fn answer(reply: Reply, req: &Value) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>> {
    let req = req.clone();
    Box::pin(async move {
        let model = req["model"].as_str().unwrap_or("mock").to_owned();
        let stream = req["stream"].as_bool().unwrap_or(false);
        let usage_chunk = req["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        match reply {
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                answer(*inner, &req).await
            }
            Reply::Status {
                status,
                retry_after,
                message,
            } => {
                let mut resp = (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    axum::Json(
                        json!({"error": {"message": message, "type": "mock_error", "code": null}}),
                    ),
                )
                    .into_response();
                if let Some(ra) = retry_after {
                    resp.headers_mut()
                        .insert("retry-after", ra.parse().expect("header"));
                }
                resp
            }
            Reply::Malformed => (
                [("content-type", "application/json")],
                "{\"id\": \"chatcmpl-broken\", \"choices\": [",
            )
                .into_response(),
            Reply::Text(text) if stream => {
                let pieces = text.split_inclusive(' ').map(String::from).collect();
                sse(&model, pieces, None, Duration::ZERO, End::Done, usage_chunk)
            }
            Reply::Text(text) => axum::Json(completion(
                &model,
                json!({"role": "assistant", "content": text}),
                "stop",
                &text,
            ))
            .into_response(),
            Reply::ToolCall { name, arguments } if stream => sse(
                &model,
                Vec::new(),
                Some((name, arguments)),
                Duration::ZERO,
                End::Done,
                usage_chunk,
            ),
            Reply::ToolCall { name, arguments } => {
                let message = json!({"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_mock_1", "type": "function",
                    "function": {"name": name, "arguments": arguments}}]});
                axum::Json(completion(&model, message, "tool_calls", &arguments)).into_response()
            }
            Reply::Stream { pieces, delay } => {
                sse(&model, pieces, None, delay, End::Done, usage_chunk)
            }
            Reply::StreamReset { pieces } => sse(
                &model,
                pieces,
                None,
                Duration::ZERO,
                End::Reset,
                usage_chunk,
            ),
            Reply::StreamTruncated { pieces } => sse(
                &model,
                pieces,
                None,
                Duration::ZERO,
                End::Truncated,
                usage_chunk,
            ),
        }
    })
}

fn usage(text: &str) -> Value {
    let completion = text.split_whitespace().count().max(1);
    json!({"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion})
}

fn completion(model: &str, message: Value, finish: &str, text: &str) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": usage(text),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum End {
    Done,
    Reset,
    Truncated,
}

fn chunk(model: &str, delta: Value, finish: Option<&str>, with_usage_field: bool) -> Bytes {
    let mut c = json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
    });
    if with_usage_field {
        c["usage"] = Value::Null;
    }
    Bytes::from(format!("data: {c}\n\n"))
}

fn sse(
    model: &str,
    pieces: Vec<String>,
    tool: Option<(String, String)>,
    delay: Duration,
    end: End,
    usage_chunk: bool,
) -> Response {
    // A reset with nothing to send fails before the first byte, like a provider that dies at once.
    let mut events: Vec<Bytes> = if end == End::Reset && pieces.is_empty() {
        Vec::new()
    } else {
        vec![chunk(
            model,
            json!({"role": "assistant", "content": ""}),
            None,
            usage_chunk,
        )]
    };
    let mut all_text = String::new();
    for p in &pieces {
        all_text.push_str(p);
        events.push(chunk(model, json!({"content": p}), None, usage_chunk));
    }
    if let Some((name, args)) = &tool {
        let mid = args.len() / 2;
        let mid = (0..=mid)
            .rev()
            .find(|i| args.is_char_boundary(*i))
            .unwrap_or(0);
        events.push(chunk(
            model,
            json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function",
            "function": {"name": name, "arguments": &args[..mid]}}]}),
            None,
            usage_chunk,
        ));
        events.push(chunk(
            model,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": &args[mid..]}}]}),
            None,
            usage_chunk,
        ));
        all_text.push_str(args);
    }
    if end == End::Done {
        let finish = if tool.is_some() { "tool_calls" } else { "stop" };
        events.push(chunk(model, json!({}), Some(finish), usage_chunk));
        if usage_chunk {
            let u = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": model, "choices": [], "usage": usage(&all_text)});
            events.push(Bytes::from(format!("data: {u}\n\n")));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
    let stream = async_stream(events, delay, end == End::Reset);
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn async_stream(
    events: Vec<Bytes>,
    delay: Duration,
    reset: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for e in events {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        if reset {
            // Give the client time to receive what was sent, then abort the body.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn embeddings(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&inner, "/v1/embeddings", &headers, &body);
    if let Some(reply) = next_reply(&inner) {
        return answer(reply, &body).await;
    }
    let inputs = match &body["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let vector = [0.25f32, -0.5, 1.0];
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    axum::Json(
        json!({"object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": 4, "total_tokens": 4}}),
    )
    .into_response()
}

async fn models(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    record(&inner, "/v1/models", &headers, &Value::Null);
    axum::Json(json!({"object": "list", "data": [
        {"id": "mock-large", "object": "model", "created": 0, "owned_by": "mock"},
        {"id": "mock-small", "object": "model", "created": 0, "owned_by": "mock"},
    ]}))
    .into_response()
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(super::base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64_encode(b"fo"), "Zm8=");
        assert_eq!(super::base64_encode(b"f"), "Zg==");
    }
}
