//! Counters of the write path, read by the server's `/metrics`.

use fleetlake_storage::counter::Counter;

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
    /// Writes refused because the server's memory budget had no room.
    pub writes_refused_memory: Counter,
}
