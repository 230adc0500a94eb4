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

use super::eval::group_hash;

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
        // Most rows come after the series' latest: no search.
        if self.points.last().is_none_or(|q| q.time < p.time) {
            self.points.push(p);
            return;
        }
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

/// The series keys of one table, shared by every state over it: a series'
/// tags are held once however many fields of it rules read, and a write's
/// rows are keyed once however many states it feeds.
///
/// # Invariants
/// - Equal tag sets get the same `Arc`: states key their series by the
///   pointer ([`KeyId`]).
/// - A key stays while a state holds it; [`Keys::gc`] drops the others.
#[derive(Debug, Default)]
pub struct Keys {
    /// Looked up once per written row: the key's hash hashed again
    /// cheaply (not SipHash).
    by_hash: HashMap<u64, Vec<SeriesKey>, foldhash::fast::FixedState>,
    bytes: usize,
}

/// A series key's identity (its pointer; see [`Keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(usize);

impl KeyId {
    pub fn of(key: &SeriesKey) -> Self {
        Self(Arc::as_ptr(key) as *const u8 as usize)
    }
}

fn hash_str(s: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = FIXED.build_hasher();
    h.write(s.as_bytes());
    h.finish()
}

/// Series keys are hashed once per written row: a fast, fixed-seed hash
/// (in memory only; collisions are told apart by comparing the keys).
static FIXED: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5eed);

impl Keys {
    /// The key of every row of `batch` (a table write, or the rows a fill
    /// query read: tag columns are dictionaries).
    pub fn of_batch(&mut self, batch: &RecordBatch) -> Vec<SeriesKey> {
        let schema = batch.schema();
        let mut tags: Vec<(Arc<str>, u64, Tags, Vec<u64>)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let t = Tags::of(batch.column(i))?;
                let hashes = t.value_hashes();
                Some((
                    Arc::<str>::from(f.name().as_str()),
                    hash_str(f.name()),
                    t,
                    hashes,
                ))
            })
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut last: Option<(u64, SeriesKey)> = None;
        for row in 0..batch.num_rows() {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for (_, name_hash, t, hashes) in &tags {
                if let Some(id) = t.id(row) {
                    h = (h ^ name_hash).wrapping_mul(0x100_0000_01b3);
                    h = (h ^ hashes[id]).wrapping_mul(0x100_0000_01b3);
                }
            }
            let same = |key: &SeriesKey| {
                let mut pairs = key.iter();
                tags.iter()
                    .filter_map(|(n, _, t, _)| t.value(row).map(|v| (n, v)))
                    .all(|(n, v)| {
                        pairs
                            .next()
                            .is_some_and(|(kn, kv)| kn == n && kv.as_ref() == v)
                    })
                    && pairs.next().is_none()
            };
            if let Some((lh, key)) = &last
                && *lh == h
                && same(key)
            {
                out.push(key.clone());
                continue;
            }
            let bucket = self.by_hash.entry(h).or_default();
            let key = match bucket.iter().find(|k| same(k)) {
                Some(k) => k.clone(),
                None => {
                    let key: SeriesKey = tags
                        .iter()
                        .filter_map(|(n, _, t, _)| {
                            t.value(row).map(|v| (n.clone(), Arc::<str>::from(v)))
                        })
                        .collect();
                    self.bytes += key_cost(&key);
                    bucket.push(key.clone());
                    key
                }
            };
            last = Some((h, key.clone()));
            out.push(key);
        }
        out
    }

    /// Drops the keys no state holds.
    pub fn gc(&mut self) {
        let mut freed = 0;
        self.by_hash.retain(|_, keys| {
            keys.retain(|k| {
                let held = Arc::strong_count(k) > 1;
                if !held {
                    freed += key_cost(k);
                }
                held
            });
            !keys.is_empty()
        });
        self.bytes -= freed;
    }

    /// Approximate bytes held by the keys.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.by_hash.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The points of one field (or of rows, for `count(*)` and `staleness`) of
/// one table.
#[derive(Debug, Default)]
pub struct FieldState {
    /// Looked up once per written row and state: a fast hash of the key's
    /// address.
    series: HashMap<KeyId, (SeriesKey, Series), foldhash::fast::FixedState>,
    /// How far back points are kept (the longest window over this field).
    pub keep_ns: i64,
    points: usize,
    /// For each grouping an `on_write` rule reads, the series of each group
    /// by the group's hash ([`super::eval::group_hash`]): an evaluation of
    /// the groups a write touched visits their series, not every series.
    ///
    /// Invariant: every series of `series` is listed once under each
    /// grouping, and nothing else is.
    groupings: Vec<(Vec<String>, Grouping)>,
}

