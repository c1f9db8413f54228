//! The `[databases.*]` and `[agents.*]` sections: the databases the `sql_query` tool may read,
//! and the agent definitions (prompt, model, tools, permissions, limits).

use crate::Error;
use crate::typed::duration;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub kind: String,
    pub path: Option<String>,
    pub url_env: Option<String>,
    pub write_url_env: Option<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub columns: BTreeMap<String, Vec<String>>,
    pub max_rows: Option<u64>,
    pub statement_timeout: Option<String>,
    #[serde(default)]
    pub denied_functions: Vec<String>,
    #[serde(default)]
    pub allowed_functions: Vec<String>,
    pub strict_roles: Option<bool>,
    #[serde(default)]
    pub writable_tables: Vec<String>,
    pub max_affected_rows: Option<u64>,
    pub allow_without_where: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub allow_private: Vec<String>,
    pub max_response_bytes: Option<u64>,
    pub timeout: Option<String>,
    pub proxy: Option<String>,
    pub proxy_auth_env: Option<String>,
}

/// A forward proxy every `http_request` call goes through (`[http] proxy`). Warden still
/// checks the URL against the allow-lists and resolves the host itself, refusing internal
/// addresses, before anything is sent; but the proxy resolves the name again and makes the
/// connection, so connecting to the address Warden checked is the proxy's responsibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProxyConfig {
    /// `http://host[:port]` or `https://host[:port]`, normalised (lower case, IPv6 in
    /// brackets); never credentials, a path, a query or a fragment.
    pub url: String,
    /// The environment variable holding `user:password` for the proxy's Basic
    /// authentication (`proxy_auth_env`), read by the binary at start-up.
    pub auth_env: Option<String>,
}

/// Where the `http_request` tool may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Hosts it may reach (lower case), each `host` (ports 80 and 443 only) or `host:port`
    /// (that port only); IPv6 literals as `::1` or `[::1]:8080`.
    pub allowed_hosts: std::collections::BTreeSet<String>,
    /// Of those, hosts that may resolve to private or loopback addresses (`host` or
    /// `host:port`, like `allowed_hosts`).
    pub allow_private: std::collections::BTreeSet<String>,
    /// Response bytes kept at most (default 1 MiB).
    pub max_response_bytes: u64,
    /// Time for one call, redirects included (default 10s).
    pub timeout: Duration,
    /// The forward proxy calls go through; `None` (the default): none, and the environment's
    /// proxy variables are ignored.
    pub proxy: Option<HttpProxyConfig>,
}

/// Splits an `[http]` host entry into its host and optional port, normalised: lower case,
/// IP literals in their canonical form, IPv6 written `[addr]:port` when it has a port.
fn http_host_entry(field: &str, entry: &str) -> Result<(String, Option<u16>), Error> {
    let bad = |why: &str| Error::invalid(field, format!("`{entry}`: {why}"));
    let text = entry.trim().to_lowercase();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("a `[` without its `]`"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("only an IPv6 address goes between brackets"));
        }
        match after {
            "" => (host.to_owned(), None),
            p => (
                host.to_owned(),
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected `:port` after `]`"))?,
                ),
            ),
        }
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        (text.clone(), None)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (text.clone(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(bad("the port must be a number from 1 to 65535")),
        },
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
    {
        return Err(bad("not a host name or IP address"));
    }
    let host = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) if host.contains(':') => return Err(bad("not a host name or IP address")),
        Err(_) => host,
    };
    Ok((host, port))
}

