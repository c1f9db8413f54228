//! `data:` URLs and raw base64 media fields (RFC 2397: `data:[<media type>][;base64],<data>`).
//!
//! The header (media type and parameters, which may name a file or a person) is scanned as
//! text. The payload is decoded (base64 or percent-encoding) and, if its bytes are text, scanned
//! and masked, then encoded again the same way: bytes that are valid UTF-8 are text whatever
//! the declared type, and a textual type (`text/*`, JSON, XML, CSV, YAML…) whose bytes are not
//! UTF-8 is read as Latin-1 (each byte one character; the detectors look for ASCII). Any other
//! payload (an image, a PDF, audio) is binary no text detector can read, and is passed as it
//! came. A payload that is not valid base64 although the URL says it is, is scanned as text.

use super::{Ctx, Visit};

/// The longest header taken for one (a `data:` text with a longer one is plain text).
const MAX_HEADER: usize = 256;
/// How much of a binary-typed payload is decoded to see whether it is text.
const SNIFF: usize = 1024;

/// A `data:` URL, split.
pub(super) struct DataUrl<'a> {
    /// `data:` as written (any case).
    scheme: &'a str,
    /// Between `data:` and the first `,`.
    header: &'a str,
    base64: bool,
    payload: &'a str,
}

impl<'a> DataUrl<'a> {
    /// `s` as a `data:` URL, if it is one: its header must look like a media type and its
    /// parameters (no white space, at most [`MAX_HEADER`] bytes).
    pub(super) fn parse(s: &'a str) -> Option<Self> {
        let scheme = s.get(..5).filter(|p| p.eq_ignore_ascii_case("data:"))?;
        let rest = &s[5..];
        let comma = rest.find(',')?;
        let header = &rest[..comma];
        if header.len() > MAX_HEADER || !header.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let base64 = header
            .get(header.len().saturating_sub(7)..)
            .is_some_and(|t| t.eq_ignore_ascii_case(";base64"));
        Some(Self {
            scheme,
            header,
            base64,
            payload: &rest[comma + 1..],
        })
    }

    /// The URL with its header and payload as the visitor changed them, or `None`.
    pub(super) fn rewrite(&self, visit: &mut dyn Visit) -> Option<String> {
        let header = if self.header.is_empty() {
            None
        } else {
            visit.text(self.header, Ctx::default())
        };
        let textual = is_textual(self.header);
        let payload = if self.base64 {
            base64_payload(self.payload, textual, visit)
        } else {
            percent_payload(self.payload, textual, visit)
        };
        if header.is_none() && payload.is_none() {
            return None;
        }
        Some(format!(
            "{}{},{}",
            self.scheme,
            header.as_deref().unwrap_or(self.header),
            payload.as_deref().unwrap_or(self.payload)
        ))
    }
}

/// A raw base64 media field (`input_audio.data`, a `file_data` without a `data:` prefix): its
/// type is unknown, so its bytes decide.
pub(super) fn raw_base64(s: &str, visit: &mut dyn Visit) -> Option<String> {
    base64_payload(s, false, visit)
}

/// Whether a header's media type is text (an empty one is `text/plain`).
fn is_textual(header: &str) -> bool {
    let media = header.split(';').next().unwrap_or("").to_ascii_lowercase();
    if media.is_empty() || media.starts_with("text/") || media.starts_with("message/") {
        return true;
    }
    let Some(sub) = media.strip_prefix("application/") else {
        return media.ends_with("+xml") || media.ends_with("+json");
    };
    const TEXT_SUBTYPES: &[&str] = &[
        "json",
        "xml",
        "csv",
        "yaml",
        "x-yaml",
        "toml",
        "javascript",
        "ecmascript",
        "sql",
        "x-sh",
        "x-ndjson",
        "ndjson",
        "jsonl",
        "x-jsonlines",
        "markdown",
        "x-www-form-urlencoded",
        "graphql",
        "rtf",
        "x-tex",
        "x-latex",
        "xhtml+xml",
    ];
    TEXT_SUBTYPES.contains(&sub)
        || [".json", "+json", "+xml", "+yaml"]
            .iter()
            .any(|suffix| sub.ends_with(suffix))
}

/// Text decoded from bytes, remembering how, so it can be encoded back.
enum Decoded {
    Utf8(String),
    Latin1(String),
}

impl Decoded {
    /// `bytes` as text: UTF-8 if they are, else Latin-1 if `textual`, else `None` (binary).
    fn new(bytes: Vec<u8>, textual: bool) -> Option<Self> {
        match String::from_utf8(bytes) {
            Ok(s) => Some(Self::Utf8(s)),
            Err(e) if textual => Some(Self::Latin1(
                e.into_bytes().into_iter().map(char::from).collect(),
            )),
            Err(_) => None,
        }
    }

