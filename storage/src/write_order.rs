//! The write-order encoding: one `u64` per row that says which write came
//! last, shared by the write buffer, Parquet files, tombstones, queries and
//! compaction.
//!
//! A buffered row carries it in [`SEQ_COLUMN`] ([`row_seq`]); a file carries
//! one for all its rows in its catalog entry's `seq` ([`file_seq`]); a
//! tombstone deletes what is below its own.
//!
//! # Invariants
//! - `seq = wal_seq << 32 | low`: the WAL record in the high 32 bits, so
//!   writes order by record first.
//! - A buffered row's `low` is its index in its request ([`row_seq`]); a
//!   request holds fewer than `u32::MAX` rows, so `low == u32::MAX` only in a
//!   [`file_seq`].
//! - A file that persisted records up to `w` has `file_seq(w)`: above every
//!   row of records `<= w` and below every row of record `w + 1`, which is
//!   still buffered or in a later file.
//! - Compaction keeps the form: a merged file takes its newest input's seq.
//!
//! ```
//! use fleetlake_storage::write_order::{file_seq, is_file_seq, row_seq, wal_seq_of};
//! assert!(row_seq(7, 3) < file_seq(7) && file_seq(7) < row_seq(8, 0));
//! assert_eq!(wal_seq_of(file_seq(7)), 7);
//! assert!(is_file_seq(file_seq(7)) && !is_file_seq(row_seq(7, 3)));
//! ```

/// Name of the write-order column in buffered batches and in the plans that
/// de-duplicate them with files (never in Parquet: a file's rows share its
/// catalog `seq`).
pub const SEQ_COLUMN: &str = "__seq";

/// The `__seq` value of row `row` of WAL record `wal_seq`.
pub fn row_seq(wal_seq: u64, row: usize) -> u64 {
    (wal_seq << 32) | row as u64
}

/// The `__seq` value of every row of a file that persisted WAL records up to `wal_seq`.
pub fn file_seq(wal_seq: u64) -> u64 {
    (wal_seq << 32) | u32::MAX as u64
}

/// The WAL record of a [`row_seq`], or the last record a [`file_seq`] covers.
pub fn wal_seq_of(seq: u64) -> u64 {
    seq >> 32
}

/// Whether `seq` has the form of a [`file_seq`] (a flush, or a compaction
/// of flushes), rather than a buffered row's.
pub fn is_file_seq(seq: u64) -> bool {
    seq & u32::MAX as u64 == u32::MAX as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_sits_between_its_records_and_the_next() {
        for w in [0, 1, 41, u32::MAX as u64 - 1] {
            assert!(row_seq(w, 0) < row_seq(w, 1));
            assert!(row_seq(w, u32::MAX as usize - 1) < file_seq(w));
            assert!(file_seq(w) < row_seq(w + 1, 0));
            assert_eq!(wal_seq_of(row_seq(w, 5)), w);
            assert_eq!(wal_seq_of(file_seq(w)), w);
            assert!(is_file_seq(file_seq(w)));
            assert!(!is_file_seq(row_seq(w, 5)));
        }
    }
}
