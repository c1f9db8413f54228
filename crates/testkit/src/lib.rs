//! Dev-only test kit: a mock OpenAI-compatible upstream that tests script (answers, streams,
//! tool calls, delays, 429/503 with `retry-after`, resets mid-stream, malformed JSON), and a
//! helper that runs the real `warden` binary as a child process.
//!
//! The mock stands in for what is outside the project (the model provider); nothing here is
//! ever linked into the product.

mod mock;
mod process;

pub use mock::{MockUpstream, Recorded, Reply};
pub use process::{WardenProcess, free_port, run_cli};
