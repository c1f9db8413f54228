//! Upstream error text, scrubbed by detection rather than by substring, before it reaches a
//! client, a log or the audit log. A provider's message may echo the credential it refused:
//! whole, in part, upper-cased, split by separators, or base64-encoded inside a `Bearer` or
//! Basic header. Any 16-character stretch of a configured key in any of those forms, or any
//! secret the redaction detectors find, withholds the whole message: the client gets the
//! status and a fixed text. Only a message with nothing suspicious is passed on.

use base64::Engine;

/// How many characters of a key, in a row, count as a leak.
const FRAGMENT: usize = 16;

/// The fixed text that replaces a withheld message.
pub(crate) const WITHHELD: &str =
    "the provider's error message was withheld: it may contain a credential";

/// `message` if it carries no fragment of `keys` and no secret `detector` finds; `None` if it
/// must be withheld.
pub(crate) fn clean(
    message: &str,
    keys: &[&str],
    detector: &warden_redact::Detector,
) -> Option<String> {
    if keys.iter().any(|k| leaks(message, k)) {
        return None;
    }
    let found = detector.find(message);
    if found.iter().any(|f| is_secret(f.entity.name())) {
        return None;
    }
    Some(message.to_owned())
}

/// Whether an entity type is a credential (API keys, tokens, private keys, passwords in URLs).
fn is_secret(entity: &str) -> bool {
    let e = entity.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "JWT", "CREDENTIAL"]
        .iter()
        .any(|w| e.contains(w))
}

/// Letters and digits only, lower-cased: `SK-ABCD 1234` and `sk_abcd-1234` read alike.
fn folded(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `message` holds a fragment of `key` in plain (any case, any separators) or
/// base64 form.
fn leaks(message: &str, key: &str) -> bool {
    let key_folded = folded(key);
    if key_folded.len() >= FRAGMENT {
        let text = folded(message);
        if windows(&key_folded).any(|w| text.contains(w)) {
            return true;
        }
    } else if !key.is_empty() && message.contains(key) {
        return true;
    }
    encodings(key)
        .iter()
        .any(|e| windows(e).any(|w| message.contains(w)))
}

/// Every `FRAGMENT`-long stretch of `text` (all of it if shorter).
fn windows(text: &str) -> impl Iterator<Item = &str> {
    let n = text.len();
    let step = if n > FRAGMENT { n - FRAGMENT + 1 } else { 1 };
    (0..step).map(move |i| &text[i..(i + FRAGMENT).min(n)])
}

/// The base64 forms of the key as it travels: alone, after `Bearer `, after `:` (Basic auth
/// with an empty user), at each of the three byte alignments it can take inside a longer
/// encoded string (the characters the neighbours change are cut off), standard and URL-safe.
fn encodings(key: &str) -> Vec<String> {
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut out = Vec::new();
    for prefix in ["", "Bearer ", ":"] {
        for shift in 0..3 {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(prefix.as_bytes());
            bytes.extend_from_slice(key.as_bytes());
            for engine in &engines {
                let encoded = engine.encode(&bytes);
                // Only whole 3-byte groups of the key's own bytes encode the same whatever
                // surrounds them: cut the groups shared with what comes before and after.
                let first = shift + prefix.len();
                let start = first.div_ceil(3) * 4;
                let end = (bytes.len() / 3) * 4;
                if end >= start + FRAGMENT {
                    out.push(encoded[start..end].to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-proj-Zx81kQmW4vN7cT2bR9sLpE5aH0dJ3fYu6gKq";

    fn redactor() -> warden_redact::Detector {
        warden_redact::Detector::new(&[]).expect("detector")
    }

    #[test]
    fn every_form_of_the_key_is_caught() {
        let r = redactor();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let forms = [
            format!("Incorrect API key provided: {KEY}."),
            format!("key {} is invalid", &KEY[3..40]),
            format!("key {} is invalid", KEY.to_uppercase()),
            format!(
                "key {} is invalid",
                KEY.chars()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            format!("header was {}", b64(&format!("Bearer {KEY}"))),
            format!("basic {}", b64(&format!(":{KEY}"))),
            format!("raw {}", b64(KEY)),
            format!("prefix x{}", b64(&format!("ab{KEY}"))),
        ];
        for f in &forms {
            assert_eq!(clean(f, &[KEY], &r), None, "{f}");
        }
    }

    #[test]
    fn an_innocent_message_passes_and_other_secrets_are_withheld() {
        let r = redactor();
        let ok = "The model `gpt-9` does not exist or you do not have access to it.";
        assert_eq!(clean(ok, &[KEY], &r).as_deref(), Some(ok));
        // A key the detectors know, though it is not ours.
        let other = "token ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R is revoked";
        assert_eq!(clean(other, &[KEY], &r), None);
        // A 15-character stretch is not a leak (too short to mean anything).
        let short = format!("see {}", &KEY[10..25]);
        assert!(clean(&short, &[KEY], &r).is_some(), "{short}");
    }
}
