//! Sorting a partition's rows by series, then time, for a data file.
//!
//! The rows of one series must be adjacent and in time order; which tag leads
//! the order is free. Data files lead with the tag of the highest cardinality
//! (ties by name). In fleet telemetry that is the host, device or job id —
//! what selective queries name — so the page statistics of the leading column
//! isolate one series in a page or two. A lower-cardinality tag that leads
//! (say `arch` before `hostname` by name) would spread every host over every
//! block of that tag, and `hostname = …` could skip little.
//!
//! Comparing dictionary strings row by row is slow. Instead every tag value
//! gets its rank among the partition's distinct values, every distinct tuple
//! of ranks a series ordinal, and rows sort by the integers
//! `(ordinal, time, write order)`.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::{interleave, take};
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

type Fold = foldhash::fast::RandomState;

/// A partition sorted by series and time, de-duplicated.
#[derive(Debug)]
pub struct SeriesSorted {
    pub batch: RecordBatch,
    /// Tag column indices in the order rows are sorted by.
    pub tag_order: Vec<usize>,
    /// Number of distinct series.
    pub series: usize,
}

/// Which tag leads the series order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// The `tags` columns in the order given (the table's sort key).
    Given,
    /// Highest cardinality first, ties by name (a table's first flush).
    ByCardinality,
}

/// Sorts the rows of `batches` (one schema) by series (the `tags` columns,
/// in `order`), then `time`, then write order, and merges rows of equal
/// identity so the later write wins field by field. Write order is the `seq`
/// column when given, else the input order (batch by batch, row by row).
pub fn sort_dedup_by_series(
    batches: &[RecordBatch],
    tags: &[usize],
    order: TagOrder,
    time: usize,
    seq: Option<usize>,
) -> Result<SeriesSorted> {
    let sorted = order_by_series(batches, tags, order, time, seq)?;
    let parts = sorted
        .batches(batches, usize::MAX)
        .collect::<Result<Vec<_>>>()?;
    let batch = match parts.len() {
        1 => parts.into_iter().next().expect("one part"),
        _ => arrow::compute::concat_batches(&batches[0].schema(), &parts)?,
    };
    Ok(SeriesSorted {
        batch,
        tag_order: sorted.tag_order,
        series: sorted.series,
    })
}

/// The order of a partition's rows by series, then time, then write order:
/// what [`sort_dedup_by_series`] computes before it copies any column, so
/// that a flush can copy a slice at a time ([`SeriesOrder::batches`]).
#[derive(Debug)]
pub struct SeriesOrder {
    /// (series ordinal, time, write order, batch, row), sorted.
    rows: Vec<(u32, i64, u64, u32, u32)>,
    /// Tag columns then time: the columns a merged row takes from its first.
    key: Vec<usize>,
    /// Tag column indices in the order rows are sorted by.
    pub tag_order: Vec<usize>,
    /// Number of distinct series.
    pub series: usize,
}

