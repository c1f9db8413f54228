//! `http_request` against a real HTTP server on loopback: allow-listed hosts only, internal
//! addresses refused in every spelling (decimal and hex IPs, names resolving to loopback,
//! metadata IPs), redirects re-checked, responses capped, writes sent with their
//! idempotency key; ports of allowed hosts, Warden's own listener and environment proxies;
//! an explicitly configured proxy (a recording one on loopback) gets only checked requests.

use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_tools::http::{HttpPolicy, HttpProxy, HttpRequest};
use warden_tools::{Tool, ToolError, WriteTool};

async fn server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keys = seen.clone();
    let app = axum::Router::new()
        .route("/data", get(|| async { axum::Json(json!({"ok": true})) }))
        .route(
            "/to-metadata",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "http://169.254.169.254/latest/meta-data/")],
                )
            }),
        )
        .route(
            "/to-elsewhere",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "http://example.org/")],
                )
            }),
        )
        .route(
            "/to-data",
            get(|| async { (axum::http::StatusCode::FOUND, [("location", "/data")]) }),
        )
        .route("/big", get(|| async { "x".repeat(100_000) }))
        .route(
            "/orders",
            post(move |headers: axum::http::HeaderMap| {
                let keys = keys.clone();
                async move {
                    let k = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    keys.lock().unwrap().push(k);
                    (axum::http::StatusCode::CREATED, "created")
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, seen)
}

fn tool(allowed: &[&str], private: &[&str]) -> HttpRequest {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    HttpRequest::new(HttpPolicy {
        allowed_hosts: set(allowed),
        allow_private: set(private),
        max_response_bytes: 1000,
        timeout: Duration::from_secs(5),
        proxy: None,
    })
}

/// What a recording proxy was sent: the head of each request, one entry per connection.
type Seen = Arc<Mutex<Vec<String>>>;

/// A forward proxy on loopback that records the head of every request it gets (for plain
/// http the request line carries the absolute URL) and answers itself, connecting nowhere:
/// 200 `via the proxy`, or for a `/to-metadata` path a redirect to the metadata address.
fn recording_proxy() -> (String, Seen) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let answer = if head.lines().next().unwrap_or("").contains("/to-metadata ") {
                "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
            } else {
                let body = "via the proxy";
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            log.lock().unwrap().push(head);
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (url, seen)
}

fn proxied_tool(
    allowed: &[&str],
    private: &[&str],
    proxy: &str,
    basic_auth: Option<(&str, &str)>,
) -> HttpRequest {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    HttpRequest::new(HttpPolicy {
        allowed_hosts: set(allowed),
        allow_private: set(private),
        max_response_bytes: 1000,
        timeout: Duration::from_secs(5),
        proxy: Some(HttpProxy {
            url: proxy.to_owned(),
            basic_auth: basic_auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        }),
    })
}

fn rule(r: Result<Value, ToolError>) -> String {
    match r {
        Err(ToolError::Refused { rule, .. }) => rule,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn internal_addresses_are_refused_in_every_spelling() {
    let (port, _) = server().await;
    let t = tool(
        &[
            &format!("localhost:{port}"),
            "169.254.169.254",
            "metadata.google.internal",
        ],
        &[],
    );
    let t = &t;
    let get = |url: String| {
        let args = json!({"method": "GET", "url": url});
        async move { t.call(&args).await }
    };
    // A name that resolves to loopback.
    assert_eq!(
        rule(get(format!("http://localhost:{port}/data")).await),
        "internal_address"
    );
    // Cloud metadata, allow-listed by mistake: still refused.
    assert_eq!(
        rule(get("http://169.254.169.254/latest/meta-data/".into()).await),
        "internal_address"
    );
    // Decimal, hex, short and IPv4-mapped forms of 127.0.0.1 are that host, not allowed.
    for u in [
        format!("http://2130706433:{port}/data"),
        format!("http://0x7f000001:{port}/data"),
        format!("http://127.1:{port}/data"),
        format!("http://[::ffff:127.0.0.1]:{port}/data"),
    ] {
        assert_eq!(rule(get(u.clone()).await), "host_not_allowed", "{u}");
    }
    assert_eq!(
        rule(get("file:///etc/passwd".into()).await),
        "scheme_not_allowed"
    );
    assert_eq!(
        rule(get("http://example.org/".into()).await),
        "host_not_allowed"
    );
}

#[tokio::test]
async fn allowed_internal_hosts_work_redirects_are_rechecked_and_bodies_capped() {
    let (port, _) = server().await;
    let t = tool(
        &[&format!("127.0.0.1:{port}"), "169.254.169.254"],
        &["127.0.0.1"],
    );
    let t = &t;
    let get = |path: &str| {
        let args = json!({"url": format!("http://127.0.0.1:{port}{path}")});
        async move { t.call(&args).await }
    };
    let ok = get("/data").await.unwrap();
    assert_eq!(ok["status"], 200);
    assert!(ok["body"].as_str().unwrap().contains("\"ok\":true"));
    let followed = get("/to-data").await.unwrap();
    assert_eq!(followed["status"], 200, "{followed}");
    assert_eq!(
        rule(get("/to-metadata").await),
        "internal_address",
        "a redirect to metadata"
    );
    assert_eq!(
        rule(get("/to-elsewhere").await),
        "host_not_allowed",
        "a redirect off the list"
    );
    let big = get("/big").await.unwrap();
    assert_eq!(big["truncated"], true);
    assert_eq!(big["body"].as_str().unwrap().len(), 1000);
}

#[tokio::test]
async fn calls_to_one_destination_reuse_one_client_and_its_connection() {
    // The server answers with the client's port: the same port twice is one connection.
    let app =
        axum::Router::new().route(
            "/peer",
            get(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                    std::net::SocketAddr,
                >| async move { peer.port().to_string() },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    let t = tool(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    let args = json!({"url": format!("http://127.0.0.1:{port}/peer")});
    let first = t.call(&args).await.unwrap();
    let second = t.call(&args).await.unwrap();
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(
        first["body"], second["body"],
        "the second call went over the first one's kept connection"
    );
}

#[tokio::test]
async fn writes_wait_for_approval_and_carry_their_idempotency_key() {
    let (port, seen) = server().await;
    let t = tool(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    let args = json!({"method": "POST", "url": format!("http://127.0.0.1:{port}/orders"), "body": {"sku": 1}});
    assert!(HttpRequest::is_write(&args));
    assert_eq!(rule(t.call(&args).await), "approval_required");
    let p = t.propose(&args).await.unwrap();
    assert_eq!(p.preview["method"], "POST");
    assert!(seen.lock().unwrap().is_empty(), "a proposal sends nothing");
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let approvers = [(
        "alice".to_string(),
        warden_tools::approval::Approver {
            key: key.verifying_key(),
            tools: vec!["http_request".into()],
        },
    )]
    .into();
    let message = warden_tools::approval::DecisionMessage {
        approval_id: "apr_h".into(),
        agent_id: "a/b".into(),
        tool: "http_request".into(),
        arguments_sha256: warden_tools::approval::arguments_sha256(&args),
        decision: warden_tools::approval::Decision::Approve,
        expires_at_ms: i64::MAX,
    };
    let approved = warden_tools::approval::verify_decision(
        &approvers,
        "alice",
        &message,
        &message.sign(&key),
        0,
        args.clone(),
    )
    .unwrap();
    let out = t
        .execute(&approved, "warden:apr_h", &serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(out["status"], 201);
    assert_eq!(seen.lock().unwrap().as_slice(), ["warden:apr_h"]);
    // A refused destination is refused at proposal time already.
    let bad = json!({"method": "DELETE", "url": "http://169.254.169.254/x"});
    assert!(t.propose(&bad).await.is_err());
}

#[tokio::test]
async fn an_allowed_host_without_a_port_is_reachable_on_80_and_443_only() {
    let (port, _) = server().await;
    let url = format!("http://127.0.0.1:{port}/data");
    let get = json!({"url": url});
    let t = tool(&["127.0.0.1"], &["127.0.0.1"]);
    match t.call(&get).await {
        Err(ToolError::Refused { rule, message }) => {
            assert_eq!(rule, "port_not_allowed");
            assert!(message.contains("80, 443"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A write is refused at proposal time too.
    let post = json!({"method": "POST", "url": format!("http://127.0.0.1:{port}/orders")});
    assert!(t.propose(&post).await.is_err());
    // Naming the port allows it, and only it.
    let t = tool(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    assert_eq!(t.call(&get).await.unwrap()["status"], 200);
    let other = json!({"url": format!("http://127.0.0.1:{}/data", port.wrapping_add(1).max(1))});
    assert_eq!(rule(t.call(&other).await), "port_not_allowed");
    // A private entry with a port covers that port only.
    let t = tool(&[&format!("127.0.0.1:{port}")], &["127.0.0.1:1"]);
    assert_eq!(rule(t.call(&get).await), "internal_address");
}

#[tokio::test]
async fn wardens_own_listener_is_refused_even_when_allowed_and_private() {
    let (port, _) = server().await;
    let me: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let allowed = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let private = ["127.0.0.1", "localhost"];
    for listen in [
        me,
        format!("0.0.0.0:{port}").parse().unwrap(),
        format!("[::]:{port}").parse().unwrap(),
    ] {
        let t = tool(&allowed, &private).forbid([listen]);
        for host in ["127.0.0.1", "localhost"] {
            let get = json!({"url": format!("http://{host}:{port}/data")});
            assert_eq!(
                rule(t.call(&get).await),
                "warden_address",
                "{host} {listen}"
            );
            let post = json!({"method": "POST", "url": format!("http://{host}:{port}/orders")});
            assert!(t.propose(&post).await.is_err());
        }
    }
    // Another port of the same machine is not Warden's.
    let t = tool(&allowed, &private).forbid([format!("0.0.0.0:{}", port.wrapping_add(1).max(1))
        .parse()
        .unwrap()]);
    let get = json!({"url": format!("http://127.0.0.1:{port}/data")});
    assert_eq!(t.call(&get).await.unwrap()["status"], 200);
}

/// Set in the child process of the proxy test only.
const PROXY_CHILD: &str = "WARDEN_TEST_HTTP_PROXY_CHILD";

/// Run by `environment_proxies_are_never_used` in a child process whose environment names a
/// proxy (the variables are read when a client is built; a child keeps them away from the
/// other tests); does nothing otherwise.
#[tokio::test]
async fn environment_proxies_child() {
    if std::env::var_os(PROXY_CHILD).is_none() {
        return;
    }
    let (port, _) = server().await;
    let t = HttpRequest::new(HttpPolicy {
        allowed_hosts: [format!("127.0.0.1:{port}")].into(),
        allow_private: ["127.0.0.1".to_string()].into(),
        max_response_bytes: 1000,
        timeout: Duration::from_secs(2),
        proxy: None,
    });
    let out = t
        .call(&json!({"url": format!("http://127.0.0.1:{port}/data")}))
        .await
        .unwrap();
    assert_eq!(out["status"], 200, "{out}");
    // A configured proxy replaces the environment's: the call goes to it, not to theirs.
    let (proxy, seen) = recording_proxy();
    let t = proxied_tool(&["8.8.8.8"], &[], &proxy, None);
    let out = t
        .call(&json!({"url": "http://8.8.8.8/data"}))
        .await
        .unwrap();
    assert_eq!(out["body"], "via the proxy", "{out}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn environment_proxies_are_never_used() {
    if std::env::var_os(PROXY_CHILD).is_some() {
        return;
    }
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "http::environment_proxies_child",
            "--exact",
            "--test-threads=1",
        ])
        .env(PROXY_CHILD, "1")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        child.env(var, &proxy_url);
    }
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(proxy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the request went through the environment's proxy"
    );
}

#[tokio::test]
async fn a_configured_proxy_gets_allowed_requests_with_its_credentials() {
    let (port, _) = server().await;
    let (proxy, seen) = recording_proxy();
    let t = proxied_tool(
        &["8.8.8.8", &format!("127.0.0.1:{port}"), "169.254.169.254"],
        &["127.0.0.1"],
        &proxy,
        Some(("warden", "hunter2")),
    );
    // A public address: Warden checks it and hands the request to the proxy, which answers.
    let out = t
        .call(&json!({"url": "http://8.8.8.8/data?x=1"}))
        .await
        .unwrap();
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], "via the proxy");
    // An allowed private host goes through the proxy as well (its answer, not the server's).
    let url = format!("http://127.0.0.1:{port}/data");
    let out = t.call(&json!({"url": url})).await.unwrap();
    assert_eq!(out["body"], "via the proxy", "{out}");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[0].starts_with("GET http://8.8.8.8/data?x=1 HTTP/1.1\r\n"),
        "the proxy sees the absolute URL: {heads:?}"
    );
    assert!(
        heads[1].starts_with(&format!("GET {url} HTTP/1.1\r\n")),
        "{heads:?}"
    );
    for head in &heads {
        assert!(
            head.to_lowercase()
                .contains("proxy-authorization: basic d2fyzgvuomh1bnrlcji="),
            "Basic credentials from proxy_auth_env: {head}"
        );
    }
    // The password is never in the policy's debug output.
    let policy = HttpPolicy {
        allowed_hosts: BTreeSet::new(),
        allow_private: BTreeSet::new(),
        max_response_bytes: 1,
        timeout: Duration::from_secs(1),
        proxy: Some(HttpProxy {
            url: proxy.clone(),
            basic_auth: Some(("warden".into(), "hunter2".into())),
        }),
    };
    assert!(!format!("{policy:?}").contains("hunter2"));
    // Redirects are still followed by hand and re-checked: the proxy's redirect to the
    // metadata address (allow-listed by mistake) is refused, and nothing more is sent.
    assert_eq!(
        rule(t.call(&json!({"url": "http://8.8.8.8/to-metadata"})).await),
        "internal_address"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    // https goes through `CONNECT host:port` (TLS end to end; this proxy speaks none, so the
    // call fails after the proxy was asked for the checked host and port).
    assert!(
        t.call(&json!({"url": "https://8.8.8.8/data"}))
            .await
            .is_err()
    );
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads[3].starts_with("CONNECT 8.8.8.8:443 HTTP/1.1\r\n"),
        "{heads:?}"
    );
}

#[tokio::test]
async fn with_a_proxy_refused_requests_never_reach_it() {
    let (port, _) = server().await;
    let (proxy, seen) = recording_proxy();
    let t = proxied_tool(
        &[
            "8.8.8.8",
            &format!("localhost:{port}"),
            "169.254.169.254",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
        &proxy,
        None,
    );
    let t = &t;
    let get = |url: String| {
        let args = json!({"url": url});
        async move { t.call(&args).await }
    };
    // Not on the allow-list, or an allowed host on a port it is not allowed.
    assert_eq!(
        rule(get("http://example.org/".into()).await),
        "host_not_allowed"
    );
    assert_eq!(
        rule(get("http://8.8.8.8:8080/data".into()).await),
        "port_not_allowed"
    );
    assert_eq!(
        rule(get("ftp://8.8.8.8/data".into()).await),
        "scheme_not_allowed"
    );
    // Allowed names and addresses that are internal, without allow_private: Warden still
    // resolves and refuses them, though the proxy would make the connection.
    assert_eq!(
        rule(get(format!("http://localhost:{port}/data")).await),
        "internal_address"
    );
    assert_eq!(
        rule(get("http://169.254.169.254/latest/meta-data/".into()).await),
        "internal_address"
    );
    assert_eq!(
        rule(get(format!("http://127.0.0.1:{port}/data")).await),
        "internal_address"
    );
    // A write to a refused destination is refused at proposal time.
    let post = json!({"method": "POST", "url": "http://example.org/orders"});
    assert!(t.propose(&post).await.is_err());
    // Warden's own listener, allowed and private, is refused too.
    let me: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = proxied_tool(
        &[&format!("127.0.0.1:{port}")],
        &["127.0.0.1"],
        &proxy,
        None,
    )
    .forbid([me]);
    assert_eq!(
        rule(
            t.call(&json!({"url": format!("http://127.0.0.1:{port}/data")}))
                .await
        ),
        "warden_address"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the proxy saw a refused request: {:?}",
        seen.lock().unwrap()
    );
}
