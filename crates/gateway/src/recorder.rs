//! The one accounting path: every caller of the pipeline (the HTTP handlers, the agents) and
//! every agent step, tool call and approval transition is recorded here, with one fail-closed
//! policy. An audit record is durable before [`Recorder`] returns `Ok`; if the log cannot take
//! it, the caller gets [`Unrecorded`] and must not release what the record describes (the
//! answer, the step, the dispatch), unless `audit.fail_open` says otherwise.

use crate::{CallRecord, CallReport, Usage};
use std::collections::BTreeMap;
use warden_store::{UsageRow, UsageWriterHandle};

/// The audit log could not record an event, so the work it describes must not go on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the audit log cannot record this ({0}); the work is refused")]
pub struct Unrecorded(pub String);

/// Records usage rows and audit records. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    audit: Option<warden_audit::AuditLog>,
    usage: UsageWriterHandle,
    fail_open: bool,
}

impl Recorder {
    /// A recorder over the audit log (`None`: `audit.enabled = false`) and the usage writer;
    /// with `fail_open`, a failing audit log is logged and work goes on.
    pub fn new(
        audit: Option<warden_audit::AuditLog>,
        usage: UsageWriterHandle,
        fail_open: bool,
    ) -> Self {
        Self {
            audit,
            usage,
            fail_open,
        }
    }

    /// Whether work must be refused up front: the audit log is known to refuse every record
    /// (and `audit.fail_open` is off). Checked before a provider is called or a tool runs, so
    /// nothing is spent or read that could not be recorded.
    pub fn refuses_work(&self) -> bool {
        !self.fail_open && self.audit.as_ref().is_some_and(|a| a.is_failing())
    }

    /// Records a finished model call: its audit record (durable when this returns `Ok`), then
    /// its usage row (queued; never dropped). On `Err` the answer must not be released; the
    /// usage row is still written, with status 503, because the call may have spent tokens.
    pub async fn model_call(
        &self,
        record: &CallRecord<'_>,
        meta: &CallReport,
        usage: Option<Usage>,
        redactions: &BTreeMap<String, u32>,
    ) -> Result<(), Unrecorded> {
        let row = record.usage_row(meta, usage);
        let event = record.audit_event(&row, meta, redactions);
        match self.event(event).await {
            Ok(()) => {
                self.usage.record(row).await;
                Ok(())
            }
            Err(e) => {
                self.usage.record(UsageRow { status: 503, ..row }).await;
                Err(e)
            }
        }
    }

    /// Appends one audit record and waits until it is durable. With the log off, there is
    /// nothing to write; with `audit.fail_open`, a failure is logged and `Ok` returned.
    pub async fn event(&self, event: warden_audit::Event) -> Result<(), Unrecorded> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let kind = kind_of(&event);
        match audit.append(event).await {
            Ok(_) => Ok(()),
            Err(e) if self.fail_open => {
                tracing::error!(error = %e, kind, "audit record failed; answering anyway (audit.fail_open)");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, kind, "audit record failed; refusing the work");
                metrics::counter!("warden_audit_refusals_total", "kind" => kind).increment(1);
                Err(Unrecorded(e.to_string()))
            }
        }
    }
}

/// The record's kind, for logs and metrics.
fn kind_of(event: &warden_audit::Event) -> &'static str {
    use warden_audit::Event;
    match event {
        Event::ModelCall(_) => "model_call",
        Event::AgentStep { .. } => "agent_step",
        Event::ToolCall { .. } => "tool_call",
        Event::Approval { .. } => "approval",
        Event::KeyChange { .. } => "key_change",
        _ => "other",
    }
}
