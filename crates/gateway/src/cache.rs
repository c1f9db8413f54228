//! The exact-match response cache. The key is a BLAKE3 hash of the request *after*
//! redaction (endpoint, the model that will answer, and every body field that can change the
//! output, objects hashed with sorted keys), scoped to the virtual key unless configured
//! otherwise, so the cache holds no raw personal data and one key's hits reveal nothing about
//! another's traffic. Stored answers are masked but not restored: placeholders are put back
//! for each request that hits.
//!
//! Only complete, successful answers are stored. A hit on a streaming request is replayed as
//! a valid SSE stream. In process (moka: per-entry TTL, a byte bound, TinyLFU admission) or in
//! Redis (shared by every node); a Redis failure is a miss, never an error.

use crate::shared::{SharedRedis, without_url};
use crate::{Endpoint, Usage};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_config::{Backend, CacheConfig};

/// How a request met the cache (the `x-warden-cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from the cache.
    Hit,
    /// Looked up, not found; the answer may be stored.
    Miss,
    /// Not looked up (`cache-control: no-cache`, or caching is off for this key or model).
    Bypass,
}

impl CacheStatus {
    /// `HIT`, `MISS` or `BYPASS`.
    pub fn header(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// `hit`, `miss` or `bypass` (usage rows, audit records).
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// What the client allowed (`cache-control` request header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheControl {
    /// Look for a stored answer (`no-cache` turns it off).
    pub lookup: bool,
    /// Store this answer (`no-store` turns it off).
    pub store: bool,
}

impl Default for CacheControl {
    fn default() -> Self {
        Self {
            lookup: true,
            store: true,
        }
    }
}

impl CacheControl {
    /// Parses a `cache-control` header value (`no-cache`, `no-store`, comma-separated).
    pub fn parse(header: Option<&str>) -> Self {
        let mut c = Self::default();
        for d in header.unwrap_or("").split(',') {
            match d.trim().to_ascii_lowercase().as_str() {
                "no-cache" => c.lookup = false,
                "no-store" => c.store = false,
                _ => {}
            }
        }
        c
    }
}

/// A stored answer.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The answer body, masked, placeholders intact.
    pub(crate) body: Bytes,
    /// The usage the original call reported.
    pub(crate) usage: Option<Usage>,
    /// Provider and model that produced it.
    pub(crate) provider: String,
    pub(crate) upstream_model: String,
    ttl: Duration,
}

/// A cache key.
pub(crate) type Key = [u8; 32];

pub(crate) struct ResponseCache {
    config: CacheConfig,
    store: Store,
}

enum Store {
    Memory(moka::future::Cache<Key, Arc<Entry>>),
    Redis(SharedRedis),
}

struct PerEntryTtl;

