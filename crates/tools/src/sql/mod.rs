//! SQL tools: the read policy (`validate`) and, later, the connectors that run validated
//! statements.

mod connector;
mod validate;
mod write;

pub use connector::{Database, Executed, MAX_RESULT_BYTES, Preview, ReadError, Rows};
pub use validate::{ReadPolicy, Refusal, Rule, SqlDialect, ValidatedRead, validate};
pub use write::{ValidatedWrite, WriteKind, WritePolicy, validate_write};
