//! Virtual keys: the `wdn_…` bearer tokens Warden issues to clients. Only their SHA-256 is
//! stored, so a leaked database does not leak working keys; the plain key is shown once.

use crate::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every virtual key starts with this, so secret scanners and humans recognise it.
pub const PREFIX: &str = "wdn_";

/// Length of a key: the prefix plus 48 hex characters (24 random bytes, 192 bits).
pub const LEN: usize = PREFIX.len() + 48;

/// A freshly generated key: the plain value (to show once) and what to store.
pub struct NewKey {
    /// The bearer token to hand to the client. Never stored.
    pub plain: Secret,
    /// SHA-256 of the plain key, the lookup value.
    pub hash: [u8; 32],
    /// The first characters, safe to display (`wdn_1a2b3c4d`) so people can tell keys apart.
    pub display_prefix: String,
}

/// Generates a new random key from the operating system's RNG.
pub fn generate() -> NewKey {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let plain = format!("{PREFIX}{}", hex::encode(bytes));
    NewKey {
        hash: hash(&plain),
        display_prefix: plain[..PREFIX.len() + 8].to_owned(),
        plain: Secret::new(plain),
    }
}

/// SHA-256 of a presented key, for lookup.
pub fn hash(plain: &str) -> [u8; 32] {
    Sha256::digest(plain.as_bytes()).into()
}

/// Whether a presented token has the shape of a virtual key (cheap check before any lookup).
pub fn looks_valid(token: &str) -> bool {
    token.len() == LEN
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_well_formed_and_hash_to_their_stored_hash() {
        let a = generate();
        let b = generate();
        assert_ne!(a.plain.expose(), b.plain.expose());
        assert!(looks_valid(a.plain.expose()));
        assert_eq!(hash(a.plain.expose()), a.hash);
        assert!(a.plain.expose().starts_with(&a.display_prefix));
    }

    #[test]
    fn malformed_tokens_are_rejected_before_lookup() {
        assert!(!looks_valid("sk-abc"));
        assert!(!looks_valid(&format!("wdn_{}", "z".repeat(48))));
        assert!(!looks_valid(&format!("wdn_{}", "a".repeat(47))));
    }
}
