use crate::{Db, both_backends, key};
use std::sync::Arc;
use warden_store::{Error, KeyStatus, Store};

both_backends!(inserted_key_is_found_by_hash_only);
async fn inserted_key_is_found_by_hash_only(store: Arc<dyn Store>, _db: &Db) {
    let mut k = key("key_1", "ci", 7);
    k.models = Some(vec!["gpt-4o".into()]);
    store.insert_key(&k).await.unwrap();
    let found = store.key_by_hash(&[7; 32]).await.unwrap().expect("found");
    assert_eq!(found.name, "ci");
    assert_eq!(found.models, Some(vec!["gpt-4o".to_string()]));
    assert!(found.allows_model("gpt-4o"));
    assert!(!found.allows_model("gpt-5"));
    assert!(store.key_by_hash(&[8; 32]).await.unwrap().is_none());
}

both_backends!(a_name_has_one_current_key);
async fn a_name_has_one_current_key(store: Arc<dyn Store>, _db: &Db) {
    store.insert_key(&key("key_1", "ci", 1)).await.unwrap();
    let err = store.insert_key(&key("key_2", "ci", 2)).await.unwrap_err();
    assert!(matches!(err, Error::NameTaken(ref n) if n == "ci"), "{err}");
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
}

both_backends!(keys_are_listed_newest_first_and_in_insertion_order_within_a_second);
async fn keys_are_listed_newest_first_and_in_insertion_order_within_a_second(
    store: Arc<dyn Store>,
    _db: &Db,
) {
    // Ids that sort otherwise than they were inserted; all but the last of the same second.
    for (i, id) in ["key_m", "key_z", "key_a"].into_iter().enumerate() {
        store
            .insert_key(&key(id, &format!("n{i}"), i as u8))
            .await
            .unwrap();
    }
    let mut older = key("key_old", "old", 9);
    older.created_at -= 1;
    store.insert_key(&older).await.unwrap();
    let order: Vec<String> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(order, ["key_a", "key_z", "key_m", "key_old"]);
}

both_backends!(rotation_keeps_the_old_key_for_the_grace_period);
async fn rotation_keeps_the_old_key_for_the_grace_period(store: Arc<dyn Store>, _db: &Db) {
    store.insert_key(&key("key_1", "ci", 1)).await.unwrap();
    store
        .rotate_key(&key("key_2", "ci", 2), 5_000)
        .await
        .unwrap();
    let old = store.key_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(old.replaced_by.as_deref(), Some("key_2"));
    assert_eq!(old.status(4_999), KeyStatus::Grace);
    assert_eq!(old.status(5_000), KeyStatus::Expired);
    let new = store.key_by_hash(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(new.status(4_999), KeyStatus::Active);
    // The rotated name can be rotated again, and a missing name cannot.
    store
        .rotate_key(&key("key_3", "ci", 3), 6_000)
        .await
        .unwrap();
    let err = store
        .rotate_key(&key("key_4", "nope", 4), 6_000)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchKey(_)));
}

both_backends!(failed_rotation_leaves_the_old_key_current);
async fn failed_rotation_leaves_the_old_key_current(store: Arc<dyn Store>, _db: &Db) {
    store.insert_key(&key("key_1", "ci", 1)).await.unwrap();
    store.insert_key(&key("key_2", "other", 2)).await.unwrap();
    // Same hash as an existing key: the insert fails, so the update must roll back.
    assert!(
        store
            .rotate_key(&key("key_3", "ci", 2), 5_000)
            .await
            .is_err()
    );
    let old = store.key_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(old.replaced_by, None);
    assert_eq!(old.status(10_000), KeyStatus::Active);
}

both_backends!(revoke_covers_keys_in_grace_and_reports_missing_names);
async fn revoke_covers_keys_in_grace_and_reports_missing_names(store: Arc<dyn Store>, _db: &Db) {
    store.insert_key(&key("key_1", "ci", 1)).await.unwrap();
    store
        .rotate_key(&key("key_2", "ci", 2), 5_000)
        .await
        .unwrap();
    assert_eq!(store.revoke_keys("ci", 2_000).await.unwrap(), 2);
    for h in [1, 2] {
        let k = store.key_by_hash(&[h; 32]).await.unwrap().unwrap();
        assert_eq!(k.status(2_000), KeyStatus::Revoked);
    }
    assert!(matches!(
        store.revoke_keys("ci", 2_000).await,
        Err(Error::NoSuchKey(_))
    ));
    // After revocation the name is free again.
    store.insert_key(&key("key_5", "ci", 5)).await.unwrap();
}

both_backends!(data_survives_reopening);
async fn data_survives_reopening(store: Arc<dyn Store>, db: &Db) {
    store.insert_key(&key("key_1", "ci", 1)).await.unwrap();
    drop(store);
    // Opening again runs the migrations again: they must find nothing to do.
    let store = db.open().await;
    assert!(store.key_by_hash(&[1; 32]).await.unwrap().is_some());
}

both_backends!(key_changes_leave_events_until_they_are_audited);
async fn key_changes_leave_events_until_they_are_audited(store: Arc<dyn Store>, _db: &Db) {
    store.insert_key(&key("key_1", "ci", 1)).await.unwrap();
    store
        .rotate_key(&key("key_2", "ci", 2), 5_000)
        .await
        .unwrap();
    store.revoke_keys("ci", 2_000).await.unwrap();
    // A failed change leaves no event.
    assert!(store.insert_key(&key("key_3", "other", 2)).await.is_err());
    let events = store.pending_key_events().await.unwrap();
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.key_id.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![("created", "key_1"), ("rotated", "key_2"), ("revoked", "")]
    );
    store.mark_key_events_audited(events[1].id).await.unwrap();
    let left = store.pending_key_events().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].action, "revoked");
}

