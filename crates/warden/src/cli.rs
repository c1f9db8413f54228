//! The command line.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Warden: a secure, self-hosted runtime for enterprise AI agents.
#[derive(Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args)]
pub struct Global {
    /// Configuration file (TOML). Without one, Warden runs on its embedded defaults.
    #[arg(long, global = true, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory holding the SQLite store (default ./warden-data).
    #[arg(long, global = true, env = "WARDEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Try Warden: a sample company database, a demo agent and (without OPENAI_API_KEY) a
    /// clearly labelled scripted model; asks one question and keeps serving.
    Demo(DemoArgs),
    /// Run the gateway.
    Serve(ServeArgs),
    /// Manage virtual keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Tokens, cost, requests, cache hit rate and refusals, grouped (from the store).
    Usage(UsageArgs),
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the signed manifests; exit 1 at the first broken link.
    Verify {
        /// Trusted public key (hex, or a file holding it); default `<data dir>/audit.pub`.
        #[arg(long)]
        public_key: Option<String>,
        /// Only segments with records at or after this time (unix seconds, 2026-11-26, …).
        #[arg(long)]
        from: Option<String>,
        /// Only segments with records before this time.
        #[arg(long)]
        to: Option<String>,
    },
    /// Print matching records as JSON lines (shipped and not yet shipped), oldest first.
    Search {
        /// Only records at or after this time (unix seconds, 2026-11-26, 2026-11-26T10:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Only records before this time.
        #[arg(long)]
        to: Option<String>,
        /// Only model calls made with this virtual key (name or id).
        #[arg(long)]
        key: Option<String>,
        /// Only the record of this request id.
        #[arg(long)]
        request_id: Option<String>,
        /// At most this many records (the most recent).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Args)]
pub struct UsageArgs {
    /// key, model or day.
    #[arg(long, default_value = "key")]
    pub group_by: String,
    /// From this time (unix seconds, 2026-11-26, 2026-11-26T10:00:00Z); default 30 days ago.
    #[arg(long)]
    pub from: Option<String>,
    /// Until this time (exclusive); default now.
    #[arg(long)]
    pub to: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Address to listen on (default 127.0.0.1:8787).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// With OPENAI_API_KEY set: the model the demo agent uses (default gpt-4o-mini).
    #[arg(long)]
    pub model: Option<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides server.listen; default 127.0.0.1:8787).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        /// Name, unique among current keys.
        #[arg(long)]
        name: String,
        /// Models (names or aliases) the key may use, comma-separated; default all.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Lifetime, e.g. 30d or 12h; default never expires.
        #[arg(long)]
        expires: Option<String>,
        /// May read usage analytics (`GET /v1/usage`) and other admin routes.
        #[arg(long)]
        admin: bool,
    },
    /// List keys (never their values).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key (and its predecessors still in a rotation grace period).
    Revoke {
        /// Key name.
        name: String,
    },
    /// Issue a new key for a name; the old one keeps working for the grace period.
    Rotate {
        /// Key name.
        name: String,
        /// How long the old key keeps working (default 24h; 0s ends it now).
        #[arg(long, default_value = "24h")]
        grace: String,
    },
}
