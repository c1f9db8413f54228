//! SQL tools: the read policy (`validate`) and, later, the connectors that run validated
//! statements.

mod connector;
mod validate;

pub use connector::{Database, MAX_RESULT_BYTES, ReadError, Rows};
pub use validate::{ReadPolicy, Refusal, Rule, SqlDialect, ValidatedRead, validate};
