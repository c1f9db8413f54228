//! The bytes a pattern's match may start with, from its prefix literals (regex-syntax's
//! extractor): after a refused candidate the detector tries every later pattern anchored at
//! its start, and a pattern that cannot start with that byte is passed over without a
//! search (which would cost a search's set-up and be charged as one).

use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// A superset of the first bytes of a pattern's matches (bit per byte value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FirstBytes([u64; 4]);

impl FirstBytes {
    /// Any byte.
    pub(crate) const ANY: FirstBytes = FirstBytes([u64::MAX; 4]);

    /// The first bytes of `pattern` (regex-automata's default syntax); any byte where its
    /// literals cannot say (a large class, an empty match, a pattern that does not parse).
    pub(crate) fn of(pattern: &str) -> Self {
        let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
            return Self::ANY;
        };
        let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let Some(literals) = seq.literals() else {
            return Self::ANY;
        };
        let mut set = [0u64; 4];
        for literal in literals {
            let Some(&first) = literal.as_bytes().first() else {
                return Self::ANY; // the pattern may match the empty string, or starts with an assertion only
            };
            set[usize::from(first >> 6)] |= 1 << (first & 63);
        }
        FirstBytes(set)
    }

    /// Whether a match may start with `byte`.
    pub(crate) fn admit(self, byte: u8) -> bool {
        self.0[usize::from(byte >> 6)] >> (byte & 63) & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_come_from_the_prefix_literals() {
        let basic = FirstBytes::of(r"(?-u:\b)(?i:basic)[ \t]+[A-Za-z0-9+/]{8,}");
        assert!(basic.admit(b'b') && basic.admit(b'B'));
        assert!(!basic.admit(b'a') && !basic.admit(b' '));
        let digits = FirstBytes::of(r"\+?[0-9]{3}");
        assert!(digits.admit(b'+') && digits.admit(b'7') && !digits.admit(b'a'));
        assert_eq!(
            FirstBytes::of(r"[\p{L}]+@x"),
            FirstBytes::ANY,
            "a large class"
        );
        assert_eq!(FirstBytes::of(r"a*"), FirstBytes::ANY, "may be empty");
        assert_eq!(FirstBytes::of(r"(?:"), FirstBytes::ANY, "not a pattern");
    }
}