impl moka::Expiry<Key, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _: &Key, value: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Body fields that do not change the answer: how it is delivered, and the model field (the
/// resolved model is hashed instead).
const NOT_IN_KEY: [&str; 4] = ["model", "stream", "stream_options", "user"];

impl ResponseCache {
    pub(crate) fn new(config: &CacheConfig, shared: Option<&SharedRedis>) -> Result<Self, String> {
        let store = match (config.backend, shared) {
            (Backend::Memory, _) => Store::Memory(
                moka::future::Cache::builder()
                    .max_capacity(config.max_bytes)
                    .weigher(|_, e: &Arc<Entry>| {
                        u32::try_from(e.body.len() + 256).unwrap_or(u32::MAX)
                    })
                    .expire_after(PerEntryTtl)
                    .build(),
            ),
            (Backend::Redis, Some(s)) => Store::Redis(s.clone()),
            (Backend::Redis, None) => {
                return Err("cache.backend = \"redis\" but Redis is not connected".into());
            }
        };
        Ok(Self {
            config: config.clone(),
            store,
        })
    }

    /// The TTL for this key and model, or `None` when caching is off for them.
    pub(crate) fn ttl(&self, key_name: &str, model: &str) -> Option<Duration> {
        if !self.config.enabled {
            return None;
        }
        let ttl = self
            .config
            .key_ttl
            .get(key_name)
            .or_else(|| self.config.model_ttl.get(model))
            .copied()
            .unwrap_or(self.config.ttl);
        (!ttl.is_zero()).then_some(ttl)
    }

    /// The key of a redacted request.
    pub(crate) fn key(
        &self,
        endpoint: Endpoint,
        key_id: &str,
        model: &str,
        body: &Map<String, Value>,
    ) -> Key {
        let mut h = blake3::Hasher::new();
        h.update(b"warden-cache-v1\0");
        h.update(endpoint.label().as_bytes());
        h.update(b"\0");
        if !self.config.shared_across_keys {
            h.update(key_id.as_bytes());
        }
        h.update(b"\0");
        h.update(model.as_bytes());
        h.update(b"\0");
        let mut fields: Vec<(&String, &Value)> = body
            .iter()
            .filter(|(k, _)| !NOT_IN_KEY.contains(&k.as_str()))
            .collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in fields {
            hash_str(&mut h, k);
            hash_value(&mut h, v);
        }
        *h.finalize().as_bytes()
    }

    pub(crate) async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        match &self.store {
            Store::Memory(c) => c.get(key).await,
            Store::Redis(shared) => {
                let mut conn = shared.conn.clone();
                let name = shared.key(&format!("cache:{}", hex::encode(key)));
                let got: redis::RedisResult<Option<Vec<u8>>> =
                    redis::cmd("GET").arg(&name).query_async(&mut conn).await;
                match got {
                    Ok(Some(bytes)) => decode(&bytes).map(Arc::new),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %without_url(&e), "cache lookup failed; treated as a miss");
                        None
                    }
                }
            }
        }
    }

    pub(crate) async fn put(
        &self,
        key: Key,
        body: Bytes,
        usage: Option<Usage>,
        provider: String,
        upstream_model: String,
        ttl: Duration,
    ) {
        let entry = Entry {
            body,
            usage,
            provider,
            upstream_model,
            ttl,
        };
        match &self.store {
            Store::Memory(c) => c.insert(key, Arc::new(entry)).await,
            Store::Redis(shared) => {
                let mut conn = shared.conn.clone();
                let name = shared.key(&format!("cache:{}", hex::encode(key)));
                let put: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&name)
                    .arg(encode(&entry))
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = put {
                    tracing::warn!(error = %without_url(&e), "could not store an answer in the cache");
                }
            }
        }
    }
}