/// Orders the rows of `batches` as [`sort_dedup_by_series`] does, without
/// copying them.
pub fn order_by_series(
    batches: &[RecordBatch],
    tags: &[usize],
    order: TagOrder,
    time: usize,
    seq: Option<usize>,
) -> Result<SeriesOrder> {
    let Some(first) = batches.first() else {
        return Err(Error::Invalid("no batches to sort".into()));
    };
    let schema = first.schema();
    // Distinct values per tag, ranked; rank 0 is NULL (sorts first).
    let mut ranks: Vec<HashMap<&str, u32, Fold>> = Vec::with_capacity(tags.len());
    for &t in tags {
        // Each buffered request has a dictionary of its own: the same values
        // come again and again, so they are made distinct before sorting.
        let mut distinct: HashSet<&str, Fold> = HashSet::default();
        for b in batches {
            for_each_value(b.column(t), |s| {
                distinct.insert(s);
            })?;
        }
        let mut values: Vec<&str> = distinct.into_iter().collect();
        values.sort_unstable();
        ranks.push(
            values
                .into_iter()
                .enumerate()
                .map(|(i, s)| (s, i as u32 + 1))
                .collect(),
        );
    }
    let mut order_idx: Vec<usize> = (0..tags.len()).collect();
    if order == TagOrder::ByCardinality {
        order_idx.sort_by(|&a, &b| {
            ranks[b].len().cmp(&ranks[a].len()).then_with(|| {
                schema
                    .field(tags[a])
                    .name()
                    .cmp(schema.field(tags[b]).name())
            })
        });
    }
    let order = order_idx;

    // A trie over rank tuples: node = (parent, rank); every row ends at the
    // leaf of its series. Node 0 is the root.
    let mut nodes: Vec<(u32, u32)> = vec![(0, 0)];
    let mut node_of_row: Vec<Vec<u32>> = batches.iter().map(|b| vec![0; b.num_rows()]).collect();
    for &ti in &order {
        let mut children: HashMap<(u32, u32), u32, Fold> = HashMap::default();
        for (b, batch) in batches.iter().enumerate() {
            let row_ranks = row_ranks(batch.column(tags[ti]), &ranks[ti])?;
            for (node, rank) in node_of_row[b].iter_mut().zip(row_ranks) {
                let next = nodes.len() as u32;
                let child = *children.entry((*node, rank)).or_insert(next);
                if child == next {
                    nodes.push((*node, rank));
                }
                *node = child;
            }
        }
    }
    // Leaves in rank-tuple order give the series ordinals.
    let mut leaves: Vec<(Vec<u32>, u32)> = Vec::new();
    {
        let mut seen = vec![false; nodes.len()];
        for rows in &node_of_row {
            for &leaf in rows {
                if !std::mem::replace(&mut seen[leaf as usize], true) {
                    let mut tuple = Vec::with_capacity(order.len());
                    let mut n = leaf;
                    while n != 0 {
                        tuple.push(nodes[n as usize].1);
                        n = nodes[n as usize].0;
                    }
                    tuple.reverse();
                    leaves.push((tuple, leaf));
                }
            }
        }
    }
    leaves.sort_unstable();
    let mut ordinal = vec![0u32; nodes.len()];
    for (i, (_, leaf)) in leaves.iter().enumerate() {
        ordinal[*leaf as usize] = i as u32;
    }

    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut rows: Vec<(u32, i64, u64, u32, u32)> = Vec::with_capacity(total);
    for (b, batch) in batches.iter().enumerate() {
        let times = batch
            .column(time)
            .as_primitive_opt::<TimestampNanosecondType>();
        let times = times.ok_or_else(|| Error::Invalid("time is not Timestamp(ns)".into()))?;
        let seqs = match seq {
            Some(s) => Some(
                batch
                    .column(s)
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| Error::Invalid("sequence column is not UInt64".into()))?,
            ),
            None => None,
        };
        for r in 0..batch.num_rows() {
            let tie = seqs.map_or(((b as u64) << 32) | r as u64, |s| s.value(r));
            let ord = ordinal[node_of_row[b][r] as usize];
            rows.push((ord, times.value(r), tie, b as u32, r as u32));
        }
    }
    drop(node_of_row);
    rows.sort_unstable();
    let mut key: Vec<usize> = tags.to_vec();
    key.push(time);
    Ok(SeriesOrder {
        rows,
        key,
        tag_order: order.iter().map(|&i| tags[i]).collect(),
        series: leaves.len(),
    })
}

impl SeriesOrder {
    /// The sorted, de-duplicated rows of `batches` (those this order was
    /// computed from), in batches of at most about `max_rows` input rows:
    /// the rows of one identity (series and time) are never split, so a
    /// batch can exceed `max_rows` by one identity's duplicates.
    pub fn batches<'a>(
        &'a self,
        batches: &'a [RecordBatch],
        max_rows: usize,
    ) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        let identity = |i: usize| (self.rows[i].0, self.rows[i].1);
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= self.rows.len() {
                return None;
            }
            let mut end = start.saturating_add(max_rows.max(1)).min(self.rows.len());
            while end < self.rows.len() && identity(end) == identity(end - 1) {
                end += 1;
            }
            let part = self.copy(batches, start..end);
            start = end;
            Some(part)
        })
    }

    /// One row of each series (its first in the order), in series order:
    /// what a series file needs, without going through every row.
    pub fn series_rows(&self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(self.series);
        for (i, row) in self.rows.iter().enumerate() {
            if i == 0 || self.rows[i - 1].0 != row.0 {
                indices.push((row.3 as usize, row.4 as usize));
            }
        }
        gather(batches, &indices)
    }

    /// Copies rows `range` of the order, merging each run of one identity.
    fn copy(&self, batches: &[RecordBatch], range: Range<usize>) -> Result<RecordBatch> {
        let rows = &self.rows[range];
        // Runs of equal (series, time): the identities.
        let mut runs: Vec<Range<usize>> = Vec::new();
        let mut start = 0;
        for i in 1..=rows.len() {
            if i == rows.len() || (rows[i].0, rows[i].1) != (rows[start].0, rows[start].1) {
                runs.push(start..i);
                start = i;
            }
        }
        let indices: Vec<(usize, usize)> = rows
            .iter()
            .map(|&(_, _, _, b, r)| (b as usize, r as usize))
            .collect();
        let sorted = gather(batches, &indices)?;
        if runs.len() == rows.len() {
            Ok(sorted)
        } else {
            merge_runs(&sorted, &self.key, &runs)
        }
    }
}

