//! The kinds of data Warden detects. Built-in kinds have fixed names (used in placeholders,
//! configuration, metrics and headers); custom kinds come from configuration.

/// A detected kind of sensitive data, identified by its upper-case name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity(pub(crate) std::sync::Arc<str>);

impl Entity {
    /// The name, e.g. `EMAIL` or `CREDIT_CARD`: the placeholder prefix and the config key.
    pub fn name(&self) -> &str {
        &self.0
    }

    pub(crate) fn new(name: &str) -> Self {
        Self(name.into())
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every built-in kind, personal data first, then secrets.
pub const BUILT_IN: &[&str] = &[
    "CREDIT_CARD",
    "US_SSN",
    "EMAIL",
    "PHONE",
    "IBAN",
    "IP_ADDRESS",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "API_KEY",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "SLACK_TOKEN",
    "STRIPE_KEY",
    "GOOGLE_API_KEY",
    "JWT",
    "PRIVATE_KEY",
    "PASSWORD",
];

/// Whether `name` is a valid entity name: `A-Z`, `0-9` and `_`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z'))
        && name.len() <= 40
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}
