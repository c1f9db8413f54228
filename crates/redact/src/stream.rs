//! Streamed answers arrive in pieces, and a placeholder or a value worth masking can be split
//! across them. A [`StreamText`] holds back only the tail that could still grow into one, and
//! releases the rest at once, masked and restored.
//!
//! What is held: with output scanning on, the last word (text after the last white space),
//! extended back over digit groups separated by single spaces or dashes (cards, phones,
//! IBANs), and an unterminated private key block; with it off, only a tail that is a strict
//! prefix of a known placeholder. Everything is released when the stream ends.

use crate::Detector;
use crate::policy::Policy;
use crate::session::{Direction, Session};

/// Longest tail held back for a partial word or number: longer than the longest bounded
/// token format the detectors know (a fine-grained GitHub token or a Slack token with its
/// label is under 300 bytes), so a token streamed in pieces is scanned whole.
const MAX_WORD_HOLD: usize = 512;
/// Openers of tokens with no length bound (a JWT, an AWS Bedrock short-term key): a run
/// without white space holding one is held from it, up to [`MAX_BLOCK_HOLD`].
const LONG_TOKEN_OPENERS: &[&str] = &["eyJ", "bedrock-api-key-"];
/// Longest private key block held back before it is released anyway.
const MAX_BLOCK_HOLD: usize = 16 * 1024;

/// One streamed text field (a choice's content, or one tool call's arguments).
#[derive(Debug, Default)]
pub struct StreamText {
    pending: String,
    json: bool,
}

impl StreamText {
    /// A field of plain text (`json = false`) or of JSON text such as tool-call arguments.
    pub fn new(json: bool) -> Self {
        Self {
            pending: String::new(),
            json,
        }
    }

    /// Takes the next piece; returns what can be sent now.
    pub fn push(
        &mut self,
        session: &mut Session,
        detector: &Detector,
        policy: &Policy,
        scan: bool,
        piece: &str,
    ) -> String {
        self.pending.push_str(piece);
        let hold = if scan {
            word_hold(&self.pending)
        } else {
            self.pending.len()
        };
        let hold = hold.min(session.placeholder_hold(&self.pending));
        let ready: String = self.pending.drain(..hold).collect();
        self.release(session, detector, policy, scan, &ready)
    }

    /// The stream ended: everything held is released.
    pub fn finish(
        &mut self,
        session: &mut Session,
        detector: &Detector,
        policy: &Policy,
        scan: bool,
    ) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.release(session, detector, policy, scan, &rest)
    }

    /// Whether text is held back.
    pub fn is_holding(&self) -> bool {
        !self.pending.is_empty()
    }

    fn release(
        &self,
        session: &mut Session,
        detector: &Detector,
        policy: &Policy,
        scan: bool,
        text: &str,
    ) -> String {
        if text.is_empty() {
            return String::new();
        }
        let masked = if scan {
            session
                .mask(detector, policy, text, Direction::Response)
                .into_owned()
        } else {
            text.to_owned()
        };
        session.restore(&masked, self.json).into_owned()
    }
}

/// Where a tail that might still be part of a finding starts.
fn word_hold(text: &str) -> usize {
    if let Some(begin) = text.rfind("-----BEGIN")
        && !text[begin..].contains("-----END")
        && text.len() - begin < MAX_BLOCK_HOLD
    {
        return begin;
    }
    let mut hold = text.rfind(|c: char| c.is_whitespace()).map_or(0, |i| {
        i + text[i..].chars().next().map_or(1, char::len_utf8)
    });
    // Short groups of digits or capitals joined by single spaces may belong to one number
    // (cards, phones, IBANs written in groups): hold those words too. Any one space counts
    // (a no-break space too), and any script's digits (they are normalised for detection).
    loop {
        let before = &text[..hold];
        let Some(space) = before
            .chars()
            .next_back()
            .filter(|c| *c != '\n' && c.is_whitespace())
        else {
            break;
        };
        let head = &before[..before.len() - space.len_utf8()];
        let word_start = head.rfind(char::is_whitespace).map_or(0, |i| {
            i + head[i..].chars().next().map_or(1, char::len_utf8)
        });
        let word = &head[word_start..];
        let groupish = |c: char| {
            c.is_numeric()
                || c.is_uppercase()
                || "()+.-/".contains(c)
                || !c.is_ascii() && !c.is_alphabetic()
        };
        if word.is_empty()
            || word.chars().count() > 8
            || !word.chars().all(groupish)
            || text.len() - word_start > MAX_WORD_HOLD
        {
            break;
        }
        hold = word_start;
    }
    if text.len() - hold > MAX_WORD_HOLD
        && let Some(opener) = long_token_opener(text, hold)
    {
        return opener;
    }
    if text.len() - hold > MAX_WORD_HOLD {
        // A very long run without white space: keep only its tail.
        let mut cut = text.len() - MAX_WORD_HOLD;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        hold = cut;
    }
    hold
}

/// Where the last opener of an unbounded token starts in `text[from..]`, if it is within the
/// last [`MAX_BLOCK_HOLD`] bytes.
fn long_token_opener(text: &str, from: usize) -> Option<usize> {
    let mut from = from.max(text.len().saturating_sub(MAX_BLOCK_HOLD));
    while !text.is_char_boundary(from) {
        from += 1;
    }
    LONG_TOKEN_OPENERS
        .iter()
        .filter_map(|o| text[from..].rfind(o).map(|i| from + i))
        .max()
}

#[cfg(test)]
mod tests {
    use super::word_hold;

    #[test]
    fn holds_the_last_word_and_number_groups_only() {
        assert_eq!(word_hold("hello wor"), 6);
        assert_eq!(word_hold("hello world "), 12);
        assert_eq!(word_hold("card 4111 1111 11"), 5);
        assert_eq!(word_hold("call +1 (555) 12"), 5);
        assert_eq!(word_hold("key -----BEGIN RSA PRIVATE KEY-----\nMIIE"), 4);
        assert_eq!(
            word_hold("token ghp_1a2B3c4D5e6F ok"),
            23,
            "a long token is not a group"
        );
        assert_eq!(word_hold("iban GB82 WEST 12"), 5);
        assert_eq!(
            word_hold("card 4111\u{a0}1111\u{a0}11"),
            5,
            "no-break spaces"
        );
        assert_eq!(
            word_hold("card ４１１１\u{3000}１１"),
            5,
            "full-width digits"
        );
        assert_eq!(word_hold("a b\n4111 11"), 4, "not across a line");
        let jwt = format!("t eyJ{}", "a".repeat(3000));
        assert_eq!(word_hold(&jwt), 2, "a long JWT is held whole");
        let blob = format!("t {}", "a".repeat(3000));
        assert_eq!(
            word_hold(&blob),
            blob.len() - 512,
            "other long runs: their tail"
        );
    }
}