both_backends!(a_rotated_key_keeps_its_lineage_and_grants_can_change);
async fn a_rotated_key_keeps_its_lineage_and_grants_can_change(store: Arc<dyn Store>, _db: &Db) {
    let mut k = key("key_1", "ci", 1);
    k.agents = vec!["analyst".into()];
    store.insert_key(&k).await.unwrap();
    let found = store.key_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found.lineage_id, "key_1");
    assert!(found.allows_agent("analyst"));
    assert!(!found.allows_agent("support"));
    // The rotation's new key claims a lineage of its own; the store keeps the old one's.
    store
        .rotate_key(&key("key_2", "ci", 2), 5_000)
        .await
        .unwrap();
    let new = store.key_by_hash(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(new.lineage_id, "key_1");
    // Grants change on every unrevoked key of the name, and are recorded.
    let n = store
        .update_key_agents("ci", &["*".into()], Some(3))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let new = store.key_by_hash(&[2; 32]).await.unwrap().unwrap();
    assert!(new.allows_agent("support"));
    assert_eq!(new.max_agents, Some(3));
    assert!(
        store
            .pending_key_events()
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "updated" && e.key_name == "ci")
    );
    let err = store
        .update_key_agents("nope", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchKey(_)));
    // A key that was never given agents has none.
    store.insert_key(&key("key_9", "bare", 9)).await.unwrap();
    let bare = store.key_by_hash(&[9; 32]).await.unwrap().unwrap();
    assert!(bare.agents.is_empty() && !bare.allows_agent("analyst"));
}

/// Upgrading a store made before keys carried agent grants: its keys are given no agents
/// (fail closed: an operator grants them), and each key's lineage is the first key of its
/// rotation chain, so agents created before a rotation stay with the rotated key.
#[tokio::test]
async fn keys_from_before_agent_grants_have_none_and_keep_their_rotation_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    let old = [
        include_str!("../../migrations/sqlite/0001_keys_and_usage.sql"),
        include_str!("../../migrations/sqlite/0002_key_events.sql"),
        include_str!("../../migrations/sqlite/0003_cost_control.sql"),
        include_str!("../../migrations/sqlite/0004_agents.sql"),
        include_str!("../../migrations/sqlite/0005_approvals.sql"),
    ];
    sqlx::raw_sql(
        "CREATE TABLE _warden_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (i, sql) in old.iter().enumerate() {
        sqlx::raw_sql(*sql).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO _warden_migrations VALUES (?, 0)")
            .bind(i as i64 + 1)
            .execute(&pool)
            .await
            .unwrap();
    }
    // A chain of six rotations (k1 → … → k6, listed out of order); `solo` never rotated.
    // Agents were owned by the key that created them.
    sqlx::raw_sql(
        "INSERT INTO virtual_keys (id, name, key_hash, prefix, created_at, replaced_by) VALUES
            ('k4', 'ci', x'04', 'wdn_4', 4, 'k5'),
            ('k1', 'ci', x'01', 'wdn_1', 1, 'k2'),
            ('k6', 'ci', x'06', 'wdn_6', 6, NULL),
            ('k3', 'ci', x'03', 'wdn_3', 3, 'k4'),
            ('k2', 'ci', x'02', 'wdn_2', 2, 'k3'),
            ('k5', 'ci', x'05', 'wdn_5', 5, 'k6'),
            ('solo', 'solo', x'07', 'wdn_7', 7, NULL);
         INSERT INTO agents (id, definition, name, owner_key_id, status, created_at, updated_at) VALUES
            ('analyst/by1', 'analyst', 'by1', 'k1', 'idle', 1, 1),
            ('analyst/by3', 'analyst', 'by3', 'k3', 'idle', 1, 1),
            ('analyst/by6', 'analyst', 'by6', 'k6', 'idle', 1, 1),
            ('analyst/solo', 'analyst', 'solo', 'solo', 'idle', 1, 1),
            ('analyst/gone', 'analyst', 'gone', 'k_deleted', 'idle', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = warden_store::SqlStore::open_sqlite_dir(dir.path())
        .await
        .unwrap();
    use warden_store::{AgentStore as _, KeyStore as _};
    let keys = store.list_keys().await.unwrap();
    let lineage = |id: &str| {
        keys.iter()
            .find(|k| k.id == id)
            .map(|k| k.lineage_id.clone())
            .unwrap()
    };
    for k in ["k1", "k2", "k3", "k4", "k5", "k6"] {
        assert_eq!(lineage(k), "k1", "{k}");
    }
    assert_eq!(lineage("solo"), "solo");
    assert!(
        keys.iter()
            .all(|k| k.agents.is_empty() && k.max_agents.is_none())
    );
    // The agents now belong to their creator's lineage (an unknown owner is left as it was).
    for (agent, owner) in [
        ("analyst/by1", "k1"),
        ("analyst/by3", "k1"),
        ("analyst/by6", "k1"),
        ("analyst/solo", "solo"),
        ("analyst/gone", "k_deleted"),
    ] {
        let r = store.agent(agent).await.unwrap().unwrap();
        assert_eq!(r.owner_key_id, owner, "{agent}");
    }
}
