//! The rows streaming rules read, kept as they arrive: per (database, table,
//! field), every series' points inside the longest window any rule over it
//! asks for. Shared by every rule over the same field, fed once per write.
//!
//! # Invariants
//! - A series' points are sorted by time, one per time: a later write (by
//!   WAL sequence) of a non-null value at the same series and time replaces
//!   the value, as the query engine's deduplication does (per column, last
//!   non-null wins). A null writes nothing.
//! - A series is identified by all its non-null tags, as in the data files.
//! - Points older than `now − keep` are dropped at each tick.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, DictionaryArray, Float64Array, Int64Array, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Int32Type};
use arrow::record_batch::RecordBatch;
use fleetlake_storage::schema::TIME_COLUMN;

/// One point: time (ns), value (NaN: the row exists, the field is null —
/// line protocol and remote write cannot carry a NaN), and the WAL sequence
/// that wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: i64,
    pub value: f64,
    pub seq: u64,
}

/// A series' tags, sorted by name, nulls left out.
pub type SeriesKey = Arc<[(Arc<str>, Arc<str>)]>;

#[derive(Debug, Default)]
pub struct Series {
    pub points: Vec<Point>,
}

impl Series {
    /// Per column, the last non-null value wins: a null (NaN) only marks
    /// that a row exists at its time.
    fn put(&mut self, p: Point) {
        match self.points.binary_search_by_key(&p.time, |q| q.time) {
            Ok(i) => {
                let old = &mut self.points[i];
                if !p.value.is_nan() && (old.value.is_nan() || p.seq >= old.seq) {
                    *old = p;
                }
            }
            Err(i) => self.points.insert(i, p),
        }
    }

    /// The points with time in the window `(from, to]` (bounds as given).
    pub fn window(&self, from: i64, from_inclusive: bool, to: Option<(i64, bool)>) -> &[Point] {
        let start = self.points.partition_point(|p| {
            if from_inclusive {
                p.time < from
            } else {
                p.time <= from
            }
        });
        let end = match to {
            None => self.points.len(),
            Some((to, inclusive)) => self
                .points
                .partition_point(|p| if inclusive { p.time <= to } else { p.time < to }),
        };
        &self.points[start..end.max(start)]
    }
}

/// The points of one field (or of rows, for `count(*)` and `staleness`) of
/// one table.
#[derive(Debug, Default)]
pub struct FieldState {
    pub series: HashMap<SeriesKey, Series>,
    /// How far back points are kept (the longest window over this field).
    pub keep_ns: i64,
    points: usize,
    /// Bytes of the series' keys (their tags) and map entries.
    key_bytes: usize,
}

/// What a series' key and map entry cost: the tag strings, their `Arc`
/// headers, the slice and the entry.
fn key_cost(key: &SeriesKey) -> usize {
    96 + key
        .iter()
        .map(|(k, v)| k.len() + v.len() + 64)
        .sum::<usize>()
}

/// Bytes a point costs in the state, with its share of the vector.
pub const POINT_BYTES: usize = std::mem::size_of::<Point>();

impl FieldState {
    pub fn points(&self) -> usize {
        self.points
    }

    /// Drops every point (the window stays).
    pub fn clear(&mut self) {
        self.series = HashMap::new();
        self.points = 0;
        self.key_bytes = 0;
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.points * POINT_BYTES + self.key_bytes
    }

