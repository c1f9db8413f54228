//! The built-in detectors: a pattern each, tried together in one pass, and the check that
//! confirms a match. The order matters: when two patterns match at the same place, the first
//! wins (and if its check fails, the next ones are tried there).

use crate::validate;
use std::ops::Range;

/// Confirms a match and says which part of it to mask.
pub type Check = fn(&str) -> Option<Range<usize>>;

/// A built-in detector.
pub struct Pattern {
    /// Entity name.
    pub entity: &'static str,
    /// Regular expression (regex-automata syntax; linear time).
    pub regex: &'static str,
    /// Confirmation; `None` means the whole match counts.
    pub check: Option<Check>,
    /// The regex finds only the opening; code extends it to the whole finding.
    pub extend: Option<Extend>,
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

const B: &str = r"(?-u:\b)";

/// An email address: a local part of 1 to 64 characters starting with a letter or digit at a
/// word boundary, `@`, a domain. `Search::Email` relies on this shape (see `detector.rs`).
pub const EMAIL: &str = r"(?-u:\b)[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?-u:\b)";

macro_rules! p {
    ($entity:expr, $regex:expr, $check:expr) => {
        Pattern {
            entity: $entity,
            regex: $regex,
            check: $check,
            extend: None,
            search: Search::Together,
        }
    };
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
    let _ = B;
    vec![
        // Secrets: distinctive prefixes, so cheap to find and rarely wrong.
        Pattern {
            entity: "PRIVATE_KEY",
            regex: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
            check: None,
            extend: Some(Extend::PrivateKey),
            search: Search::Together,
        },
        p!(
            "AWS_ACCESS_KEY",
            r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?-u:\b)",
            None
        ),
        p!(
            "AWS_SECRET_KEY",
            r#"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)"#,
            Some(validate::aws_secret)
        ),
        p!(
            "API_KEY",
            r"(?-u:\b)sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)[0-9]{2}-)?[A-Za-z0-9_-]{20,200}",
            None
        ),
        p!(
            "API_KEY",
            r"(?-u:\b)(?:hf_[A-Za-z0-9]{30,100}|gsk_[A-Za-z0-9]{40,100}|xai-[A-Za-z0-9]{40,120})(?-u:\b)",
            None
        ),
        p!(
            "GITHUB_TOKEN",
            r"(?-u:\b)(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
            None
        ),
        p!("GITLAB_TOKEN", r"(?-u:\b)glpat-[A-Za-z0-9_-]{20,100}", None),
        p!(
            "SLACK_TOKEN",
            r"(?-u:\b)xox[baprse]-[A-Za-z0-9-]{10,200}|https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,200}",
            None
        ),
        p!(
            "STRIPE_KEY",
            r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,200}(?-u:\b)",
            None
        ),
        p!("GOOGLE_API_KEY", r"(?-u:\b)AIza[0-9A-Za-z_-]{35}", None),
        Pattern {
            entity: "JWT",
            regex: r"(?-u:\b)eyJ[A-Za-z0-9_-]{5}",
            check: None,
            extend: Some(Extend::Jwt),
            search: Search::Together,
        },
        Pattern {
            entity: "PASSWORD",
            regex: r"(?-u:\b)[A-Za-z][A-Za-z0-9+.-]{0,20}://[^\s:/@]{1,128}:[^\s@/]{1,128}@",
            check: Some(validate::url_password),
            extend: None,
            search: Search::Alone,
        },
        // Spaces and tabs only around `=`: a label with no value must not take the next
        // line's first word (or a following label) as its value.
        Pattern {
            entity: "PASSWORD",
            regex: r#"(?i:(?-u:\b)(?:password|passwd|pwd))[ \t]*=[ \t]*[^;\s'"&]{3,}"#,
            check: Some(validate::value_after_label),
            extend: None,
            search: Search::Alone,
        },
        // Personal data.
        Pattern {
            entity: "EMAIL",
            regex: EMAIL,
            check: None,
            extend: None,
            search: Search::Email,
        },
        p!(
            "US_SSN",
            r"(?i:ssn|social security(?: number| no\.?)?)[^0-9\n]{0,20}[0-9]{3}[ -]?[0-9]{2}[ -]?[0-9]{4}(?-u:\b)",
            Some(validate::ssn)
        ),
        p!(
            "US_SSN",
            r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
            Some(validate::ssn)
        ),
        p!(
            "IBAN",
            r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)",
            Some(validate::iban)
        ),
        p!(
            "CREDIT_CARD",
            r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
            Some(validate::credit_card)
        ),
        p!(
            "PHONE",
            r"\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,4}\)?){2,6}(?-u:\b)",
            Some(validate::phone)
        ),
        p!(
            "PHONE",
            r"(?:\([0-9]{3}\) ?|(?-u:\b)[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}(?-u:\b)",
            Some(validate::phone)
        ),
        p!(
            "PHONE",
            r"(?-u:\b)0[1-9][0-9]{0,3}[ -][0-9]{3,4}[ -]?[0-9]{3,4}(?-u:\b)",
            Some(validate::phone)
        ),
        p!(
            "IP_ADDRESS",
            r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
            Some(validate::ipv4)
        ),
        p!(
            "IP_ADDRESS",
            r"(?i:(?:[0-9a-f]{1,4}:){1,7}(?::[0-9a-f]{1,4}){1,7}|(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){1,7}:|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})",
            Some(validate::ipv6)
        ),
    ]
}
