//! `warden keys …`: create, list, update, revoke and rotate virtual keys in the data directory's
//! store. A plain key is printed once, on stdout alone (so scripts can capture it); messages
//! go to stderr.

use crate::cli::{Global, KeysCommand};
use crate::settings::{self, Failure};
use rand::RngCore;
use warden_core::time::iso8601;
use warden_core::time::unix_secs as now_secs;
use warden_store::NewKeyRecord;

/// Runs one keys command.
pub async fn run(global: &Global, command: KeysCommand) -> Result<(), Failure> {
    let config = settings::load(global)?;
    let store = settings::open_store(global, &config).await?;
    match command {
        KeysCommand::Create {
            name,
            models,
            agents,
            max_agents,
            expires,
            admin,
        } => {
            check_name(&name)?;
            let agents = agent_grants(&config, agents.unwrap_or_default())?;
            let max_agents = cap(max_agents)?;
            let models = models.map(|m| {
                m.into_iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            });
            if models.as_ref().is_some_and(Vec::is_empty) {
                return Err(Failure::Config(
                    "--models: give at least one model name".into(),
                ));
            }
            let now = now_secs();
            let expires_at = match expires {
                None => None,
                Some(text) => {
                    let d = warden_config::parse_duration(&text)
                        .map_err(|m| Failure::Config(format!("--expires: {m}")))?;
                    if d.is_zero() {
                        return Err(Failure::Config(
                            "--expires: must be greater than zero".into(),
                        ));
                    }
                    Some(now.saturating_add(d.as_secs() as i64))
                }
            };
            let (mut record, plain) = new_key(&name, models, now, expires_at, admin);
            record.agents = agents;
            record.max_agents = max_agents;
            store.insert_key(&record).await.map_err(store_failure)?;
            println!("{}", plain.expose());
            eprintln!(
                "created {}key `{name}` ({}, id {}){}. Store it now: Warden keeps only its hash.",
                if admin { "admin " } else { "" },
                record.prefix,
                record.id,
                expires_at
                    .map(|t| format!(", expires {}", iso8601(t)))
                    .unwrap_or_default()
            );
        }
        KeysCommand::List { json } => {
            let keys = store.list_keys().await.map_err(store_failure)?;
            let now = now_secs();
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id, "name": k.name, "prefix": k.prefix,
                            "status": k.status(now).as_str(), "models": k.models, "admin": k.admin,
                            "agents": k.agents, "max_agents": k.max_agents,
                            "created_at": iso8601(k.created_at),
                            "expires_at": k.expires_at.map(iso8601),
                            "revoked_at": k.revoked_at.map(iso8601),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::from(rows));
            } else {
                println!(
                    "{:<20} {:<13} {:<8} {:<21} {:<21} {:<20} MODELS",
                    "NAME", "PREFIX", "STATUS", "CREATED", "EXPIRES", "AGENTS"
                );
                for k in keys {
                    let agents = if k.agents.is_empty() {
                        "-".to_owned()
                    } else {
                        k.agents.join(",")
                    };
                    println!(
                        "{:<20} {:<13} {:<8} {:<21} {:<21} {:<20} {}",
                        k.name,
                        k.prefix,
                        k.status(now).as_str(),
                        iso8601(k.created_at),
                        k.expires_at.map(iso8601).unwrap_or_else(|| "never".into()),
                        agents,
                        k.models.map(|m| m.join(",")).unwrap_or_else(|| "*".into())
                            + if k.admin { " (admin)" } else { "" }
                    );
                }
            }
        }
        KeysCommand::Update {
            name,
            agents,
            max_agents,
        } => {
            let current = current_key(store.as_ref(), &name).await?;
            let agents = match agents {
                Some(agents) => agent_grants(&config, agents)?,
                None => current.agents,
            };
            let max_agents = cap(max_agents)?.or(current.max_agents);
            let n = store
                .update_key_agents(&name, &agents, max_agents)
                .await
                .map_err(store_failure)?;
            eprintln!(
                "updated {n} key(s) named `{name}`: agents {}{}",
                if agents.is_empty() {
                    "none".to_owned()
                } else {
                    agents.join(",")
                },
                max_agents
                    .map(|n| format!(", at most {n}"))
                    .unwrap_or_default()
            );
        }
        KeysCommand::Revoke { name } => {
            let n = store
                .revoke_keys(&name, now_secs())
                .await
                .map_err(store_failure)?;
            eprintln!("revoked {n} key(s) named `{name}`");
        }
        KeysCommand::Rotate { name, grace } => {
            let grace = warden_config::parse_duration(&grace)
                .map_err(|m| Failure::Config(format!("--grace: {m}")))?;
            let now = now_secs();
            let current = current_key(store.as_ref(), &name).await?;
            let (mut record, plain) = new_key(
                &name,
                current.models.clone(),
                now,
                current.expires_at,
                current.admin,
            );
            record.agents = current.agents.clone();
            record.max_agents = current.max_agents;
            record.lineage_id = current.lineage_id.clone();
            let old_until = now.saturating_add(grace.as_secs() as i64);
            store
                .rotate_key(&record, old_until)
                .await
                .map_err(store_failure)?;
            println!("{}", plain.expose());
            eprintln!(
                "rotated key `{name}`: new key {} (id {}); the old key works until {}",
                record.prefix,
                record.id,
                iso8601(old_until)
            );
        }
    }
    Ok(())
}

