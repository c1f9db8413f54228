//! Builds the redactor from configuration (checking every entity name it mentions) and
//! publishes redaction counts as metrics. The redaction itself lives in `warden-redact`.

use std::collections::{BTreeMap, HashMap};
use warden_config::{CustomMatcher, RedactAction, RedactionConfig};
use warden_redact::{Action, Custom, Detector, Entity, Exchange, Policy, Redactor};

fn action(a: RedactAction) -> Action {
    match a {
        RedactAction::Mask => Action::Mask,
        RedactAction::Block => Action::Block,
        RedactAction::Allow => Action::Allow,
    }
}

/// The redactor for this configuration; errors name the offending field.
pub(crate) fn build(config: &RedactionConfig) -> Result<Redactor, String> {
    let custom: Vec<Custom> = config
        .custom
        .iter()
        .map(|c| match &c.matcher {
            CustomMatcher::Regex(r) => Custom::Regex {
                name: c.name.clone(),
                pattern: r.clone(),
            },
            CustomMatcher::Words(w) => Custom::Words {
                name: c.name.clone(),
                words: w.clone(),
            },
        })
        .collect();
    let detector = match &config.phone_regions {
        None => Detector::new(&custom).map_err(|e| format!("redaction.custom: {e}"))?,
        Some(regions) => Detector::with_phone_regions(&custom, regions).map_err(|e| {
            if e.0.starts_with("phone_regions") {
                format!("redaction.{e}")
            } else {
                format!("redaction.custom: {e}")
            }
        })?,
    };
    let known: Vec<&str> = warden_redact::BUILT_IN
        .iter()
        .copied()
        .chain(config.custom.iter().map(|c| c.name.as_str()))
        .collect();
    let check = |field: String, name: &str| -> Result<(), String> {
        if known.contains(&name) {
            Ok(())
        } else {
            Err(format!(
                "{field}: unknown entity type `{name}` (known: {})",
                known.join(", ")
            ))
        }
    };
    let mut global = HashMap::new();
    for (name, a) in &config.entities {
        check(format!("redaction.entities.{name}"), name)?;
        global.insert(name.clone(), action(*a));
    }
    let global = Policy::new(action(config.default), global);
    let mut per_key = HashMap::new();
    for (key, k) in &config.keys {
        let mut overrides = HashMap::new();
        for (name, a) in &k.entities {
            check(format!("redaction.keys.{key}.{name}"), name)?;
            overrides.insert(name.clone(), action(*a));
        }
        per_key.insert(
            key.clone(),
            global.overridden(k.default.map(action), &overrides),
        );
    }
    Ok(Redactor::new(
        detector,
        global,
        per_key,
        config.restore,
        config.scan_answers,
    )
    .with_max_cost(config.max_cost))
}

/// Adds counts to `warden_redactions_total{entity, direction}`.
pub(crate) fn record(counts: &BTreeMap<Entity, u32>, direction: &'static str) {
    for (entity, n) in counts {
        metrics::counter!("warden_redactions_total", "entity" => entity.name().to_owned(),
            "direction" => direction)
        .increment(u64::from(*n));
    }
}

/// What redaction found in a request and its answer so far (nothing without an exchange).
pub(crate) fn totals(exchange: &Option<Exchange>) -> BTreeMap<String, u32> {
    exchange.as_ref().map(Exchange::totals).unwrap_or_default()
}

/// Records the answer-side counts of a finished exchange.
pub(crate) fn record_answer(exchange: &Exchange) {
    record(exchange.counts().1, "response");
}

#[cfg(test)]
mod tests {
    use crate::{Gateway, KeySpec};
    use std::sync::Arc;
    use warden_config::Config;

    async fn build(config: &Config) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().unwrap();
        let store = warden_store::SqlStore::open_sqlite_dir(dir.path())
            .await
            .unwrap();
        Gateway::new(config, |_, _| Ok(KeySpec::None), Arc::new(store), None)
    }

    #[tokio::test]
    async fn the_example_config_builds_a_gateway() {
        let text = include_str!("../../../warden.example.toml");
        let config = Config::from_toml(text).unwrap();
        assert!(build(&config).await.is_ok());
    }

    #[test]
    fn the_configured_default_bound_is_the_redactors() {
        assert_eq!(
            warden_config::DEFAULT_REDACTION_MAX_COST,
            warden_redact::DEFAULT_MAX_COST
        );
    }

    #[tokio::test]
    async fn unknown_entity_names_are_refused_with_their_field() {
        let config = Config::from_toml("[redaction.keys.bot]\nEMAILS = \"allow\"\n").unwrap();
        let err = build(&config).await.err().unwrap();
        assert!(
            err.starts_with("redaction.keys.bot.EMAILS: unknown entity type"),
            "{err}"
        );
        let config =
            Config::from_toml("[[redaction.custom]]\nname = \"X\"\nregex = \"(\"\n").unwrap();
        let err = build(&config).await.err().unwrap();
        assert!(err.starts_with("redaction.custom:"), "{err}");
    }

    #[tokio::test]
    async fn an_unknown_phone_region_stops_start_up_with_its_field() {
        let config = Config::from_toml("[redaction]\nphone_regions = [\"ZZ\"]\n").unwrap();
        let err = build(&config).await.err().unwrap();
        assert!(
            err.starts_with("redaction.phone_regions: unknown phone region `ZZ`"),
            "{err}"
        );
        let config = Config::from_toml("[redaction]\nphone_regions = [\"GB\"]\n").unwrap();
        assert!(build(&config).await.is_ok());
    }
}
