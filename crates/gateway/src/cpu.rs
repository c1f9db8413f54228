//! CPU work on a request's body where it cannot stall other requests. Redacting and counting
//! the tokens of a small body takes microseconds and stays on the async worker (a thread
//! hand-off would cost more); a large one (up to the server's body limit, 4 MiB by default,
//! tens to hundreds of milliseconds) runs on Tokio's blocking pool, so the worker meanwhile
//! serves the other connections it holds.

use std::sync::{Arc, LazyLock};
use tokio::sync::Semaphore;

/// Bodies up to this size (bytes of JSON as received) are worked on in place.
pub(crate) const INLINE_BYTES: usize = 64 * 1024;

/// Large bodies worked on at once at most: one per core. The blocking pool itself would run
/// up to 512 and queue the rest without a bound, and a job cannot be cancelled once it runs,
/// so without this a client could start many (sending bodies and going away) and starve the
/// pool's other users (DNS lookups, the audit log's file writes).
static PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

/// Runs `work` for a body of `bytes` bytes: in place when it is small, else on the blocking
/// pool once one of the [`PERMITS`] is free (a request dropped while it waits never starts
/// its work). A panic in `work` goes on in the caller, as it would have in place.
pub(crate) async fn run<T, F>(bytes: usize, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if bytes <= INLINE_BYTES {
        return work();
    }
    // The semaphore is never closed.
    let Ok(permit) = PERMITS.clone().acquire_owned().await else {
        return work();
    };
    metrics::counter!("warden_blocking_pool_tasks_total").increment(1);
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match job.await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down with the work queued: the request goes with it.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn small_work_stays_on_the_worker_and_large_work_leaves_it() {
        let here = std::thread::current().id();
        let small = run(INLINE_BYTES, || std::thread::current().id()).await;
        assert_eq!(small, here, "a small body is worked on in place");
        let large = run(INLINE_BYTES + 1, || std::thread::current().id()).await;
        assert_ne!(
            large, here,
            "a large body is worked on off the async worker"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_bodies_are_worked_on_one_per_core_at_most() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let jobs: Vec<_> = (0..16)
            .map(|_| {
                tokio::spawn(run(INLINE_BYTES + 1, || {
                    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    RUNNING.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for job in jobs {
            job.await.unwrap();
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = MOST.load(Ordering::SeqCst);
        assert!(
            most >= 1 && most <= cores,
            "{most} at once on {cores} cores"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_dropped_while_waiting_never_starts_its_work() {
        // Take every permit (waiting for other tests to give theirs back), then drop a
        // request that waits for one.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let held = PERMITS
            .clone()
            .acquire_many_owned(u32::try_from(cores).unwrap())
            .await
            .unwrap();
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = started.clone();
        let waiting = run(INLINE_BYTES + 1, move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), waiting).await;
        assert!(timed_out.is_err(), "it waited for a permit");
        drop(held);
        tokio::task::yield_now().await;
        assert!(!started.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "boom")]
    async fn a_panic_in_the_work_reaches_the_caller() {
        run(INLINE_BYTES + 1, || panic!("boom")).await;
    }
}