/// Creates a key named `name`, given the agent definitions `agents`, in the store `global`
/// points at and returns its plain value (for `warden demo`, which prints it itself).
pub async fn create_quietly(
    global: &Global,
    name: &str,
    admin: bool,
    agents: &[&str],
) -> Result<String, Failure> {
    let config = settings::load(global)?;
    let store = settings::open_store(global, &config).await?;
    let (mut record, plain) = new_key(name, None, now_secs(), None, admin);
    record.agents = agents.iter().map(|a| (*a).to_owned()).collect();
    store.insert_key(&record).await.map_err(store_failure)?;
    Ok(plain.expose().to_owned())
}

fn new_key(
    name: &str,
    models: Option<Vec<String>>,
    now: i64,
    expires_at: Option<i64>,
    admin: bool,
) -> (NewKeyRecord, warden_core::Secret) {
    let key = warden_core::keys::generate();
    let mut id_bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut id_bytes);
    let id = format!("key_{}", hex::encode(id_bytes));
    let record = NewKeyRecord {
        lineage_id: id.clone(),
        id,
        name: name.to_owned(),
        hash: key.hash,
        prefix: key.display_prefix,
        models,
        created_at: now,
        expires_at,
        admin,
        agents: Vec::new(),
        max_agents: None,
    };
    (record, key.plain)
}

/// `--agents`: `*` alone, or names of configured agent definitions (an empty list is none).
fn agent_grants(
    config: &warden_config::Config,
    agents: Vec<String>,
) -> Result<Vec<String>, Failure> {
    let agents: Vec<String> = agents
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if agents.iter().any(|a| a == "*") {
        if agents.len() > 1 {
            return Err(Failure::Config(
                "--agents: `*` (all definitions) stands alone".into(),
            ));
        }
        return Ok(agents);
    }
    if let Some(unknown) = agents.iter().find(|a| !config.agents.contains_key(*a)) {
        let known: Vec<&str> = config.agents.keys().map(String::as_str).collect();
        return Err(Failure::Config(format!(
            "--agents: no agent definition named `{unknown}` in the configuration (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    let mut agents = agents;
    agents.sort();
    agents.dedup();
    Ok(agents)
}

/// `--max-agents`: at least 1.
fn cap(max_agents: Option<u64>) -> Result<Option<i64>, Failure> {
    match max_agents {
        Some(0) => Err(Failure::Config("--max-agents: must be at least 1".into())),
        Some(n) => Ok(Some(i64::try_from(n).unwrap_or(i64::MAX))),
        None => Ok(None),
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Failure::Config(
            "--name: use 1-64 letters, digits, `-`, `_` or `.`".into(),
        ));
    }
    Ok(())
}

/// The current key named `name` (neither revoked nor replaced by a rotation).
async fn current_key(
    store: &dyn warden_store::Store,
    name: &str,
) -> Result<warden_store::KeyRecord, Failure> {
    store
        .list_keys()
        .await
        .map_err(store_failure)?
        .into_iter()
        .find(|k| k.name == name && k.revoked_at.is_none() && k.replaced_by.is_none())
        .ok_or_else(|| Failure::Runtime(anyhow::anyhow!("no key named `{name}`")))
}

fn store_failure(e: warden_store::Error) -> Failure {
    match e {
        warden_store::Error::NameTaken(_) | warden_store::Error::NoSuchKey(_) => {
            Failure::Runtime(anyhow::anyhow!("{e}"))
        }
        other => Failure::Runtime(anyhow::Error::new(other)),
    }
}
