//! The built-in detectors of secrets: credentials and tokens in the formats their issuers
//! publish, with the issuer's checksum where the format has one.

use crate::patterns::{Extend, Pattern, Search};
use crate::validate;

/// The secret patterns, most specific first.
pub fn patterns() -> Vec<Pattern> {
    vec![
        Pattern {
            entity: "PRIVATE_KEY",
            regex: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
            check: None,
            extend: Some(Extend::PrivateKey),
            search: Search::Together,
        },
        Pattern::checked(
            "AWS_ACCESS_KEY",
            r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?-u:\b)",
            None,
        ),
        Pattern::checked(
            "AWS_SECRET_KEY",
            r#"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)"#,
            Some(validate::aws_secret),
        ),
        Pattern::checked(
            "API_KEY",
            r"(?-u:\b)sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)[0-9]{2}-)?[A-Za-z0-9_-]{20,200}",
            None,
        ),
        Pattern::checked(
            "API_KEY",
            r"(?-u:\b)(?:hf_[A-Za-z0-9]{30,100}|gsk_[A-Za-z0-9]{40,100}|xai-[A-Za-z0-9]{40,120})(?-u:\b)",
            None,
        ),
        Pattern::checked(
            "GITHUB_TOKEN",
            r"(?-u:\b)(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
            None,
        ),
        Pattern::checked("GITLAB_TOKEN", r"(?-u:\b)glpat-[A-Za-z0-9_-]{20,100}", None),
        Pattern::checked(
            "SLACK_TOKEN",
            r"(?-u:\b)xox[baprse]-[A-Za-z0-9-]{10,200}|https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,200}",
            None,
        ),
        Pattern::checked(
            "STRIPE_KEY",
            r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,200}(?-u:\b)",
            None,
        ),
        Pattern::checked("GOOGLE_API_KEY", r"(?-u:\b)AIza[0-9A-Za-z_-]{35}", None),
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
    ]
}
