//! Connection hygiene (`[server]` header_read_timeout, idle_timeout, body_read_timeout,
//! min_body_rate, max_connections, max_connections_per_ip): slow clients are cut off,
//! connections beyond the limits are refused and counted, and the server answers again once
//! the slow ones are gone.

use crate::{Setup, chat_body};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use warden_testkit::Reply;

const LIMITS: &str = r#"
[server]
header_read_timeout = "1s"
max_connections = 20
max_connections_per_ip = 10
"#;

fn addr(setup: &Setup) -> SocketAddr {
    setup
        .warden
        .url
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// A connection from the loopback address `from` (127.0.0.0/8 all reach the listener).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// A client that starts a request head and never finishes it.
async fn slow_client(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, to).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: warden\r\n")
        .await
        .unwrap();
    s
}

/// Whether the server closes `s` within `within` (EOF, a reset, or an error response then
/// EOF); false if the connection is still open.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// `GET path` on a new connection from `from`; the response text, or None if the
/// connection was refused or closed without one.
async fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> Option<String> {
    let mut s = connect_from(from, to).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.starts_with("HTTP/1.1").then_some(text)
}

async fn healthz_ok(from: [u8; 4], to: SocketAddr) -> bool {
    get_from(from, to, "/healthz")
        .await
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// The value of `warden_connections_refused_total{reason="<reason>"}` (0 when absent).
async fn refused(from: [u8; 4], to: SocketAddr, reason: &str) -> u64 {
    let metrics = get_from(from, to, "/metrics").await.expect("metrics");
    let prefix = format!("warden_connections_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn per_ip_limit_refuses_and_slow_headers_are_cut_off() {
    let setup = Setup::start_with(LIMITS).await;
    let to = addr(&setup);
    // An address nothing else has used: a connection the server has just closed (the
    // readiness probe, a health check) may hold its slot a moment longer than the client
    // sees, which would make the count below off by one.
    let ip = [127, 0, 0, 5];
    assert!(healthz_ok([127, 0, 0, 6], to).await);

    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(slow_client(ip, to).await);
    }
    // (b) The 11th connection from the same address is closed at once, and so is a health
    // check from it: the per-IP limit is reached.
    let mut extra = connect_from(ip, to).await;
    assert!(
        closed_within(&mut extra, Duration::from_millis(500)).await,
        "a connection beyond the per-IP limit is closed at once"
    );
    assert!(!healthz_ok(ip, to).await);
    // Another address is not affected by this one's limit.
    assert!(healthz_ok([127, 0, 0, 2], to).await);

    // (a) The slow clients are disconnected after the header timeout (1s), not before.
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a slow client is disconnected"
        );
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");

    // (c) Once they are gone, the address is served again and the refusals were counted.
    let mut ok = false;
    for _ in 0..20 {
        if healthz_ok(ip, to).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "healthz answers again:\n{}", setup.warden.logs());
    assert!(refused(ip, to, "per_ip").await >= 2);
    assert_eq!(refused(ip, to, "global").await, 0);
}

#[tokio::test]
async fn global_limit_refuses_and_counts() {
    let setup = Setup::start_with(LIMITS).await;
    let to = addr(&setup);
    // 20 slow connections from two addresses (10 each: both at their per-IP limit too).
    let mut slow = Vec::new();
    for i in 0..20u8 {
        slow.push(slow_client([127, 0, 0, 10 + i % 2], to).await);
    }
    // A fresh address is under its own limit but the server is full.
    let mut extra = connect_from([127, 0, 0, 20], to).await;
    assert!(closed_within(&mut extra, Duration::from_millis(500)).await);
    assert!(!healthz_ok([127, 0, 0, 21], to).await);

    for s in &mut slow {
        assert!(closed_within(s, Duration::from_secs(5)).await);
    }
    let mut ok = false;
    for _ in 0..20 {
        if healthz_ok([127, 0, 0, 20], to).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "healthz answers again:\n{}", setup.warden.logs());
    assert!(refused([127, 0, 0, 20], to, "global").await >= 2);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let setup =
        Setup::start_with("[server]\nheader_read_timeout = \"5s\"\nidle_timeout = \"1s\"\n").await;
    let to = addr(&setup);
    let mut s = connect_from([127, 0, 0, 1], to).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: warden\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Kept alive after the response, then closed once idle for 1s (well before the 5s
    // header timeout).
    let idle_from = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(4)).await);
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_millis(3500),
        "closed after {idle:?}"
    );
}

