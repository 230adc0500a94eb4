//! A streaming rule's answer at an evaluation instant, from the state: the
//! same rows its SQL would return, as a batch of the SQL's output schema.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use fleetlake_query::functions::Kind;
use fleetlake_query::functions::{detector, score};

use smallvec::SmallVec;

use super::shape::{Agg, Shape};
use super::state::{FieldState, Point, Series, SeriesKey};
use crate::error::{Error, Result};

/// One group's values so far, over a state read for the pass (`'a`).
struct Group<'a> {
    /// The window of each of the group's series, for aggregates that need
    /// every value ([`needs_points`]): read where they lie rather than
    /// copied, as most groups hold one series, in time order already.
    windows: SmallVec<[&'a [Point]; 1]>,
    /// Non-null values, their sum, least and greatest.
    n: usize,
    sum: f64,
    min: f64,
    max: f64,
    /// Rows (null values included).
    rows: usize,
    /// The latest row: its time and value (NaN for null).
    last: Option<(i64, f64)>,
}

impl Default for Group<'_> {
    fn default() -> Self {
        Self {
            windows: SmallVec::new(),
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            rows: 0,
            last: None,
        }
    }
}

impl Group<'_> {
    fn add(&mut self, p: &Point) {
        self.rows += 1;
        if !p.value.is_nan() {
            self.n += 1;
            self.sum += p.value;
            self.min = self.min.min(p.value);
            self.max = self.max.max(p.value);
        }
        if self.last.is_none_or(|(t, _)| p.time >= t) {
            self.last = Some((p.time, p.value));
        }
    }

    /// The group's non-null values that pass the shape's field filters,
    /// with their times, sorted by time (a stable sort keeps series order
    /// for ties), into `out`.
    fn points(&self, shape: &Shape, out: &mut Vec<(i64, f64)>) {
        out.clear();
        for w in &self.windows {
            out.extend(
                w.iter()
                    .filter(|p| !p.value.is_nan() && passes(shape, p))
                    .map(|p| (p.time, p.value)),
            );
        }
        // One series' window is in time order already.
        if self.windows.len() > 1 {
            out.sort_by_key(|p| p.0);
        }
    }
}

/// Whether `agg` needs every value rather than running totals.
fn needs_points(agg: Agg) -> bool {
    match agg {
        Agg::Stddev => true,
        Agg::Series(kind, _) => kind != Kind::Staleness,
        _ => false,
    }
}

/// Group tag values (in `group_by` order, `None` for an unset tag) and the
/// aggregate's value, before `HAVING`.
pub type Groups = Vec<(GroupValues, Option<f64>)>;

/// A group's `group_by` tag values, in order (`None` for an unset tag).
pub type GroupValues = Vec<Option<Arc<str>>>;

/// A series' value of tag `name` (keys are sorted by tag name).
fn tag<'a>(key: &'a SeriesKey, name: &str) -> Option<&'a Arc<str>> {
    key.binary_search_by(|(k, _)| k.as_ref().cmp(name))
        .ok()
        .map(|i| &key[i].1)
}

/// The hash of a series' group (its `group_by` tag values), made without
/// allocating: a pass hashes every series.
pub(super) fn group_hash(group_by: &[String], key: &SeriesKey) -> u64 {
    values_hash(group_by.iter().map(|t| tag(key, t).map(|v| v.as_ref())))
}

/// The hash of some tag values in order (`None` for an unset tag).
fn values_hash<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> u64 {
    let mut h = FIXED.build_hasher();
    for v in values {
        match v {
            Some(v) => {
                h.write_u8(1);
                h.write(v.as_bytes());
                h.write_u8(0xff);
            }
            None => h.write_u8(0),
        }
    }
    h.finish()
}

/// A pass hashes every series' group: a fast, fixed-seed hash (groups
/// with equal hashes are told apart by their values).
static FIXED: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5eed);

/// Whether the series `key` is one the shape's tag predicates keep.
fn passes_tag_filters(shape: &Shape, key: &SeriesKey) -> bool {
    shape
        .tag_filters
        .iter()
        .all(|f| f.holds(tag(key, f.tag()).map(|v| v.as_ref())))
}

/// Whether `key`'s group is `values`.
fn in_group(group_by: &[String], values: &[Option<Arc<str>>], key: &SeriesKey) -> bool {
    group_by
        .iter()
        .zip(values)
        .all(|(t, v)| v.as_deref() == tag(key, t).map(|s| s.as_ref()))
}

fn group_values(group_by: &[String], key: &SeriesKey) -> GroupValues {
    group_by.iter().map(|t| tag(key, t).cloned()).collect()
}

/// A map keyed by a hash made already ([`group_hash`]).
type ByHash<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The groups of some series (those a write touched): an `on_write`
/// evaluation recomputes only these.
#[derive(Default)]
pub struct GroupSet {
    by_hash: ByHash<Vec<GroupValues>>,
}

