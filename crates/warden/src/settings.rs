//! Turns the file, the command line and the environment into a typed configuration.
//! Precedence: command line, then environment, then the file, then the embedded defaults.

use crate::cli::Global;
use std::path::PathBuf;
use warden_config::{Config, KeySource, ProviderConfig};
use warden_core::Secret;
use warden_gateway::KeySpec;

/// Why a command failed, which decides the exit code.
pub enum Failure {
    /// Bad configuration or arguments: exit 2.
    Config(String),
    /// Anything else: exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

/// The OpenAI endpoint used when `OPENAI_BASE_URL` is not set.
const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Loads the config file, if any, and adds the embedded OpenAI provider when the file
/// configures no provider: `OPENAI_API_KEY` and/or `OPENAI_BASE_URL`, as the OpenAI SDKs read
/// them, make a provider named `openai` that serves every model name.
pub fn load(global: &Global) -> Result<Config, Failure> {
    let mut config = match &global.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::Config(format!(
                    "cannot read the config file {}: {e}",
                    path.display()
                ))
            })?;
            Config::from_toml(&text).map_err(|e| {
                Failure::Config(format!("invalid configuration in {}: {e}", path.display()))
            })?
        }
        None => Config::default(),
    };
    if config.providers.is_empty() {
        let key = env_nonempty("OPENAI_API_KEY");
        let base_url = env_nonempty("OPENAI_BASE_URL");
        if key.is_some() || base_url.is_some() {
            let base_url = base_url.unwrap_or_else(|| OPENAI_DEFAULT_BASE_URL.into());
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(Failure::Config(
                    "OPENAI_BASE_URL must start with http:// or https://".into(),
                ));
            }
            let provider = ProviderConfig {
                base_url: base_url.trim_end_matches('/').to_owned(),
                key: if key.is_some() {
                    KeySource::Env("OPENAI_API_KEY".into())
                } else {
                    KeySource::None
                },
                timeout: std::time::Duration::from_secs(60),
                headers: Default::default(),
            };
            config = config.with_default_provider("openai", provider);
        }
    }
    Ok(config)
}

/// The data directory: `--data-dir`/`WARDEN_DATA_DIR`, else the file's, else `./warden-data`.
pub fn data_dir(global: &Global, config: &Config) -> PathBuf {
    global
        .data_dir
        .clone()
        .or_else(|| config.store.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("warden-data"))
}

/// Opens the configured store: `warden.db` in the data directory, or PostgreSQL at the URL
/// in the variable `store.postgres_url_env` names. Every command uses this, so `warden keys`
/// and `warden usage` see what `serve` sees.
pub async fn open_store(
    global: &Global,
    config: &Config,
) -> Result<std::sync::Arc<dyn warden_store::Store>, Failure> {
    use anyhow::Context;
    match &config.store.backend {
        warden_config::StoreBackend::Sqlite => {
            let dir = data_dir(global, config);
            let store = warden_store::SqlStore::open_sqlite_dir(&dir)
                .await
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            Ok(std::sync::Arc::new(store))
        }
        warden_config::StoreBackend::Postgres { url_env, schema } => {
            let url = env_nonempty(url_env).ok_or_else(|| {
                Failure::Config(format!(
                    "store.postgres_url_env: the environment variable {url_env} is not set"
                ))
            })?;
            let store = warden_store::SqlStore::connect_postgres(&url, schema.as_deref())
                .await
                .with_context(|| format!("cannot open the PostgreSQL store (from {url_env})"))?;
            Ok(std::sync::Arc::new(store))
        }
    }
}

/// The Redis URL from the variable `[redis] url_env` names; missing or empty stops start-up.
pub fn redis_url(config: &warden_config::RedisConfig) -> Result<Secret, Failure> {
    env_nonempty(&config.url_env)
        .map(Secret::new)
        .ok_or_else(|| {
            Failure::Config(format!(
                "redis.url_env: the environment variable {} is not set",
                config.url_env
            ))
        })
}

/// Resolves a provider's key source; a missing variable stops start-up naming the field.
pub fn key_for(name: &str, provider: &ProviderConfig) -> Result<KeySpec, String> {
    Ok(match &provider.key {
        KeySource::None => KeySpec::None,
        KeySource::File(path) => KeySpec::File(path.clone()),
        KeySource::Env(var) => match env_nonempty(var) {
            Some(v) => KeySpec::Static(Secret::new(v.trim())),
            None => {
                return Err(format!(
                    "providers.{name}.api_key_env: the environment variable {var} is not set"
                ));
            }
        },
    })
}

/// The deployment version: configured, else the crate version plus the git commit if known.
pub fn deployment(config: &Config) -> String {
    config
        .deployment
        .clone()
        .unwrap_or_else(|| match option_env!("WARDEN_GIT_COMMIT") {
            Some(commit) => format!("{}+{commit}", env!("CARGO_PKG_VERSION")),
            None => env!("CARGO_PKG_VERSION").to_owned(),
        })
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}
