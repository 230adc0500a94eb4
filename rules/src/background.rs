//! Threads for the rules' CPU work (applying writes to streaming state,
//! passes over it, fills, eviction) at a lower scheduling priority than
//! the rest of the process: the write path's acknowledgements go first,
//! and the rules catch up in the time between writes.
//!
//! # Invariants
//! - Only this pool's own threads are reniced (they start niced and stay
//!   so); a thread shared with other work never is, because raising the
//!   priority back needs a privilege the server may not have.
//! - A task never waits for another task of the pool to *start* (only for
//!   one already running, e.g. a shared pass): the pool cannot deadlock
//!   however few threads it has.

use std::sync::{Arc, LazyLock, mpsc};

use parking_lot::Mutex;

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    // More threads than cores: an evaluation waiting for a shared pass or
    // the state's lock holds one, and applying writes must still find one.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    for i in 0..threads {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("rules-bg-{i}"))
            .spawn(move || {
                fleetlake_storage::priority::lower_priority();
                loop {
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })
            .expect("starting a rules thread");
    }
    Pool {
        jobs: Mutex::new(tx),
    }
});

/// Runs `f` on a rules thread and waits for its result without holding
/// up the async runtime's workers.
///
/// # Errors
/// [`Error::Internal`] when `f` panicked.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(out);
    });
    // The pool's threads never stop, so the channel never closes.
    let _ = POOL.jobs.lock().send(job);
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(Error::Internal("a rules task panicked".into())),
        Err(_) => Err(Error::Internal("a rules task was dropped".into())),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_work_off_the_runtime_and_survives_a_panic() {
        let here = std::thread::current().id();
        let there = super::run(|| std::thread::current().id()).await.unwrap();
        assert_ne!(here, there);
        let e = super::run(|| panic!("boom")).await.unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        // The thread that panicked is still serving.
        assert_eq!(super::run(|| 2 + 2).await.unwrap(), 4);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn its_threads_run_at_a_lower_priority() {
        let nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let mine = nice();
        let theirs = super::run(nice).await.unwrap();
        assert!(theirs > mine || mine == 19, "{theirs} vs {mine}");
    }
}