impl GroupSet {
    /// The groups of `shape` that `touched` series fall in (series its tag
    /// filters leave out are left out).
    pub fn of<'a>(shape: &Shape, touched: impl IntoIterator<Item = &'a SeriesKey>) -> Self {
        let mut set = Self::default();
        for key in touched {
            if !passes_tag_filters(shape, key) {
                continue;
            }
            let values = set
                .by_hash
                .entry(group_hash(&shape.group_by, key))
                .or_default();
            if !values.iter().any(|v| in_group(&shape.group_by, v, key)) {
                values.push(group_values(&shape.group_by, key));
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn contains(&self, group_by: &[String], hash: u64, key: &SeriesKey) -> bool {
        self.by_hash
            .get(&hash)
            .is_some_and(|vs| vs.iter().any(|v| in_group(group_by, v, key)))
    }
}

/// The groups an `on_write` evaluation recomputed, as the labels their
/// rows give an alert instance: the instances the evaluation speaks for.
/// Asking an instance costs one hash of its labels, where keying every
/// group's row would cost a row's labels and evidence per group.
pub struct Covered {
    /// The label of each group tag's output column and the tag's place in
    /// `group_by`.
    labels: Vec<(String, usize)>,
    /// Each group's values of those tags, by their [`values_hash`].
    groups: ByHash<Vec<GroupValues>>,
}

impl Covered {
    /// The groups of `shape` in `groups`, for a rule whose answer has
    /// `schema` and whose own labels are `fixed` (they override a column's
    /// label, so say nothing of a group).
    pub fn of(
        shape: &Shape,
        schema: &SchemaRef,
        groups: &Groups,
        fixed: &BTreeMap<String, String>,
    ) -> Self {
        // A label is named by the answer's column, which an unaliased
        // output's name (`probe.hostname`) need not be.
        let labels: Vec<(String, usize)> = shape
            .outputs
            .iter()
            .zip(schema.fields())
            .filter_map(|((what, _), field)| {
                let tag = what.as_ref().ok()?;
                let name = field.name();
                if name == crate::eval::VALUE || fixed.contains_key(name) {
                    return None;
                }
                let at = shape.group_by.iter().position(|t| t == tag)?;
                Some((name.to_string(), at))
            })
            .collect();
        let mut by_hash: ByHash<Vec<GroupValues>> = ByHash::default();
        for (values, _) in groups {
            let projected: GroupValues = labels.iter().map(|(_, at)| values[*at].clone()).collect();
            let hash = values_hash(projected.iter().map(|v| v.as_deref()));
            let same = by_hash.entry(hash).or_default();
            if !same.contains(&projected) {
                same.push(projected);
            }
        }
        Self {
            labels,
            groups: by_hash,
        }
    }
}

impl crate::state::Scope for Covered {
    /// Whether the instance labelled `labels` is one of these groups' (a
    /// null tag leaves its label out).
    fn covers(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = |name: &str| labels.get(name).map(String::as_str);
        let hash = values_hash(self.labels.iter().map(|(name, _)| value(name)));
        self.groups.get(&hash).is_some_and(|same| {
            same.iter().any(|values| {
                values
                    .iter()
                    .zip(&self.labels)
                    .all(|(v, (name, _))| v.as_deref() == value(name))
            })
        })
    }
}

/// The groups of one pass, found by hash; a group's values are allocated
/// once, when the group is first met.
#[derive(Default)]
struct Table<'a> {
    first: ByHash<u32>,
    /// Group values, the group, and the next group with the same hash.
    groups: Vec<(GroupValues, Group<'a>, Option<u32>)>,
}

impl<'a> Table<'a> {
    fn entry(&mut self, group_by: &[String], hash: u64, key: &SeriesKey) -> &mut Group<'a> {
        let mut at = self.first.get(&hash).copied();
        while let Some(i) = at {
            let (values, _, next) = &self.groups[i as usize];
            if in_group(group_by, values, key) {
                return &mut self.groups[i as usize].1;
            }
            at = *next;
        }
        let i = u32::try_from(self.groups.len()).expect("fewer than 2^32 groups");
        let next = self.first.insert(hash, i);
        self.groups
            .push((group_values(group_by, key), Group::default(), next));
        &mut self.groups[i as usize].1
    }
}

/// Evaluates `shape` over `state` at `now` (ns) into a batch of `schema`
/// (the rule SQL's output schema).
///
/// # Errors
/// [`Error::Internal`] when a column cannot be cast to the schema's type.
pub fn evaluate(
    shape: &Shape,
    state: &FieldState,
    now: i64,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    answer(shape, &groups(shape, state, now, None, None), schema)
}

/// The groups of `shape` over `state` at `now`: what rules differing only
/// in `HAVING` and output names share. Points before `expired_before`
/// (retention) do not count; with `only`, groups outside it are left out.
pub fn groups<'a>(
    shape: &Shape,
    state: &'a FieldState,
    now: i64,
    expired_before: Option<i64>,
    only: Option<&GroupSet>,
) -> Groups {
    let (mut from, mut inclusive) = (now.saturating_sub(shape.window_ns), shape.window_inclusive);
    if let Some(e) = expired_before
        && (e > from || (e == from && !inclusive))
    {
        (from, inclusive) = (e, true);
    }
    let to = shape.upper.map(|inclusive| (now, inclusive));
    let keep_points = needs_points(shape.agg);
    let mut table = Table::default();
    let mut visit = |key: &SeriesKey, series: &'a Series, hash: u64| {
        let points = series.window(from, inclusive, to);
        let mut passing = points.iter().filter(|p| passes(shape, p)).peekable();
        if passing.peek().is_none() {
            return;
        }
        let g = table.entry(&shape.group_by, hash, key);
        if keep_points {
            g.windows.push(points);
        }
        for p in passing {
            g.add(p);
        }
    };
    match (only, state.grouping(&shape.group_by)) {
        // The groups a write touched, through the index of their series.
        (Some(set), Some(index)) => {
            for (hash, ids) in set.by_hash.keys().filter_map(|h| Some((*h, index.get(h)?))) {
                for id in ids {
                    if let Some((key, series)) = state.series_of(id)
                        && passes_tag_filters(shape, key)
                        && set.contains(&shape.group_by, hash, key)
                    {
                        visit(key, series, hash);
                    }
                }
            }
        }
        _ => {
            for (key, series) in state.series() {
                if !passes_tag_filters(shape, key) {
                    continue;
                }
                let hash = group_hash(&shape.group_by, key);
                if only.is_some_and(|set| !set.contains(&shape.group_by, hash, key)) {
                    continue;
                }
                visit(key, series, hash);
            }
        }
    }
    let mut scratch = Vec::new();
    table
        .groups
        .into_iter()
        .map(|(k, g, _)| {
            let v = value(shape, &g, now, &mut scratch);
            (k, v)
        })
        .collect()
}

