//! Which buckets a rollup pass recomputes: bucket arithmetic, late-data
//! detection and the division of the work into per-day chunks.
//!
//! Times are nanoseconds; ranges are half-open `[start, end)` and aligned to
//! bucket starts (multiples of `every` since the epoch, as `date_bin` aligns).

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{TimestampNanosecondType, UInt64Type};
use fleetlake_ingest::BufferedPartition;
use fleetlake_storage::catalog::{FileMeta, Tombstone};
use fleetlake_storage::layout::{day_bounds, day_index, day_of};
use fleetlake_storage::schema::TIME_COLUMN;
use fleetlake_storage::write_order::SEQ_COLUMN;

/// Days whose late ranges are recomputed range by range; more than this in
/// one day and the day's hull is recomputed in one query instead.
const MAX_RANGES_PER_DAY: usize = 8;

/// The start of the bucket holding `t`.
pub fn floor(t: i64, every: i64) -> i64 {
    t.div_euclid(every).saturating_mul(every)
}

/// The first bucket start at or after `t`.
pub fn ceil(t: i64, every: i64) -> i64 {
    let f = floor(t, every);
    if f == t { f } else { f.saturating_add(every) }
}

/// Merges overlapping and adjacent ranges; drops empty ones.
pub fn normalize(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.retain(|(a, b)| a < b);
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The buckets below `watermark` that rows with times in `[min, max]` fall
/// in, as a range of bucket starts `[start, end)`; `None` if none does.
fn bucket_span(min: i64, max: i64, watermark: i64, every: i64) -> Option<(i64, i64)> {
    (min < watermark).then(|| {
        let end = ceil(max.saturating_add(1), every).min(watermark);
        (floor(min, every), end)
    })
}

/// Bucket ranges below `watermark` that data written after `seen` touches:
/// files with a higher `seq` (by their time bounds), and buffered rows with
/// a higher `__seq` (exactly, row by row).
pub fn late_ranges(
    files: &[&FileMeta],
    buffered: &[BufferedPartition],
    seen: u64,
    watermark: i64,
    every: i64,
) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = files
        .iter()
        .filter(|f| f.seq > seen)
        .filter_map(|f| bucket_span(f.min_time, f.max_time, watermark, every))
        .collect();
    let mut buckets = BTreeSet::new();
    for p in buffered.iter().filter(|p| p.min_time < watermark) {
        for b in &p.batches {
            let (Some(seq), Some(time)) = (
                b.column_by_name(SEQ_COLUMN)
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
                b.column_by_name(TIME_COLUMN)
                    .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>()),
            ) else {
                continue;
            };
            for (s, t) in seq.values().iter().zip(time.values()) {
                if *s > seen && *t < watermark {
                    buckets.insert(floor(*t, every));
                }
            }
            debug_assert_eq!(time.null_count(), 0, "time is never null");
        }
    }
    ranges.extend(
        buckets
            .into_iter()
            .map(|b| (b, b.saturating_add(every).min(watermark))),
    );
    normalize(ranges)
}

/// Bucket ranges below `watermark` whose source rows a delete newer than
/// `seen` (a tombstone `seq`) may have removed: the span of each such
/// tombstone, and the span of each file rewritten without the rows of such
/// a tombstone (`deletes_applied`) — compaction drops a tombstone once every
/// file is rewritten, possibly before a pass saw it.
pub fn deleted_ranges(
    files: &[&FileMeta],
    tombstones: &[Tombstone],
    seen: u64,
    watermark: i64,
    every: i64,
) -> Vec<(i64, i64)> {
    let spans = tombstones
        .iter()
        .filter(|t| t.seq > seen)
        .map(|t| (t.min_time, t.max_time))
        .chain(
            files
                .iter()
                .filter(|f| f.deletes_applied > seen)
                .map(|f| (f.min_time, f.max_time)),
        );
    normalize(
        spans
            .filter_map(|(min, max)| bucket_span(min, max, watermark, every))
            .collect(),
    )
}

