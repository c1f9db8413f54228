//! Route handlers.

pub(crate) mod agents;
pub(crate) mod openai;
pub(crate) mod ops;
pub mod usage;
