use crate::{Db, both_backends};
use std::sync::Arc;
use warden_store::{GroupBy, Store, UsageRow, UsageWriter};

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
        ..Default::default()
    }
}

both_backends!(writer_persists_every_queued_row_before_it_stops);
async fn writer_persists_every_queued_row_before_it_stops(store: Arc<dyn Store>, _db: &Db) {
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

both_backends!(closing_the_writer_flushes_queued_rows_and_refuses_new_ones);
async fn closing_the_writer_flushes_queued_rows_and_refuses_new_ones(
    store: Arc<dyn Store>,
    _db: &Db,
) {
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

both_backends!(budget_counters_grow_with_the_rows_that_spend_them);
async fn budget_counters_grow_with_the_rows_that_spend_them(store: Arc<dyn Store>, _db: &Db) {
    let spend = |i: usize, tokens: i64| UsageRow {
        budget_counters: vec![
            "key:k:day:2026-11-26".into(),
            format!("session:k:s{}", i % 2),
        ],
        budget_tokens: tokens,
        ..row(i)
    };
    store
        .insert_usage(&[spend(0, 100), spend(1, 40), spend(2, 5), row(3)])
        .await
        .unwrap();
    let names: Vec<String> = [
        "key:k:day:2026-11-26",
        "session:k:s0",
        "session:k:s1",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let totals = store.budget_totals(&names).await.unwrap();
    assert_eq!(totals["key:k:day:2026-11-26"], 145);
    assert_eq!(totals["session:k:s0"], 105);
    assert_eq!(totals["session:k:s1"], 40);
    assert_eq!(totals["none"], 0);
}

both_backends!(the_report_groups_costs_hits_and_refusals);
async fn the_report_groups_costs_hits_and_refusals(store: Arc<dyn Store>, _db: &Db) {
    let day = 86_400_000i64;
    let rows = vec![
        UsageRow {
            cache: Some("miss".into()),
            cost_usd: Some(0.5),
            created_at: 10,
            ..row(0)
        },
        UsageRow {
            cache: Some("hit".into()),
            prompt_tokens: None,
            completion_tokens: None,
            created_at: 20,
            ..row(1)
        },
        UsageRow {
            model: "smart".into(),
            status: 429,
            refusal: Some("budget_exceeded".into()),
            prompt_tokens: None,
            completion_tokens: None,
            created_at: day + 5,
            ..row(2)
        },
        UsageRow {
            model: "smart".into(),
            status: 429,
            refusal: Some("rate_limited".into()),
            cost_usd: Some(0.25),
            created_at: day + 6,
            ..row(3)
        },
    ];
    store.insert_usage(&rows).await.unwrap();
    let by_model = store
        .usage_report(GroupBy::Model, 0, 2 * day)
        .await
        .unwrap();
    assert_eq!(by_model.len(), 2);
    let fast = by_model.iter().find(|g| g.group == "fast").unwrap();
    assert_eq!(
        (fast.requests, fast.prompt_tokens, fast.completion_tokens),
        (2, 10, 5)
    );
    assert_eq!((fast.cache_hits, fast.cache_lookups), (1, 2));
    assert!((fast.cost_usd - 0.5).abs() < 1e-12);
    let smart = by_model.iter().find(|g| g.group == "smart").unwrap();
    assert_eq!((smart.rate_limited, smart.budget_refused), (1, 1));
    let by_day = store.usage_report(GroupBy::Day, 0, 2 * day).await.unwrap();
    let days: Vec<&str> = by_day.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(days, ["1970-01-01", "1970-01-02"]);
    // The window is half-open and filters rows.
    let first_day = store.usage_report(GroupBy::Key, 0, day).await.unwrap();
    assert_eq!(first_day.len(), 1);
    assert_eq!(first_day[0].requests, 2);
}
