//! One live agent instance: a task that owns the agent, takes its lease, and handles its
//! commands one at a time in arrival order. When it has had nothing to do for the idle time
//! it leaves memory (hibernates); the next command loads it again from the store.

use crate::journal::kind;
use crate::runner::{self, Task};
use crate::{AgentError, Outcome, Principal, Registry, TaskEvent, status};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use warden_store::AgentRecord;

/// What an instance is asked to do.
pub(crate) enum Command {
    /// A new task.
    Message {
        caller: Principal,
        content: String,
        events: Option<mpsc::Sender<TaskEvent>>,
        reply: oneshot::Sender<Result<Outcome, AgentError>>,
    },
    /// Continue the failed or interrupted task.
    Resume {
        caller: Principal,
        events: Option<mpsc::Sender<TaskEvent>>,
        reply: oneshot::Sender<Result<Outcome, AgentError>>,
    },
    /// A decision was recorded on the write this agent waits for: continue.
    Continue {
        caller: Principal,
        events: Option<mpsc::Sender<TaskEvent>>,
        reply: oneshot::Sender<Result<Outcome, AgentError>>,
    },
    /// Back to idle, history kept.
    Reset {
        caller: Principal,
        reply: oneshot::Sender<Result<AgentRecord, AgentError>>,
    },
}

impl Command {
    fn caller(&self) -> &Principal {
        match self {
            Command::Message { caller, .. }
            | Command::Resume { caller, .. }
            | Command::Continue { caller, .. }
            | Command::Reset { caller, .. } => caller,
        }
    }

