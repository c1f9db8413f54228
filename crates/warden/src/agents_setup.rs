//! Builds the agents from configuration: opens each configured database for `sql_query`,
//! gives each agent definition its tools (classified by configuration: `sql_query` is a read),
//! and resolves webhook URLs from the environment.

use crate::settings::Failure;
use std::collections::BTreeMap;
use std::sync::Arc;
use warden_config::Config;
use warden_tools::{Catalog, Classification, SqlExecute, SqlQuery, sql::Database};

/// The agents of this process.
pub async fn build(
    config: &Config,
    deps: warden_agents::Deps,
) -> Result<warden_agents::Agents, Failure> {
    let mut databases = BTreeMap::new();
    for (name, db) in &config.databases {
        let url = match db.location.url_env() {
            Some(url_env) => Some(
                std::env::var(url_env)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        Failure::Config(format!(
                            "databases.{name}.url_env: the environment variable {url_env} is not set"
                        ))
                    })?,
            ),
            None => None,
        };
        let write_url = match &db.write_url_env {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        Failure::Config(format!(
                            "databases.{name}.write_url_env: the environment variable {var} is not set"
                        ))
                    })?,
            ),
            None => None,
        };
        let opened = Database::open_with(name, db, url.as_deref(), write_url.as_deref())
            .await
            .map_err(Failure::Config)?;
        databases.insert(name.clone(), Arc::new(opened));
    }
    let mut catalogs = BTreeMap::new();
    let mut webhooks = BTreeMap::new();
    for (name, def) in &config.agents {
        let mut catalog = Catalog::default();
        if def.tools.iter().any(|t| t == "sql_query") {
            let mine = def
                .databases
                .iter()
                .filter_map(|d| databases.get(d).map(|db| (d.clone(), db.clone())))
                .collect();
            catalog.add(Arc::new(SqlQuery::new(mine)), Classification::Read);
        }
        if def.tools.iter().any(|t| t == "sql_execute") {
            let mine = def
                .databases
                .iter()
                .filter_map(|d| databases.get(d).map(|db| (d.clone(), db.clone())))
                .collect();
            catalog.add_sql_execute(Arc::new(SqlExecute::new(mine)));
        }
        if def.tools.iter().any(|t| t == "http_request") {
            let policy = warden_tools::http::HttpPolicy {
                allowed_hosts: config.http.allowed_hosts.clone(),
                allow_private: config.http.allow_private.clone(),
                max_response_bytes: config.http.max_response_bytes as usize,
                timeout: config.http.timeout,
            };
            // Warden's own listener is never a destination, whatever the allow-lists say.
            let tool = warden_tools::http::HttpRequest::new(policy).forbid([config.server.listen]);
            catalog.add_http_request(Arc::new(tool));
        }
        for t in &def.write_tools {
            catalog.force_write(t);
        }
        catalogs.insert(name.clone(), catalog);
        if let Some(var) = &def.webhook_url_env {
            let url = std::env::var(var)
                .ok()
                .filter(|v| v.starts_with("http://") || v.starts_with("https://"))
                .ok_or_else(|| {
                    Failure::Config(format!(
                        "agents.{name}.webhook_url_env: {var} must hold an http(s) URL"
                    ))
                })?;
            webhooks.insert(name.clone(), warden_agents::Webhook::new(url));
        }
    }
    let mut approvers = BTreeMap::new();
    for (name, a) in &config.approvers {
        let key = warden_tools::approval::parse_public_key(&a.public_key)
            .map_err(|e| Failure::Config(format!("approvers.{name}.public_key: {e}")))?;
        approvers.insert(
            name.clone(),
            warden_tools::approval::Approver {
                key,
                tools: a.tools.clone(),
            },
        );
    }
    let defs = warden_agents::Definitions {
        definitions: config.agents.clone(),
        catalogs,
        webhooks,
        approvers,
    };
    Ok(warden_agents::Agents::new(
        deps,
        defs,
        config.server.agent_idle,
    ))
}