fn hash_str(h: &mut blake3::Hasher, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

/// Hashes a JSON value with object keys in sorted order and a tag per type, so two requests
/// hash alike exactly when they are the same JSON whatever their field order.
fn hash_value(h: &mut blake3::Hasher, v: &Value) {
    match v {
        Value::Null => {
            h.update(b"n");
        }
        Value::Bool(b) => {
            h.update(if *b { b"t" } else { b"f" });
        }
        Value::Number(n) => {
            h.update(b"#");
            hash_str(h, &n.to_string());
        }
        Value::String(s) => {
            h.update(b"s");
            hash_str(h, s);
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update(&(a.len() as u64).to_le_bytes());
            for x in a {
                hash_value(h, x);
            }
        }
        Value::Object(o) => {
            h.update(b"{");
            h.update(&(o.len() as u64).to_le_bytes());
            let mut fields: Vec<(&String, &Value)> = o.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            for (k, x) in fields {
                hash_str(h, k);
                hash_value(h, x);
            }
        }
    }
}

/// Redis value: a JSON header line, then the body bytes.
fn encode(e: &Entry) -> Vec<u8> {
    let header = serde_json::json!({
        "p": e.usage.and_then(|u| u.prompt_tokens),
        "c": e.usage.and_then(|u| u.completion_tokens),
        "k": e.usage.and_then(|u| u.cached_tokens),
        "u": e.usage.is_some(),
        "provider": e.provider,
        "model": e.upstream_model,
        "ttl": e.ttl.as_millis() as u64,
    });
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(&e.body);
    out
}

fn decode(bytes: &[u8]) -> Option<Entry> {
    let split = memchr::memchr(b'\n', bytes)?;
    let header: Value = serde_json::from_slice(&bytes[..split]).ok()?;
    let usage = header["u"].as_bool()?.then(|| Usage {
        prompt_tokens: header["p"].as_i64(),
        completion_tokens: header["c"].as_i64(),
        cached_tokens: header["k"].as_i64(),
    });
    Some(Entry {
        body: Bytes::copy_from_slice(&bytes[split + 1..]),
        usage,
        provider: header["provider"].as_str()?.to_owned(),
        upstream_model: header["model"].as_str()?.to_owned(),
        ttl: Duration::from_millis(header["ttl"].as_u64()?),
    })
}

/// The top-level fields a completion and its chunks share.
pub(crate) const HEAD_FIELDS: [&str; 5] = [
    "id",
    "created",
    "model",
    "system_fingerprint",
    "service_tier",
];

/// A complete chat answer as Server-Sent Events: one chunk per choice with the whole message
/// as its delta, one with its `finish_reason`, the usage chunk if asked, then `[DONE]`.
pub(crate) fn replay_as_sse(body: &[u8], include_usage: bool) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choices = v.get("choices")?.as_array()?;
    let base = |choices: Value| {
        let mut chunk = Map::new();
        for f in HEAD_FIELDS {
            if let Some(x) = v.get(f).filter(|x| !x.is_null()) {
                chunk.insert(f.into(), x.clone());
            }
        }
        chunk.insert("object".into(), "chat.completion.chunk".into());
        chunk.insert("choices".into(), choices);
        Value::Object(chunk)
    };
    let mut out = Vec::new();
    let mut event = |chunk: &Value| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(chunk).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
    };
    for (i, c) in choices.iter().enumerate() {
        let index = c.get("index").cloned().unwrap_or_else(|| i.into());
        let mut delta = Map::new();
        delta.insert("role".into(), "assistant".into());
        if let Some(message) = c.get("message").and_then(Value::as_object) {
            for (k, x) in message {
                match k.as_str() {
                    "role" => {}
                    "tool_calls" => {
                        let calls: Vec<Value> = x
                            .as_array()
                            .into_iter()
                            .flatten()
                            .enumerate()
                            .map(|(j, call)| {
                                let mut call = call.clone();
                                if let Some(o) = call.as_object_mut() {
                                    o.insert("index".into(), j.into());
                                }
                                call
                            })
                            .collect();
                        delta.insert(k.clone(), Value::Array(calls));
                    }
                    _ if !x.is_null() => {
                        delta.insert(k.clone(), x.clone());
                    }
                    _ => {}
                }
            }
        }
        event(&base(serde_json::json!([{
            "index": index, "delta": delta, "logprobs": null, "finish_reason": null
        }])));
        let finish = c.get("finish_reason").cloned().unwrap_or(Value::Null);
        event(&base(serde_json::json!([{
            "index": index, "delta": {}, "logprobs": null, "finish_reason": finish
        }])));
    }
    if include_usage && let Some(u) = v.get("usage") {
        let mut chunk = base(serde_json::json!([]));
        if let Some(o) = chunk.as_object_mut() {
            o.insert("usage".into(), u.clone());
        }
        event(&chunk);
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Some(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(shared_across_keys: bool) -> ResponseCache {
        let config = CacheConfig {
            enabled: true,
            backend: Backend::Memory,
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
            shared_across_keys,
            model_ttl: [("slow".to_string(), Duration::ZERO)].into(),
            key_ttl: [("batch".to_string(), Duration::from_secs(3600))].into(),
        };
        ResponseCache::new(&config, None).unwrap()
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keys_are_stable_and_sensitive() {
        let c = cache(false);
        let k = |b: Value| c.key(Endpoint::ChatCompletions, "key1", "gpt", &body(b));
        let base = k(
            serde_json::json!({"model":"a","messages":[{"role":"user","content":"hi"}],"temperature":0}),
        );
        // Field order, delivery and the model field as sent do not matter ...
        assert_eq!(
            base,
            k(
                serde_json::json!({"temperature":0,"stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"hi","role":"user"}],"model":"b"})
            )
        );
        // ... every parameter that changes the answer does.
        for changed in [
            serde_json::json!({"messages":[{"role":"user","content":"hi!"}],"temperature":0}),
            serde_json::json!({"messages":[{"role":"user","content":"hi"}],"temperature":1}),
            serde_json::json!({"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5}),
            serde_json::json!({"messages":[{"role":"user","content":"hi"}],"temperature":0,"tools":[]}),
            serde_json::json!({"messages":[{"role":"user","content":"hi"}],"temperature":0.0}),
        ] {
            assert_ne!(base, k(changed.clone()), "{changed}");
        }
        let b = body(serde_json::json!({"messages":[]}));
        assert_ne!(
            c.key(Endpoint::ChatCompletions, "key1", "gpt", &b),
            c.key(Endpoint::ChatCompletions, "key2", "gpt", &b),
            "keys do not share answers by default"
        );
        assert_ne!(
            c.key(Endpoint::ChatCompletions, "key1", "gpt", &b),
            c.key(Endpoint::ChatCompletions, "key1", "gpt-mini", &b),
        );
        let shared = cache(true);
        assert_eq!(
            shared.key(Endpoint::ChatCompletions, "key1", "gpt", &b),
            shared.key(Endpoint::ChatCompletions, "key2", "gpt", &b),
        );
    }

    #[test]
    fn ttl_per_key_beats_per_model_and_zero_turns_it_off() {
        let c = cache(false);
        assert_eq!(c.ttl("app", "gpt"), Some(Duration::from_secs(60)));
        assert_eq!(c.ttl("app", "slow"), None);
        assert_eq!(c.ttl("batch", "slow"), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn cache_control_directives() {
        assert_eq!(CacheControl::parse(None), CacheControl::default());
        let c = CacheControl::parse(Some("No-Cache, no-store"));
        assert!(!c.lookup && !c.store);
        let c = CacheControl::parse(Some("max-age=0, no-store"));
        assert!(c.lookup && !c.store);
    }

    #[tokio::test]
    async fn entries_expire_by_their_own_ttl() {
        let c = cache(false);
        c.put(
            [1; 32],
            Bytes::from_static(b"{}"),
            None,
            "p".into(),
            "m".into(),
            Duration::from_millis(50),
        )
        .await;
        assert!(c.get(&[1; 32]).await.is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(c.get(&[1; 32]).await.is_none());
    }

    #[test]
    fn redis_values_round_trip() {
        let e = Entry {
            body: Bytes::from_static(b"{\"a\":\n1}"),
            usage: Some(Usage {
                prompt_tokens: Some(3),
                completion_tokens: Some(4),
                cached_tokens: None,
            }),
            provider: "p".into(),
            upstream_model: "m".into(),
            ttl: Duration::from_secs(5),
        };
        let d = decode(&encode(&e)).unwrap();
        assert_eq!((d.body, d.usage, d.ttl), (e.body, e.usage, e.ttl));
    }

    #[test]
    fn replays_an_answer_as_chunks() {
        let answer = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        let sse = replay_as_sse(answer, true).unwrap();
        let text = std::str::from_utf8(&sse).unwrap();
        let events: Vec<&str> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap())
            .collect();
        assert_eq!(events.len(), 4);
        let first: Value = serde_json::from_str(events[0]).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["content"], "hi");
        assert_eq!(first["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        let second: Value = serde_json::from_str(events[1]).unwrap();
        assert_eq!(second["choices"][0]["finish_reason"], "tool_calls");
        let usage: Value = serde_json::from_str(events[2]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], 3);
        assert_eq!(events[3], "[DONE]");
        assert!(
            !std::str::from_utf8(&replay_as_sse(answer, false).unwrap())
                .unwrap()
                .contains("total_tokens")
        );
    }
}