    /// Adds the rows of `batch` (a table write: tag columns as dictionaries,
    /// fields, `time`) written by WAL record `seq`: each row a point of
    /// `field`'s value (NaN when unset), or of 0 when `field` is `None`
    /// (rows only).
    pub fn add(&mut self, batch: &RecordBatch, field: Option<&str>, seq: u64) {
        let schema = batch.schema();
        let Ok(time_idx) = schema.index_of(TIME_COLUMN) else {
            return;
        };
        let Some(times) = batch
            .column(time_idx)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
        else {
            return;
        };
        // A write without the field still writes rows (groups exist in SQL
        // whatever their values).
        let values: Option<Vec<Option<f64>>> = field
            .and_then(|f| schema.index_of(f).ok())
            .and_then(|i| as_f64(batch.column(i)));
        let record_nulls = field.is_some();
        let tags: Vec<(Arc<str>, Tags)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                Tags::of(batch.column(i)).map(|t| (Arc::<str>::from(f.name().as_str()), t))
            })
            .collect();
        let mut sorted: Vec<usize> = (0..tags.len()).collect();
        sorted.sort_by(|a, b| tags[*a].0.cmp(&tags[*b].0));
        let mut last_key: Option<(Vec<Option<usize>>, SeriesKey)> = None;
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let value = match &values {
                Some(v) => v[row].unwrap_or(f64::NAN),
                None if record_nulls => f64::NAN,
                None => 0.0,
            };
            let ids: Vec<Option<usize>> = sorted.iter().map(|&t| tags[t].1.id(row)).collect();
            let key = match &last_key {
                Some((k, key)) if *k == ids => key.clone(),
                _ => {
                    let key: SeriesKey = sorted
                        .iter()
                        .filter_map(|&t| {
                            tags[t]
                                .1
                                .value(row)
                                .map(|v| (tags[t].0.clone(), Arc::<str>::from(v)))
                        })
                        .collect();
                    last_key = Some((ids, key.clone()));
                    key
                }
            };
            let s = match self.series.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    self.key_bytes += key_cost(e.key());
                    e.insert(Series::default())
                }
            };
            let before = s.points.len();
            s.put(Point {
                time: times.value(row),
                value,
                seq,
            });
            self.points += s.points.len() - before;
        }
    }

    /// Drops points of series matching `tags` with time in
    /// `[min_time, max_time]` written before WAL record `before_seq`.
    pub fn delete(
        &mut self,
        min_time: i64,
        max_time: i64,
        tags: &[(String, String)],
        before_seq: u64,
    ) {
        let (mut removed, mut freed) = (0, 0);
        self.series.retain(|key, s| {
            let matches = tags.iter().all(|(k, v)| {
                key.iter()
                    .any(|(kk, vv)| kk.as_ref() == k.as_str() && vv.as_ref() == v.as_str())
            });
            if matches {
                let before = s.points.len();
                s.points
                    .retain(|p| p.time < min_time || p.time > max_time || p.seq >= before_seq);
                removed += before - s.points.len();
            }
            if s.points.is_empty() {
                freed += key_cost(key);
            }
            !s.points.is_empty()
        });
        self.points -= removed;
        self.key_bytes -= freed;
    }

    /// Drops points at or before `now − keep_ns`, and series left empty.
    pub fn evict(&mut self, now: i64) {
        let cutoff = now.saturating_sub(self.keep_ns);
        let (mut removed, mut freed) = (0, 0);
        self.series.retain(|key, s| {
            let n = s.points.partition_point(|p| p.time <= cutoff);
            s.points.drain(..n);
            removed += n;
            if s.points.is_empty() {
                freed += key_cost(key);
            }
            !s.points.is_empty()
        });
        self.points -= removed;
        self.key_bytes -= freed;
    }
}

/// A tag column of a write (dictionary-encoded, as the write path builds them).
enum Tags {
    Dict(DictionaryArray<Int32Type>, StringArray),
}

impl Tags {
    fn of(col: &ArrayRef) -> Option<Self> {
        match col.data_type() {
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = col
                    .as_any()
                    .downcast_ref::<DictionaryArray<Int32Type>>()?
                    .clone();
                let values = d.values().as_any().downcast_ref::<StringArray>()?.clone();
                Some(Tags::Dict(d, values))
            }
            _ => None,
        }
    }

    /// A number naming the row's value (equal values, equal ids), or `None` for null.
    fn id(&self, row: usize) -> Option<usize> {
        match self {
            Tags::Dict(d, _) => d.is_valid(row).then(|| d.keys().value(row) as usize),
        }
    }

    fn value(&self, row: usize) -> Option<&str> {
        match self {
            Tags::Dict(d, v) => d
                .is_valid(row)
                .then(|| v.value(d.keys().value(row) as usize)),
        }
    }
}

/// A numeric field column as `f64`s (nulls as `None`).
fn as_f64(col: &ArrayRef) -> Option<Vec<Option<f64>>> {
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<Float64Array>() {
        return Some(a.iter().collect());
    }
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(a.iter().map(|v| v.map(|x| x as f64)).collect());
    }
    if let Some(a) = any.downcast_ref::<UInt64Array>() {
        return Some(a.iter().map(|v| v.map(|x| x as f64)).collect());
    }
    None
}
