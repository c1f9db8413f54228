//! Tools: what an agent may call, and the checks before anything runs (the Validated Tool
//! Pattern). SQL is validated by parsing it, never trusted and never pattern-matched.
//!
//! This crate must never run a statement it has not validated, and never decide a tool call
//! is a read because the model says so.

pub mod approval;
pub mod http;
pub mod sql;
mod tool;

pub use tool::{
    Catalog, Classification, Proposal, Settlement, SqlExecute, SqlQuery, Tool, ToolError, WriteTool,
};