    fn fail(self, e: AgentError) {
        match self {
            Command::Message { reply, .. }
            | Command::Resume { reply, .. }
            | Command::Continue { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::Reset { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Starts an instance; returns its mailbox.
pub(crate) fn spawn(
    inner: Arc<Registry>,
    id: &str,
    definition: &str,
    name: &str,
) -> mpsc::UnboundedSender<Command> {
    let (tx, rx) = mpsc::unbounded_channel();
    let instance = Instance {
        inner,
        id: id.to_owned(),
        definition: definition.to_owned(),
        name: name.to_owned(),
        mailbox: tx.clone(),
        held: None,
    };
    tokio::spawn(instance.run(rx));
    metrics::counter!("warden_agent_wakeups_total").increment(1);
    tx
}

struct Instance {
    inner: Arc<Registry>,
    id: String,
    definition: String,
    name: String,
    /// Its own mailbox, to tell it apart from a newer instance in the live table.
    mailbox: mpsc::UnboundedSender<Command>,
    /// The state as last committed, with the lease epoch held.
    held: Option<AgentRecord>,
}

impl Instance {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                () = tokio::time::sleep(self.inner.idle) => {
                    if self.hibernate(&rx) {
                        return;
                    }
                    continue;
                }
            };
            let Some(cmd) = cmd else {
                return;
            };
            if let Err(e) = self.ensure_held(cmd.caller()).await {
                cmd.fail(e);
                self.leave();
                return;
            }
            let lost = self.handle(cmd).await;
            if lost {
                // Another holder took the agent over: this instance must not write again.
                self.leave();
                return;
            }
        }
    }

    /// Leaves memory if nothing is queued (checked under the live table's lock, which every
    /// sender holds while it sends, so no command is lost).
    fn hibernate(&self, rx: &mpsc::UnboundedReceiver<Command>) -> bool {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if !rx.is_empty() {
            return false;
        }
        if live
            .get(&self.id)
            .is_some_and(|tx| tx.same_channel(&self.mailbox))
        {
            live.remove(&self.id);
        }
        metrics::counter!("warden_agent_hibernations_total").increment(1);
        true
    }

    fn leave(&self) {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if live
            .get(&self.id)
            .is_some_and(|tx| tx.same_channel(&self.mailbox))
        {
            live.remove(&self.id);
        }
    }

    /// Takes the lease (creating the agent if new) on the first command; a task a previous
    /// holder left running (it crashed) is marked interrupted and resumable.
    async fn ensure_held(&mut self, caller: &Principal) -> Result<(), AgentError> {
        if self.held.is_some() {
            return Ok(());
        }
        let store = &self.inner.deps.store;
        let now = warden_core::time::unix_millis() as i64;
        let record = store
            .acquire_agent(
                &self.id,
                &self.definition,
                &self.name,
                &caller.owner_id,
                &self.inner.node,
                now,
            )
            .await?;
        let record = if record.status == status::RUNNING {
            mark_interrupted(&self.inner, record).await?
        } else {
            record
        };
        self.held = Some(record);
        Ok(())
    }

    /// Handles one command; returns true if the lease was lost.
    async fn handle(&mut self, cmd: Command) -> bool {
        let Some(record) = self.held.clone() else {
            cmd.fail(AgentError::Stopped);
            return true;
        };
        if record.owner_key_id != cmd.caller().owner_id && !cmd.caller().admin {
            cmd.fail(AgentError::NotYours(self.id.clone()));
            return false;
        }
        match cmd {
            Command::Message {
                caller,
                content,
                events,
                reply,
            } => {
                if record.status == status::AWAITING_APPROVAL {
                    // A new task would strand the write that waits: refused, not queued (a
                    // queued task would run on a conversation the decision may change).
                    let waiting = record.status_reason.as_deref().unwrap_or("a write waits");
                    let _ = reply.send(Err(AgentError::ApprovalPending(format!(
                        "agent `{}` is awaiting approval ({waiting}): decide it, or reset the agent (which withdraws it), before giving it a new task",
                        self.id
                    ))));
                    return false;
                }
                let task = Task::new(self.inner.clone(), &self.definition, record, caller, events);
                let (result, state) = task.start(content).await;
                self.finish(result, state, reply)
            }
            Command::Resume {
                caller,
                events,
                reply,
            } => {
                if !matches!(record.status.as_str(), status::FAILED) || record.task_id.is_none() {
                    let _ = reply.send(Err(AgentError::NothingToResume(format!(
                        "agent `{}` is {}: only a failed or interrupted task can be resumed",
                        self.id, record.status
                    ))));
                    return false;
                }
                let task = Task::new(self.inner.clone(), &self.definition, record, caller, events);
                let (result, state) = task.resume().await;
                self.finish(result, state, reply)
            }
            Command::Continue {
                caller,
                events,
                reply,
            } => {
                if record.status != status::AWAITING_APPROVAL || record.task_id.is_none() {
                    let _ = reply.send(Err(AgentError::NothingToResume(format!(
                        "agent `{}` is {}, not waiting for an approval",
                        self.id, record.status
                    ))));
                    return false;
                }
                let task = Task::new(self.inner.clone(), &self.definition, record, caller, events);
                let (result, state) = task.resume().await;
                self.finish(result, state, reply)
            }
            Command::Reset { caller, reply } => {
                let result = runner::reset(&self.inner, &record, &caller).await;
                match result {
                    Ok(state) => {
                        self.held = Some(state.clone());
                        let _ = reply.send(Ok(state));
                        false
                    }
                    Err(e) => {
                        let lost = matches!(e, AgentError::LeaseLost(_));
                        if !lost {
                            // The store may be ahead of memory: read it again next time.
                            self.held = None;
                        }
                        let _ = reply.send(Err(e));
                        lost
                    }
                }
            }
        }
    }

    fn finish(
        &mut self,
        result: Result<Outcome, AgentError>,
        state: Option<AgentRecord>,
        reply: oneshot::Sender<Result<Outcome, AgentError>>,
    ) -> bool {
        let lost = matches!(result, Err(AgentError::LeaseLost(_)));
        let known = state.is_some();
        if let Some(s) = state {
            self.held = Some(s);
        }
        let unsure = result.is_err() && !known;
        let _ = reply.send(result);
        if lost || unsure {
            // The state in memory may differ from the store: read it again next time.
            self.held = None;
        }
        lost
    }
}

/// The start of the status reason of a task a restart interrupted.
pub(crate) const INTERRUPTED: &str = "interrupted by a restart";

/// Marks the task a crashed holder left `running` as interrupted: an `interrupted` step, and
/// the agent `failed` (resumable). `record` must be held (just acquired).
pub(crate) async fn mark_interrupted(
    inner: &Registry,
    record: AgentRecord,
) -> Result<AgentRecord, AgentError> {
    let reason = format!("{INTERRUPTED}; POST …/resume continues the task");
    let reason = reason.as_str();
    let data = serde_json::json!({"reason": reason});
    let key_id = record.owner_key_id.clone();
    runner::commit_marker(
        inner,
        &record,
        kind::INTERRUPTED,
        status::FAILED,
        reason,
        data,
        &key_id,
    )
    .await
}
