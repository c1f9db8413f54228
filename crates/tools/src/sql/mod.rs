//! SQL tools: the read policy (`validate`) and, later, the connectors that run validated
//! statements.

mod validate;

pub use validate::{ReadPolicy, Refusal, Rule, SqlDialect, ValidatedRead, validate};
