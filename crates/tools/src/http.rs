//! `http_request`: HTTP calls to allow-listed hosts only. `GET` and `HEAD` are reads; every
//! other method is a write (it waits for approval). Warden resolves each host itself and
//! refuses loopback, link-local (cloud metadata included), private, shared, unspecified,
//! multicast and broadcast addresses unless the host is explicitly allowed to be private; the
//! connection goes to the address it checked (no second lookup to rebind). Redirects are
//! followed by hand, each checked like the first, at most three; response size and time are
//! capped. Environment proxies (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) are
//! never used: a proxy would make the connection, not Warden, and the checked address would
//! mean nothing. An allowed host without a port is reachable on ports 80 and 443 only;
//! `host:port` allows that port. Warden's own listen addresses are refused whatever the
//! allow-lists say.
//!
//! A proxy is used only when configured explicitly ([`HttpPolicy::proxy`], `[http] proxy`).
//! Then every check above still runs before anything is sent (scheme, host and port against
//! the allow-lists, Warden's own resolution of the name with internal addresses and Warden's
//! listeners refused, each redirect the same), and only a request that passes goes to the
//! proxy. But the proxy resolves the name again and makes the connection: that the connection
//! reaches the address Warden checked (no rebinding, no internal address behind an allowed
//! name) is then the proxy's responsibility, and Warden's check is defense in depth.

use crate::approval::Approved;
use crate::tool::{Proposal, Settlement, Tool, ToolError, WriteTool};
use async_trait::async_trait;
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// Ports an allowed host without a port may be reached on.
const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// Where `http_request` may go.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Hosts it may reach (lower case; names or IP literals), each `host` (ports 80 and 443
    /// only) or `host:port` (`[v6]:port` for IPv6). Entries that do not parse allow nothing.
    pub allowed_hosts: BTreeSet<String>,
    /// Of those, hosts that may resolve to private or loopback addresses (internal services);
    /// `host` (any allowed port) or `host:port`.
    pub allow_private: BTreeSet<String>,
    /// Response bytes kept at most.
    pub max_response_bytes: usize,
    /// Time for the whole call.
    pub timeout: Duration,
    /// The forward proxy every call goes through, if configured; `None`: Warden connects
    /// itself, to the address it checked, and ignores the environment's proxy variables.
    pub proxy: Option<HttpProxy>,
}

/// An explicitly configured forward proxy (`[http] proxy`). Every request is checked first
/// exactly as without one; then the proxy, not Warden, resolves the host and connects (plain
/// `http` as an absolute-form request, `https` through `CONNECT`, TLS end to end), so
/// reaching only the checked address is the proxy's job.
#[derive(Clone)]
pub struct HttpProxy {
    /// `http://host[:port]` or `https://host[:port]`, without credentials.
    pub url: String,
    /// Basic credentials for the proxy (user, password), from `[http] proxy_auth_env`.
    pub basic_auth: Option<(String, String)>,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("url", &self.url)
            .field(
                "basic_auth",
                &self
                    .basic_auth
                    .as_ref()
                    .map(|(user, _)| (user, "[redacted]")),
            )
            .finish()
    }
}

/// Splits an allow-list entry into host and optional port: `host`, `host:port`, an IPv6
/// literal, or `[v6]:port`. IP literals come back in canonical form; `None` if it does not
/// parse (configuration refuses such entries at load).
pub fn parse_host_entry(entry: &str) -> Option<(String, Option<u16>)> {
    let text = entry.trim().to_lowercase();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        match after {
            "" => (host.to_owned(), None),
            p => (host.to_owned(), Some(p.strip_prefix(':')?)),
        }
    } else if text.parse::<Ipv6Addr>().is_ok() {
        (text.clone(), None)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (text.clone(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|n| *n > 0)?),
    };
    if host.is_empty() {
        return None;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => Some((ip.to_string(), port)),
        Err(_) if host.contains(':') => None,
        Err(_) => Some((host, port)),
    }
}

