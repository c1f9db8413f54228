//! The HTTP accept loop of `warden serve`: connection limits (in total and per peer address),
//! the header-read and idle keep-alive timeouts, and graceful shutdown, over hyper-util's
//! HTTP/1.1 and HTTP/2 server. It owns connections, not requests: the router does the rest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use warden_config::ServerConfig;

/// Connection limits and timeouts (`[server]`), shared by the accept loop and its tasks.
pub(crate) struct Connections {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max: usize,
    max_per_ip: usize,
    /// Open connections: the total and by peer address (entries at zero are removed).
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Connections {
    pub(crate) fn new(server: &ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max: server.max_connections,
            max_per_ip: server.max_connections_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for a new connection from `ip`, or why there is none.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.0 >= self.max {
            return Err("global");
        }
        let from_ip = open.1.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err("per_ip");
        }
        *from_ip += 1;
        open.0 += 1;
        Ok(Slot {
            connections: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; its slot is given back when the connection task ends.
struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until `stop`, serving each with hyper (HTTP/1.1 and HTTP/2) under the
/// limits and timeouts of `connections`; then closes idle connections, lets busy ones finish
/// their requests, and returns when every connection is closed.
pub(crate) async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    connections: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(connections.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let service = hyper_util::service::TowerToHyperService::new(app.into_service());
    // Every connection task holds a sender; all are gone when every connection is closed.
    let (open_tx, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let epoch = tokio::time::Instant::now();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) {
                        // Most likely out of file descriptors: wait for some to close.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let slot = match connections.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                metrics::counter!("warden_connections_refused_total", "reason" => reason)
                    .increment(1);
                tracing::debug!(%peer, reason, "connection refused: too many open connections");
                drop(tcp);
                continue;
            }
        };
        // Without TCP_NODELAY, small SSE writes wait for delayed ACKs (up to 40 ms each).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let last_active = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Tracked {
            inner: tcp,
            epoch,
            last_active: last_active.clone(),
        });
        let builder = builder.clone();
        let service = service.clone();
        let idle = connections.idle_timeout;
        let mut stop = stop.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(conn);
            let idle_check = tokio::time::sleep(idle);
            tokio::pin!(idle_check);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = stopped(&mut stop), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    () = idle_check.as_mut(), if !closing => {
                        let last = epoch + Duration::from_millis(last_active.load(Ordering::Relaxed));
                        if last.elapsed() >= idle {
                            // Closes the connection now if it is between requests, or after the
                            // response under way.
                            tracing::debug!(%peer, "closing an idle connection");
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        } else {
                            idle_check.as_mut().reset(last + idle);
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    drop(open_tx);
    let _ = all_closed.recv().await;
}

/// Returns once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A TCP stream that notes when bytes last moved (milliseconds since `epoch`), for the
/// idle timeout.
struct Tracked {
    inner: tokio::net::TcpStream,
    epoch: tokio::time::Instant,
    last_active: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
