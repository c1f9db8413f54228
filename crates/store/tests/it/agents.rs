use crate::{Db, both_backends};
use std::sync::Arc;
use warden_store::{AgentCreation, AgentUpdate, Error, NewStep, Store};

fn step(task: &str, kind: &str, at: i64) -> NewStep {
    NewStep {
        task_id: task.into(),
        kind: kind.into(),
        data: format!("{{\"at\":{at}}}"),
        tokens: Some(at),
        started_at: at,
        finished_at: at + 1,
    }
}

fn running(task: &str, tokens: i64) -> AgentUpdate {
    AgentUpdate {
        status: "running".into(),
        status_reason: None,
        task_id: Some(task.into()),
        task: Some("count the orders".into()),
        tokens_used: tokens,
    }
}

both_backends!(a_takeover_fences_the_previous_holder);
async fn a_takeover_fences_the_previous_holder(store: Arc<dyn Store>, _db: &Db) {
    let first = store
        .acquire_agent("analyst/ada", "analyst", "ada", "key_1", "node-a", 10)
        .await
        .unwrap();
    assert_eq!(
        (first.epoch, first.status.as_str(), first.steps),
        (1, "idle", 0)
    );
    assert_eq!(first.owner_key_id, "key_1");
    let seq = store
        .commit_step("analyst/ada", 1, &step("t1", "task", 20), &running("t1", 0))
        .await
        .unwrap();
    assert_eq!(seq, 1);
    // Node B takes over: node A's next write is refused, and changes nothing.
    let second = store
        .acquire_agent("analyst/ada", "analyst", "ada", "key_2", "node-b", 30)
        .await
        .unwrap();
    assert_eq!((second.epoch, second.steps), (2, 1));
    assert_eq!(second.owner_key_id, "key_1", "the owner stays the creator");
    let err = store
        .commit_step(
            "analyst/ada",
            1,
            &step("t1", "model", 40),
            &running("t1", 99),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost(_)), "{err}");
    assert!(matches!(
        store
            .update_agent("analyst/ada", 1, &running("t1", 99))
            .await,
        Err(Error::LeaseLost(_))
    ));
    let now = store.agent("analyst/ada").await.unwrap().unwrap();
    assert_eq!((now.steps, now.tokens_used), (1, 0));
    assert_eq!(
        store.agent_steps("analyst/ada", 0, 10).await.unwrap().len(),
        1
    );
    // The new holder writes on.
    assert_eq!(
        store
            .commit_step(
                "analyst/ada",
                2,
                &step("t1", "model", 50),
                &running("t1", 12)
            )
            .await
            .unwrap(),
        2
    );
    assert!(store.agent("analyst/nobody").await.unwrap().is_none());
}

