//! The monotonic counter that the write path, compaction and the server
//! keep their statistics in, read by the server's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A count that only goes up.
///
/// `Relaxed` throughout: each counter is a statistic on its own; no other
/// memory is published or read through it.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
