//! A short-lived cache of looked-up virtual keys. Asking SQLite on every request costs a
//! thread hand-off per request (sqlx runs SQLite on its own worker threads), the largest CPU
//! cost of the hot path before this cache. Entries live for `server.key_cache_ttl` (default
//! 1s), which bounds how long a revoked key keeps working; expiry dates are still checked on
//! every request against the cached record. Unknown hashes are remembered too, for the same
//! short TTL in a smaller table of their own (bounded), so a repeated unknown key
//! costs about what a revoked one does and timing tells a caller nothing about which keys
//! exist; a flood of wrong keys cannot grow memory or push out the known ones. (A new key's
//! hash is random: nobody presents it before it exists, so it still works at once.)

use moka::sync::Cache;
use std::time::Duration;
use warden_store::KeyRecord;

/// Entries kept at most (moka evicts the least useful past this).
const MAX_ENTRIES: u64 = 100_000;

/// Unknown hashes kept at most, in a table of their own so that they cannot push out the
/// known keys.
const MAX_UNKNOWN: u64 = 10_000;

fn table<V: Clone + Send + Sync + 'static>(max: u64, ttl: Duration) -> Cache<[u8; 32], V> {
    Cache::builder().max_capacity(max).time_to_live(ttl).build()
}

/// The cache (moka's concurrent cache: each entry lives for the TTL, the tables are bounded).
pub struct KeyCache {
    /// `None` when the TTL is zero: no caching.
    tables: Option<Tables>,
}

struct Tables {
    entries: Cache<[u8; 32], KeyRecord>,
    unknown: Cache<[u8; 32], ()>,
}

impl KeyCache {
    /// A cache whose entries live for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            tables: (!ttl.is_zero()).then(|| Tables {
                entries: table(MAX_ENTRIES, ttl),
                unknown: table(MAX_UNKNOWN, ttl),
            }),
        }
    }

    /// A fresh cached record for this key hash, if any.
    pub fn get(&self, hash: &[u8; 32]) -> Option<KeyRecord> {
        self.tables.as_ref()?.entries.get(hash)
    }

    /// Remembers a record found in the store.
    pub fn put(&self, hash: [u8; 32], record: KeyRecord) {
        if let Some(t) = &self.tables {
            t.entries.insert(hash, record);
        }
    }

    /// Whether the store recently found no key with this hash.
    pub fn is_unknown(&self, hash: &[u8; 32]) -> bool {
        self.tables
            .as_ref()
            .is_some_and(|t| t.unknown.contains_key(hash))
    }

    /// Remembers that the store has no key with this hash.
    pub fn put_unknown(&self, hash: [u8; 32]) {
        if let Some(t) = &self.tables {
            t.unknown.insert(hash, ());
        }
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
        for i in 0..(MAX_UNKNOWN as u32 + 1000) {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            cache.put_unknown(h);
        }
        let unknown = &cache.tables.as_ref().unwrap().unknown;
        unknown.run_pending_tasks();
        assert!(
            unknown.entry_count() <= MAX_UNKNOWN,
            "{}",
            unknown.entry_count()
        );
    }
}
