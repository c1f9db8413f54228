//! The first two digits a numbering plan's pattern admits: the test that leaves most national
//! groupings out before any of their patterns runs (`numbering.rs`).

/// A superset of the first two digits that a plan's pattern may match numbers opening with
/// (bit `10 * first + second`), from the pattern's prefix literals (regex-syntax's
/// extractor): the test that leaves most groupings out before any pattern is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Openings(u128);

impl Openings {
    /// Any two digits.
    pub(super) const ANY: Openings = Openings((1 << 100) - 1);
    /// No digits (a plan without patterns).
    pub(super) const NONE: Openings = Openings(0);

    /// The openings of `pattern` (a plan's pattern, whitespace and all); when its literals
    /// cannot say, any.
    pub(super) fn of(pattern: &str) -> Self {
        use regex_syntax::hir::literal::{ExtractKind, Extractor};
        let pattern: String = pattern.chars().filter(|c| !c.is_whitespace()).collect();
        let Ok(hir) = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .build()
            .parse(&pattern)
        else {
            return Self::ANY;
        };
        let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let Some(literals) = seq.literals() else {
            return Self::ANY;
        };
        let digit = |b: u8| b.is_ascii_digit().then(|| u32::from(b - b'0'));
        let mut mask = 0u128;
        for literal in literals {
            match *literal.as_bytes() {
                [a, b, ..] => match (digit(a), digit(b)) {
                    (Some(a), Some(b)) => mask |= 1 << (10 * a + b),
                    _ => return Self::ANY,
                },
                [a] => match digit(a) {
                    Some(a) => mask |= 0x3FF << (10 * a),
                    None => return Self::ANY,
                },
                [] => return Self::ANY,
            }
        }
        Openings(mask)
    }

    /// Whether a number opening with `digits` (two or more ASCII digits) may match.
    pub(super) fn admit(self, digits: &[u8]) -> bool {
        match digits {
            [a, b, ..] => self.0 >> (10 * u32::from(a - b'0') + u32::from(b - b'0')) & 1 == 1,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_come_from_the_literals() {
        let leading = Openings::of("1(?:[02-9]|1[0-5])");
        assert!(leading.admit(b"10") && leading.admit(b"11") && leading.admit(b"19"));
        assert!(!leading.admit(b"20") && !leading.admit(b"01"));
        let any_second = Openings::of("[2-9]");
        assert!(any_second.admit(b"20") && any_second.admit(b"99") && !any_second.admit(b"19"));
        assert_eq!(Openings::of("\\d*"), Openings::ANY, "may be empty");
        assert_eq!(Openings::of("(?:"), Openings::ANY, "not a pattern");
    }
}
