//! SQL tools: the read policy (`validate`), the write policy (`validate_write`), both resolved
//! with real scoping over allow-lists (`resolve`, `functions`), and the connectors that run
//! validated statements on SQLite, PostgreSQL and MySQL/MariaDB.

mod connector;
mod functions;
mod resolve;
pub mod roles;
mod validate;
mod write;

pub use connector::{
    CompanyDatabase, Executed, Expected, MAX_RESULT_BYTES, Preview, ReadError, Rows,
    SQLITE_MAX_VALUE_BYTES,
};
pub use functions::never_allowed;
pub use validate::{
    MAX_STATEMENT_BYTES, ReadPolicy, Refusal, Rule, SqlDialect, ValidatedRead, validate,
};
pub use write::{ValidatedWrite, WriteKind, WritePolicy, validate_write};
