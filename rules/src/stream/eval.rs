//! A streaming rule's answer at an evaluation instant, from the state: the
//! same rows its SQL would return, as a batch of the SQL's output schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use fleetlake_query::functions::Kind;
use fleetlake_query::functions::score;

use super::shape::{Agg, Shape};
use super::state::{FieldState, Point};
use crate::error::{Error, Result};

/// One group's values so far.
#[derive(Default)]
struct Group {
    /// Non-null values with their times, in series order then time.
    points: Vec<(i64, f64)>,
    /// Rows (null values included).
    rows: usize,
    /// The latest row: its time and value (NaN for null).
    last: Option<(i64, f64)>,
}

/// Group tag values (in `group_by` order, `None` for an unset tag) and the
/// aggregate's value, before `HAVING`.
pub type Groups = Vec<(Vec<Option<Arc<str>>>, Option<f64>)>;

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
    answer(shape, &groups(shape, state, now, None), schema)
}

/// The groups of `shape` over `state` at `now`: what rules differing only
/// in `HAVING` and output names share. Points before `expired_before`
/// (retention) do not count.
pub fn groups(shape: &Shape, state: &FieldState, now: i64, expired_before: Option<i64>) -> Groups {
    let (mut from, mut inclusive) = (now.saturating_sub(shape.window_ns), shape.window_inclusive);
    if let Some(e) = expired_before
        && (e > from || (e == from && !inclusive))
    {
        (from, inclusive) = (e, true);
    }
    let to = shape.upper.map(|inclusive| (now, inclusive));
    let mut groups: HashMap<Vec<Option<Arc<str>>>, Group> = HashMap::new();
    for (key, series) in state.series() {
        let tag = |name: &str| {
            key.iter()
                .find(|(k, _)| k.as_ref() == name)
                .map(|(_, v)| v.clone())
        };
        if !shape
            .tag_filters
            .iter()
            .all(|f| f.holds(tag(f.tag()).as_deref()))
        {
            continue;
        }
        let points = series.window(from, inclusive, to);
        let mut passing = points.iter().filter(|p| passes(shape, p)).peekable();
        if passing.peek().is_none() {
            continue;
        }
        let gk: Vec<Option<Arc<str>>> = shape.group_by.iter().map(|t| tag(t)).collect();
        let g = groups.entry(gk).or_default();
        for p in passing {
            g.rows += 1;
            if !p.value.is_nan() {
                g.points.push((p.time, p.value));
            }
            if g.last.is_none_or(|(t, _)| p.time >= t) {
                g.last = Some((p.time, p.value));
            }
        }
    }
    groups
        .into_iter()
        .map(|(k, mut g)| {
            let v = value(shape.agg, &mut g, now);
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

fn value(agg: Agg, g: &mut Group, now: i64) -> Option<f64> {
    let vals = || g.points.iter().map(|p| p.1);
    let n = g.points.len();
    match agg {
        Agg::Avg => (n > 0).then(|| vals().sum::<f64>() / n as f64),
        Agg::Sum => (n > 0).then(|| vals().sum()),
        Agg::Min => vals().reduce(f64::min),
        Agg::Max => vals().reduce(f64::max),
        Agg::Count => Some(n as f64),
        Agg::CountRows => Some(g.rows as f64),
        Agg::Stddev => (n > 1).then(|| {
            let mean = vals().sum::<f64>() / n as f64;
            (vals().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        }),
        Agg::Last => g.last.and_then(|(_, v)| (!v.is_nan()).then_some(v)),
        Agg::Series(kind, param) => {
            // Sorted by time; a stable sort keeps series order for ties.
            g.points.sort_by_key(|p| p.0);
            let p = &g.points;
            match kind {
                Kind::ZScore => score::zscore(p),
                Kind::RobustZScore => score::robust_zscore(p),
                Kind::EwmaDeviation => score::ewma_deviation(p, param.unwrap_or(0.3)),
                Kind::Increase => score::increase(p),
                Kind::Rate => score::rate(p),
                Kind::Staleness => g.last.map(|(t, _)| (now - t) as f64 / 1e9),
                Kind::SeasonalDelta => None,
            }
        }
    }
}
