//! Route handlers.

pub(crate) mod agents;
pub mod approvals;
pub(crate) mod openai;
pub(crate) mod ops;
pub mod usage;
