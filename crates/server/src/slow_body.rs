//! Request-body read limits (`server.body_read_timeout`, `server.min_body_rate`): a client that
//! sends its request head promptly and then dribbles its body cannot hold a connection and a
//! handler open. The body is timed only while a handler reads it, never the response: a
//! stream runs as long as it runs.
//!
//! The rules are nginx's `client_body_timeout` (the longest wait for the next piece of the
//! body) and Apache `mod_reqtimeout`'s `MinRate` (each `min_body_rate` bytes received extend
//! the body's deadline, `body_read_timeout` after reading began, by one second). A body that
//! breaks either gets 408 `request_timeout`, its HTTP/1 connection is closed, and it is counted
//! in `warden_connections_refused_total{reason="slow_body"}`.

use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use warden_core::ErrorCode;

/// The error a timed body ends with when the client is too slow.
#[derive(Debug)]
pub(crate) struct SlowBody;

impl std::fmt::Display for SlowBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body was sent too slowly")
    }
}

impl StdError for SlowBody {}

/// Whether `e` (or an error it wraps) is a body cut off for slowness.
pub(crate) fn is_slow_body(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<SlowBody>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// The answer to a body cut off for slowness.
pub(crate) fn refusal() -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        "the request body was sent too slowly; the connection is closed",
    )
}

/// Middleware: times every request body; answers 408 (and closes an HTTP/1 connection) when
/// the handler's read of it was cut off.
pub(crate) async fn layer(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let cut = Arc::new(AtomicBool::new(false));
    let http1 = req.version() < http::Version::HTTP_2;
    let (gap, min_rate) = (state.body_read_timeout, state.min_body_rate);
    let req = req.map(|inner| {
        Body::new(TimedBody {
            inner,
            gap,
            min_rate,
            started: None,
            last: None,
            received: 0,
            timer: None,
            cut: cut.clone(),
        })
    });
    let response = next.run(req).await;
    if !cut.load(Ordering::Relaxed) {
        return response;
    }
    metrics::counter!("warden_connections_refused_total", "reason" => "slow_body").increment(1);
    tracing::debug!("request refused: its body was sent too slowly");
    // Handlers that record their refusals answer 408 themselves; any other answer to a body
    // that was cut off is replaced.
    let mut response = if response.status() == http::StatusCode::REQUEST_TIMEOUT {
        response
    } else {
        refusal().into_response()
    };
    if http1 {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A request body that fails with [`SlowBody`] when the next piece takes longer than `gap`
/// to come, or the whole is slower than `min_rate` bytes per second after a grace of `gap`.
/// The clock starts at the first read.
struct TimedBody {
    inner: Body,
    gap: Duration,
    /// Bytes per second; 0 is no minimum.
    min_rate: u64,
    started: Option<Instant>,
    /// When the last piece came (or reading began).
    last: Option<Instant>,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
    /// Set once the body is cut off.
    cut: Arc<AtomicBool>,
}

impl TimedBody {
    /// When the body is cut off if nothing more comes.
    fn deadline(&self, started: Instant, last: Instant) -> Instant {
        let next_piece = last + self.gap;
        if self.min_rate == 0 {
            return next_piece;
        }
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / self.min_rate);
        started
            .checked_add(self.gap + earned)
            .map_or(next_piece, |by_rate| next_piece.min(by_rate))
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.cut.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(axum::Error::new(SlowBody))));
        }
        let now = Instant::now();
        let started = *this.started.get_or_insert(now);
        let last = *this.last.get_or_insert(now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                }
                this.last = Some(now);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(end_or_error) => {
                this.timer = None;
                Poll::Ready(end_or_error)
            }
            Poll::Pending => {
                let deadline = this.deadline(started, last);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if now < deadline && timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.timer = None;
                this.cut.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(SlowBody))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::BodyExt;

    /// A body fed by hand: `(bytes, pause before them)`.
    fn dribble(pieces: Vec<(usize, Duration)>) -> Body {
        let stream = futures_util::stream::iter(pieces).then(|(n, pause)| async move {
            tokio::time::sleep(pause).await;
            Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; n]))
        });
        Body::from_stream(stream)
    }

    fn timed(inner: Body, gap: Duration, min_rate: u64) -> (TimedBody, Arc<AtomicBool>) {
        let cut = Arc::new(AtomicBool::new(false));
        let body = TimedBody {
            inner,
            gap,
            min_rate,
            started: None,
            last: None,
            received: 0,
            timer: None,
            cut: cut.clone(),
        };
        (body, cut)
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_steady_body_is_read_whole() {
        let pieces = (0..20).map(|_| (2000, 50 * MS)).collect();
        let (body, cut) = timed(dribble(pieces), 200 * MS, 1024);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 40_000);
        assert!(!cut.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_after_the_gap() {
        let pieces = vec![(10, Duration::ZERO), (10, 150 * MS), (10, 400 * MS)];
        let (body, cut) = timed(dribble(pieces), 200 * MS, 0);
        let started = Instant::now();
        let e = body.collect().await.unwrap_err();
        assert!(is_slow_body(&e), "{e}");
        assert!(cut.load(Ordering::Relaxed));
        // Cut 200ms after the second piece, before the third.
        let took = started.elapsed();
        assert!(took >= 350 * MS && took < 550 * MS, "{took:?}");
    }

    #[tokio::test]
    async fn a_body_below_the_minimum_rate_is_cut_after_the_grace() {
        // 100 bytes every 50ms (2000 B/s) never stalls for 200ms: without a minimum rate it
        // is read whole.
        let pieces = || (0..20).map(|_| (100, 50 * MS)).collect();
        let (body, _) = timed(dribble(pieces()), 200 * MS, 0);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 2000);
        // At 10000 B/s minimum its deadline is 200ms + received/10000: after 4 pieces
        // (200ms, 400 bytes) it is 240ms, before the fifth comes.
        let (body, _) = timed(dribble(pieces()), 200 * MS, 10_000);
        let started = Instant::now();
        let e = body.collect().await.unwrap_err();
        assert!(is_slow_body(&e), "{e}");
        let took = started.elapsed();
        assert!(took >= 200 * MS && took < 600 * MS, "{took:?}");
    }
}
