//! The built-in detectors: a pattern each, tried together in one pass, and the check that
//! confirms a match. The order matters: when two patterns match at the same place, the first
//! wins (and if its check fails, the next ones are tried there).

use std::ops::Range;

/// Confirms a match and says which part of it to mask.
pub type Check = fn(&str) -> Option<Range<usize>>;

/// For a match its check refused: the length of a look-alike of the kind that starts there
/// (an IBAN whose check digits fail), which the scan then steps over whole, so that no other
/// pattern finds a phone number or a card among its digits.
pub type Veto = fn(&str) -> Option<usize>;

/// Whether a finding at `start..end` of the whole text stands on its own: what its check
/// cannot see (an address inside a longer dotted run, a phone number's groups inside a longer
/// run of digit groups).
pub type Context = fn(&str, usize, usize) -> bool;

/// A built-in detector.
pub struct Pattern {
    /// Entity name.
    pub entity: &'static str,
    /// Regular expression (regex-automata syntax; linear time).
    pub regex: &'static str,
    /// Confirmation; `None` means the whole match counts.
    pub check: Option<Check>,
    /// What a refused match may still be: see [`Veto`].
    pub veto: Option<Veto>,
    /// The regex finds only the opening; code extends it to the whole finding.
    pub extend: Option<Extend>,
    /// What must hold around a confirmed match: see [`Context`].
    pub context: Option<Context>,
    /// How the pattern is searched for: see [`Search`].
    pub search: Search,
}

/// Which search finds a pattern's next match. One lazy DFA over every pattern thrashes on
/// text such as random base64 (a bounded run before a distinctive character, as in an
/// email's local part or a URL's scheme, makes the number of DFA states grow with the number
/// of places a match could start in the last few dozen bytes, so the engine keeps discarding
/// its cache and runs at about a microsecond a byte). Such patterns are searched for on their
/// own, where the engine looks first for their distinctive literal (`://`, the label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// In one regex with every other pattern so marked.
    Together,
    /// In a regex of its own.
    Alone,
    /// An email address: each `@` is found by code, the start of the local part before it by
    /// code (the leftmost one the regex would find), and the match by the regex anchored there.
    Email,
    /// A national phone number: each whole run of digit groups is found by code
    /// (`validate::numbering`), which is linear and cheap where a regex of every grouping
    /// would make a large, thrashing DFA; the regex is not searched.
    DigitRuns,
}

/// Findings whose unbounded body is followed by code from the opening the regex found (in
/// the regex, such a body makes the engine scan past every later match: see `extend.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extend {
    /// From `-----BEGIN … PRIVATE KEY-----` to the first `-----END … PRIVATE KEY-----`.
    PrivateKey,
    /// `eyJ…` header, `.eyJ…` payload, `.…` signature.
    Jwt,
}

impl Pattern {
    /// A pattern searched with the others, confirmed by `check` (`None`: the whole match).
    pub fn checked(entity: &'static str, regex: &'static str, check: Option<Check>) -> Self {
        Self {
            entity,
            regex,
            check,
            veto: None,
            extend: None,
            context: None,
            search: Search::Together,
        }
    }

    /// The same pattern, its findings only where `context` holds.
    pub fn standing_alone(self, context: Context) -> Self {
        Self {
            context: Some(context),
            ..self
        }
    }
}

/// All built-in patterns, most specific first.
///
/// Every run that can precede a pattern's distinctive character is bounded (an email's local
/// part is at most 64 characters, a URL scheme 21): with leftmost-first semantics an unbounded
/// run would make each search look to the end of the text for that character, turning a
/// scan of adversarial input quadratic. `pathological_inputs_are_scanned_to_the_end` and
/// `complexity.rs` (`inputs_that_were_quadratic_cost_linearly`) guard this. For the
/// same reason the two findings with an unbounded body (a private key block, a JWT) are only
/// opened here and extended by code (`extend.rs`).
pub fn built_in() -> Vec<Pattern> {
    // Secrets first: distinctive prefixes, so cheap to find and rarely wrong.
    let mut all = crate::secrets::patterns();
    all.extend(crate::personal::patterns());
    all
}
