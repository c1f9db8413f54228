//! The audit log: an append-only, hash-chained record of every model call (and, as they land,
//! agent steps, tool calls, approvals and key changes), tagged with the deployment version.
//! Records go to a local write-ahead file with group commit before the response they describe
//! is sent; closed segments get a signed (Ed25519) manifest and are shipped to object storage;
//! signed checkpoints of the chain head bound what could go missing unseen; [`verify`] checks
//! the chain end to end and reports the time up to which the log is proven complete.
//!
//! This crate must never be given raw content: records carry ids, names, counts and hashes,
//! and any text they hold comes redacted. If the log cannot be written, callers refuse work.

mod checkpoint;
mod key;
mod record;
mod segment;
mod shipper;
mod verify;
mod writer;

pub use checkpoint::{CHECKPOINTS, Checkpoint, checkpoint_name, checkpoint_seq};
pub use key::{load_or_create as load_or_create_key, parse_public};
pub use record::{Event, GENESIS, ModelCall, Record};
pub use segment::{Manifest, RETENTION, Retention, manifest_name, segment_name};
pub use shipper::{PREFIX, Shipper};
pub use verify::{Proven, Report, records, verify, verify_window};
pub use writer::{AuditLog, Fsync, Options, Writer};

/// What can go wrong with the audit log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("audit I/O: {0}")]
    Io(String),
    /// The object store refused or failed.
    #[error("audit object store: {0}")]
    Store(String),
    /// Stored data is not what it should be.
    #[error("audit data invalid: {0}")]
    Invalid(String),
    /// The signing key is unusable.
    #[error("audit key: {0}")]
    Key(String),
    /// The writer stopped after a failure; no event is accepted (fail closed).
    #[error("the audit log is failing ({0}); work is refused")]
    Failed(String),
    /// The writer is gone (shutting down).
    #[error("the audit log is closed")]
    Closed,
}