/// The rows `indices` ((batch, row) pairs) of `batches`, in that order.
fn gather(batches: &[RecordBatch], indices: &[(usize, usize)]) -> Result<RecordBatch> {
    let schema = batches[0].schema();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            interleave(&arrays, indices)
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Calls `f` with every value of a string (or string-dictionary) column's
/// value set: for a dictionary its dictionary, else every non-NULL row.
fn for_each_value<'a>(col: &'a ArrayRef, mut f: impl FnMut(&'a str)) -> Result<()> {
    match col.data_type() {
        DataType::Dictionary(_, _) => {
            let dict = col
                .as_dictionary_opt::<Int32Type>()
                .ok_or_else(|| Error::Invalid("tag dictionary keys are not Int32".into()))?;
            let values = dict
                .values()
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::Invalid("tag dictionary values are not Utf8".into()))?;
            values.iter().flatten().for_each(&mut f);
        }
        DataType::Utf8 => col.as_string::<i32>().iter().flatten().for_each(f),
        other => return Err(Error::Invalid(format!("tag column of type {other}"))),
    }
    Ok(())
}

/// The rank of every row's value (0 for NULL).
fn row_ranks(col: &ArrayRef, ranks: &HashMap<&str, u32, Fold>) -> Result<Vec<u32>> {
    let rank = |s: &str| ranks.get(s).copied().unwrap_or(0);
    Ok(match col.data_type() {
        DataType::Dictionary(_, _) => {
            let dict = col
                .as_dictionary_opt::<Int32Type>()
                .ok_or_else(|| Error::Invalid("tag dictionary keys are not Int32".into()))?;
            let values = dict
                .values()
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::Invalid("tag dictionary values are not Utf8".into()))?;
            let by_key: Vec<u32> = values.iter().map(|v| v.map_or(0, rank)).collect();
            dict.keys()
                .iter()
                .map(|k| k.map_or(0, |k| by_key[k as usize]))
                .collect()
        }
        _ => col
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(0, rank))
            .collect(),
    })
}

