//! Counters of the write path, read by the server's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

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

#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub rows_written: Counter,
    pub fields_written: Counter,
    pub lines_rejected: Counter,
    pub wal_fsyncs: Counter,
    pub wal_bytes: Counter,
    pub flushes: Counter,
    pub flush_errors: Counter,
    pub flushed_rows: Counter,
    pub flushed_bytes: Counter,
    pub writes_refused_buffer_full: Counter,
}