/// The normalised text of a host entry.
fn http_entry_text(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) if host.contains(':') => format!("[{host}]:{p}"),
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// Checks and normalises `[http] proxy`: `http` or `https`, a host and an optional port;
/// no credentials (they come from `proxy_auth_env`), no path, query or fragment.
fn http_proxy_url(text: &str) -> Result<String, Error> {
    if text.contains('@') {
        // Not echoed: the text may hold a password.
        return Err(Error::invalid(
            "http.proxy",
            "credentials do not go in the configuration: set http.proxy_auth_env to the name of an environment variable holding `user:password`",
        ));
    }
    let bad = |why: &str| Error::invalid("http.proxy", format!("`{text}`: {why}"));
    let (scheme, rest) = text
        .trim()
        .split_once("://")
        .ok_or_else(|| bad("expected `http://host:port` or `https://host:port`"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '\\']) {
        return Err(bad(
            "a proxy is `scheme://host[:port]`: no path, query or fragment",
        ));
    }
    if authority.contains(':') && !authority.starts_with('[') && authority.matches(':').count() > 1
    {
        return Err(bad("an IPv6 address goes between brackets: `[::1]:3128`"));
    }
    let (host, port) = http_host_entry("http.proxy", authority)?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

pub(crate) fn http(raw: RawHttp) -> Result<HttpConfig, Error> {
    let parse = |field: &str, list: &[String]| {
        list.iter()
            .map(|h| http_host_entry(field, h))
            .collect::<Result<Vec<_>, _>>()
    };
    let allowed = parse("http.allowed_hosts", &raw.allowed_hosts)?;
    let private = parse("http.allow_private", &raw.allow_private)?;
    // A private entry must name a host (and, if it has one, a port) that is allowed.
    if let Some((h, p)) = private.iter().find(|(h, p)| {
        !allowed
            .iter()
            .any(|(ah, ap)| ah == h && (p.is_none() || ap.is_none() || ap == p))
    }) {
        return Err(Error::invalid(
            "http.allow_private",
            format!("`{}` is not in http.allowed_hosts", http_entry_text(h, *p)),
        ));
    }
    let text = |v: Vec<(String, Option<u16>)>| {
        v.into_iter()
            .map(|(h, p)| http_entry_text(&h, p))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let proxy = match (raw.proxy, raw.proxy_auth_env) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(Error::invalid(
                "http.proxy_auth_env",
                "names the proxy's credentials: set http.proxy too",
            ));
        }
        (Some(url), auth_env) => {
            if auth_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(Error::invalid(
                    "http.proxy_auth_env",
                    "must name an environment variable",
                ));
            }
            Some(HttpProxyConfig {
                url: http_proxy_url(&url)?,
                auth_env: auth_env.map(|v| v.trim().to_owned()),
            })
        }
    };
    Ok(HttpConfig {
        allowed_hosts: text(allowed),
        allow_private: text(private),
        max_response_bytes: raw.max_response_bytes.unwrap_or(1 << 20).max(1),
        timeout: duration("http.timeout", &raw.timeout, "10s")?,
        proxy,
    })
}

