//! A short-lived cache of looked-up virtual keys. Asking SQLite on every request costs a
//! thread hand-off per request (sqlx runs SQLite on its own worker threads), the largest CPU
//! cost of the hot path before this cache. Entries live for `server.key_cache_ttl` (default
//! 1s), which bounds how long a revoked key keeps working; expiry dates are still checked on
//! every request against the cached record. Unknown hashes are remembered too, for the same
//! short TTL in a smaller table of their own (emptied when full), so a repeated unknown key
//! costs about what a revoked one does and timing tells a caller nothing about which keys
//! exist; a flood of wrong keys cannot grow memory or push out the known ones. (A new key's
//! hash is random: nobody presents it before it exists, so it still works at once.)

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};
use warden_store::KeyRecord;

/// Entries kept at most; past this the cache is emptied (simple, and bounded).
const MAX_ENTRIES: usize = 100_000;

/// Unknown hashes kept at most; past this that table is emptied.
const MAX_UNKNOWN: usize = 10_000;

/// The cache.
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<[u8; 32], (KeyRecord, Instant)>>,
    unknown: RwLock<HashMap<[u8; 32], Instant>>,
}

impl KeyCache {
    /// A cache whose entries live for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
            unknown: RwLock::new(HashMap::new()),
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

    /// Whether the store recently found no key with this hash.
    pub fn is_unknown(&self, hash: &[u8; 32]) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let unknown = self.unknown.read().unwrap_or_else(|p| p.into_inner());
        unknown.get(hash).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Remembers that the store has no key with this hash.
    pub fn put_unknown(&self, hash: [u8; 32]) {
        if self.ttl.is_zero() {
            return;
        }
        let mut unknown = self.unknown.write().unwrap_or_else(|p| p.into_inner());
        if unknown.len() >= MAX_UNKNOWN {
            unknown.clear();
        }
        unknown.insert(hash, Instant::now());
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
            agents: Vec::new(),
            max_agents: None,
            lineage_id: "key_1".into(),
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
        cache.put_unknown([2; 32]);
        assert!(!cache.is_unknown(&[2; 32]));
    }

    #[test]
    fn unknown_hashes_expire_and_stay_bounded() {
        let cache = KeyCache::new(Duration::from_millis(30));
        cache.put_unknown([1; 32]);
        assert!(cache.is_unknown(&[1; 32]));
        assert!(!cache.is_unknown(&[2; 32]));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!cache.is_unknown(&[1; 32]));
        for i in 0..(MAX_UNKNOWN as u32 + 10) {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            cache.put_unknown(h);
        }
        let len = cache.unknown.read().unwrap().len();
        assert!(len <= MAX_UNKNOWN, "{len}");
    }
}
