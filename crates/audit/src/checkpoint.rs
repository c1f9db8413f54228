//! Checkpoints: the chain head (sequence number, hash of the last record, time, deployment),
//! signed with the audit key. The writer makes one at least every `checkpoint_interval` while
//! records arrive and one at each segment's close; the closing one ships after its segment and
//! is named by the segment's manifest. `verify` requires the chain to reach every checkpoint
//! with the same hash, so records a checkpoint covers cannot be removed or rewritten unseen.

use crate::Error;
use crate::segment::check_signature;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Object names of shipped checkpoints live under this prefix (beside `segments/`).
pub const CHECKPOINTS: &str = "checkpoints";

/// A signed statement that the chain had reached `seq`, ending in `hash`, at `time_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number of the last record.
    pub seq: u64,
    /// Hash of that record.
    pub hash: String,
    /// When it was signed (unix ms).
    pub time_ms: u64,
    /// Deployment version of the writer.
    pub deployment: String,
    /// Hex public key of the signer.
    pub public_key: String,
    /// Hex Ed25519 signature over the other fields (`signed_bytes`).
    pub signature: String,
}

/// `00000000000000000042.json`: a checkpoint's file and object name.
pub fn checkpoint_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

/// The sequence number in a checkpoint's name, if it is one.
pub fn checkpoint_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Checkpoint {
    /// Builds and signs a checkpoint of the head `seq`/`hash`.
    pub fn sign(key: &SigningKey, seq: u64, hash: &str, time_ms: u64, deployment: &str) -> Self {
        let mut c = Self {
            seq,
            hash: hash.to_owned(),
            time_ms,
            deployment: deployment.to_owned(),
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: String::new(),
        };
        c.signature = hex::encode(key.sign(&c.signed_bytes()).to_bytes());
        c
    }

    /// What the signature covers: every field but the signature, in a fixed text form.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "warden-audit-checkpoint-v1\n{}\n{}\n{}\n{}\n{}\n",
            self.seq, self.hash, self.time_ms, self.public_key, self.deployment
        )
        .into_bytes()
    }

    /// Checks the signature against `expected` (the operator's trusted public key).
    pub fn verify(&self, expected: &VerifyingKey) -> Result<(), Error> {
        check_signature(
            &format!("checkpoint {}", self.seq),
            &self.public_key,
            &self.signature,
            &self.signed_bytes(),
            expected,
        )
    }

    /// Reads a checkpoint file named `name`, checks its signature and that its name matches.
    pub fn parse(name: &str, bytes: &[u8], expected: &VerifyingKey) -> Result<Self, Error> {
        let c: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::Invalid(format!("checkpoint {name}: unreadable: {e}")))?;
        if checkpoint_seq(name) != Some(c.seq) {
            return Err(Error::Invalid(format!(
                "checkpoint {name}: holds seq {}, not the one its name says",
                c.seq
            )));
        }
        c.verify(expected)?;
        Ok(c)
    }
}
