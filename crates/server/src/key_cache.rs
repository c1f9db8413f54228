//! A short-lived cache of looked-up virtual keys. Asking SQLite on every request costs a
//! thread hand-off per request (sqlx runs SQLite on its own worker threads), the largest CPU
//! cost of the hot path before this cache. Entries live for `server.key_cache_ttl` (default
//! 1s), which bounds how long a revoked key keeps working; expiry dates are still checked on
//! every request against the cached record. Unknown keys are never cached, so a new key works
//! at once and a flood of wrong keys cannot fill the cache.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};
use warden_store::KeyRecord;

/// Entries kept at most; past this the cache is emptied (simple, and bounded).
const MAX_ENTRIES: usize = 100_000;

/// The cache.
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<[u8; 32], (KeyRecord, Instant)>>,
}

impl KeyCache {
    /// A cache whose entries live for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// A fresh cached record for this key hash, if any.
    pub fn get(&self, hash: &[u8; 32]) -> Option<KeyRecord> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(record, _)| record.clone())
    }

    /// Remembers a record found in the store.
    pub fn put(&self, hash: [u8; 32], record: KeyRecord) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, (record, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> KeyRecord {
        KeyRecord {
            id: "key_1".into(),
            name: "n".into(),
            prefix: "wdn_".into(),
            models: None,
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            replaced_by: None,
            admin: false,
        }
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = KeyCache::new(Duration::from_millis(30));
        cache.put([1; 32], record());
        assert_eq!(cache.get(&[1; 32]), Some(record()));
        assert_eq!(cache.get(&[2; 32]), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&[1; 32]), None);
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let cache = KeyCache::new(Duration::ZERO);
        cache.put([1; 32], record());
        assert_eq!(cache.get(&[1; 32]), None);
    }
}
