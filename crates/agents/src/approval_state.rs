//! The life of an approval request, and of a tool call's outcome, as typed states with their
//! allowed transitions in one place. The store keeps the states as text; every transition goes
//! through [`transition`], which refuses a move this table does not allow and never lets a
//! failed or lost update pass unnoticed.

use crate::AgentError;
use warden_store::{ApprovalRecord, ApprovalStore, DecisionRecord};

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Proposed; waits for a signed decision.
    AwaitingApproval,
    /// A valid signature approved it; it runs when the agent continues.
    Approved,
    /// A valid signature denied it.
    Denied,
    /// No decision before its expiry.
    Expired,
    /// Its task ended (the agent was reset) before it ran: it never will.
    Withdrawn,
    /// Consumed and handed to the tool; the result is not recorded yet.
    Dispatched,
    /// The write took effect.
    Succeeded,
    /// The write was refused or failed; nothing changed.
    Failed,
    /// Found dispatched after a crash, and the target proved it never took effect (and now
    /// never can).
    NotApplied,
    /// Found dispatched after a crash, and the target cannot tell: a human settles it with a
    /// signed resolution.
    OutcomeUnknown,
}

impl ApprovalState {
    /// Every state.
    pub const ALL: [ApprovalState; 10] = [
        Self::AwaitingApproval,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Withdrawn,
        Self::Dispatched,
        Self::Succeeded,
        Self::Failed,
        Self::NotApplied,
        Self::OutcomeUnknown,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingApproval => "awaiting_approval",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Withdrawn => "withdrawn",
            Self::Dispatched => "dispatched",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NotApplied => "not_applied",
            Self::OutcomeUnknown => "outcome_unknown",
        }
    }

    /// Parses a stored state.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether `self → to` is a move the workflow allows.
    pub fn may_become(self, to: ApprovalState) -> bool {
        use ApprovalState::*;
        matches!(
            (self, to),
            (AwaitingApproval, Approved | Denied | Expired | Withdrawn)
                | (Approved, Dispatched | Failed | Withdrawn)
                | (Dispatched, Succeeded | Failed | NotApplied | OutcomeUnknown)
                | (OutcomeUnknown, Succeeded | Failed)
        )
    }

    /// Whether nothing can happen to the request any more.
    pub fn is_final(self) -> bool {
        !Self::ALL.into_iter().any(|to| self.may_become(to))
    }
}

/// The state of a stored approval; a state this build does not know is an error, not a guess.
pub fn state_of(a: &ApprovalRecord) -> Result<ApprovalState, AgentError> {
    ApprovalState::parse(&a.state).ok_or_else(|| {
        AgentError::Store(format!(
            "approval {} has an unknown state `{}`",
            a.id, a.state
        ))
    })
}

/// Moves an approval `from → to` in the store (a conditional update: it happens only if the
/// approval is still `from`). Returns whether it moved; a move the table refuses is an error.
pub async fn transition(
    store: &dyn ApprovalStore,
    id: &str,
    from: ApprovalState,
    to: ApprovalState,
    decision: Option<&DecisionRecord>,
    result: Option<&str>,
    now: i64,
) -> Result<bool, AgentError> {
    if !from.may_become(to) {
        return Err(AgentError::Store(format!(
            "approval {id}: {} cannot become {}",
            from.as_str(),
            to.as_str()
        )));
    }
    Ok(store
        .transition_approval(id, from.as_str(), to.as_str(), decision, result, now)
        .await?)
}

/// How one tool call ended, as journalled, audited and told to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// It ran and returned a result.
    Ok,
    /// Policy refused it (the SQL firewall, the host allow-list, a read-only agent).
    Refused,
    /// It failed.
    Error,
    /// It ran out of time.
    Timeout,
    /// It is a write waiting for (or unable to ask for) a human's approval.
    NeedsApproval,
    /// A human denied it, or the request expired or was withdrawn.
    Denied,
    /// A crash left it dispatched and the target cannot tell whether it took effect.
    OutcomeUnknown,
    /// Audited only: a read is about to reach its target (its result follows).
    Started,
}

impl ToolOutcome {
    /// As journalled and audited.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::NeedsApproval => "needs_approval",
            Self::Denied => "denied",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Started => "started",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApprovalState::{self, *};

    #[test]
    fn states_round_trip_and_finals_have_no_way_out() {
        for s in ApprovalState::ALL {
            assert_eq!(ApprovalState::parse(s.as_str()), Some(s));
        }
        let finals: Vec<_> = ApprovalState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            vec![Denied, Expired, Withdrawn, Succeeded, Failed, NotApplied]
        );
    }

    #[test]
    fn a_write_runs_only_from_approved_and_is_never_dispatched_twice() {
        for s in ApprovalState::ALL {
            assert_eq!(s.may_become(Dispatched), s == Approved, "{s:?}");
        }
        // Nothing leads back to approved or awaiting: a used approval stays used.
        for s in ApprovalState::ALL {
            assert!(!s.may_become(Approved) || s == AwaitingApproval);
            assert!(!s.may_become(AwaitingApproval));
        }
    }
}
