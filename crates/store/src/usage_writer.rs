//! Usage rows are written off the request path: handlers hand a row to a bounded channel and
//! a background task writes them in batches (one transaction per batch). When the channel is
//! full, senders wait rather than drop rows; at shutdown the writer drains what was queued.

use crate::{Store, UsageRow};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Rows queued at most before senders wait.
const QUEUE: usize = 8192;
/// Rows written in one transaction at most.
const BATCH: usize = 256;

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
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<UsageRow>,
}

impl UsageWriter {
    /// Creates the writer and the handle that feeds it.
    pub fn new(store: Arc<dyn Store>) -> (Self, UsageWriterHandle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { store, rx }, UsageWriterHandle { tx })
    }

    /// Writes rows until every handle is dropped and the queue is drained, or until `close`
    /// resolves: then no new row is accepted, the rows already queued are written, and it
    /// returns (so a shutdown is not held up by requests that are being cut off). A failed
    /// batch is retried a few times, then logged (with its size, never its content) and dropped.
    pub async fn run(mut self, close: impl Future<Output = ()>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut close = std::pin::pin!(close);
        let mut closing = false;
        loop {
            let received = if closing {
                self.rx.recv_many(&mut batch, BATCH).await
            } else {
                tokio::select! {
                    n = self.rx.recv_many(&mut batch, BATCH) => n,
                    () = &mut close => {
                        closing = true;
                        self.rx.close();
                        continue;
                    }
                }
            };
            if received == 0 {
                return;
            }
            self.write(&batch).await;
            batch.clear();
        }
    }

    async fn write(&self, batch: &[UsageRow]) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match self.store.insert_usage(batch).await {
                Ok(()) => return,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "usage batch write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => tracing::error!(error = %e, rows = batch.len(), "usage rows lost"),
            }
        }
    }
}
