use super::open;
use std::sync::Arc;
use warden_store::{Store, UsageRow, UsageWriter};

fn row(i: usize) -> UsageRow {
    UsageRow {
        request_id: format!("req-{i}"),
        key_id: "key_1".into(),
        endpoint: "chat.completions".into(),
        model: "fast".into(),
        provider: Some("openai".into()),
        upstream_model: Some("gpt-4o-mini".into()),
        status: 200,
        prompt_tokens: Some(10),
        completion_tokens: Some(5),
        latency_ms: 3,
        attempts: 1,
        stream: i.is_multiple_of(2),
        deployment: "test".into(),
        created_at: i as i64,
    }
}

#[tokio::test]
async fn writer_persists_every_queued_row_before_it_stops() {
    let (_dir, store) = open().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let (writer, handle) = UsageWriter::new(store.clone());
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 0..1000 {
        handle.record(row(i)).await;
    }
    drop(handle);
    task.await.unwrap();
    let rows = store.recent_usage(2000).await.unwrap();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[0], row(999));
}

#[tokio::test]
async fn closing_the_writer_flushes_queued_rows_and_refuses_new_ones() {
    let (_dir, store) = open().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let (writer, handle) = UsageWriter::new(store.clone());
    for i in 0..10 {
        handle.record(row(i)).await;
    }
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    close.send(()).unwrap();
    // The handle is still alive: without `close` the writer would wait for it forever.
    writer.run(async move { closed.await.unwrap() }).await;
    assert_eq!(store.recent_usage(100).await.unwrap().len(), 10);
    handle.record(row(10)).await; // logged and lost, never blocks
    assert_eq!(store.recent_usage(100).await.unwrap().len(), 10);
}
