//! Segments: JSONL files of consecutive records, each closed with a manifest that states its
//! range, count and last hash (and, since checkpoints exist, the checkpoint made at its close),
//! signed with the audit key. Names sort by first sequence number.

use crate::Error;
use crate::record::Record;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// A closed segment's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// File name of the segment.
    pub segment: String,
    /// First and last sequence numbers.
    pub first_seq: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Number of records.
    pub count: u64,
    /// `prev_hash` of the first record (links to the previous segment).
    pub first_prev_hash: String,
    /// Hash of the last record.
    pub last_hash: String,
    /// Times of the first and last records (unix ms), for retention and windows.
    pub first_time_ms: u64,
    /// Time of the last record (unix ms).
    pub last_time_ms: u64,
    /// Hex SHA-256 of the segment file's bytes.
    pub file_sha256: String,
    /// Hex public key of the signer.
    pub public_key: String,
    /// Sequence number of the checkpoint made when the segment closed (its last record); that
    /// checkpoint must exist wherever this manifest does. `None` in manifests written before
    /// checkpoints existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_seq: Option<u64>,
    /// Hex Ed25519 signature over the manifest's other fields (`signed_bytes`).
    pub signature: String,
}

/// `seg-00000000000000000001.jsonl` for a segment starting at `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.jsonl")
}

/// The manifest's file name for a segment name.
pub fn manifest_name(segment: &str) -> String {
    format!("{}.manifest.json", segment.trim_end_matches(".jsonl"))
}

impl Manifest {
    /// Builds and signs the manifest of a segment from `first` to `last` whose file is `bytes`,
    /// naming the checkpoint made at its close (if any).
    pub fn sign(
        key: &SigningKey,
        segment: &str,
        first: &Record,
        last: &Record,
        bytes: &[u8],
        checkpoint_seq: Option<u64>,
    ) -> Self {
        use sha2::Digest;
        let mut m = Self {
            segment: segment.to_owned(),
            first_seq: first.seq,
            last_seq: last.seq,
            count: last.seq - first.seq + 1,
            first_prev_hash: first.prev_hash.clone(),
            last_hash: last.hash(),
            first_time_ms: first.time_ms,
            last_time_ms: last.time_ms,
            file_sha256: hex::encode(sha2::Sha256::digest(bytes)),
            public_key: hex::encode(key.verifying_key().as_bytes()),
            checkpoint_seq,
            signature: String::new(),
        };
        m.signature = hex::encode(key.sign(&m.signed_bytes()).to_bytes());
        m
    }

    /// What the signature covers: every field but the signature, in a fixed text form (v1
    /// without a checkpoint, v2 with one, so neither can pass for the other).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let (version, checkpoint) = match self.checkpoint_seq {
            None => ("v1", String::new()),
            Some(seq) => ("v2", format!("{seq}\n")),
        };
        format!(
            "warden-audit-manifest-{version}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{checkpoint}",
            self.segment,
            self.first_seq,
            self.last_seq,
            self.count,
            self.first_prev_hash,
            self.last_hash,
            self.file_sha256,
            self.public_key,
            self.first_time_ms,
            self.last_time_ms
        )
        .into_bytes()
    }

    /// Checks the signature against `expected` (the operator's trusted public key).
    pub fn verify(&self, expected: &VerifyingKey) -> Result<(), Error> {
        check_signature(
            &self.segment,
            &self.public_key,
            &self.signature,
            &self.signed_bytes(),
            expected,
        )
    }
}

/// Written by the retention job before it deletes old segments: the chain now starts at
/// `from_seq`, whose `prev_hash` is `anchor_hash`. Signed like a manifest, so deleting old
/// segments without the key shows up as a gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// First sequence number kept.
    pub from_seq: u64,
    /// Hash of the record before it (the last deleted one).
    pub anchor_hash: String,
    /// When the job ran (unix ms).
    pub time_ms: u64,
    /// Hex public key of the signer.
    pub public_key: String,
    /// Hex Ed25519 signature over the other fields.
    pub signature: String,
}

/// Object name of the retention marker.
pub const RETENTION: &str = "retention.json";

impl Retention {
    /// Builds and signs a marker.
    pub fn sign(key: &SigningKey, from_seq: u64, anchor_hash: &str, time_ms: u64) -> Self {
        let mut r = Self {
            from_seq,
            anchor_hash: anchor_hash.to_owned(),
            time_ms,
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: String::new(),
        };
        r.signature = hex::encode(key.sign(&r.signed_bytes()).to_bytes());
        r
    }

    fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "warden-audit-retention-v1\n{}\n{}\n{}\n{}\n",
            self.from_seq, self.anchor_hash, self.time_ms, self.public_key
        )
        .into_bytes()
    }

    /// Checks the signature against the trusted key.
    pub fn verify(&self, expected: &VerifyingKey) -> Result<(), Error> {
        check_signature(
            "retention marker",
            &self.public_key,
            &self.signature,
            &self.signed_bytes(),
            expected,
        )
    }
}

/// Checks a hex Ed25519 `signature` over `bytes` by the key named in `public_key`, which must
/// be the trusted `expected` one. Errors start with `what`.
pub(crate) fn check_signature(
    what: &str,
    public_key: &str,
    signature: &str,
    bytes: &[u8],
    expected: &VerifyingKey,
) -> Result<(), Error> {
    if public_key != hex::encode(expected.as_bytes()) {
        return Err(Error::Invalid(format!("{what}: signed by another key")));
    }
    let sig = hex::decode(signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| Error::Invalid(format!("{what}: malformed signature")))?;
    expected
        .verify_strict(bytes, &Signature::from_bytes(&sig))
        .map_err(|_| Error::Invalid(format!("{what}: the signature is invalid")))
}
