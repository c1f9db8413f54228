//! SQLite's group commit for agent journals. SQLite runs one write at a time and each commit
//! is a sync, so steps that arrive together (from many agents) are written by one task in one
//! transaction and synced once; each is acknowledged only after that commit. Each step's state
//! update is conditional on its agent's lease epoch: a stale one is skipped (and reported as
//! [`Error::LeaseLost`]) without failing the others.

use super::agents::write_step;
use crate::Error;
use crate::agents::{AgentUpdate, NewStep};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

/// Steps committed in one transaction at most.
const GROUP: usize = 256;

/// Hands steps to the writer task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Handle {
    tx: mpsc::Sender<Write>,
}

/// One step to commit, and where to say how it went.
struct Write {
    id: String,
    epoch: i64,
    step: NewStep,
    update: AgentUpdate,
    ack: oneshot::Sender<Result<i64, Error>>,
}

/// Starts the writer task over `pool`.
pub(crate) fn spawn(pool: SqlitePool) -> Handle {
    let (tx, rx) = mpsc::channel(4 * GROUP);
    tokio::spawn(run(pool, rx));
    Handle { tx }
}

impl Handle {
    /// Commits one step (see `AgentStore::commit_step`) with the next group.
    pub(crate) async fn commit(
        &self,
        id: &str,
        epoch: i64,
        step: &NewStep,
        update: &AgentUpdate,
    ) -> Result<i64, Error> {
        let (ack, done) = oneshot::channel();
        let write = Write {
            id: id.to_owned(),
            epoch,
            step: step.clone(),
            update: update.clone(),
            ack,
        };
        let stopped = || Error::Unavailable("the journal writer has stopped".into());
        self.tx.send(write).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(GROUP);
    while rx.recv_many(&mut batch, GROUP).await > 0 {
        let group = std::mem::take(&mut batch);
        match write_group(&pool, &group).await {
            Ok(results) => {
                for (w, r) in group.into_iter().zip(results) {
                    let _ = w.ack.send(r);
                }
            }
            Err(e) => {
                for w in group {
                    let _ = w.ack.send(Err(Error::Unavailable(e.to_string())));
                }
            }
        }
    }
}

async fn write_group(pool: &SqlitePool, group: &[Write]) -> Result<Vec<Result<i64, Error>>, Error> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(group.len());
    for w in group {
        let seq = write_step!(tx, &w.id, w.epoch, &w.step, &w.update);
        results.push(seq.ok_or_else(|| Error::LeaseLost(w.id.clone())));
    }
    tx.commit().await?;
    Ok(results)
}
