//! Builds the agents from configuration: opens each configured database for `sql_query`,
//! gives each agent definition its tools (classified by configuration: `sql_query` is a read),
//! and resolves webhook URLs from the environment.

use crate::settings::Failure;
use std::collections::BTreeMap;
use std::sync::Arc;
use warden_config::Config;
use warden_tools::{Catalog, Classification, SqlExecute, SqlQuery, sql::CompanyDatabase};

/// The agents of this process.
pub async fn build(
    config: &Config,
    deps: warden_agents::Services,
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
        let opened = CompanyDatabase::open_with(name, db, url.as_deref(), write_url.as_deref())
            .await
            .map_err(Failure::Config)?;
        databases.insert(name.clone(), Arc::new(opened));
    }
    // `[http] proxy`, its credentials read from the variable `proxy_auth_env` names.
    let http_proxy = match &config.http.proxy {
        None => None,
        Some(p) => Some(warden_tools::http::HttpProxy {
            url: p.url.clone(),
            basic_auth: match &p.auth_env {
                None => None,
                Some(var) => Some(proxy_credentials(var, std::env::var(var).ok())?),
            },
        }),
    };
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
                proxy: http_proxy.clone(),
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
        config.server.max_agents_per_key,
    ))
}

/// The proxy's Basic credentials from the value of the variable `proxy_auth_env` names:
/// `user:password`; unset, empty or without a `:`, start-up stops naming the field (never
/// the value).
fn proxy_credentials(var: &str, value: Option<String>) -> Result<(String, String), Failure> {
    let value = value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        Failure::Config(format!(
            "http.proxy_auth_env: the environment variable {var} is not set"
        ))
    })?;
    match value.trim_end_matches(['\r', '\n']).split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err(Failure::Config(format!(
            "http.proxy_auth_env: {var} must hold `user:password`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_are_user_colon_password_and_never_echoed() {
        let message = |r: Result<(String, String), Failure>| match r {
            Err(Failure::Config(m)) => m,
            _ => panic!("expected a configuration failure"),
        };
        let Ok(ok) = proxy_credentials("P", Some("warden:pa:ss\n".into())) else {
            panic!("user:password is accepted");
        };
        assert_eq!(ok, ("warden".to_owned(), "pa:ss".to_owned()));
        for bad in [None, Some(String::new()), Some(" ".into())] {
            let e = message(proxy_credentials("P", bad));
            assert!(
                e.contains("http.proxy_auth_env") && e.contains("not set"),
                "{e}"
            );
        }
        for bad in ["hunter2", ":hunter2"] {
            let e = message(proxy_credentials("P", Some(bad.into())));
            assert!(e.contains("user:password") && !e.contains("hunter2"), "{e}");
        }
    }
}
