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
