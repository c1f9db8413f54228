use crate::{Db, both_backends};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};
use warden_store::{Error, GroupBy, Store, UsageGroup, UsageRow, UsageStore, UsageWriter};

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

/// A real store's usage half whose `insert_usage` fails, before touching the database, the
/// next `fail_next` times and for as long as `down` is set. Everything else passes through.
struct Flaky {
    inner: Arc<dyn Store>,
    fail_next: AtomicU32,
    down: AtomicBool,
    attempts: AtomicU32,
}

impl Flaky {
    fn new(inner: Arc<dyn Store>, fail_next: u32) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_next: AtomicU32::new(fail_next),
            down: AtomicBool::new(false),
            attempts: AtomicU32::new(0),
        })
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl UsageStore for Flaky {
    async fn insert_usage(&self, rows: &[UsageRow]) -> Result<(), Error> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let counted_down = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if counted_down || self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("injected failure".into()));
        }
        self.inner.insert_usage(rows).await
    }
    async fn recent_usage(&self, limit: u32) -> Result<Vec<UsageRow>, Error> {
        self.inner.recent_usage(limit).await
    }
    async fn usage_report(
        &self,
        group_by: GroupBy,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageGroup>, Error> {
        self.inner.usage_report(group_by, from_ms, to_ms).await
    }
    async fn budget_totals(&self, counters: &[String]) -> Result<HashMap<String, i64>, Error> {
        self.inner.budget_totals(counters).await
    }
}

/// The writer's queue (`usage_writer::QUEUE`) and batch (`BATCH`) sizes.
const QUEUE: usize = 8192;
const BATCH: usize = 256;

/// Asserts that exactly the rows `0..n` are stored, each once.
async fn assert_written_once(store: &Arc<dyn Store>, n: usize) {
    let rows = store.recent_usage(n as u32 + 1000).await.unwrap();
    let mut ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    let stored = ids.len();
    ids.dedup();
    assert_eq!(stored, ids.len(), "some rows were written twice");
    let want: Vec<String> = (0..n).map(|i| format!("req-{i}")).collect();
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ids, want, "rows missing or unexpected");
}

/// Waits until the writer has been refused six times (about 1.6 s of backoff).
async fn refused_more_than_five_times(flaky: &Flaky) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while flaky.attempts() < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the writer keeps retrying");
}

both_backends!(a_refused_batch_is_retried_until_written_and_never_dropped);
async fn a_refused_batch_is_retried_until_written_and_never_dropped(
    store: Arc<dyn Store>,
    _db: &Db,
) {
    // More failures than the old writer's five attempts: it would have dropped the batch.
    let flaky = Flaky::new(store.clone(), 6);
    let (writer, handle) = UsageWriter::new(flaky.clone());
    let task = tokio::spawn(writer.run(std::future::pending()));
    let counter = "key:k:day:2026-11-26".to_owned();
    for i in 0..1000 {
        handle
            .record(UsageRow {
                budget_counters: vec![counter.clone()],
                budget_tokens: 1,
                ..row(i)
            })
            .await;
    }
    drop(handle);
    task.await.unwrap();
    assert!(flaky.attempts() > 6, "{} attempts", flaky.attempts());
    assert_written_once(&store, 1000).await;
    // The budget counters went with their rows, once.
    let totals = store
        .budget_totals(std::slice::from_ref(&counter))
        .await
        .unwrap();
    assert_eq!(totals[&counter], 1000);
}

both_backends!(senders_wait_while_the_store_refuses_rows);
async fn senders_wait_while_the_store_refuses_rows(store: Arc<dyn Store>, _db: &Db) {
    let flaky = Flaky::new(store.clone(), 0);
    flaky.set_down(true);
    let (writer, handle) = UsageWriter::new(flaky.clone());
    let task = tokio::spawn(writer.run(std::future::pending()));
    // Send until a send waits: the queue is full and the writer holds one refused batch.
    let mut sent = 0;
    while tokio::time::timeout(Duration::from_millis(200), handle.record(row(sent)))
        .await
        .is_ok()
    {
        sent += 1;
        assert!(sent <= QUEUE + BATCH, "senders never waited");
    }
    assert!(sent > QUEUE, "a send waited with {sent} rows queued");
    let blocked = tokio::spawn({
        let handle = handle.clone();
        async move { handle.record(row(sent)).await }
    });
    // Longer than the five attempts after which a batch used to be dropped.
    refused_more_than_five_times(&flaky).await;
    assert!(
        !blocked.is_finished(),
        "a sender went on with the queue full"
    );
    assert!(store.recent_usage(10).await.unwrap().is_empty());
    // The store comes back: the waiting sender gets in, and every row is written.
    flaky.set_down(false);
    tokio::time::timeout(Duration::from_secs(30), blocked)
        .await
        .expect("the waiting sender went on once the store was back")
        .unwrap();
    drop(handle);
    task.await.unwrap();
    assert_written_once(&store, sent + 1).await;
}

both_backends!(a_store_back_within_the_shutdown_grace_gets_every_queued_row);
async fn a_store_back_within_the_shutdown_grace_gets_every_queued_row(
    store: Arc<dyn Store>,
    _db: &Db,
) {
    let flaky = Flaky::new(store.clone(), 0);
    flaky.set_down(true);
    let (writer, handle) = UsageWriter::new(flaky.clone());
    let writer = writer.shutdown_grace(Duration::from_secs(20));
    for i in 0..300 {
        handle.record(row(i)).await;
    }
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(async move { closed.await.unwrap() }));
    // Shutdown begins while the writer is retrying its first batch.
    tokio::time::sleep(Duration::from_millis(120)).await;
    close.send(()).unwrap();
    refused_more_than_five_times(&flaky).await;
    assert!(!task.is_finished(), "the writer gave up within its grace");
    flaky.set_down(false);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the writer finished once the store was back")
        .unwrap();
    assert_written_once(&store, 300).await;
    handle.record(row(300)).await; // after close: logged and lost, never blocks
    assert_written_once(&store, 300).await;
}

both_backends!(at_shutdown_the_writer_gives_up_after_its_grace);
async fn at_shutdown_the_writer_gives_up_after_its_grace(store: Arc<dyn Store>, _db: &Db) {
    let flaky = Flaky::new(store.clone(), 0);
    flaky.set_down(true);
    let (writer, handle) = UsageWriter::new(flaky.clone());
    let grace = Duration::from_millis(400);
    let writer = writer.shutdown_grace(grace);
    for i in 0..600 {
        handle.record(row(i)).await;
    }
    let start = Instant::now();
    // Closed from the start: the writer drains, is refused, and stops at the grace.
    tokio::time::timeout(Duration::from_secs(10), writer.run(async {}))
        .await
        .expect("shutdown is not blocked forever");
    let took = start.elapsed();
    assert!(took >= grace, "gave up after {took:?}");
    assert!(took < grace + Duration::from_secs(2), "took {took:?}");
    assert!(flaky.attempts() >= 3, "{} attempts", flaky.attempts());
    assert!(store.recent_usage(10).await.unwrap().is_empty());
    handle.record(row(600)).await; // the writer is gone: logged and lost, never blocks
}
