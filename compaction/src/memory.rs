//! What a merge holds in memory, estimated from the catalog before it runs:
//! the policy sizes merges by it, and the merge gives DataFusion's pool the
//! rest of its limit.

use fleetlake_storage::catalog::FileMeta;
use fleetlake_storage::parquet_file::{ROW_GROUP_ROWS, UPLOAD_PART_BYTES, UPLOAD_PARTS_IN_FLIGHT};

use crate::CompactionConfig;

/// Rows of a batch in the merge (DataFusion's default batch size).
const BATCH_ROWS: u64 = 8192;
/// Decoded batches' worth of memory one input holds at once: the reader's,
/// the visibility filter's output, the merge's sort-key rows, the output
/// being built — and two more for the reader's page buffers and decoders:
/// measured, 24 flush files of TSBS cpu merged 7 at a time under 128 MiB
/// cost ~12 MB per input where 4 batches estimated 8.8 MB, and the merge
/// peaked 22 % over the limit (benches/README.md, "Many inputs").
const BATCHES_PER_INPUT: u64 = 6;

/// The smallest pool a merge runs with, as a share of the limit.
pub(crate) const MIN_POOL_SHARE: u64 = 4;

/// Bytes one row of `schema` takes decoded, plus the merge's `__seq`.
pub(crate) fn decoded_row_width(schema: &arrow::datatypes::Schema) -> u64 {
    use arrow::datatypes::DataType;
    let column = |t: &DataType| match t {
        DataType::Boolean => 1,
        // Keys; the dictionary values are shared by a file's batches.
        DataType::Dictionary(_, _) => 8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 32,
        t => t.primitive_width().unwrap_or(16) as u64,
    };
    8 + schema
        .fields()
        .iter()
        .map(|f| column(f.data_type()))
        .sum::<u64>()
}

/// Compressed bytes of one row group of `f`.
fn row_group_bytes(f: &FileMeta) -> u64 {
    let row_groups = f.rows.div_ceil(ROW_GROUP_ROWS as u64).max(1);
    f.bytes / row_groups
}

/// The memory one input of a merge holds: the reader fetches a whole row
/// group's compressed column chunks and decompresses page by page (counted
/// twice), plus [`BATCHES_PER_INPUT`] decoded batches.
pub(crate) fn input_memory(f: &FileMeta, row_width: u64) -> u64 {
    2 * row_group_bytes(f) + BATCHES_PER_INPUT * BATCH_ROWS * row_width
}

/// A window's length as a multiple of the configured one: each divides a
/// day when the configured window is an hour, so windows never straddle a
/// day partition's edge.
const WINDOW_MULTIPLES: [i64; 8] = [1, 2, 3, 4, 6, 8, 12, 24];

/// The share of a merge's memory limit its open output files (one per
/// window) may take.
const WINDOW_SHARE: u64 = 4;

/// The time window a merge cuts its output by, in nanoseconds: the
/// configured `window`, or the smallest multiple of it whose windows hold
/// at least half of `target_rows` each on average (a cut costs every query
/// of a series over several windows one more file to open, and the
/// series' runs compress less) and whose open files (one per window the
/// inputs span) fit a quarter of `memory_limit`. `None` when the window is
/// zero or not even a day's multiple fits: one output stream.
pub(crate) fn output_window(inputs: &[&FileMeta], config: &CompactionConfig) -> Option<i64> {
    let base = i64::try_from(config.window.as_nanos())
        .ok()
        .filter(|&w| w > 0)?;
    let rows: u64 = inputs.iter().map(|f| f.rows).sum();
    WINDOW_MULTIPLES
        .iter()
        .filter_map(|&m| base.checked_mul(m))
        .find(|&len| {
            let windows = windows_spanned(inputs, len);
            (windows == 1 || rows / windows >= config.target_rows / 2)
                && output_memory(inputs, Some(len)) <= config.memory_limit as u64 / WINDOW_SHARE
        })
}

/// The windows of `len` nanoseconds, aligned to the epoch, that the inputs'
/// rows span.
pub(crate) fn windows_spanned(inputs: &[&FileMeta], len: i64) -> u64 {
    let lo = inputs.iter().map(|f| f.min_time).min();
    let hi = inputs.iter().map(|f| f.max_time).max();
    match (lo, hi) {
        (Some(lo), Some(hi)) if hi >= lo => (hi.div_euclid(len) - lo.div_euclid(len)) as u64 + 1,
        _ => 1,
    }
}

