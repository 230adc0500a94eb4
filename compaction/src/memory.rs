//! What a merge holds in memory, estimated from the catalog before it runs:
//! the policy sizes merges by it, and the merge gives DataFusion's pool the
//! rest of its limit.

use fleetlake_storage::catalog::FileMeta;
use fleetlake_storage::parquet_file::{ROW_GROUP_ROWS, UPLOAD_PART_BYTES, UPLOAD_PARTS_IN_FLIGHT};

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

/// The memory of the merge's output: the row group being encoded and its
/// serialized copy (sized like the inputs' row groups, at most a full one),
/// the upload part being filled and those in flight.
pub(crate) fn output_memory<'a>(inputs: impl Iterator<Item = &'a FileMeta>) -> u64 {
    let (bytes, rows) = inputs.fold((0u64, 0u64), |(b, r), f| (b + f.bytes, r + f.rows));
    let row_group_rows = rows.min(ROW_GROUP_ROWS as u64);
    let row_group = bytes.checked_div(rows).unwrap_or(0) * row_group_rows;
    2 * row_group + ((1 + UPLOAD_PARTS_IN_FLIGHT) * UPLOAD_PART_BYTES) as u64
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

pub(crate) fn merge_memory(inputs: &[FileMeta], row_width: u64, limit: usize) -> MergeMemory {
    let limit = limit as u64;
    let readers = inputs.iter().map(|f| input_memory(f, row_width)).sum();
    let writer = output_memory(inputs.iter());
    let pool = limit
        .saturating_sub(readers + writer)
        .max(limit / MIN_POOL_SHARE);
    MergeMemory {
        readers,
        writer,
        pool,
    }
}