/// Merges each run of rows of one identity into one row: key columns from
/// the run's first row, every other column its last non-NULL value in the
/// run (NULL when all are NULL). `batch` is in write order within each run.
pub fn merge_runs(
    batch: &RecordBatch,
    key: &[usize],
    runs: &[Range<usize>],
) -> Result<RecordBatch> {
    let first: UInt32Array = runs.iter().map(|r| r.start as u32).collect();
    let columns = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, col)| {
            if key.contains(&i) {
                return take(col.as_ref(), &first, None);
            }
            let last_valid: UInt32Array = runs
                .iter()
                .map(|r| {
                    r.clone()
                        .rev()
                        .find(|&row| col.is_valid(row))
                        .unwrap_or(r.end - 1) as u32
                })
                .collect();
            take(col.as_ref(), &last_valid, None)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn schema() -> Arc<Schema> {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        Arc::new(Schema::new(vec![
            Field::new("arch", dict.clone(), true),
            Field::new("host", dict, true),
            Field::new("v", DataType::Int64, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
        ]))
    }

    fn batch(
        arch: Vec<Option<&str>>,
        host: Vec<&str>,
        v: Vec<Option<i64>>,
        t: Vec<i64>,
    ) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(arch.into_iter().collect::<DictionaryArray<Int32Type>>()),
                Arc::new(host.into_iter().collect::<DictionaryArray<Int32Type>>()),
                Arc::new(Int64Array::from(v)),
                Arc::new(TimestampNanosecondArray::from(t)),
            ],
        )
        .unwrap()
    }

    fn strings(b: &RecordBatch, c: usize) -> Vec<Option<String>> {
        let s = arrow::compute::cast(b.column(c), &DataType::Utf8).unwrap();
        s.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn highest_cardinality_tag_leads_and_rows_sort_by_series_then_time() {
        let b1 = batch(
            vec![Some("x86"), Some("x64"), Some("x86"), None],
            vec!["h2", "h1", "h3", "h1"],
            vec![Some(1), Some(2), Some(3), Some(4)],
            vec![20, 10, 5, 7],
        );
        let b2 = batch(
            vec![Some("x64"), Some("x86")],
            vec!["h1", "h2"],
            vec![Some(5), Some(6)],
            vec![5, 10],
        );
        let out =
            sort_dedup_by_series(&[b1, b2], &[0, 1], TagOrder::ByCardinality, 3, None).unwrap();
        assert_eq!(out.tag_order, vec![1, 0], "host (3 values) leads arch (2)");
        assert_eq!(out.series, 4);
        let hosts: Vec<_> = strings(&out.batch, 1)
            .into_iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(hosts, ["h1", "h1", "h1", "h2", "h2", "h3"]);
        // Within h1: the NULL-arch series first, then x64 by time.
        assert_eq!(
            strings(&out.batch, 0),
            [
                None,
                Some("x64".into()),
                Some("x64".into()),
                Some("x86".into()),
                Some("x86".into()),
                Some("x86".into())
            ]
        );
        let t = out
            .batch
            .column(3)
            .as_primitive::<TimestampNanosecondType>();
        assert_eq!(t.values().to_vec(), vec![7, 5, 10, 10, 20, 5]);
    }

    #[test]
    fn later_write_wins_field_by_field_across_batches() {
        let b1 = batch(vec![Some("a")], vec!["h"], vec![Some(1)], vec![5]);
        let b2 = batch(
            vec![Some("a"), Some("a")],
            vec!["h", "h"],
            vec![None, Some(3)],
            vec![5, 6],
        );
        let b3 = batch(vec![Some("a")], vec!["h"], vec![Some(9)], vec![6]);
        let out = sort_dedup_by_series(&[b1, b2, b3], &[0, 1], TagOrder::Given, 3, None).unwrap();
        assert_eq!(out.batch.num_rows(), 2);
        let v = out
            .batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>();
        // @5: the later write is NULL, so the earlier value stays; @6: the last write.
        assert_eq!(v.values().to_vec(), vec![1, 9]);
    }

    #[test]
    fn slices_of_the_order_equal_the_whole_and_keep_duplicates_together() {
        // Three writes of h1@5 (one identity) and distinct rows around them.
        let b1 = batch(
            vec![Some("a"), Some("a"), Some("a"), Some("a")],
            vec!["h2", "h1", "h1", "h1"],
            vec![Some(1), Some(2), Some(3), None],
            vec![5, 4, 5, 6],
        );
        let b2 = batch(
            vec![Some("a"), Some("a"), Some("a")],
            vec!["h1", "h1", "h3"],
            vec![Some(7), None, Some(8)],
            vec![5, 5, 1],
        );
        let batches = [b1, b2];
        let whole = sort_dedup_by_series(&batches, &[0, 1], TagOrder::Given, 3, None).unwrap();
        assert_eq!(whole.batch.num_rows(), 5);
        let order = order_by_series(&batches, &[0, 1], TagOrder::Given, 3, None).unwrap();
        for max_rows in [1, 2, 3, 100] {
            let parts: Vec<RecordBatch> = order
                .batches(&batches, max_rows)
                .collect::<Result<_>>()
                .unwrap();
            let joined = arrow::compute::concat_batches(&batches[0].schema(), &parts).unwrap();
            assert_eq!(joined, whole.batch, "max_rows {max_rows}");
        }
        // h1@5 merged from three writes: the last non-NULL value, 7.
        let v = whole
            .batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(v.values()[1], 7);
        assert_eq!(
            order.batches(&batches, 1).count(),
            5,
            "one part per identity"
        );
        let series = order.series_rows(&batches).unwrap();
        assert_eq!(
            strings(&series, 1),
            [Some("h1".into()), Some("h2".into()), Some("h3".into())]
        );
    }

    #[test]
    fn sequence_column_orders_writes() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", dict, true),
            Field::new("v", DataType::Int64, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("__seq", DataType::UInt64, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    vec!["h", "h"]
                        .into_iter()
                        .collect::<DictionaryArray<Int32Type>>(),
                ),
                Arc::new(Int64Array::from(vec![Some(2), Some(1)])),
                Arc::new(TimestampNanosecondArray::from(vec![1, 1])),
                Arc::new(arrow::array::UInt64Array::from(vec![9, 3])),
            ],
        )
        .unwrap();
        let out = sort_dedup_by_series(&[b], &[0], TagOrder::Given, 2, Some(3)).unwrap();
        let v = out
            .batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(v.values().to_vec(), vec![2], "seq 9 is the later write");
    }
}