/// Starts `POST /v1/chat/completions` from `from`: a complete head announcing
/// `content_length` bytes, and none of them yet.
async fn post_head(from: [u8; 4], to: SocketAddr, key: &str, content_length: usize) -> TcpStream {
    let mut s = connect_from(from, to).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: warden\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// What the server sends on `s` until it closes it, or None if it is still open after
/// `within`.
async fn read_until_closed(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts a 408 `request_timeout` in the OpenAI shape that closes the connection.
fn assert_slow_body_refusal(response: &str) {
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains(r#""type":"invalid_request_error""#)
            && response.contains(r#""code":"request_timeout""#),
        "{response}"
    );
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{response}"
    );
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_nothing_reaches_the_upstream() {
    let setup = Setup::start_with("[server]\nbody_read_timeout = \"1s\"\n").await;
    let to = addr(&setup);
    // A flood from one address: complete heads announcing 1 MB, then a few bytes and nothing.
    let flood = [127, 0, 0, 7];
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut s = post_head(flood, to, &setup.key, 1_000_000).await;
        s.write_all(br#"{"model": "fast", "#).await.unwrap();
        slow.push(s);
    }
    // Health checks keep answering while the flood holds its connections, from another
    // address and from the flooding one.
    assert!(healthz_ok([127, 0, 0, 8], to).await);
    assert!(healthz_ok(flood, to).await);
    for s in &mut slow {
        let response = read_until_closed(s, Duration::from_secs(5))
            .await
            .expect("a stalled body is cut off and its connection closed");
        assert_slow_body_refusal(&response);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut off after {took:?}"
    );
    assert_eq!(refused([127, 0, 0, 8], to, "slow_body").await, 5);
    assert_eq!(
        setup.a.hits() + setup.b.hits(),
        0,
        "nothing reached the upstream"
    );

    // A normal request with a body still works, and only the request body is timed: an
    // answer slower than body_read_timeout, and a stream longer than it, are not cut.
    assert_eq!(setup.chat("fast").await.status(), 200);
    setup.a.push([
        Reply::Delay(
            Duration::from_millis(1500),
            Box::new(Reply::Text("late".into())),
        ),
        Reply::Stream {
            pieces: ["a ", "long ", "slow ", "stream"]
                .map(String::from)
                .to_vec(),
            delay: Duration::from_millis(500),
        },
    ]);
    let late = setup.chat("fast").await;
    assert_eq!(late.status(), 200);
    assert!(late.text().await.unwrap().contains("late"));
    let events = setup.stream(chat_body("fast")).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.contains("stream")), "{events:?}");
    assert_eq!(setup.a.hits(), 3);
    assert_eq!(refused([127, 0, 0, 8], to, "slow_body").await, 5);
}

#[tokio::test]
async fn a_request_body_below_the_minimum_rate_is_cut_off() {
    let setup =
        Setup::start_with("[server]\nbody_read_timeout = \"2s\"\nmin_body_rate = 1000\n").await;
    let to = addr(&setup);
    // 100 bytes every 500ms (200 B/s): never a pause of body_read_timeout, but a fifth of
    // the minimum rate. Each 1000 bytes extend the 2s grace by 1s: cut off after ~2.5s.
    let (mut read, mut write) = post_head([127, 0, 0, 9], to, &setup.key, 1_000_000)
        .await
        .into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for _ in 0..40 {
            if write.write_all(&[b' '; 100]).await.is_err() {
                break;
            }
            sent += 100;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sent
    });
    let response = read_until_closed(&mut read, Duration::from_secs(8))
        .await
        .expect("a body below the minimum rate is cut off");
    let took = started.elapsed();
    assert_slow_body_refusal(&response);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "cut off after {took:?}"
    );
    writer.abort();
    assert_eq!(refused([127, 0, 0, 10], to, "slow_body").await, 1);
    assert_eq!(
        setup.a.hits() + setup.b.hits(),
        0,
        "nothing reached the upstream"
    );

    // A body that comes in pieces above the minimum rate is read whole, though it takes
    // longer than body_read_timeout: 2000 bytes every 500ms (4000 B/s) for ~3s.
    let mut body = chat_body("fast");
    body["messages"][0]["content"] = "hello ".repeat(2000).into();
    let body = serde_json::to_vec(&body).unwrap();
    let mut s = post_head([127, 0, 0, 9], to, &setup.key, body.len()).await;
    let started = Instant::now();
    for piece in body.chunks(2000) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    let response = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(setup.a.hits(), 1);
    assert_eq!(refused([127, 0, 0, 10], to, "slow_body").await, 1);
}
