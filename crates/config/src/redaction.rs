//! The `[redaction]` section: what is masked, blocked or allowed, globally and per key, and
//! custom entity types.

use crate::Error;
use crate::raw::RawRedaction;
use std::collections::BTreeMap;

/// Redaction settings.
#[derive(Debug, Clone)]
pub struct RedactionConfig {
    /// Action for every entity type not listed (default mask).
    pub default: RedactAction,
    /// Actions by entity type name.
    pub entities: BTreeMap<String, RedactAction>,
    /// Per virtual-key name: its own default (if any) and actions, over the global ones.
    pub keys: BTreeMap<String, KeyRedaction>,
    /// Restore placeholders in answers (default true); false masks one way.
    pub restore: bool,
    /// Scan answers for data the model produced and mask it (default true).
    pub scan_answers: bool,
    /// Custom entity types.
    pub custom: Vec<CustomEntity>,
}

/// One key's redaction overrides.
#[derive(Debug, Clone, Default)]
pub struct KeyRedaction {
    /// Replaces the global default for this key.
    pub default: Option<RedactAction>,
    /// Actions by entity type name.
    pub entities: BTreeMap<String, RedactAction>,
}

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactAction {
    /// Replace with a placeholder, restored in the answer.
    Mask,
    /// Refuse the request.
    Block,
    /// Leave it.
    Allow,
}

/// A custom entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEntity {
    /// Upper-case name, used in placeholders.
    pub name: String,
    /// How it is found.
    pub matcher: CustomMatcher,
}

/// How a custom entity is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomMatcher {
    /// A regular expression.
    Regex(String),
    /// Whole words or phrases, case-insensitive.
    Words(Vec<String>),
}

fn action(field: &str, text: &str) -> Result<RedactAction, Error> {
    match text {
        "mask" => Ok(RedactAction::Mask),
        "block" => Ok(RedactAction::Block),
        "allow" => Ok(RedactAction::Allow),
        other => Err(Error::invalid(
            field,
            format!("`{other}` is not one of: mask, block, allow"),
        )),
    }
}

fn entity_name_ok(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(b'A'..=b'Z'))
        && name.len() <= 40
        && b.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

pub(crate) fn build(raw: RawRedaction) -> Result<RedactionConfig, Error> {
    let default = action(
        "redaction.default",
        raw.default.as_deref().unwrap_or("mask"),
    )?;
    let mut entities = BTreeMap::new();
    for (name, a) in &raw.entities {
        entities.insert(
            name.clone(),
            action(&format!("redaction.entities.{name}"), a)?,
        );
    }
    let mut keys = BTreeMap::new();
    for (key, table) in &raw.keys {
        let mut k = KeyRedaction::default();
        for (name, a) in table {
            let field = format!("redaction.keys.{key}.{name}");
            if name == "default" {
                k.default = Some(action(&field, a)?);
            } else {
                k.entities.insert(name.clone(), action(&field, a)?);
            }
        }
        keys.insert(key.clone(), k);
    }
    let mut custom = Vec::new();
    for (i, c) in raw.custom.into_iter().enumerate() {
        let field = format!("redaction.custom[{i}]");
        if !entity_name_ok(&c.name) {
            return Err(Error::invalid(
                format!("{field}.name"),
                "use upper case letters, digits and `_`, starting with a letter (e.g. PROJECT_CODE)",
            ));
        }
        let matcher = match (c.regex, c.words) {
            (Some(r), None) => CustomMatcher::Regex(r),
            (None, Some(w)) if !w.is_empty() => CustomMatcher::Words(w),
            (None, Some(_)) => {
                return Err(Error::invalid(
                    format!("{field}.words"),
                    "must not be empty",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    field,
                    "set exactly one of `regex` or `words`",
                ));
            }
        };
        custom.push(CustomEntity {
            name: c.name,
            matcher,
        });
    }
    Ok(RedactionConfig {
        default,
        entities,
        keys,
        restore: raw.restore.unwrap_or(true),
        scan_answers: raw.scan_answers.unwrap_or(true),
        custom,
    })
}
