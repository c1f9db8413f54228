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
    /// Approvers' signing keys.
    Approvers {
        #[command(subcommand)]
        command: ApproversCommand,
    },
    /// Approval requests for agents' writes.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Approve a write: signs the decision locally with your private key and submits it.
    Approve {
        /// The approval id (`apr_…`).
        id: String,
        /// Your approver name, as configured under [approvers.NAME].
        #[arg(long)]
        approver: String,
        /// Your private key file (from `warden approvers keygen`).
        #[arg(long)]
        key: PathBuf,
        /// A comment kept with the decision.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deny a write: signed like an approval; the agent is told the reason.
    Deny {
        /// The approval id (`apr_…`).
        id: String,
        /// Your approver name.
        #[arg(long)]
        approver: String,
        /// Your private key file.
        #[arg(long)]
        key: PathBuf,
        /// Why (the agent sees it).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
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
        /// Also fail when the newest signed checkpoint is older than this (e.g. `2h`): a
        /// stopped log, or one whose newest objects were deleted.
        #[arg(long)]
        max_age: Option<String>,
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

/// Where the server is, and the admin key to use.
#[derive(Args)]
pub struct Remote {
    /// Warden's address.
    #[arg(long, env = "WARDEN_URL", default_value = "http://127.0.0.1:8787")]
    pub url: String,
    /// An admin key (default: WARDEN_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
}

#[derive(Subcommand)]
pub enum ApproversCommand {
    /// Makes an approver's key pair: NAME.key (private, mode 0600) and NAME.pub.
    Keygen {
        /// The approver's name.
        name: String,
        /// Where to write the files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Lists approval requests (newest first).
    List {
        /// Only those in this state (e.g. awaiting_approval).
        #[arg(long)]
        state: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Settles a write whose outcome a crash left unknown (check the target system first).
    Resolve {
        /// The approval id.
        id: String,
        /// succeeded or failed.
        #[arg(long)]
        outcome: String,
        /// What you checked.
        #[arg(long)]
        note: String,
        /// The approver's name (as in `[approvers.NAME]`).
        #[arg(long)]
        approver: String,
        /// The approver's private key file (from `warden approvals keygen`).
        #[arg(long = "key")]
        key_file: std::path::PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Shows one request with its (redacted) preview.
    Show {
        /// The approval id.
        id: String,
        /// Compute the preview again with the real values (admin), and say whether it still
        /// matches the stored one.
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        remote: Remote,
    },
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
        /// Agent definitions the key may drive, comma-separated (`*` = all); default none.
        #[arg(long, value_delimiter = ',')]
        agents: Option<Vec<String>>,
        /// Most agents the key may own; default `server.max_agents_per_key`.
        #[arg(long)]
        max_agents: Option<u64>,
        /// Lifetime, e.g. 30d or 12h; default never expires.
        #[arg(long)]
        expires: Option<String>,
        /// May read usage analytics (`GET /v1/usage`) and other admin routes, and act on
        /// every agent.
        #[arg(long)]
        admin: bool,
    },
    /// Change which agent definitions a key may drive, and its agent cap (the key and any
    /// predecessor still in a rotation's grace period; in effect within `server.key_cache_ttl`).
    Update {
        /// Key name.
        name: String,
        /// Agent definitions, comma-separated (`*` = all, `""` = none); default unchanged.
        #[arg(long, value_delimiter = ',')]
        agents: Option<Vec<String>>,
        /// Most agents the key may own; default unchanged.
        #[arg(long)]
        max_agents: Option<u64>,
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