/// A piece of work: the buckets starting in `[start, end)`, all of whose
/// starts fall on one partition day (the target rows' `time` is the bucket
/// start, so they all belong to one data file partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub day: String,
    pub start: i64,
    pub end: i64,
}

impl Chunk {
    pub fn buckets(&self, every: i64) -> u64 {
        (self.end.saturating_sub(self.start) / every) as u64
    }
}

/// Cuts bucket-aligned `ranges` at day boundaries and keeps the chunks whose
/// time span holds source data (`data_days`: day indices with files or
/// buffered rows). A chunk may reach past its day: a bucket starting at
/// 23:00 with `every = 2h` reads rows of the next day too.
pub fn chunks(ranges: &[(i64, i64)], every: i64, data_days: &BTreeSet<i64>) -> Vec<Chunk> {
    let mut by_day: Vec<(i64, Vec<(i64, i64)>)> = Vec::new();
    for &(a, b) in ranges {
        let mut cur = a;
        while cur < b {
            let day = day_index(cur);
            let next = ceil(day_bounds(day).1, every).min(b);
            if next <= cur {
                break; // only at the edge of the representable range
            }
            match by_day.last_mut() {
                Some((d, v)) if *d == day => v.push((cur, next)),
                _ => by_day.push((day, vec![(cur, next)])),
            }
            cur = next;
        }
    }
    let mut out = Vec::new();
    for (day, mut pieces) in by_day {
        if pieces.len() > MAX_RANGES_PER_DAY {
            let hull = (pieces[0].0, pieces[pieces.len() - 1].1);
            pieces = vec![hull];
        }
        for (start, end) in pieces {
            // Data days whose span overlaps [start, end).
            let first = day_index(start);
            let last = day_index(end.saturating_sub(1));
            if data_days.range(first..=last).next().is_some() {
                out.push(Chunk {
                    day: day_of(day_bounds(day).0),
                    start,
                    end,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{TimestampNanosecondArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    const M: i64 = 60_000_000_000;
    const DAY: i64 = 1440 * M;
    /// 2016-01-01T00:00:00Z
    const T0: i64 = 1_451_606_400_000_000_000;

    #[test]
    fn bucket_bounds() {
        assert_eq!(floor(T0 + 90_000_000_000, M), T0 + M);
        assert_eq!(ceil(T0 + 90_000_000_000, M), T0 + 2 * M);
        assert_eq!(ceil(T0, M), T0);
        // Before the epoch buckets still align to it, as date_bin's do.
        assert_eq!(floor(-1, M), -M);
        assert_eq!(ceil(-1, M), 0);
    }

    #[test]
    fn ranges_merge() {
        assert_eq!(
            normalize(vec![(5, 9), (0, 3), (3, 4), (8, 12), (20, 20)]),
            vec![(0, 4), (5, 12)]
        );
    }

    /// Built from JSON so the test needs only the fields it uses.
    fn file(seq: u64, min: i64, max: i64) -> FileMeta {
        serde_json::from_value(serde_json::json!({
            "path": "", "db": "fleet", "table": "cpu", "day": day_of(min),
            "rows": 1, "bytes": 1, "min_time": min, "max_time": max,
            "seq": seq, "created_ns": 0,
        }))
        .expect("a file meta")
    }

    #[test]
    fn late_files_touch_their_buckets_below_the_watermark() {
        let wm = T0 + 10 * M;
        let files = [
            file(1, T0, T0 + 9 * M),               // seen already
            file(5, T0 + 2 * M + 1, T0 + 3 * M),   // late: buckets 2 and 3
            file(6, T0 + 9 * M, T0 + 20 * M),      // late: bucket 9 only
            file(7, T0 + 10 * M, T0 + 11 * M + 1), // not late: above the watermark
        ];
        let refs: Vec<&FileMeta> = files.iter().collect();
        assert_eq!(
            late_ranges(&refs, &[], 4, wm, M),
            vec![(T0 + 2 * M, T0 + 4 * M), (T0 + 9 * M, wm)]
        );
    }

    #[test]
    fn deletes_touch_their_buckets_below_the_watermark() {
        let wm = T0 + 10 * M;
        let tomb = |seq, min, max| Tombstone {
            seq,
            min_time: min,
            max_time: max,
            tags: vec![("host".into(), "h1".into())],
            created_ns: 0,
        };
        let tombstones = [
            tomb(3, T0, T0 + 9 * M),             // seen already
            tomb(8, T0 + M + 1, T0 + 2 * M - 1), // bucket 1
            tomb(9, T0 + 8 * M, T0 + 30 * M),    // bucket 8, 9; the rest is open
            tomb(9, T0 + 10 * M, T0 + 11 * M),   // above the watermark
        ];
        let mut rewritten = file(2, T0 + 4 * M, T0 + 5 * M);
        rewritten.deletes_applied = 7; // a tombstone this pass never saw
        let mut old = file(2, T0 + 6 * M, T0 + 6 * M);
        old.deletes_applied = 3;
        let files = [&rewritten, &old];
        assert_eq!(
            deleted_ranges(&files, &tombstones, 3, wm, M),
            vec![
                (T0 + M, T0 + 2 * M),
                (T0 + 4 * M, T0 + 6 * M),
                (T0 + 8 * M, wm)
            ]
        );
        assert!(deleted_ranges(&files, &tombstones, 9, wm, M).is_empty());
    }

    #[test]
    fn late_buffered_rows_touch_exactly_their_buckets() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                TIME_COLUMN,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new(SEQ_COLUMN, DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![
                        T0 + M,
                        T0 + 5 * M,
                        T0 + 7 * M,
                        T0 + 30 * M,
                    ])
                    .with_timezone("UTC"),
                ),
                // The first row was seen; the last is above the watermark.
                Arc::new(UInt64Array::from(vec![10, 11, 12, 13])),
            ],
        )
        .unwrap();
        let p = BufferedPartition {
            day: day_index(T0),
            min_time: T0 + M,
            max_time: T0 + 30 * M,
            batches: vec![batch],
        };
        assert_eq!(
            late_ranges(&[], &[p], 10, T0 + 20 * M, M),
            vec![(T0 + 5 * M, T0 + 6 * M), (T0 + 7 * M, T0 + 8 * M)]
        );
    }

    #[test]
    fn chunks_split_at_days_and_skip_days_without_data() {
        let h = 60 * M;
        let days: BTreeSet<i64> = [day_index(T0), day_index(T0 + 2 * DAY)].into();
        let c = chunks(&[(T0 + 22 * h, T0 + 2 * DAY + 2 * h)], h, &days);
        let spans: Vec<_> = c.iter().map(|c| (c.day.as_str(), c.start, c.end)).collect();
        assert_eq!(
            spans,
            vec![
                ("2016-01-01", T0 + 22 * h, T0 + DAY),
                // 2016-01-02 has no data: skipped.
                ("2016-01-03", T0 + 2 * DAY, T0 + 2 * DAY + 2 * h),
            ]
        );
        assert_eq!(c[0].buckets(h), 2);
        // Buckets of 7h straddle days; a bucket belongs to the day it starts on.
        let every = 7 * h;
        let start = floor(T0, every);
        let c = chunks(&[(start, start + 5 * every)], every, &days);
        for chunk in &c {
            assert_eq!(chunk.day, day_of(chunk.start));
            assert_eq!(day_of(chunk.end - every), chunk.day);
        }
        assert_eq!(c.first().unwrap().start, start);
    }

    #[test]
    fn many_scattered_ranges_in_a_day_become_its_hull() {
        let days: BTreeSet<i64> = [day_index(T0)].into();
        let scattered: Vec<(i64, i64)> = (0..20)
            .map(|i| (T0 + 2 * i * M, T0 + (2 * i + 1) * M))
            .collect();
        let c = chunks(&scattered, M, &days);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].start, c[0].end), (T0, T0 + 39 * M));
        let few: Vec<(i64, i64)> = scattered[..3].to_vec();
        assert_eq!(chunks(&few, M, &days).len(), 3);
    }
}
