//! The `[redaction]` section: what is masked, blocked or allowed, globally and per key,
//! custom entity types, and the bound on the work of redacting one request.

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
    /// The most work redacting one request (or one agent text) may cost, in units of about
    /// one byte scanned (see `warden_redact::Cost`); past it the request is refused with 413
    /// `payload_too_complex` before anything is sent. Default [`DEFAULT_REDACTION_MAX_COST`]; `None`
    /// (`max_cost = 0`) is unbounded.
    pub max_cost: Option<u64>,
    /// The regions whose numbering plans say which runs of digit groups without a country
    /// code are national phone numbers (ISO 3166 codes, upper case). `None`: every region's
    /// (the default); empty: none (international forms and numbers after a word such as
    /// `phone` are still found).
    pub phone_regions: Option<Vec<String>>,
}

/// The default `redaction.max_cost`: 64 million units, about 100 to 200 ms of one core for
/// the costliest text per unit, half again what 4 MiB of prose, code, JSON and logs costs
/// (about 43 million) and more than 4 MiB of base64, lock files or JSON with long ids costs;
/// 4 MiB of access logs or bare timestamps is refused. The same as
/// `warden_redact::DEFAULT_MAX_COST`.
pub const DEFAULT_REDACTION_MAX_COST: u64 = 64_000_000;

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

/// `max_body_bytes` is `server.max_body_bytes`: a body of the largest size must be
/// affordable.
pub(crate) fn build(raw: RawRedaction, max_body_bytes: usize) -> Result<RedactionConfig, Error> {
    let max_cost = match raw.max_cost.unwrap_or(DEFAULT_REDACTION_MAX_COST) {
        0 => None,
        n if n < 2 * max_body_bytes as u64 => {
            return Err(Error::invalid(
                "redaction.max_cost",
                format!(
                    "must be 0 (unbounded) or at least twice server.max_body_bytes ({}): \
                     ordinary text costs one to two units per byte",
                    2 * max_body_bytes as u64
                ),
            ));
        }
        n => Some(n),
    };
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
    let phone_regions = match raw.phone_regions {
        None => None,
        Some(list) => {
            let mut out = Vec::new();
            for (i, r) in list.iter().enumerate() {
                if r.len() != 2 || !r.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(Error::invalid(
                        format!("redaction.phone_regions[{i}]"),
                        "use a two-letter ISO 3166 region code such as \"US\", \"GB\" or \"DE\"",
                    ));
                }
                out.push(r.to_ascii_uppercase());
            }
            Some(out)
        }
    };
    Ok(RedactionConfig {
        phone_regions,
        default,
        entities,
        keys,
        restore: raw.restore.unwrap_or(true),
        scan_answers: raw.scan_answers.unwrap_or(true),
        custom,
        max_cost,
    })
}

#[cfg(test)]
mod tests {
    use crate::{Config, DEFAULT_REDACTION_MAX_COST, Error};

    fn error_of(text: &str) -> String {
        match Config::from_toml(text) {
            Err(Error::Invalid { field, message }) => format!("{field}: {message}"),
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn the_redaction_bound_defaults_to_16_million_and_is_checked_against_the_body_limit() {
        assert_eq!(DEFAULT_REDACTION_MAX_COST, 64_000_000);
        assert_eq!(Config::default().redaction.max_cost, Some(64_000_000));
        let off = Config::from_toml("[redaction]\nmax_cost = 0\n").unwrap();
        assert_eq!(off.redaction.max_cost, None);
        let e = error_of("[redaction]\nmax_cost = 1000000\n");
        assert!(
            e.starts_with("redaction.max_cost: must be 0 (unbounded) or at least twice server.max_body_bytes (8388608)"),
            "{e}"
        );
        let small =
            Config::from_toml("[server]\nmax_body_bytes = 1024\n[redaction]\nmax_cost = 2048\n")
                .unwrap();
        assert_eq!(small.redaction.max_cost, Some(2048));
        let e = error_of("[server]\nmax_body_bytes = 67108864\n");
        assert!(
            e.starts_with("redaction.max_cost:"),
            "a larger body needs a larger bound: {e}"
        );
    }

    #[test]
    fn phone_regions_are_region_codes_and_default_to_every_region() {
        assert_eq!(Config::default().redaction.phone_regions, None);
        let some = Config::from_toml("[redaction]\nphone_regions = [\"us\", \"GB\"]\n").unwrap();
        assert_eq!(
            some.redaction.phone_regions,
            Some(vec!["US".to_string(), "GB".to_string()])
        );
        let e = error_of("[redaction]\nphone_regions = [\"US\", \"USA\"]\n");
        assert!(
            e.starts_with("redaction.phone_regions[1]: use a two-letter"),
            "{e}"
        );
    }
}
