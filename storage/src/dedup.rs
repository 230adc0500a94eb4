//! Sorting by series and last-write-wins de-duplication.
//!
//! Row identity is (tags, time). Among rows of one identity, the later write
//! wins field by field: each field takes the value of the latest row in which
//! it is not NULL. "Later" is the order of a sequence column, or the row order
//! of the input when sorting was stable.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::kernels::partition::partition;
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take};
use arrow::record_batch::RecordBatch;

use crate::error::Result;

/// The sort options of every series sort: ascending, NULLs first. A tag that
/// a row lacks is NULL and sorts before every value.
pub const SERIES_SORT: SortOptions = SortOptions {
    descending: false,
    nulls_first: true,
};

/// Sorts `batch` by the columns at `sort_cols` (in that order). The sort is
/// stable, so rows that tie keep their input order.
pub fn sort_batch(batch: &RecordBatch, sort_cols: &[usize]) -> Result<RecordBatch> {
    if batch.num_rows() <= 1 || sort_cols.is_empty() {
        return Ok(batch.clone());
    }
    let n = batch.num_rows() as u32;
    // A trailing row-number column makes the unstable lexsort stable.
    let row_numbers: ArrayRef = std::sync::Arc::new(UInt32Array::from_iter_values(0..n));
    let mut columns: Vec<SortColumn> = sort_cols
        .iter()
        .map(|&i| SortColumn {
            values: batch.column(i).clone(),
            options: Some(SERIES_SORT),
        })
        .collect();
    columns.push(SortColumn {
        values: row_numbers,
        options: None,
    });
    let indices = lexsort_to_indices(&columns, None)?;
    take_batch(batch, &indices)
}

fn take_batch(batch: &RecordBatch, indices: &UInt32Array) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Merges runs of equal identity in a batch sorted by `key_cols` and then by
/// write order. Key columns take the run's first row; every other column
/// takes its last non-NULL value in the run (NULL when all are NULL).
pub fn dedup_sorted(batch: &RecordBatch, key_cols: &[usize]) -> Result<RecordBatch> {
    if batch.num_rows() <= 1 || key_cols.is_empty() {
        return Ok(batch.clone());
    }
    let keys: Vec<ArrayRef> = key_cols.iter().map(|&i| batch.column(i).clone()).collect();
    let ranges = partition(&keys)?.ranges();
    if ranges.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    crate::series_sort::merge_runs(batch, key_cols, &ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn later_write_wins_field_by_field() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
            Field::new("time", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["h2", "h1", "h1", "h1"])),
                Arc::new(Int64Array::from(vec![Some(9), Some(1), None, Some(3)])),
                Arc::new(Int64Array::from(vec![Some(9), Some(10), Some(20), None])),
                Arc::new(Int64Array::from(vec![5, 5, 5, 6])),
            ],
        )
        .unwrap();
        let sorted = sort_batch(&batch, &[0, 3]).unwrap();
        let out = dedup_sorted(&sorted, &[0, 3]).unwrap();
        assert_eq!(out.num_rows(), 3);
        let a = out.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let b = out.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        // h1@5: a from row 1 (row 2 has NULL), b from row 2 (the later write).
        assert_eq!((a.value(0), b.value(0)), (1, 20));
        // h1@6 has only a.
        assert_eq!(a.value(1), 3);
        assert!(b.is_null(1));
        assert_eq!((a.value(2), b.value(2)), (9, 9));
    }
}