#[cfg(test)]
mod http_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(allowed: &[&str], private: &[&str]) -> RawHttp {
        RawHttp {
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            allow_private: private.iter().map(|s| s.to_string()).collect(),
            max_response_bytes: None,
            timeout: None,
            proxy: None,
            proxy_auth_env: None,
        }
    }

    fn proxied(url: &str, auth_env: Option<&str>) -> Result<HttpConfig, Error> {
        http(RawHttp {
            proxy: Some(url.into()),
            proxy_auth_env: auth_env.map(str::to_owned),
            ..raw(&["api.example.com"], &[])
        })
    }

    #[test]
    fn a_proxy_is_read_from_the_http_section() {
        let c = crate::Config::from_toml(
            "[http]\nallowed_hosts = [\"api.example.com\"]\nproxy = \"http://proxy.internal:3128\"\nproxy_auth_env = \"WARDEN_PROXY_AUTH\"\n",
        )
        .unwrap();
        assert_eq!(
            c.http.proxy,
            Some(HttpProxyConfig {
                url: "http://proxy.internal:3128".into(),
                auth_env: Some("WARDEN_PROXY_AUTH".into()),
            })
        );
        let e = crate::Config::from_toml("[http]\nproxy = \"socks5://p:1080\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http.proxy:"), "{e}");
    }

    #[test]
    fn a_proxy_is_a_scheme_a_host_and_a_port_and_nothing_else() {
        for (given, want) in [
            ("http://proxy.internal:3128", "http://proxy.internal:3128"),
            (
                "HTTPS://Proxy.Internal:8443/",
                "https://proxy.internal:8443",
            ),
            ("http://10.0.0.1", "http://10.0.0.1"),
            ("http://[::1]:3128", "http://[::1]:3128"),
        ] {
            let c = proxied(given, None).unwrap();
            assert_eq!(c.proxy.unwrap().url, want, "{given}");
        }
        let c = proxied("http://proxy.internal:3128", Some(" PROXY_AUTH ")).unwrap();
        assert_eq!(c.proxy.unwrap().auth_env.as_deref(), Some("PROXY_AUTH"));
        assert_eq!(http(raw(&["a.example"], &[])).unwrap().proxy, None);
        for bad in [
            "socks5://proxy.internal:1080",
            "ftp://proxy.internal",
            "proxy.internal:3128",
            "http://user:secret@proxy.internal:3128",
            "http://user@proxy.internal:3128",
            "http://proxy.internal:3128/path",
            "http://proxy.internal:3128/?q=1",
            "http://proxy.internal:3128#f",
            "http://",
            "http://:3128",
            "http://proxy.internal:0",
            "http://proxy.internal:http",
            "http://::1:3128",
            "http://pro xy:3128",
        ] {
            let e = proxied(bad, None).unwrap_err().to_string();
            assert!(e.starts_with("http.proxy:"), "{bad}: {e}");
        }
        let e = proxied("http://u:hunter2@proxy.internal", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("proxy_auth_env") && !e.contains("hunter2"),
            "{e}"
        );
        let e = proxied("http://proxy.internal", Some(" "))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http.proxy_auth_env:"), "{e}");
        let e = http(RawHttp {
            proxy_auth_env: Some("PROXY_AUTH".into()),
            ..raw(&["a.example"], &[])
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("http.proxy_auth_env:"), "{e}");
    }

    #[test]
    fn host_entries_may_name_ports_and_are_normalised() {
        let c = http(raw(
            &[
                "API.crm.example.com:443",
                "billing.internal",
                "[::1]:8080",
                "::FFFF:7f00:1",
                "10.0.0.5:8443",
            ],
            &["billing.internal", "10.0.0.5:8443"],
        ))
        .unwrap();
        let want: std::collections::BTreeSet<String> = [
            "api.crm.example.com:443",
            "billing.internal",
            "[::1]:8080",
            "::ffff:127.0.0.1",
            "10.0.0.5:8443",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(c.allowed_hosts, want);
        assert!(c.allow_private.contains("10.0.0.5:8443"));
    }

    #[test]
    fn bad_ports_and_hosts_are_refused_naming_the_field() {
        for bad in [
            "api.example.com:0",
            "api.example.com:65536",
            "api.example.com:https",
            "api.example.com:",
            "[::1]8080",
            "[::1",
            "[example.com]:80",
            "http://api.example.com",
            "a b",
            "",
            "1:2:3",
        ] {
            let e = http(raw(&[bad], &[])).unwrap_err().to_string();
            assert!(e.starts_with("http.allowed_hosts:"), "{bad}: {e}");
        }
        let e = http(raw(&["a.example:80"], &["a.example:8080"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http.allow_private:"), "{e}");
        let e = http(raw(&["a.example"], &["b.example"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http.allow_private:"), "{e}");
        // A private entry without a port covers the host's allowed ports.
        assert!(http(raw(&["a.example:8080"], &["a.example"])).is_ok());
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApprover {
    pub public_key: Option<String>,
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub tools: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub system_prompt: String,
    pub model: String,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub databases: Vec<String>,
    pub permissions: Option<String>,
    pub max_steps: Option<u32>,
    pub step_timeout: Option<String>,
    pub session_tokens: Option<u64>,
    pub max_identical_tool_calls: Option<u32>,
    pub webhook_url_env: Option<String>,
    pub approval_ttl: Option<String>,
    #[serde(default)]
    pub write_tools: Vec<String>,
}

/// Where a database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file, opened read-only.
    Sqlite(PathBuf),
    /// A PostgreSQL database; the URL is in this environment variable.
    Postgres {
        /// The variable holding the `postgres://` URL.
        url_env: String,
    },
    /// A MySQL or MariaDB database; the URL is in this environment variable.
    Mysql {
        /// The variable holding the `mysql://` URL.
        url_env: String,
    },
}

impl DatabaseLocation {
    /// The environment variable holding the server's URL (none for SQLite).
    pub fn url_env(&self) -> Option<&str> {
        match self {
            DatabaseLocation::Sqlite(_) => None,
            DatabaseLocation::Postgres { url_env } | DatabaseLocation::Mysql { url_env } => {
                Some(url_env)
            }
        }
    }
}

/// A database the `sql_query` tool may read.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Where it is.
    pub location: DatabaseLocation,
    /// Allowed tables (lower case), each with its allowed columns (`None`: all).
    pub tables: BTreeMap<String, Option<BTreeSet<String>>>,
    /// Rows returned at most (default 100).
    pub max_rows: u64,
    /// How long one statement may run (default 5s).
    pub statement_timeout: Duration,
    /// Functions refused even though the built-in allow-list has them.
    pub denied_functions: BTreeSet<String>,
    /// Functions allowed on top of the built-in allow-list (never the system, file, network,
    /// sleep, lock or sequence functions: those stay refused).
    pub allowed_functions: BTreeSet<String>,
    /// Refuse to use a connection that can do more than read the allowed tables (default
    /// false: warn loudly).
    pub strict_roles: bool,
    /// For PostgreSQL and MySQL with writable tables: the variable holding the URL of a
    /// separate write role for `sql_execute` (default: the read URL).
    pub write_url_env: Option<String>,
    /// Tables `sql_execute` may write (after approval); empty: none.
    pub writable_tables: BTreeSet<String>,
    /// Rows one write may change at most, in its preview and when it runs (default 10).
    pub max_affected_rows: u64,
    /// Whether `UPDATE`/`DELETE` without `WHERE` may be proposed (default false).
    pub allow_without_where: bool,
}

/// A person who may approve write tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverConfig {
    /// Hex Ed25519 public key (from `public_key` or the file `public_key_file`).
    pub public_key: String,
    /// Tools this approver may decide on.
    pub tools: Vec<String>,
}

/// What an agent may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    /// Read tools only (the default).
    ReadOnly,
    /// Read tools, and write tools behind human approval.
    ReadWrite,
}

/// An agent definition.
#[derive(Debug, Clone)]
pub struct AgentDefinition {
    /// The system prompt: scoped to what this agent needs to know.
    pub system_prompt: String,
    /// Model name or tier it calls (through the gateway).
    pub model: String,
    /// Tools it may use, by name.
    pub tools: Vec<String>,
    /// Databases its `sql_query` tool may read.
    pub databases: Vec<String>,
    /// Read-only (default) or read-write.
    pub permissions: Permissions,
    /// Steps per task at most (default 10).
    pub max_steps: u32,
    /// How long one step may take (default 30s).
    pub step_timeout: Duration,
    /// Tokens per task (default 50,000).
    pub session_tokens: u64,
    /// The same tool call with the same arguments this many times in a row halts the task
    /// (default 3).
    pub max_identical_tool_calls: u32,
    /// Environment variable holding a webhook URL told about timeouts, halts and approval
    /// requests.
    pub webhook_url_env: Option<String>,
    /// How long an approval request waits for a decision (default 1h).
    pub approval_ttl: Duration,
    /// Tools declared writes whatever their calls look like (e.g. `http_request`, so its
    /// GETs wait for approval too). Configuration may only tighten a classification.
    pub write_tools: Vec<String>,
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn databases(
    raw: BTreeMap<String, RawDatabase>,
) -> Result<BTreeMap<String, DatabaseConfig>, Error> {
    let mut out = BTreeMap::new();
    for (name, d) in raw {
        let field = |f: &str| format!("databases.{name}.{f}");
        if !name_ok(&name) {
            return Err(Error::invalid(
                format!("databases.{name}"),
                "a database name may hold only letters, digits, `-` and `_`",
            ));
        }
        let location = match (d.kind.as_str(), d.path, d.url_env) {
            ("sqlite", Some(p), None) => DatabaseLocation::Sqlite(PathBuf::from(p)),
            ("sqlite", _, _) => {
                return Err(Error::invalid(
                    field("path"),
                    "a sqlite database needs `path` (and no url_env)",
                ));
            }
            ("postgres", None, Some(v)) => DatabaseLocation::Postgres { url_env: v },
            ("postgres", _, _) => {
                return Err(Error::invalid(
                    field("url_env"),
                    "a postgres database needs `url_env` (the variable holding its URL) and no path",
                ));
            }
            ("mysql", None, Some(v)) => DatabaseLocation::Mysql { url_env: v },
            ("mysql", _, _) => {
                return Err(Error::invalid(
                    field("url_env"),
                    "a mysql database needs `url_env` (the variable holding its URL) and no path",
                ));
            }
            (other, _, _) => {
                return Err(Error::invalid(
                    field("kind"),
                    format!("`{other}` is not one of: sqlite, postgres, mysql"),
                ));
            }
        };
        if d.tables.is_empty() {
            return Err(Error::invalid(
                field("tables"),
                "list the tables the agents may read",
            ));
        }
        let mut tables = BTreeMap::new();
        for t in &d.tables {
            tables.insert(t.to_lowercase(), None);
        }
        for (t, cols) in d.columns {
            let t = t.to_lowercase();
            if !tables.contains_key(&t) {
                return Err(Error::invalid(
                    field("columns"),
                    format!("`{t}` is not in tables"),
                ));
            }
            tables.insert(t, Some(cols.iter().map(|c| c.to_lowercase()).collect()));
        }
        // One table, one name: a writable table named otherwise than its read entry
        // (`main.people` beside `people`) would be written under one policy and read under
        // another, and the preview and the WHERE clause could see columns the read hides.
        let last = |t: &str| t.rsplit('.').next().unwrap_or(t).to_lowercase();
        for w in &d.writable_tables {
            let w = w.to_lowercase();
            if let Some(r) = tables.keys().find(|r| **r != w && last(r) == last(&w)) {
                return Err(Error::invalid(
                    field("writable_tables"),
                    format!(
                        "`{w}` and the tables entry `{r}` may be the same table: name it the same way in both"
                    ),
                ));
            }
        }
        if let Some(w) = &d.write_url_env {
            if matches!(location, DatabaseLocation::Sqlite(_)) {
                return Err(Error::invalid(
                    field("write_url_env"),
                    "a sqlite database is one file: it has no separate write URL",
                ));
            }
            if d.writable_tables.is_empty() || w.trim().is_empty() {
                return Err(Error::invalid(
                    field("write_url_env"),
                    "write_url_env names the write role's URL variable, for writable_tables",
                ));
            }
        }
        if d.strict_roles == Some(true)
            && !d.writable_tables.is_empty()
            && d.write_url_env.is_none()
            && !matches!(location, DatabaseLocation::Sqlite(_))
        {
            return Err(Error::invalid(
                field("write_url_env"),
                "with strict_roles and writable_tables, give writes their own role: set write_url_env",
            ));
        }
        let max_rows = d.max_rows.unwrap_or(100);
        if !(1..=10_000).contains(&max_rows) {
            return Err(Error::invalid(
                field("max_rows"),
                "must be between 1 and 10000",
            ));
        }
        out.insert(
            name.clone(),
            DatabaseConfig {
                location,
                tables,
                max_rows,
                statement_timeout: duration(
                    &field("statement_timeout"),
                    &d.statement_timeout,
                    "5s",
                )?,
                denied_functions: d
                    .denied_functions
                    .iter()
                    .map(|f| f.to_lowercase())
                    .collect(),
                allowed_functions: d
                    .allowed_functions
                    .iter()
                    .map(|f| f.trim().to_ascii_lowercase())
                    .collect(),
                strict_roles: d.strict_roles.unwrap_or(false),
                write_url_env: d.write_url_env,
                writable_tables: d.writable_tables.iter().map(|t| t.to_lowercase()).collect(),
                max_affected_rows: d.max_affected_rows.unwrap_or(10).max(1),
                allow_without_where: d.allow_without_where.unwrap_or(false),
            },
        );
    }
    Ok(out)
}

/// Tools an agent may name.
pub const KNOWN_TOOLS: &[&str] = &["sql_query", "sql_execute", "http_request"];

pub(crate) fn approvers(
    raw: BTreeMap<String, RawApprover>,
) -> Result<BTreeMap<String, ApproverConfig>, Error> {
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        let field = |f: &str| format!("approvers.{name}.{f}");
        if !name_ok(&name) {
            return Err(Error::invalid(
                format!("approvers.{name}"),
                "an approver name may hold only letters, digits, `-` and `_`",
            ));
        }
        let key = match (a.public_key, a.public_key_file) {
            (Some(k), None) => k,
            (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| {
                Error::invalid(field("public_key_file"), format!("cannot read {path}: {e}"))
            })?,
            _ => {
                return Err(Error::invalid(
                    field("public_key"),
                    "set public_key (hex) or public_key_file, not both",
                ));
            }
        };
        let key = key.trim().to_lowercase();
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                field("public_key"),
                "must be an Ed25519 public key: 64 hex digits (warden approvers keygen NAME)",
            ));
        }
        if a.tools.is_empty() {
            return Err(Error::invalid(
                field("tools"),
                "list the tools this approver may decide on",
            ));
        }
        out.insert(
            name,
            ApproverConfig {
                public_key: key,
                tools: a.tools,
            },
        );
    }
    Ok(out)
}

pub(crate) fn agents(
    raw: BTreeMap<String, RawAgent>,
    databases: &BTreeMap<String, DatabaseConfig>,
    http: &HttpConfig,
) -> Result<BTreeMap<String, AgentDefinition>, Error> {
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        let field = |f: &str| format!("agents.{name}.{f}");
        if !name_ok(&name) {
            return Err(Error::invalid(
                format!("agents.{name}"),
                "an agent name may hold only letters, digits, `-` and `_`",
            ));
        }
        if a.system_prompt.trim().is_empty() {
            return Err(Error::invalid(field("system_prompt"), "must not be empty"));
        }
        for t in &a.tools {
            if !KNOWN_TOOLS.contains(&t.as_str()) {
                return Err(Error::invalid(
                    field("tools"),
                    format!("unknown tool `{t}` (known: {})", KNOWN_TOOLS.join(", ")),
                ));
            }
        }
        for d in &a.databases {
            if !databases.contains_key(d) {
                return Err(Error::invalid(
                    field("databases"),
                    format!("unknown database `{d}`"),
                ));
            }
        }
        if a.tools.iter().any(|t| t == "sql_execute")
            && !a
                .databases
                .iter()
                .any(|d| !databases[d].writable_tables.is_empty())
        {
            return Err(Error::invalid(
                field("tools"),
                "sql_execute needs a database with writable_tables",
            ));
        }
        if let Some(t) = a.write_tools.iter().find(|t| !a.tools.contains(t)) {
            return Err(Error::invalid(
                field("write_tools"),
                format!("`{t}` is not one of this agent's tools"),
            ));
        }
        if a.tools.iter().any(|t| t == "http_request") && http.allowed_hosts.is_empty() {
            return Err(Error::invalid(
                field("tools"),
                "http_request needs [http] allowed_hosts",
            ));
        }
        if a.tools.iter().any(|t| t == "sql_query") && a.databases.is_empty() {
            return Err(Error::invalid(
                field("databases"),
                "sql_query needs at least one database",
            ));
        }
        let permissions = match a.permissions.as_deref() {
            None | Some("read-only") => Permissions::ReadOnly,
            Some("read-write") => Permissions::ReadWrite,
            Some(other) => {
                return Err(Error::invalid(
                    field("permissions"),
                    format!("`{other}` is not one of: read-only, read-write"),
                ));
            }
        };
        // A read-only agent gets no tool that exists to write; `http_request` stays, for its
        // reads only (its writes are refused at run time, whatever configuration says).
        if permissions == Permissions::ReadOnly {
            if a.tools.iter().any(|t| t == "sql_execute") {
                return Err(Error::invalid(
                    field("tools"),
                    "`sql_execute` is a write tool and this agent is read-only (the default): set permissions = \"read-write\" to let it propose writes for approval",
                ));
            }
            if let Some(t) = a.write_tools.first() {
                return Err(Error::invalid(
                    field("write_tools"),
                    format!(
                        "`{t}` would be a write tool and this agent is read-only (the default): set permissions = \"read-write\""
                    ),
                ));
            }
        }
        let max_steps = a.max_steps.unwrap_or(10);
        if !(1..=200).contains(&max_steps) {
            return Err(Error::invalid(
                field("max_steps"),
                "must be between 1 and 200",
            ));
        }
        let max_identical_tool_calls = a.max_identical_tool_calls.unwrap_or(3);
        if max_identical_tool_calls == 0 {
            return Err(Error::invalid(
                field("max_identical_tool_calls"),
                "must be at least 1",
            ));
        }
        out.insert(
            name.clone(),
            AgentDefinition {
                system_prompt: a.system_prompt,
                model: a.model,
                tools: a.tools,
                databases: a.databases,
                permissions,
                max_steps,
                step_timeout: duration(&field("step_timeout"), &a.step_timeout, "30s")?,
                session_tokens: a.session_tokens.unwrap_or(50_000).max(1),
                max_identical_tool_calls,
                webhook_url_env: a.webhook_url_env,
                approval_ttl: duration(&field("approval_ttl"), &a.approval_ttl, "1h")?,
                write_tools: a.write_tools,
            },
        );
    }
    Ok(out)
}
