//! CPU work on a request's body where it cannot stall other requests. Redacting and counting
//! the tokens of a small body takes microseconds and stays on the async worker (a thread
//! hand-off would cost more); a large one (up to the server's body limit, 4 MiB by default,
//! tens to hundreds of milliseconds) runs on Tokio's blocking pool, so the worker meanwhile
//! serves the other connections it holds.

/// Bodies up to this size (bytes of JSON as received) are worked on in place.
pub(crate) const INLINE_BYTES: usize = 64 * 1024;

/// Runs `work` for a body of `bytes` bytes: in place when it is small, else on the blocking
/// pool. A panic in `work` goes on in the caller, as it would have in place.
pub(crate) async fn run<T, F>(bytes: usize, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if bytes <= INLINE_BYTES {
        return work();
    }
    metrics::counter!("warden_blocking_pool_tasks_total").increment(1);
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down with the work queued: the request is dropped
        // with the runtime.
        Err(e) => unreachable!("blocking work cancelled: {e}"),
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

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "boom")]
    async fn a_panic_in_the_work_reaches_the_caller() {
        run(INLINE_BYTES + 1, || panic!("boom")).await;
    }
}
