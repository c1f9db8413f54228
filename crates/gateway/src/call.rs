//! A client request, parsed once: the fields the gateway needs are checked, every other field
//! is kept as it came and forwarded untouched.

use crate::Error;
use serde_json::{Map, Value};
use warden_redact::Redacted;

/// The OpenAI endpoints the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// Short name for metrics and usage rows.
    pub fn label(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Embeddings => "embeddings",
        }
    }
}

/// A parsed request.
#[derive(Debug)]
pub struct Call {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The model name as the client sent it.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for the final usage chunk of a stream.
    pub include_usage: bool,
    /// Who asks, and how they allow the cache to be used.
    pub caller: Caller,
    pub(crate) body: Map<String, Value>,
    /// The body's size as received (bytes of JSON): how much CPU work it is (`cpu.rs`).
    pub(crate) body_len: usize,
    /// Whether a streamed answer should be rebuilt whole (for the cache).
    pub(crate) collect_answer: bool,
}

/// Who a call is for: the request id, the virtual key, and the end user and session the
/// client named. Limits, budgets, the cache and redaction policy are chosen by these.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The request id, sent upstream as `x-request-id`.
    pub request_id: String,
    /// Id of the virtual key (limits, budgets and the cache are per key id).
    pub key_id: String,
    /// Name of the virtual key (per-key settings are by name).
    pub key_name: String,
    /// The end user (`x-warden-user`).
    pub user: Option<String>,
    /// The session (`x-warden-session`).
    pub session: Option<String>,
    /// What the client allowed the cache to do.
    pub cache: crate::CacheControl,
}

impl Call {
    /// Parses a JSON body. Errors name the problem (JSON position, missing or mistyped field).
    pub fn parse(endpoint: Endpoint, body: &[u8], caller: Caller) -> Result<Self, Error> {
        let body_len = body.len();
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            Error::InvalidRequest(format!("the request body is not valid JSON: {e}"))
        })?;
        let Value::Object(body) = value else {
            return Err(Error::InvalidRequest(
                "the request body must be a JSON object".into(),
            ));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() && m.len() <= 256 => m.clone(),
            Some(Value::String(_)) => {
                return Err(Error::InvalidRequest(
                    "`model` must be 1 to 256 characters".into(),
                ));
            }
            Some(_) => return Err(Error::InvalidRequest("`model` must be a string".into())),
            None => return Err(Error::InvalidRequest("`model` is required".into())),
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Error::InvalidRequest("`stream` must be a boolean".into())),
        };
        match endpoint {
            Endpoint::ChatCompletions => match body.get("messages") {
                Some(Value::Array(m)) if !m.is_empty() => {}
                Some(Value::Array(_)) => {
                    return Err(Error::InvalidRequest("`messages` must not be empty".into()));
                }
                Some(_) => return Err(Error::InvalidRequest("`messages` must be an array".into())),
                None => return Err(Error::InvalidRequest("`messages` is required".into())),
            },
            Endpoint::Embeddings => {
                if stream {
                    return Err(Error::InvalidRequest(
                        "embeddings cannot be streamed".into(),
                    ));
                }
                if body.get("input").is_none_or(Value::is_null) {
                    return Err(Error::InvalidRequest("`input` is required".into()));
                }
            }
        }
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            endpoint,
            model,
            stream,
            include_usage,
            caller,
            body,
            body_len,
            collect_answer: false,
        })
    }
}

/// The body to send to one target: the redacted client body, with the target's model name,
/// and for streams the final usage chunk requested (so usage is always counted; it is removed
/// again if the client did not ask for it). Only a `Redacted` body can be sent.
pub(crate) fn upstream_body(
    body: &mut Redacted<Map<String, Value>>,
    upstream_model: &str,
    stream: bool,
) -> Vec<u8> {
    body.set_routing_field("model", Value::String(upstream_model.to_owned()));
    if stream {
        let mut options = match body.get().get("stream_options") {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        body.set_routing_field("stream_options", Value::Object(options));
    }
    serde_json::to_vec(body.get()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Call, Error> {
        Call::parse(
            Endpoint::ChatCompletions,
            body.as_bytes(),
            Caller::default(),
        )
    }

    /// The call's body through a redactor that allows everything.
    fn redacted(call: &mut Call) -> Redacted<Map<String, Value>> {
        use warden_redact::{Action, Detector, Policy, Redactor};
        let allow = Policy::new(Action::Allow, Default::default());
        let r = Redactor::new(
            Detector::new(&[]).unwrap(),
            allow,
            Default::default(),
            true,
            false,
        );
        r.exchange("k")
            .chat_request(std::mem::take(&mut call.body))
            .unwrap()
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            parse("{")
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
        assert!(parse("[]").unwrap_err().to_string().contains("JSON object"));
        assert!(
            parse(r#"{"messages":[{}]}"#)
                .unwrap_err()
                .to_string()
                .contains("`model` is required")
        );
        assert!(
            parse(r#"{"model":1,"messages":[{}]}"#)
                .unwrap_err()
                .to_string()
                .contains("string")
        );
        assert!(
            parse(r#"{"model":"m"}"#)
                .unwrap_err()
                .to_string()
                .contains("`messages`")
        );
        assert!(parse(r#"{"model":"m","messages":[{}],"stream":"yes"}"#).is_err());
        let e =
            Call::parse(Endpoint::Embeddings, br#"{"model":"m"}"#, Caller::default()).unwrap_err();
        assert!(e.to_string().contains("`input`"));
    }

    #[test]
    fn unknown_fields_are_forwarded_and_model_is_replaced() {
        let mut call = parse(
            r#"{"model":"smart","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}],"x_new_feature":{"a":1}}"#,
        )
        .unwrap();
        let out: Value =
            serde_json::from_slice(&upstream_body(&mut redacted(&mut call), "gpt-4o", false))
                .unwrap();
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["x_new_feature"]["a"], 1);
        assert_eq!(out["tools"][0]["type"], "function");
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn streams_always_ask_upstream_for_usage_but_remember_the_client_choice() {
        let mut call = parse(r#"{"model":"m","messages":[{}],"stream":true}"#).unwrap();
        assert!(call.stream && !call.include_usage);
        let out: Value =
            serde_json::from_slice(&upstream_body(&mut redacted(&mut call), "m", true)).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
        let call = parse(
            r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(call.include_usage);
    }
}
