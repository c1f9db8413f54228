//! Usage rows are written off the request path: handlers hand a row to a bounded channel and
//! a background task writes them in batches (one transaction per batch, budget counters
//! included). A batch the store refuses is retried, with a capped exponential backoff, until
//! it is written: it is never dropped while Warden runs. Meanwhile the channel fills and
//! senders wait (back-pressure) rather than drop rows. At shutdown the writer drains what was
//! queued, retrying for at most a grace time (30 s by default), and only then gives up, loudly.

use crate::{UsageRow, UsageStore};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Rows queued at most before senders wait.
const QUEUE: usize = 8192;
/// Rows written in one transaction at most.
const BATCH: usize = 256;
/// The wait after a batch's first failed write; it doubles after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two attempts at a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long, once `close` has resolved, the writer keeps retrying batches the store refuses
/// before it gives up on the rows still unwritten (logged as an error with their number,
/// never their content), so a shutdown with the database down is bounded. Rows the store
/// accepts are written whatever the time. Change it with [`UsageWriter::shutdown_grace`].
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Sends usage rows to the writer. Cheap to clone.
#[derive(Clone)]
pub struct UsageWriterHandle {
    tx: mpsc::Sender<UsageRow>,
}

impl UsageWriterHandle {
    /// Queues a row; waits if the queue is full. A row sent after shutdown is logged and lost.
    pub async fn record(&self, row: UsageRow) {
        if self.tx.send(row).await.is_err() {
            tracing::error!("usage writer has stopped; a usage row was not recorded");
        }
    }
}

/// The background task that writes usage rows.
pub struct UsageWriter {
    store: Arc<dyn UsageStore>,
    rx: mpsc::Receiver<UsageRow>,
    grace: Duration,
}

/// How a batch's write ended.
enum Written {
    Yes,
    /// The shutdown grace ran out before the store took it.
    GaveUp,
}

impl UsageWriter {
    /// Creates the writer and the handle that feeds it.
    pub fn new(store: Arc<dyn UsageStore>) -> (Self, UsageWriterHandle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Self {
                store,
                rx,
                grace: SHUTDOWN_GRACE,
            },
            UsageWriterHandle { tx },
        )
    }

    /// Sets how long the writer keeps retrying refused batches after `close` resolves (30 s by
    /// default); whoever waits for [`UsageWriter::run`] at shutdown should wait a little
    /// longer than this, or the rows it gives up on are not even counted in the log.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Writes rows until every handle is dropped and the queue is drained, or until `close`
    /// resolves: then no new row is accepted, the rows already queued are written, and it
    /// returns (so a shutdown is not held up by requests that are being cut off).
    ///
    /// A batch the store refuses is retried (50 ms, doubling to 5 s between attempts) until
    /// it is written; while it is, the queue fills and senders wait. After `close`, retries
    /// stop at the shutdown grace: the rows not written by then are counted in one error and
    /// the writer returns.
    pub async fn run(mut self, close: impl Future<Output = ()>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut close = std::pin::pin!(close);
        // Set when `close` resolves: the end of the shutdown grace.
        let mut deadline: Option<Instant> = None;
        loop {
            let received = if deadline.is_some() {
                self.rx.recv_many(&mut batch, BATCH).await
            } else {
                tokio::select! {
                    n = self.rx.recv_many(&mut batch, BATCH) => n,
                    () = &mut close => {
                        deadline = Some(self.start_closing());
                        continue;
                    }
                }
            };
            if received == 0 {
                return;
            }
            match self.write(&batch, close.as_mut(), &mut deadline).await {
                Written::Yes => batch.clear(),
                Written::GaveUp => {
                    // The queue is closed (the deadline is only set by closing it): count
                    // what is left in it and stop.
                    let mut lost = batch.len();
                    batch.clear();
                    loop {
                        let n = self.rx.recv_many(&mut batch, BATCH).await;
                        if n == 0 {
                            break;
                        }
                        lost += n;
                        batch.clear();
                    }
                    tracing::error!(
                        rows = lost,
                        grace = ?self.grace,
                        "usage rows lost: the store refused them until the shutdown grace ran \
                         out (their budget counters were not added either)"
                    );
                    return;
                }
            }
        }
    }

    /// Refuses new rows and returns the end of the shutdown grace.
    fn start_closing(&mut self) -> Instant {
        self.rx.close();
        Instant::now() + self.grace
    }

    /// Writes one batch, retrying until the store takes it; after `close` (`deadline` set),
    /// only until the deadline. `close` is polled only while `deadline` is unset.
    async fn write<C: Future<Output = ()>>(
        &mut self,
        batch: &[UsageRow],
        mut close: Pin<&mut C>,
        deadline: &mut Option<Instant>,
    ) -> Written {
        let mut delay = FIRST_BACKOFF;
        let mut failures: u64 = 0;
        loop {
            let attempt = self.store.insert_usage(batch);
            let result = match *deadline {
                // An attempt that hangs past the deadline is abandoned (its transaction rolls
                // back when dropped).
                Some(end) => match tokio::time::timeout_at(end, attempt).await {
                    Ok(r) => r,
                    Err(_) => return Written::GaveUp,
                },
                None => attempt.await,
            };
            let error = match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            rows = batch.len(),
                            failures,
                            "usage batch written after failed attempts"
                        );
                    }
                    return Written::Yes;
                }
                Err(e) => e,
            };
            failures += 1;
            tracing::warn!(
                error = %error,
                rows = batch.len(),
                failures,
                retry_in = ?delay,
                "usage batch write failed; retrying (senders wait while the queue is full)"
            );
            match *deadline {
                Some(end) => {
                    tokio::time::sleep_until((Instant::now() + delay).min(end)).await;
                    if Instant::now() >= end {
                        return Written::GaveUp;
                    }
                }
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        // Shutdown began while the store was refusing: the grace starts now,
                        // and the retry comes at once.
                        () = &mut close => *deadline = Some(self.start_closing()),
                    }
                }
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}