    fn text(&self) -> &str {
        match self {
            Self::Utf8(s) | Self::Latin1(s) => s,
        }
    }

    /// The masked text as bytes of the same encoding (placeholders are ASCII; a character
    /// Latin-1 cannot hold, which masking never adds, makes the whole text UTF-8).
    fn encode(&self, masked: String) -> Vec<u8> {
        match self {
            Self::Latin1(_) if masked.chars().all(|c| u32::from(c) < 256) => {
                masked.chars().map(|c| u32::from(c) as u8).collect()
            }
            Self::Utf8(_) | Self::Latin1(_) => masked.into_bytes(),
        }
    }
}

/// A base64 payload, rewritten if it is text that changed.
fn base64_payload(payload: &str, textual: bool, visit: &mut dyn Visit) -> Option<String> {
    visit.charge(payload.len() as u64 / 4);
    if !textual && !sniff_text(payload) {
        // Binary (an image, audio, a PDF): no text detector can read it. Still, it must be
        // base64 throughout, else it is text pretending to be media.
        if is_base64(payload) {
            return None;
        }
        return visit.text(payload, Ctx::default());
    }
    let Some(bytes) = decode_base64(payload) else {
        return visit.text(payload, Ctx::default());
    };
    let decoded = Decoded::new(bytes, textual)?;
    let masked = visit.text(decoded.text(), Ctx::default())?;
    Some(encode_base64(&decoded.encode(masked)))
}

/// A percent-encoded payload, rewritten if it is text that changed.
fn percent_payload(payload: &str, textual: bool, visit: &mut dyn Visit) -> Option<String> {
    visit.charge(payload.len() as u64 / 4);
    let bytes = percent_decode(payload);
    let Some(decoded) = Decoded::new(bytes, textual) else {
        // Binary bytes, percent-encoded: what is not encoded is still text a reader sees.
        return visit.text(payload, Ctx::default());
    };
    let masked = visit.text(decoded.text(), Ctx::default())?;
    Some(percent_encode(&decoded.encode(masked)))
}

/// Whether the start of a base64 payload decodes to UTF-8 (a sequence cut by the end of the
/// sample counts).
fn sniff_text(payload: &str) -> bool {
    let mut end = payload.len().min(SNIFF);
    while !payload.is_char_boundary(end) {
        end -= 1;
    }
    let sample: String = payload[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let sample = &sample[..sample.len() - sample.len() % 4];
    match decode_base64(sample) {
        Some(bytes) => match std::str::from_utf8(&bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        },
        None => false,
    }
}

/// Base64 as clients write it: the standard or the URL-safe alphabet, padding or not.
const BASE64: [base64::engine::GeneralPurpose; 2] = {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    [
        GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
    ]
};

fn is_base64(payload: &str) -> bool {
    decode_base64(payload).is_some()
}

/// Decodes base64 (white space ignored, padding optional, either alphabet); `None` if it is
/// not base64.
fn decode_base64(payload: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: std::borrow::Cow<'_, str> = if payload.bytes().any(|b| b.is_ascii_whitespace()) {
        payload
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
            .into()
    } else {
        payload.into()
    };
    BASE64
        .iter()
        .find_map(|engine| engine.decode(compact.as_bytes()).ok())
}

fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn percent_decode(payload: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(payload).collect()
}

/// What a URL cannot hold as it is: controls, space, non-ASCII, and `%<>"#\^`{|}`.
const URL_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'"')
    .add(b'#')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-encodes what a URL cannot hold as it is.
fn percent_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, URL_UNSAFE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_what_is_not() {
        for text in ["", "a", "ab", "abc", "abcd", "jane@example.com\n\u{e9}"] {
            let enc = encode_base64(text.as_bytes());
            assert_eq!(
                decode_base64(&enc).as_deref(),
                Some(text.as_bytes()),
                "{text}"
            );
        }
        assert_eq!(decode_base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(
            decode_base64("aG k\n"),
            Some(b"hi".to_vec()),
            "white space, no padding"
        );
        assert!(decode_base64("aGk=x").is_none() && decode_base64("a@b").is_none());
    }

    #[test]
    fn percent_encoding_round_trips() {
        let bytes = b"a b%<c>\xe9";
        assert_eq!(percent_decode(&percent_encode(bytes)), bytes);
        assert_eq!(percent_decode("a%40b%zz%4"), b"a@b%zz%4");
    }

    #[test]
    fn media_types_are_textual_or_not() {
        for t in [
            "",
            "text/csv",
            "application/json;charset=utf-8",
            "image/svg+xml",
            ";base64",
        ] {
            assert!(is_textual(t), "{t}");
        }
        for t in [
            "image/png",
            "application/pdf",
            "audio/wav",
            "application/octet-stream",
        ] {
            assert!(!is_textual(t), "{t}");
        }
    }
}