/// A grouping's series, by group hash (groups with equal hashes share a
/// list; the pass tells them apart by their values).
pub type Grouping = HashMap<u64, Vec<KeyId>, foldhash::fast::FixedState>;

/// What a series' key costs (held once per table, in [`Keys`]): the tag
/// strings, their `Arc` headers, the slice and the interner's entry.
fn key_cost(key: &SeriesKey) -> usize {
    96 + key
        .iter()
        .map(|(k, v)| k.len() + v.len() + 64)
        .sum::<usize>()
}

/// Bytes a point costs in the state, with its share of the vector.
pub const POINT_BYTES: usize = std::mem::size_of::<Point>();

/// Bytes a series costs in a state besides its points: the map entry
/// (id, key pointer, vector header) and the table's spare capacity.
const SERIES_BYTES: usize = 64;

impl FieldState {
    pub fn points(&self) -> usize {
        self.points
    }

    /// Every series with its tags.
    pub fn series(&self) -> impl Iterator<Item = (&SeriesKey, &Series)> {
        self.series.values().map(|(k, s)| (k, s))
    }

    /// Drops every point (the window stays).
    pub fn clear(&mut self) {
        self.series = HashMap::default();
        self.points = 0;
        for (_, g) in &mut self.groupings {
            g.clear();
        }
    }

    /// Keeps an index of the series of each group for exactly these
    /// groupings (tags grouped by), building the new ones.
    pub fn index_groupings(&mut self, wanted: Vec<Vec<String>>) {
        self.groupings.retain(|(by, _)| wanted.contains(by));
        for by in wanted {
            if self.groupings.iter().any(|(b, _)| *b == by) {
                continue;
            }
            let mut g = Grouping::default();
            for (id, (key, _)) in &self.series {
                g.entry(group_hash(&by, key)).or_default().push(*id);
            }
            self.groupings.push((by, g));
        }
    }

    /// The index of grouping `by`, or `None` when no `on_write` rule
    /// groups so.
    pub fn grouping(&self, by: &[String]) -> Option<&Grouping> {
        self.groupings
            .iter()
            .find(|(b, _)| b.as_slice() == by)
            .map(|(_, g)| g)
    }

    /// A series by its key's identity.
    pub fn series_of(&self, id: &KeyId) -> Option<(&SeriesKey, &Series)> {
        self.series.get(id).map(|(k, s)| (k, s))
    }

    /// Takes series dropped from `series` out of the groupings.
    fn unindex(&mut self, gone: &[(KeyId, SeriesKey)]) {
        for (by, g) in &mut self.groupings {
            for (id, key) in gone {
                let h = group_hash(by, key);
                if let Some(ids) = g.get_mut(&h) {
                    ids.retain(|i| i != id);
                    if ids.is_empty() {
                        g.remove(&h);
                    }
                }
            }
        }
    }

    /// Approximate bytes held (the keys are counted by [`Keys`]).
    pub fn bytes(&self) -> usize {
        self.points * POINT_BYTES + self.series.len() * SERIES_BYTES
    }

