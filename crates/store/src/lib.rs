//! Warden's persistent state: virtual keys and their change events, usage rows and budget
//! counters, agents and their journals, approval requests. The API is split by concern
//! ([`KeyStore`], [`KeyEventOutbox`], [`UsageStore`], [`AgentStore`], [`ApprovalStore`];
//! [`Store`] is all of them). One implementation, [`SqlStore`], runs on two real backends:
//! SQLite (a file, the embedded default) and PostgreSQL (for several nodes), with the same
//! schema versions and one shared test suite.
//!
//! This is the only crate that knows SQL. It must never log stored values (hashes, model
//! content): errors carry what failed, not the data.

mod agents;
mod migrate;
mod records;
mod sql;
mod traits;
mod usage_writer;

pub use agents::{
    AgentCreation, AgentRecord, AgentUpdate, ApprovalRecord, DecisionRecord, NewStep, StepRecord,
};
pub use records::{
    GroupBy, KeyEvent, KeyRecord, KeyStatus, NewKeyRecord, UsageGroup, UsageRow, grants_agent,
    grants_model,
};
pub use sql::SqlStore;
pub use traits::{AgentStore, ApprovalStore, KeyEventOutbox, KeyStore, Store, UsageStore};
pub use usage_writer::{UsageWriter, UsageWriterHandle};

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be opened, reached or written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A key with this name is already current.
    #[error("a key named `{0}` already exists (rotate or revoke it first)")]
    NameTaken(String),
    /// No current key has this name.
    #[error("no key named `{0}`")]
    NoSuchKey(String),
    /// Another node (or a newer instance) took the agent over: this writer's lease epoch is
    /// stale and its write was not made.
    #[error("the lease on agent `{0}` was lost to a newer holder")]
    LeaseLost(String),
    /// A row could not be decoded: the schema and the code disagree.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A unique insert or a conditional write lost to a row that is already there (for
    /// example an approval id that exists): the caller's request, not the database, is at
    /// fault, and retrying it unchanged fails again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row the operation needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

impl From<sqlx::Error> for Error {
    /// Keeps what the database could tell: a unique violation is a [`Error::Conflict`] (named
    /// by its constraint, never its values), a missing row [`Error::NotFound`], an
    /// undecodable one [`Error::Corrupt`]; connection, I/O, pool and other database errors are
    /// [`Error::Unavailable`].
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Error::Conflict(match d.constraint() {
                    Some(c) => format!("unique constraint `{c}`"),
                    None => "a unique constraint".into(),
                })
            }
            sqlx::Error::RowNotFound => Error::NotFound("no row matched".into()),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. } => Error::Corrupt(e.to_string()),
            _ => Error::Unavailable(e.to_string()),
        }
    }
}
