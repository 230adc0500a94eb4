//! Who else sees each write: the narrow trait between the write path and
//! the rules engine's streaming state (as InfluxDB 3 puts one between the
//! write buffer and its processing engine).

use crate::validate::TableWrite;

/// Told of every durable write and every delete, in WAL order.
pub trait WriteObserver: Send + Sync + 'static {
    /// `tables` of WAL record `seq` of `db` are durable and about to be
    /// acknowledged. Runs on the WAL writer thread: hand the batches off
    /// (they are cheap to clone) and return at once.
    fn on_write(&self, seq: u64, db: &str, tables: &[TableWrite]);

    /// Rows of `db.table` with `time` in `[min_time, max_time]` whose tags
    /// equal `tags` and whose WAL record is before `before_seq` are deleted.
    fn on_delete(
        &self,
        db: &str,
        table: &str,
        min_time: i64,
        max_time: i64,
        tags: &[(String, String)],
        before_seq: u64,
    );
}