    /// Adds the rows of `batch` (a table write: tag columns as dictionaries,
    /// fields, `time`), keyed by `keys` (one per row, from [`Keys::of_batch`]),
    /// written by WAL record `seq`: each row a point of `field`'s value (NaN
    /// when unset), or of 0 when `field` is `None` (rows only).
    pub fn add(&mut self, batch: &RecordBatch, keys: &[SeriesKey], field: Option<&str>, seq: u64) {
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
        for (row, key) in keys.iter().enumerate().take(batch.num_rows()) {
            if times.is_null(row) {
                continue;
            }
            let value = match &values {
                Some(v) => v[row].unwrap_or(f64::NAN),
                None if record_nulls => f64::NAN,
                None => 0.0,
            };
            let id = KeyId::of(key);
            let (_, s) = self.series.entry(id).or_insert_with(|| {
                for (by, g) in &mut self.groupings {
                    g.entry(group_hash(by, key)).or_default().push(id);
                }
                (key.clone(), Series::default())
            });
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
        self.drop_points(|key, s| {
            let matches = tags.iter().all(|(k, v)| {
                key.iter()
                    .any(|(kk, vv)| kk.as_ref() == k.as_str() && vv.as_ref() == v.as_str())
            });
            if matches {
                s.points
                    .retain(|p| p.time < min_time || p.time > max_time || p.seq >= before_seq);
            }
        });
    }

    /// Drops points at or before `now − keep_ns` (and, when the table's
    /// retention is shorter, at or before `now − retention`), and series
    /// left empty.
    pub fn evict(&mut self, now: i64, retention_ns: Option<i64>) {
        let keep = retention_ns.map_or(self.keep_ns, |r| r.min(self.keep_ns));
        let cutoff = now.saturating_sub(keep);
        self.drop_points(|_, s| {
            let n = s.points.partition_point(|p| p.time <= cutoff);
            s.points.drain(..n);
        });
    }

    /// Lets `drop` take points out of each series, then drops the series
    /// left empty (from the groupings too) and keeps the count of points.
    fn drop_points(&mut self, mut drop: impl FnMut(&SeriesKey, &mut Series)) {
        let mut removed = 0;
        let mut gone = Vec::new();
        let indexed = !self.groupings.is_empty();
        self.series.retain(|id, (key, s)| {
            let before = s.points.len();
            drop(key, s);
            removed += before - s.points.len();
            let keep = !s.points.is_empty();
            if !keep && indexed {
                gone.push((*id, key.clone()));
            }
            keep
        });
        self.points -= removed;
        self.unindex(&gone);
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

    /// A hash of each dictionary value, by id.
    fn value_hashes(&self) -> Vec<u64> {
        match self {
            Tags::Dict(_, v) => (0..v.len())
                .map(|i| {
                    if v.is_valid(i) {
                        hash_str(v.value(i))
                    } else {
                        0
                    }
                })
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringDictionaryBuilder;
    use arrow::datatypes::{Field, Schema, TimeUnit};

    fn batch(rows: &[(&str, &str, i64)]) -> RecordBatch {
        let mut host = StringDictionaryBuilder::<Int32Type>::new();
        let mut rack = StringDictionaryBuilder::<Int32Type>::new();
        for (h, r, _) in rows {
            host.append_value(h);
            rack.append_value(r);
        }
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("host", dict.clone(), true),
                Field::new("rack", dict, true),
                Field::new("v", DataType::Float64, true),
                Field::new(
                    TIME_COLUMN,
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    false,
                ),
            ])),
            vec![
                Arc::new(host.finish()),
                Arc::new(rack.finish()),
                Arc::new(Float64Array::from(vec![1.0; rows.len()])),
                Arc::new(TimestampNanosecondArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// Every series is listed once under each grouping, under its group's
    /// hash, and nothing else is.
    fn assert_indexed(state: &FieldState) {
        for (by, g) in &state.groupings {
            let listed: usize = g.values().map(Vec::len).sum();
            assert_eq!(listed, state.series.len(), "grouping {by:?}");
            for (id, (key, _)) in &state.series {
                let ids = g.get(&group_hash(by, key)).expect("the series' group");
                assert_eq!(ids.iter().filter(|i| *i == id).count(), 1);
            }
        }
    }

    #[test]
    fn the_groups_index_follows_series_in_and_out() {
        let mut keys = Keys::default();
        let mut state = FieldState {
            keep_ns: 100,
            ..Default::default()
        };
        let b = batch(&[("h1", "r1", 10), ("h2", "r1", 10), ("h3", "r2", 50)]);
        let ks = keys.of_batch(&b);
        state.add(&b, &ks, Some("v"), 1);
        // Built from the series already there.
        state.index_groupings(vec![vec!["rack".into()], vec!["host".into()]]);
        assert_indexed(&state);
        let racks = state.grouping(&["rack".to_string()]).unwrap();
        assert_eq!(racks.len(), 2);

        // New series are listed as they arrive.
        let b = batch(&[("h4", "r2", 60), ("h1", "r1", 70)]);
        let ks = keys.of_batch(&b);
        state.add(&b, &ks, Some("v"), 2);
        assert_indexed(&state);

        // Evicted and deleted series leave.
        state.evict(120, None);
        assert_eq!(state.series.len(), 3, "h2 had only its point at 10");
        assert_indexed(&state);
        state.delete(0, 100, &[("rack".into(), "r2".into())], 3);
        assert_eq!(state.series.len(), 1);
        assert_indexed(&state);

        // A grouping no rule reads any more is dropped.
        state.index_groupings(vec![vec!["host".into()]]);
        assert!(state.grouping(&["rack".to_string()]).is_none());
        state.clear();
        assert_indexed(&state);
        assert!(state.grouping(&["host".to_string()]).unwrap().is_empty());
    }
}