/// The rule's answer from its groups: `HAVING` applied, columns in the
/// SQL's order and types.
///
/// # Errors
/// [`Error::Internal`] when a column cannot be cast to the schema's type.
pub fn answer(shape: &Shape, groups: &Groups, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for (k, v) in groups {
        if let Some((cmp, c)) = shape.having
            && !v.is_some_and(|v| cmp.holds(v, c))
        {
            continue;
        }
        keys.push(k);
        values.push(*v);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(shape.outputs.len());
    for (i, (what, _)) in shape.outputs.iter().enumerate() {
        let array: ArrayRef = match what {
            Ok(tag) => {
                let pos = shape
                    .group_by
                    .iter()
                    .position(|t| t == tag)
                    .expect("a group tag");
                Arc::new(StringArray::from_iter(
                    keys.iter().map(|k| k[pos].as_deref()),
                ))
            }
            Err(()) => Arc::new(Float64Array::from(values.clone())),
        };
        let target = schema.field(i).data_type();
        columns.push(cast(&array, target).map_err(|e| Error::Internal(e.to_string()))?);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Internal(e.to_string()))
}

fn passes(shape: &Shape, p: &Point) -> bool {
    shape
        .field_filters
        .iter()
        .all(|(cmp, c)| !p.value.is_nan() && cmp.holds(p.value, *c))
}

/// The aggregate's value over group `g`; `scratch` holds its points for
/// aggregates that need every value.
fn value(shape: &Shape, g: &Group, now: i64, scratch: &mut Vec<(i64, f64)>) -> Option<f64> {
    let n = g.n;
    match shape.agg {
        Agg::Avg => (n > 0).then(|| g.sum / n as f64),
        Agg::Sum => (n > 0).then_some(g.sum),
        Agg::Min => (n > 0).then_some(g.min),
        Agg::Max => (n > 0).then_some(g.max),
        Agg::Count => Some(n as f64),
        Agg::CountRows => Some(g.rows as f64),
        Agg::Stddev => (n > 1).then(|| {
            g.points(shape, scratch);
            let mean = g.sum / n as f64;
            let squares: f64 = scratch.iter().map(|p| (p.1 - mean).powi(2)).sum();
            (squares / (n - 1) as f64).sqrt()
        }),
        Agg::Last => g.last.and_then(|(_, v)| (!v.is_nan()).then_some(v)),
        Agg::Series(Kind::Staleness, _) => g.last.map(|(t, _)| (now - t) as f64 / 1e9),
        Agg::Series(kind, param) => {
            g.points(shape, scratch);
            let p = &scratch[..];
            match kind {
                Kind::ZScore => score::zscore(p),
                Kind::RobustZScore => score::robust_zscore(p),
                Kind::EwmaDeviation => score::ewma_deviation(p, param.unwrap_or(0.3)),
                Kind::Increase => score::increase(p),
                Kind::Rate => score::rate(p),
                Kind::Staleness | Kind::SeasonalDelta => None,
                Kind::AnomalyScore => match param {
                    Some(span_ns) => detector::span_score(p, span_ns as i64),
                    None => detector::anomaly_score(p),
                },
            }
        }
    }
}
