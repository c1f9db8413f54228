//! What to do with each kind of finding: mask it (reversibly), block the request, or allow it.

use crate::entity::Entity;
use std::collections::HashMap;

/// The action for one entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace with a typed placeholder (`<EMAIL_1>`), restored in the answer.
    Mask,
    /// Refuse the request, naming the entity types (never the values).
    Block,
    /// Leave as is.
    Allow,
}

/// Actions by entity name, with a default for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: Action,
    by_entity: HashMap<String, Action>,
}

impl Default for Policy {
    /// Mask everything: the safe default with no configuration.
    fn default() -> Self {
        Self {
            default: Action::Mask,
            by_entity: HashMap::new(),
        }
    }
}

impl Policy {
    /// A policy with `default` for every type but those in `by_entity`.
    pub fn new(default: Action, by_entity: HashMap<String, Action>) -> Self {
        Self { default, by_entity }
    }

    /// This policy, overridden by `overrides` (a key's own policy over the global one): an
    /// override's default replaces this default, and its per-type actions win.
    pub fn overridden(&self, default: Option<Action>, overrides: &HashMap<String, Action>) -> Self {
        let mut by_entity = if default.is_some() {
            HashMap::new()
        } else {
            self.by_entity.clone()
        };
        by_entity.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        Self {
            default: default.unwrap_or(self.default),
            by_entity,
        }
    }

    /// The action for `entity`.
    pub fn action(&self, entity: &Entity) -> Action {
        self.by_entity
            .get(entity.name())
            .copied()
            .unwrap_or(self.default)
    }

    /// Whether every type is allowed (then nothing needs scanning).
    pub fn allows_everything(&self) -> bool {
        self.default == Action::Allow && self.by_entity.values().all(|a| *a == Action::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_overrides_win_and_a_key_default_replaces_the_global_one() {
        let global = Policy::new(
            Action::Mask,
            HashMap::from([("EMAIL".into(), Action::Allow)]),
        );
        let email = Entity::new("EMAIL");
        let card = Entity::new("CREDIT_CARD");
        assert_eq!(global.action(&email), Action::Allow);
        assert_eq!(global.action(&card), Action::Mask);
        let key = global.overridden(
            None,
            &HashMap::from([("CREDIT_CARD".into(), Action::Block)]),
        );
        assert_eq!(key.action(&card), Action::Block);
        assert_eq!(key.action(&email), Action::Allow);
        let strict = global.overridden(Some(Action::Block), &HashMap::new());
        assert_eq!(strict.action(&email), Action::Block);
    }
}