/// The IPv4 address an IPv6 address carries, for the forms that reach an IPv4 host:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
/// `2002:AABB:CCDD::/48` and Teredo `2001:0::/32` (its client address, inverted).
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible `::a.b.c.d` and IPv4-translated `::ffff:0:a.b.c.d`.
    if s[..6].iter().all(|x| *x == 0)
        || (s[..4].iter().all(|x| *x == 0) && s[4] == 0xffff && s[5] == 0)
    {
        return Some(v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
        return Some(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(v4(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(v4(!s[6], !s[7]));
    }
    None
}

/// Whether an address is one a tool must not reach unless allowed: loopback, link-local
/// (169.254.0.0/16: cloud metadata), private, shared (100.64.0.0/10), unspecified,
/// multicast, broadcast, documentation, and their IPv6 forms; an IPv6 address that carries an
/// IPv4 one (mapped, compatible, NAT64, 6to4, Teredo: [`embedded_ipv4`]) is classed by that
/// IPv4 address, and the local-use NAT64 prefix `64:ff9b:1::/48` is always internal.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_private()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            if let Some(v4) = embedded_ipv4(v6) {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        }
    }
}

fn refused(rule: &str, message: String) -> ToolError {
    ToolError::Refused {
        rule: rule.into(),
        message,
    }
}

/// The `http_request` tool.
pub struct HttpRequest {
    policy: HttpPolicy,
    /// `allowed_hosts`, parsed.
    allowed: Vec<(String, Option<u16>)>,
    /// `allow_private`, parsed.
    private: Vec<(String, Option<u16>)>,
    /// Warden's own listen addresses: never reachable.
    forbidden: Vec<SocketAddr>,
    /// Clients already built, by checked destination (one for all when a proxy is set), so
    /// that a call does not pay for a new client's TLS set-up and keeps its connections.
    clients: moka::sync::Cache<(String, SocketAddr), reqwest::Client>,
}

/// Destinations whose client is kept at most.
const CLIENTS: u64 = 256;
/// How long a kept client lives unused.
const CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// The address itself, or the IPv4 address an IPv4-mapped one stands for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether connecting to `ip` reaches this machine: loopback, unspecified, or an address of
/// one of its interfaces (only those can be bound).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether a connection to `dest` would reach one of the `forbidden` listen addresses: the
/// same address and port, or, for a listener on `0.0.0.0`/`::`, any local address with its
/// port (a destination of `0.0.0.0`/`::` reaches any local listener on its port).
pub fn reaches_forbidden(dest: SocketAddr, forbidden: &[SocketAddr]) -> bool {
    let ip = canonical(dest.ip());
    forbidden.iter().any(|f| {
        let fip = canonical(f.ip());
        f.port() == dest.port()
            && (ip == fip || ip.is_unspecified() || (fip.is_unspecified() && is_local(ip)))
    })
}

/// A checked destination: the host name, and the address to connect to.
struct Destination {
    host: String,
    addr: SocketAddr,
}

impl HttpRequest {
    /// A tool under `policy`.
    pub fn new(policy: HttpPolicy) -> Self {
        let parse = |set: &BTreeSet<String>| {
            set.iter()
                .filter_map(|e| parse_host_entry(e))
                .collect::<Vec<_>>()
        };
        Self {
            allowed: parse(&policy.allowed_hosts),
            private: parse(&policy.allow_private),
            policy,
            forbidden: Vec::new(),
            clients: moka::sync::Cache::builder()
                .max_capacity(CLIENTS)
                .time_to_idle(CLIENT_IDLE)
                .build(),
        }
    }

    /// This tool, refusing connections to these addresses (Warden's own listeners) even
    /// when the host is allowed and allowed to be private.
    pub fn forbid(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.forbidden.extend(addrs);
        self
    }

    /// The HTTP client for one checked destination, built once and kept (see
    /// [`Self::new_client`]).
    fn client(&self, dest: &Destination) -> Result<reqwest::Client, ToolError> {
        let key = match &self.policy.proxy {
            None => (dest.host.clone(), dest.addr),
            // Every request goes to the proxy: one client serves them all.
            Some(_) => (String::new(), SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        if let Some(client) = self.clients.get(&key) {
            return Ok(client);
        }
        let client = self.new_client(dest)?;
        self.clients.insert(key, client.clone());
        Ok(client)
    }

    /// A client for one checked destination: no redirects, never the environment's proxies;
    /// without a configured proxy the host is pinned to the checked address, with one every
    /// request goes to that proxy (which resolves and connects: its responsibility).
    fn new_client(&self, dest: &Destination) -> Result<reqwest::Client, ToolError> {
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        let builder = match &self.policy.proxy {
            None => builder.resolve(&dest.host, dest.addr),
            Some(p) => {
                let mut proxy = reqwest::Proxy::all(p.url.as_str())
                    .map_err(|e| ToolError::Failed(format!("bad proxy URL: {e}")))?;
                if let Some((user, password)) = &p.basic_auth {
                    proxy = proxy.basic_auth(user, password);
                }
                builder.proxy(proxy)
            }
        };
        builder
            .build()
            .map_err(|e| ToolError::Failed(e.to_string()))
    }

    /// Whether a call with these arguments is a write (any method but GET and HEAD).
    pub fn is_write(arguments: &Value) -> bool {
        !matches!(
            arguments
                .get("method")
                .and_then(Value::as_str)
                .map(str::to_uppercase)
                .as_deref(),
            None | Some("GET") | Some("HEAD")
        )
    }

    /// Checks a URL: scheme, allow-listed host, and every address it resolves to.
    async fn check(&self, url: &Url) -> Result<Destination, ToolError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refused(
                "scheme_not_allowed",
                format!("`{}` URLs are not allowed; use http or https", url.scheme()),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| refused("host_not_allowed", "the URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_lowercase();
        let port = url.port_or_known_default().unwrap_or(80);
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host,
        };
        let mine: Vec<Option<u16>> = self
            .allowed
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, p)| *p)
            .collect();
        if mine.is_empty() {
            return Err(refused(
                "host_not_allowed",
                format!(
                    "host `{host}` is not allowed; allowed hosts: {}",
                    self.policy
                        .allowed_hosts
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let port_ok = |p: &Option<u16>| match p {
            Some(p) => *p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        if !mine.iter().any(port_ok) {
            let mut ports: Vec<u16> = mine
                .iter()
                .flat_map(|p| p.map_or(DEFAULT_PORTS.to_vec(), |p| vec![p]))
                .collect();
            ports.sort_unstable();
            ports.dedup();
            return Err(refused(
                "port_not_allowed",
                format!(
                    "port {port} of `{host}` is not allowed; allowed ports: {}",
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| ToolError::Failed(format!("cannot resolve `{host}`: {e}")))?
                .collect(),
        };
        if let Some(bad) = addrs
            .iter()
            .find(|a| reaches_forbidden(**a, &self.forbidden))
        {
            return Err(refused(
                "warden_address",
                format!("`{host}` reaches Warden's own listener ({bad}); refused"),
            ));
        }
        let private_ok = self
            .private
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| p == port));
        if let Some(bad) = addrs
            .iter()
            .find(|a| is_internal(a.ip()))
            .filter(|_| !private_ok)
        {
            return Err(refused(
                "internal_address",
                format!(
                    "`{host}` resolves to an internal address ({}); refused",
                    bad.ip()
                ),
            ));
        }
        let addr = addrs
            .first()
            .copied()
            .ok_or_else(|| ToolError::Failed(format!("`{host}` has no address")))?;
        Ok(Destination { host, addr })
    }

    fn parse(arguments: &Value) -> Result<(reqwest::Method, Url, Option<String>), ToolError> {
        let method = arguments
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ToolError::BadArguments(format!("`{method}` is not an HTTP method")))?;
        let url = arguments
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::BadArguments("`url` is required".into()))?;
        let url = Url::parse(url).map_err(|e| ToolError::BadArguments(format!("bad URL: {e}")))?;
        let body = arguments.get("body").and_then(|b| match b {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        });
        Ok((method, url, body))
    }

    /// Sends the request (following checked redirects for GET and HEAD).
    async fn send(
        &self,
        method: reqwest::Method,
        mut url: Url,
        body: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ToolError> {
        let deadline = tokio::time::Instant::now() + self.policy.timeout;
        for _ in 0..=MAX_REDIRECTS {
            let dest = self.check(&url).await?;
            // Connect to the address just checked, not to a second lookup's answer (or, with
            // a configured proxy, send the checked request to it).
            let client = self.client(&dest)?;
            let mut req = client.request(method.clone(), url.clone());
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            if let Some(k) = idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            let sent = tokio::time::timeout_at(deadline, req.send())
                .await
                .map_err(|_| ToolError::Timeout(format!("{:?}", self.policy.timeout)))?
                .map_err(|e| ToolError::Failed(e.without_url().to_string()))?;
            let status = sent.status();
            if status.is_redirection()
                && matches!(method, reqwest::Method::GET | reqwest::Method::HEAD)
            {
                let location = sent
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| ToolError::Failed("a redirect without a Location".into()))?;
                url = url
                    .join(location)
                    .map_err(|e| ToolError::Failed(format!("bad redirect: {e}")))?;
                continue;
            }
            let content_type = sent
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let mut body = Vec::new();
            let mut truncated = false;
            let mut stream = sent;
            loop {
                let chunk = tokio::time::timeout_at(deadline, stream.chunk())
                    .await
                    .map_err(|_| ToolError::Timeout(format!("{:?}", self.policy.timeout)))?
                    .map_err(|e| ToolError::Failed(e.without_url().to_string()))?;
                let Some(chunk) = chunk else { break };
                body.extend_from_slice(&chunk);
                if body.len() > self.policy.max_response_bytes {
                    body.truncate(self.policy.max_response_bytes);
                    truncated = true;
                    break;
                }
            }
            return Ok(json!({
                "status": status.as_u16(),
                "content_type": content_type,
                "body": String::from_utf8_lossy(&body),
                "truncated": truncated,
                "url": url.as_str(),
            }));
        }
        Err(ToolError::Failed(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

#[async_trait]
impl Tool for HttpRequest {
    fn name(&self) -> &str {
        "http_request"
    }

    fn description(&self) -> String {
        format!(
            "Makes one HTTP request to an allowed host ({}). GET and HEAD run at once; other \
             methods change things and wait for a human's approval.",
            self.policy
                .allowed_hosts
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]},
                "url": {"type": "string"},
                "body": {"description": "JSON body, for writes"}
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: &Value) -> Result<Value, ToolError> {
        if Self::is_write(arguments) {
            return Err(refused(
                "approval_required",
                "this method changes things: it runs only with a human's signed approval".into(),
            ));
        }
        let (method, url, _) = Self::parse(arguments)?;
        self.send(method, url, None, None).await
    }
}

#[async_trait]
impl WriteTool for HttpRequest {
    async fn propose(&self, arguments: &Value) -> Result<Proposal, ToolError> {
        let (method, url, body) = Self::parse(arguments)?;
        self.check(&url).await?;
        Ok(Proposal {
            preview: json!({"method": method.as_str(), "url": url.as_str(), "body": body, "statement": format!("{} {}", method, url)}),
            rows_affected: 0,
        })
    }

    async fn execute(
        &self,
        approved: &Approved<Value>,
        idempotency_key: &str,
        _preview: &Value,
    ) -> Result<Value, ToolError> {
        let (method, url, body) = Self::parse(approved.call())?;
        self.send(method, url, body, Some(idempotency_key)).await
    }

    /// An HTTP server cannot be asked whether a request reached it, nor fenced: unknown.
    async fn settle(
        &self,
        _arguments: &Value,
        _idempotency_key: &str,
    ) -> Result<Settlement, ToolError> {
        Ok(Settlement::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_checked_host_and_address_gets_its_own_pinned_client() {
        let tool = HttpRequest::new(HttpPolicy {
            allowed_hosts: Default::default(),
            allow_private: Default::default(),
            max_response_bytes: 1,
            timeout: std::time::Duration::from_secs(1),
            proxy: None,
        });
        let dest = |host: &str, port: u16| Destination {
            host: host.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        for _ in 0..3 {
            tool.client(&dest("api.example.com", 443)).unwrap();
        }
        tool.client(&dest("api.example.com", 8443)).unwrap();
        tool.client(&dest("other.example.com", 443)).unwrap();
        tool.clients.run_pending_tasks();
        assert_eq!(tool.clients.entry_count(), 3);
    }

    #[test]
    fn internal_addresses_in_every_form_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_classed_by_that_ipv4() {
        for v4 in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.0.1"] {
            let ip: Ipv4Addr = v4.parse().unwrap();
            let o = ip.octets();
            let (hi, lo) = (
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([o[2], o[3]]),
            );
            for form in [
                format!("::ffff:{v4}"),
                format!("::{v4}"),
                format!("::ffff:0:{v4}"),
                format!("64:ff9b::{v4}"),
                format!("64:ff9b:1::{v4}"),
                format!("2002:{hi:x}:{lo:x}::1"),
                format!("2002:{hi:x}:{lo:x}:ffff::abcd"),
                format!("2001:0:4136:e378:8000:63bf:{:x}:{:x}", !hi, !lo),
            ] {
                let six: Ipv6Addr = form.parse().unwrap();
                assert!(is_internal(IpAddr::V6(six)), "{form}");
                if !form.starts_with("64:ff9b:1:") {
                    assert_eq!(embedded_ipv4(six), Some(ip), "{form}");
                }
            }
        }
        // The same forms around a public IPv4 address are not internal (except the local-use
        // NAT64 prefix, which never is global).
        for form in [
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert!(!is_internal(form.parse().unwrap()), "{form}");
        }
        assert!(is_internal("64:ff9b:1::8.8.8.8".parse().unwrap()));
        assert!(is_internal("fec0::1".parse().unwrap()));
        assert_eq!(embedded_ipv4("2606:4700::1111".parse().unwrap()), None);
    }

    #[test]
    fn host_entries_parse_with_and_without_ports() {
        let e = |s: &str| parse_host_entry(s);
        assert_eq!(e("API.example.com"), Some(("api.example.com".into(), None)));
        assert_eq!(
            e("api.example.com:443"),
            Some(("api.example.com".into(), Some(443)))
        );
        assert_eq!(e("::1"), Some(("::1".into(), None)));
        assert_eq!(e("[::1]:8080"), Some(("::1".into(), Some(8080))));
        assert_eq!(
            e("[::ffff:7f00:1]"),
            Some(("::ffff:127.0.0.1".into(), None))
        );
        for bad in ["x:0", "x:70000", "x:", "[::1", "[x]:1", "1:2:3", ""] {
            assert_eq!(e(bad), None, "{bad}");
        }
    }

    #[test]
    fn warden_listen_addresses_are_recognised_in_every_form() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let exact = [a("127.0.0.1:8787")];
        assert!(reaches_forbidden(a("127.0.0.1:8787"), &exact));
        assert!(reaches_forbidden(a("[::ffff:127.0.0.1]:8787"), &exact));
        assert!(reaches_forbidden(a("0.0.0.0:8787"), &exact));
        assert!(!reaches_forbidden(a("127.0.0.1:8788"), &exact));
        assert!(!reaches_forbidden(a("10.0.0.1:8787"), &exact));
        for any in [a("0.0.0.0:8787"), a("[::]:8787")] {
            for dest in [
                "127.0.0.1:8787",
                "127.0.0.2:8787",
                "[::1]:8787",
                "0.0.0.0:8787",
            ] {
                assert!(reaches_forbidden(a(dest), &[any]), "{dest} vs {any}");
            }
            assert!(!reaches_forbidden(a("127.0.0.1:80"), &[any]));
            // Not an address of this machine.
            assert!(!reaches_forbidden(a("192.0.2.1:8787"), &[any]));
        }
    }

    #[test]
    fn decimal_and_hex_hosts_are_normalised_by_the_url_parser() {
        for u in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://127.1/",
        ] {
            assert_eq!(Url::parse(u).unwrap().host_str(), Some("127.0.0.1"), "{u}");
        }
        assert!(HttpRequest::is_write(
            &json!({"method": "post", "url": "x"})
        ));
        assert!(!HttpRequest::is_write(&json!({"url": "x"})));
        assert!(!HttpRequest::is_write(
            &json!({"method": "HEAD", "url": "x"})
        ));
    }
}
