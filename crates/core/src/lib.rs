//! The shared vocabulary of Warden: the table of stable error codes (each with its HTTP status
//! and OpenAI error `type`), the format and hashing of virtual keys, and the `Secret` wrapper
//! that keeps credentials out of logs.
//!
//! This crate owns no I/O and no runtime: every other crate may depend on it, so it must stay
//! small and free of heavy dependencies.

mod error_code;
pub mod keys;
mod secret;
pub mod time;

pub use error_code::ErrorCode;
pub use secret::Secret;
