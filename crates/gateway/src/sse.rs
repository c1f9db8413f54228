//! A small Server-Sent Events parser over a byte stream, enough for OpenAI-style streams:
//! `data:` fields joined by newlines, events ended by a blank line, comments and other fields
//! ignored, `\n` and `\r\n` line endings. Chunk boundaries may fall anywhere, even inside a
//! UTF-8 character or a `\r\n`; the result does not depend on them (property-tested).

use bytes::{Bytes, BytesMut};

/// Largest event accepted; a longer one is a protocol error, not a reason to eat memory.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Incremental parser: feed chunks, take complete events' data.
#[derive(Default)]
pub struct Parser {
    buf: BytesMut,
    data: Vec<u8>,
    has_data: bool,
}

/// What the parser found wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

impl Parser {
    /// Adds bytes and returns the data of every event they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(pos) = memchr::memchr(b'\n', &self.buf) {
            let mut line = self.buf.split_to(pos + 1);
            line.truncate(pos);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if line.is_empty() {
                if self.has_data {
                    events.push(Bytes::from(std::mem::take(&mut self.data)));
                    self.has_data = false;
                }
                continue;
            }
            if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            // Comments (`:`), `event:`, `id:`, `retry:` carry nothing OpenAI streams need.
        }
        if self.buf.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(TooLarge);
        }
        Ok(events)
    }
}

/// Frames one event's data for sending: `data: …\n\n` (multi-line data gets one field a line).
pub fn frame(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 8);
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Bytes> {
        let mut p = Parser::default();
        chunks.iter().flat_map(|c| p.feed(c).unwrap()).collect()
    }

    #[test]
    fn parses_openai_style_events() {
        let events = parse_all(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(
            events,
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"[DONE]")
            ]
        );
    }

    #[test]
    fn joins_multiline_data_and_ignores_comments_and_other_fields() {
        let events = parse_all(&[b": keep-alive\r\nevent: x\r\ndata: a\r\ndata:b\r\n\r\n"]);
        assert_eq!(events, vec![Bytes::from_static(b"a\nb")]);
    }

    #[test]
    fn an_unterminated_event_is_partial_not_emitted() {
        let mut p = Parser::default();
        assert!(p.feed(b"data: {\"a\":").unwrap().is_empty());
        assert_eq!(
            p.feed(b"1}\n\n").unwrap(),
            vec![Bytes::from_static(b"{\"a\":1}")]
        );
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut p = Parser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.feed(&big), Err(TooLarge));
    }

    #[test]
    fn frame_round_trips_through_the_parser() {
        let framed = frame(b"line1\nline2");
        assert_eq!(
            parse_all(&[&framed]),
            vec![Bytes::from_static(b"line1\nline2")]
        );
    }

    proptest! {
        #[test]
        fn events_do_not_depend_on_chunk_boundaries(
            datas in proptest::collection::vec("[a-z{}\":, \u{e9}\u{1f600}]{0,40}", 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            crlf in any::<bool>(),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let whole: String = datas.iter().map(|d| format!("data: {d}{nl}{nl}")).collect();
            let bytes = whole.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points { chunks.push(&bytes[last..p]); last = p; }
            chunks.push(&bytes[last..]);
            let expected: Vec<Bytes> = datas.iter().map(|d| Bytes::from(d.clone())).collect();
            prop_assert_eq!(parse_all(&chunks), expected);
        }
    }
}
