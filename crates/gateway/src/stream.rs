//! Streaming answers. Upstream SSE is parsed event by event and each event is forwarded as soon
//! as it arrives. The stream is handed to the client only once the first event has arrived,
//! so a provider that fails before that can still be retried or replaced. After that, a
//! failure (connection reset, idle timeout, end without `[DONE]`) ends the client's stream
//! with an OpenAI-style error event, never as a silently truncated success.

use crate::pipeline::Kind;
use crate::sse::{self, Parser};
use crate::usage::{self, Usage};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::oneshot;
use warden_redact::Exchange;

/// A streaming answer: the bytes to send, and a summary delivered when it ends.
pub struct ChatStream {
    /// SSE bytes, framed and ready to send.
    pub body: BoxStream<'static, Bytes>,
    /// Fires once the stream has ended, however it ended (client gone included).
    pub summary: oneshot::Receiver<StreamSummary>,
    /// Redaction counts known when the stream starts (the request's), for the header.
    pub redactions: std::collections::BTreeMap<String, u32>,
}

/// How a stream ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamSummary {
    /// Token counts from the final usage chunk.
    pub usage: Option<Usage>,
    /// True if the stream reached `[DONE]`.
    pub completed: bool,
    /// Why it ended early, if it did (safe to log: no content).
    pub failure: Option<String>,
    /// Redaction counts by type at the end (request and answer).
    pub redactions: std::collections::BTreeMap<String, u32>,
    /// Budget counters charged, once settled.
    pub spent: crate::Spent,
    /// Dollars, when the model has a price and usage was reported.
    pub cost_usd: Option<f64>,
    /// The whole answer as a `chat.completion`, masked but with the request's placeholders
    /// kept: only when the stream completed and the call asked for it (to be cached).
    pub(crate) answer: Option<Bytes>,
}

struct State {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: Parser,
    ready: VecDeque<Bytes>,
    idle_timeout: Duration,
    include_usage: bool,
    model: String,
    summary: StreamSummary,
    summary_tx: Option<oneshot::Sender<StreamSummary>>,
    finished: bool,
    /// Masks what the model produces and restores placeholders, event by event.
    exchange: Option<Exchange>,
    /// Rebuilds the whole answer for the cache, when the call will store it.
    assembler: Option<crate::assemble::Assembler>,
}

/// Reads until the first event, then returns the stream. `Err` means nothing usable arrived.
pub(crate) async fn open(
    resp: reqwest::Response,
    idle_timeout: Duration,
    include_usage: bool,
    model: &str,
    exchange: &mut Option<Exchange>,
    collect_answer: bool,
) -> Result<ChatStream, Kind> {
    let (tx, rx) = oneshot::channel();
    let mut state = State {
        upstream: resp.bytes_stream().boxed(),
        parser: Parser::default(),
        ready: VecDeque::new(),
        idle_timeout,
        include_usage,
        model: model.to_owned(),
        summary: StreamSummary::default(),
        summary_tx: Some(tx),
        finished: false,
        exchange: None,
        assembler: collect_answer.then(Default::default),
    };
    let mut first = Vec::new();
    while first.is_empty() {
        match tokio::time::timeout(idle_timeout, state.upstream.next()).await {
            Err(_) => return Err(Kind::Timeout),
            Ok(None) => return Err(Kind::Malformed),
            Ok(Some(Err(_))) => return Err(Kind::Connect),
            Ok(Some(Ok(chunk))) => {
                first.extend(state.parser.feed(&chunk).map_err(|_| Kind::Malformed)?)
            }
        }
    }
    // Committed to this upstream: the exchange moves into the stream (a failed attempt
    // leaves it for the next target).
    state.exchange = exchange.take();
    let redactions = crate::redaction::totals(&state.exchange);
    for data in first {
        state.accept(data);
    }
    // Once a stream is handed out, its summary is what tells how it went; dropping the
    // state before that (client gone) still sends one, from `Drop`.
    let body = futures_util::stream::unfold(state, |mut s| async move {
        let out = s.next_output().await?;
        Some((out, s))
    })
    .boxed();
    Ok(ChatStream {
        body,
        summary: rx,
        redactions,
    })
}

impl State {
    /// Parses a chunk and queues what should be forwarded.
    fn take(&mut self, chunk: &[u8]) -> Result<(), sse::TooLarge> {
        for data in self.parser.feed(chunk)? {
            self.accept(data);
        }
        Ok(())
    }

