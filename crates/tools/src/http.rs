//! `http_request`: HTTP calls to allow-listed hosts only. `GET` and `HEAD` are reads; every
//! other method is a write (it waits for approval). Warden resolves each host itself and
//! refuses loopback, link-local (cloud metadata included), private, shared, unspecified,
//! multicast and broadcast addresses unless the host is explicitly allowed to be private; the
//! connection goes to the address it checked (no second lookup to rebind). Redirects are
//! followed by hand, each checked like the first, at most three; response size and time are
//! capped.

use crate::approval::Approved;
use crate::tool::{Proposal, Settlement, Tool, ToolError, WriteTool};
use async_trait::async_trait;
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// Where `http_request` may go.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Hosts it may reach (lower case; names or IP literals).
    pub allowed_hosts: BTreeSet<String>,
    /// Of those, hosts that may resolve to private or loopback addresses (internal services).
    pub allow_private: BTreeSet<String>,
    /// Response bytes kept at most.
    pub max_response_bytes: usize,
    /// Time for the whole call.
    pub timeout: Duration,
}

/// Whether an address is one a tool must not reach unless allowed: loopback, link-local
/// (169.254.0.0/16: cloud metadata), private, shared (100.64.0.0/10), unspecified,
/// multicast, broadcast, documentation, and their IPv6 and IPv4-mapped forms.
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
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
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
}

/// A checked destination: the host name, and the address to connect to.
struct Destination {
    host: String,
    addr: SocketAddr,
}

impl HttpRequest {
    /// A tool under `policy`.
    pub fn new(policy: HttpPolicy) -> Self {
        Self { policy }
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
        if !self.policy.allowed_hosts.contains(&host) {
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
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| ToolError::Failed(format!("cannot resolve `{host}`: {e}")))?
                .collect(),
        };
        let private_ok = self.policy.allow_private.contains(&host);
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
            // Connect to the address just checked, not to a second lookup's answer.
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve(&dest.host, dest.addr)
                .build()
                .map_err(|e| ToolError::Failed(e.to_string()))?;
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