both_backends!(the_journal_pages_and_groups_by_task);
async fn the_journal_pages_and_groups_by_task(store: Arc<dyn Store>, _db: &Db) {
    store
        .acquire_agent("a/b", "a", "b", "key_1", "n", 0)
        .await
        .unwrap();
    for i in 0..5 {
        let task = if i < 3 { "t1" } else { "t2" };
        store
            .commit_step("a/b", 1, &step(task, "model", i), &running(task, i))
            .await
            .unwrap();
    }
    let page = store.agent_steps("a/b", 0, 2).await.unwrap();
    assert_eq!(page.iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2]);
    let next = store.agent_steps("a/b", 2, 10).await.unwrap();
    assert_eq!(next.iter().map(|s| s.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(next[0].data, "{\"at\":2}");
    assert_eq!(next[0].tokens, Some(2));
    let t2 = store.task_steps("a/b", "t2").await.unwrap();
    assert_eq!(t2.iter().map(|s| s.seq).collect::<Vec<_>>(), [4, 5]);
    let state = store.agent("a/b").await.unwrap().unwrap();
    assert_eq!((state.steps, state.task_id.as_deref()), (5, Some("t2")));
    assert_eq!(state.last_verified_at, Some(5));
}

fn approval(id: &str, created_at: i64) -> warden_store::ApprovalRecord {
    warden_store::ApprovalRecord {
        id: id.into(),
        agent_id: "ops/a".into(),
        task_id: "t1".into(),
        call_id: "c1".into(),
        tool: "sql_execute".into(),
        arguments: r#"{"database":"shop","sql":"UPDATE orders SET status = 'x' WHERE id = 1"}"#
            .into(),
        arguments_sha256: "ab".repeat(32),
        requested_by: "key_1".into(),
        preview: r#"{"rows_affected":1}"#.into(),
        state: "awaiting_approval".into(),
        approver: None,
        decision: None,
        comment: None,
        signature: None,
        decided_at: None,
        idempotency_key: format!("idem_{id}"),
        result: None,
        created_at,
        expires_at: created_at + 3_600_000,
        updated_at: created_at,
    }
}

both_backends!(approvals_move_through_their_states_once);
async fn approvals_move_through_their_states_once(store: Arc<dyn Store>, _db: &Db) {
    store.insert_approval(&approval("apr_1", 10)).await.unwrap();
    store.insert_approval(&approval("apr_2", 20)).await.unwrap();
    let decision = warden_store::DecisionRecord {
        new_state: "approved".into(),
        approver: "alice".into(),
        decision: "approve".into(),
        comment: Some("ok".into()),
        signature: "cd".repeat(64),
        at: 30,
    };
    assert!(
        store
            .transition_approval(
                "apr_1",
                "awaiting_approval",
                "approved",
                Some(&decision),
                None,
                30
            )
            .await
            .unwrap()
    );
    // A second decision finds it no longer pending: single use.
    assert!(
        !store
            .transition_approval(
                "apr_1",
                "awaiting_approval",
                "denied",
                Some(&decision),
                None,
                31
            )
            .await
            .unwrap()
    );
    // Dispatch consumes the approval, once.
    assert!(
        store
            .transition_approval("apr_1", "approved", "dispatched", None, None, 40)
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition_approval("apr_1", "approved", "dispatched", None, None, 41)
            .await
            .unwrap()
    );
    assert!(
        store
            .transition_approval(
                "apr_1",
                "dispatched",
                "succeeded",
                None,
                Some(r#"{"rows_affected":1}"#),
                50
            )
            .await
            .unwrap()
    );
    let a = store.approval("apr_1").await.unwrap().unwrap();
    assert_eq!(a.state, "succeeded");
    assert_eq!(a.approver.as_deref(), Some("alice"));
    assert_eq!(a.comment.as_deref(), Some("ok"));
    assert_eq!(a.decided_at, Some(30));
    assert_eq!(a.result.as_deref(), Some(r#"{"rows_affected":1}"#));
    let pending = store
        .list_approvals(Some("awaiting_approval"), 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["apr_2"]
    );
    let all = store.list_approvals(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["apr_2", "apr_1"]
    );
    assert!(store.approval("apr_9").await.unwrap().is_none());
}

both_backends!(inserting_an_approval_id_twice_is_a_conflict);
async fn inserting_an_approval_id_twice_is_a_conflict(store: Arc<dyn Store>, _db: &Db) {
    store.insert_approval(&approval("apr_1", 10)).await.unwrap();
    let err = store
        .insert_approval(&approval("apr_1", 20))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("apr_1"), "{err}");
    // The first request stands, unchanged.
    let stored = store.approval("apr_1").await.unwrap().unwrap();
    assert_eq!(stored.created_at, 10);
    assert_eq!(store.list_approvals(None, 10).await.unwrap().len(), 1);
}

#[test]
fn database_errors_keep_their_kind() {
    assert!(matches!(
        Error::from(sqlx::Error::RowNotFound),
        Error::NotFound(_)
    ));
    assert!(matches!(
        Error::from(sqlx::Error::ColumnNotFound("epoch".into())),
        Error::Corrupt(_)
    ));
    for unavailable in [
        sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed,
        sqlx::Error::Io(std::io::Error::other("connection reset")),
    ] {
        assert!(matches!(Error::from(unavailable), Error::Unavailable(_)));
    }
}

both_backends!(agent_creation_counts_against_the_owners_cap);
async fn agent_creation_counts_against_the_owners_cap(store: Arc<dyn Store>, _db: &Db) {
    let create = |id: &'static str, owner: &'static str| {
        let store = store.clone();
        async move {
            store
                .create_agent(id, "analyst", id, owner, 2, 1_000)
                .await
                .unwrap()
        }
    };
    assert_eq!(create("analyst/a", "key_1").await, AgentCreation::Created);
    assert_eq!(create("analyst/a", "key_1").await, AgentCreation::Exists);
    // Concurrent creations for one owner never pass the cap together.
    let (b, c) = tokio::join!(create("analyst/b", "key_1"), create("analyst/c", "key_1"));
    let created = [b, c]
        .iter()
        .filter(|x| **x == AgentCreation::Created)
        .count();
    assert_eq!(created, 1, "{b:?} {c:?}");
    assert!([b, c].contains(&AgentCreation::OverCap));
    // Another owner has a cap of its own; an existing agent is still found at the cap.
    assert_eq!(create("analyst/d", "key_2").await, AgentCreation::Created);
    assert_eq!(create("analyst/a", "key_1").await, AgentCreation::Exists);
    // The created row is idle with no lease; taking it over starts epoch 1.
    let r = store
        .acquire_agent("analyst/a", "analyst", "a", "key_1", "node", 2_000)
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_str(), r.epoch, r.owner_key_id.as_str()),
        ("idle", 1, "key_1")
    );
}