    /// Queues one event's data for the client: counts its usage, drops the usage chunk the
    /// client did not ask for, and passes it through redaction.
    fn accept(&mut self, data: Bytes) {
        if &data[..] == b"[DONE]" {
            // Anything redaction still holds goes out before the end.
            if let Some(rest) = self.exchange.as_mut().and_then(Exchange::chat_stream_end) {
                self.ready.push_back(sse::frame(&rest));
            }
            self.summary.completed = true;
            self.ready.push_back(sse::frame(&data));
            return;
        }
        if let Some(a) = self.assembler.as_mut() {
            a.push(&data);
        }
        if has_usage_object(&data)
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data)
            && let Some(u) = v.get("usage").filter(|u| u.is_object())
        {
            if let Ok(u) = serde_json::from_value::<Usage>(u.clone()) {
                self.summary.usage = Some(u);
            }
            let usage_only = v
                .get("choices")
                .and_then(|c| c.as_array())
                .is_some_and(|c| c.is_empty());
            if usage_only && !self.include_usage {
                return;
            }
        }
        match self.exchange.as_mut().and_then(|x| x.chat_chunk(&data)) {
            Some(redacted) => self.ready.push_back(sse::frame(&redacted)),
            None => self.ready.push_back(sse::frame(&data)),
        }
    }

    /// The next bytes for the client, or `None` when the stream is over.
    async fn next_output(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some(b);
            }
            if self.finished || self.summary.completed {
                self.finish();
                return None;
            }
            let failure = match tokio::time::timeout(self.idle_timeout, self.upstream.next()).await
            {
                Ok(Some(Ok(chunk))) => match self.take(&chunk) {
                    Ok(()) => continue,
                    Err(_) => "upstream sent an oversized event",
                },
                Ok(Some(Err(_))) => "upstream connection failed mid-stream",
                Ok(None) => "upstream ended the stream before [DONE]",
                Err(_) => "upstream stream went idle past the timeout",
            };
            tracing::warn!(reason = failure, "stream interrupted");
            metrics::counter!("warden_stream_interruptions_total").increment(1);
            self.summary.failure = Some(failure.to_owned());
            self.finished = true;
            return Some(error_event(failure));
        }
    }

    fn finish(&mut self) {
        if let Some(tx) = self.summary_tx.take() {
            if let Some(u) = &self.summary.usage {
                usage::record_tokens(&self.model, u);
            }
            if self.summary.completed
                && let Some(answer) = self.assembler.take().and_then(|a| a.finish())
            {
                // Model-produced values masked, the request's placeholders kept.
                let masked = self
                    .exchange
                    .as_mut()
                    .and_then(|x| x.mask_chat_answer(&answer))
                    .unwrap_or(answer);
                self.summary.answer = Some(masked.into());
            }
            if let Some(x) = &self.exchange {
                crate::redaction::record_answer(x);
                self.summary.redactions = x.totals();
            }
            let _ = tx.send(self.summary.clone());
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if self.summary_tx.is_some() && !self.summary.completed && self.summary.failure.is_none() {
            self.summary.failure = Some("client disconnected".into());
        }
        self.finish();
    }
}

/// Whether an event carries a `"usage": {…}` object. With usage requested upstream every
/// chunk has `"usage": null`; only the final one needs parsing, so look before parsing.
fn has_usage_object(data: &[u8]) -> bool {
    memchr::memmem::find_iter(data, b"\"usage\"").any(|at| {
        let rest = &data[at + 7..];
        let rest = rest.trim_ascii_start();
        rest.strip_prefix(b":")
            .is_some_and(|r| r.trim_ascii_start().starts_with(b"{"))
    })
}

/// The event that ends a broken stream; the OpenAI SDKs raise it as an API error.
fn error_event(message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "message": message,
            "type": "api_error",
            "param": null,
            "code": "upstream_stream_interrupted",
        }
    });
    sse::frame(body.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::has_usage_object;

    #[test]
    fn only_usage_objects_are_worth_parsing() {
        assert!(has_usage_object(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(has_usage_object(br#"{"usage" :  {"prompt_tokens":1}}"#));
        assert!(!has_usage_object(
            br#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#
        ));
        assert!(!has_usage_object(
            br#"{"content":"the word \"usage\" in text"}"#
        ));
    }
}