/// The memory of the merge's output, per file open at once (one per
/// window of `window` nanoseconds the inputs span, or one): the row group
/// being encoded and its serialized copy (sized like the inputs' row
/// groups, at most a full one), the upload part being filled and those in
/// flight (a file smaller than a part is held whole until it is done).
pub(crate) fn output_memory(inputs: &[&FileMeta], window: Option<i64>) -> u64 {
    let files = window.map_or(1, |len| windows_spanned(inputs, len));
    let (bytes, rows) = inputs
        .iter()
        .fold((0u64, 0u64), |(b, r), f| (b + f.bytes, r + f.rows));
    let (bytes, rows) = (bytes / files, rows / files);
    let row_group_rows = rows.min(ROW_GROUP_ROWS as u64);
    let row_group = bytes.checked_div(rows).unwrap_or(0) * row_group_rows;
    let upload = bytes.min(UPLOAD_PART_BYTES as u64);
    files * (2 * row_group + (1 + UPLOAD_PARTS_IN_FLIGHT as u64) * upload)
}

/// How a merge's memory limit is shared: what its inputs and output hold
/// (estimated), and the DataFusion pool for the rest (a sort of unordered
/// inputs spills past it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeMemory {
    pub readers: u64,
    pub writer: u64,
    pub pool: u64,
}

pub(crate) fn merge_memory(
    inputs: &[&FileMeta],
    row_width: u64,
    limit: usize,
    window: Option<i64>,
) -> MergeMemory {
    let limit = limit as u64;
    let readers = inputs.iter().map(|f| input_memory(f, row_width)).sum();
    let writer = output_memory(inputs, window);
    let pool = limit
        .saturating_sub(readers + writer)
        .max(limit / MIN_POOL_SHARE);
    MergeMemory {
        readers,
        writer,
        pool,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    fn file(rows: u64, bytes: u64, min_time: i64, max_time: i64) -> FileMeta {
        FileMeta {
            path: String::new(),
            db: String::new(),
            table: String::new(),
            day: String::new(),
            rows,
            bytes,
            min_time,
            max_time,
            seq: 0,
            created_ns: 0,
            level: 0,
            run: None,
            sort_order: Vec::new(),
            deletes_applied: 0,
        }
    }

    #[test]
    fn windows_are_the_configured_length_while_their_files_fit() {
        let config = |target_rows: u64, memory_limit: usize| CompactionConfig {
            target_rows,
            memory_limit,
            ..CompactionConfig::default()
        };
        let (default, hour) = (config(8 << 20, 512 << 20), Duration::from_secs(3600));
        assert_eq!(default.window, hour);
        // 4.3M rows over three hours (TSBS, 4,000 hosts): hours of 1.4M
        // rows would be files of a sixth of the target; one window.
        let tsbs = file(4_320_000, 19 << 20, 0, 3 * HOUR - 1);
        assert_eq!(output_window(&[&tsbs], &default), Some(3 * HOUR));
        assert_eq!(windows_spanned(&[&tsbs], 3 * HOUR), 1);
        // With a smaller target, hours: three files open, about 22 MB each.
        assert_eq!(
            output_window(&[&tsbs], &config(1 << 20, 512 << 20)),
            Some(HOUR)
        );
        assert_eq!(windows_spanned(&[&tsbs], HOUR), 3);
        assert!(output_memory(&[&tsbs], Some(HOUR)) <= 128 << 20);
        // A day of 100,000 hosts (864M rows, 3.8 GB): 24 files of a full
        // row group and part each do not fit a quarter of 512 MB; 6-hour
        // windows (four files) do.
        let day = file(864_000_000, 3_800 << 20, 0, 24 * HOUR - 1);
        assert_eq!(output_window(&[&day], &default), Some(6 * HOUR));
        // A day's window always fits a day partition's files: two at most
        // when the configured window does not divide a day.
        assert_eq!(windows_spanned(&[&day], 24 * HOUR), 1);
        // Off, or nothing fits: one stream.
        let off = CompactionConfig {
            window: Duration::ZERO,
            ..config(8 << 20, 512 << 20)
        };
        assert_eq!(output_window(&[&day], &off), None);
        assert_eq!(output_window(&[&day], &config(8 << 20, 64 << 20)), None);
        // Windows are aligned to the epoch, before it too.
        let early = file(10, 10, -HOUR - 1, -1);
        assert_eq!(windows_spanned(&[&early], HOUR), 2);
    }
}
