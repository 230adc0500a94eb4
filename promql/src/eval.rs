//! Evaluation of a parsed expression over the steps of a query, on raw
//! samples fetched beforehand (see [`crate::plan`]).
//!
//! Every intermediate instant vector is held per series across all steps
//! ([`StepSeries`]); operators that compare series within one step (topk,
//! vector matching) work step by step inside that layout. The semantics
//! are Prometheus' (3.x windows: a range `[d]` at time `t` holds the
//! samples in `(t - d, t]`, the lookback of an instant selector likewise).

mod aggregate;
mod binary;
mod functions;
mod range;

use std::collections::{BTreeMap, HashMap};

use promql_parser::parser::{Expr, SubqueryExpr};

use crate::error::{Error, Result};
use crate::plan::{self, DEFAULT_SUBQUERY_STEP_MS, QueryTimes, at_ms, offset_ms};
use crate::value::{Labels, RawSeries, StepSeries, Value};

/// The most steps one subquery evaluates (ten times a query's point limit).
const MAX_SUBQUERY_STEPS: i128 = 11_000 * 10;

/// Evaluates expressions at the times `steps`.
pub struct Evaluator<'a> {
    pub(crate) data: &'a HashMap<usize, Vec<RawSeries>>,
    pub(crate) steps: Vec<i64>,
    pub(crate) q: QueryTimes,
}

impl<'a> Evaluator<'a> {
    pub fn new(data: &'a HashMap<usize, Vec<RawSeries>>, steps: Vec<i64>, q: QueryTimes) -> Self {
        Self { data, steps, q }
    }

    pub(crate) fn n(&self) -> usize {
        self.steps.len()
    }

    pub fn eval(&self, e: &Expr) -> Result<Value> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.n()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
                Value::Vector(vs) => Ok(Value::Vector(merge_series(
                    vs.into_iter()
                        .map(|s| StepSeries {
                            labels: s.labels.without_name(),
                            v: s.v.into_iter().map(|x| x.map(|x| -x)).collect(),
                        })
                        .collect(),
                )?)),
                other => Err(Error::BadData(format!(
                    "unary minus is not defined on a {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => {
                let series = self.selected(plan::key(vs));
                let at = at_ms(&vs.at, &self.q);
                let off = offset_ms(&vs.offset);
                let lookback = self.q.lookback;
                let out = series
                    .iter()
                    .filter_map(|s| {
                        let v: Vec<Option<f64>> = self
                            .steps
                            .iter()
                            .map(|&t| {
                                let te = at.unwrap_or(t) - off;
                                s.lookback_index(te, lookback).map(|i| s.v[i])
                            })
                            .collect();
                        v.iter().any(Option::is_some).then(|| StepSeries {
                            labels: s.labels.clone(),
                            v,
                        })
                    })
                    .collect();
                Ok(Value::Vector(out))
            }
            Expr::MatrixSelector(ms) => Err(Error::BadData(format!(
                "range vector {ms} must be the argument of a function (or the whole expression of an instant query)"
            ))),
            Expr::Subquery(sq) => Err(Error::Unsupported(format!(
                "the subquery {sq} outside of a function argument"
            ))),
            Expr::Call(c) => self.call(c),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Extension(x) => Err(Error::Unsupported(format!(
                "the extension expression {}",
                x.expr.name()
            ))),
        }
    }

    pub(crate) fn selected(&self, key: usize) -> &'a [RawSeries] {
        self.data.get(&key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Evaluates `e`, which must be a scalar (e.g. a function's parameter).
    pub(crate) fn scalar_arg(&self, e: &Expr, what: &str) -> Result<Vec<f64>> {
        match self.eval(e)? {
            Value::Scalar(v) => Ok(v),
            other => Err(Error::BadData(format!(
                "expected a scalar as {what}, got a {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn vector_arg(&self, e: &Expr, what: &str) -> Result<Vec<StepSeries>> {
        match self.eval(e)? {
            Value::Vector(v) => Ok(v),
            other => Err(Error::BadData(format!(
                "expected an instant vector as {what}, got a {}",
                other.type_name()
            ))),
        }
    }

    /// The samples a subquery produces: its expression evaluated at the
    /// aligned sub-steps covering every window of this evaluation.
    pub(crate) fn subquery_series(&self, sq: &SubqueryExpr) -> Result<Vec<RawSeries>> {
        let step = sq
            .step
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(DEFAULT_SUBQUERY_STEP_MS)
            .max(1);
        let off = offset_ms(&sq.offset);
        let at = at_ms(&sq.at, &self.q);
        let (first, last) = match at {
            Some(t) => (t - off, t - off),
            None => (
                self.steps.first().copied().unwrap_or(0) - off,
                self.steps.last().copied().unwrap_or(0) - off,
            ),
        };
        let range_ms = i64::try_from(sq.range.as_millis()).unwrap_or(i64::MAX);
        let start = plan::subquery_start(first.saturating_sub(range_ms), step);
        // Counted before any step is built: `[1y:1ms]` is 3e10 steps.
        let count = (i128::from(last) - i128::from(start)) / i128::from(step.max(1)) + 1;
        if count > MAX_SUBQUERY_STEPS {
            return Err(Error::BadData(format!(
                "subquery {sq} would evaluate {count} steps, more than {MAX_SUBQUERY_STEPS}; use a larger subquery step"
            )));
        }
        let steps: Vec<i64> = (0..count.max(0) as i64).map(|i| start + i * step).collect();
        let sub = Evaluator::new(self.data, steps, self.q);
        let v = sub.vector_arg(&sq.expr, "the expression of a subquery")?;
        Ok(v.into_iter()
            .map(|s| {
                let (t, v): (Vec<i64>, Vec<f64>) = sub
                    .steps
                    .iter()
                    .zip(&s.v)
                    .filter_map(|(t, v)| v.map(|v| (*t, v)))
                    .unzip();
                RawSeries {
                    labels: s.labels,
                    t,
                    v,
                }
            })
            .collect())
    }
}

/// Combines series that ended up with the same labels (after dropping
/// `__name__`, relabelling, ...). Prometheus fails when two of them have a
/// point at the same time.
pub(crate) fn merge_series(series: Vec<StepSeries>) -> Result<Vec<StepSeries>> {
    let mut by: BTreeMap<Labels, StepSeries> = BTreeMap::new();
    for s in series {
        match by.get_mut(&s.labels) {
            None => {
                by.insert(s.labels.clone(), s);
            }
            Some(existing) => {
                for (a, b) in existing.v.iter_mut().zip(s.v) {
                    if b.is_some() {
                        if a.is_some() {
                            return Err(Error::Execution(format!(
                                "vector cannot contain metrics with the same labelset {}",
                                s.labels
                            )));
                        }
                        *a = b;
                    }
                }
            }
        }
    }
    Ok(by.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{QueryTimes, plan};

    /// A test series: label pairs, and values sampled every 10 s from t=10 s.
    type TestSeries<'a> = (&'a [(&'a str, &'a str)], Vec<f64>);

    /// Evaluates `q` over in-memory series at steps `start..=end` (seconds).
    fn eval(q: &str, data: &[TestSeries<'_>], start: i64, end: i64, step: i64) -> Value {
        let expr = Box::new(promql_parser::parser::parse(q).unwrap());
        let qt = QueryTimes {
            start: start * 1000,
            end: end * 1000,
            step: step * 1000,
            lookback: 300_000,
        };
        let mut fetches = HashMap::new();
        plan(&expr, qt.start, qt.end, &qt, &mut fetches).unwrap();
        let series: Vec<RawSeries> = data
            .iter()
            .map(|(l, v)| RawSeries {
                labels: Labels::new(
                    l.iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                ),
                t: (1..=v.len() as i64).map(|i| i * 10_000).collect(),
                v: v.clone(),
            })
            .collect();
        let mut fetched = HashMap::new();
        for (k, f) in fetches {
            let picked = series
                .iter()
                .filter(|s| f.matchers.iter().all(|m| m.is_match(s.labels.get(&m.name))))
                .cloned()
                .collect();
            fetched.insert(k, picked);
        }
        let steps = (0..)
            .map(|i| qt.start + i * qt.step)
            .take_while(|&t| t <= qt.end)
            .collect();
        Evaluator::new(&fetched, steps, qt).eval(&expr).unwrap()
    }

    fn vector(v: Value) -> Vec<(String, Vec<Option<f64>>)> {
        match v {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
            other => panic!("{other:?}"),
        }
    }

    const A: &[(&str, &str)] = &[("__name__", "m"), ("host", "a"), ("dc", "x")];
    const B: &[(&str, &str)] = &[("__name__", "m"), ("host", "b"), ("dc", "x")];
    const CA: &[(&str, &str)] = &[("__name__", "cap"), ("host", "a")];

    #[test]
    fn lookback_and_staleness() {
        let data = [(A, vec![1.0, 2.0, 3.0])];
        // Samples at 10, 20, 30 s; the last is visible until 330 s (exclusive).
        let v = vector(eval("m", &data, 30, 330, 150));
        assert_eq!(v[0].1, vec![Some(3.0), Some(3.0), None]);
        let v = vector(eval("m offset 20s", &data, 40, 40, 1));
        assert_eq!(v[0].1, vec![Some(2.0)]);
    }

    #[test]
    fn aggregation_topk_and_matching() {
        let data = [
            (A, vec![1.0, 5.0]),
            (B, vec![3.0, 2.0]),
            (CA, vec![10.0, 10.0]),
        ];
        let v = vector(eval("sum by (dc) (m)", &data, 10, 20, 10));
        assert_eq!(
            v,
            vec![(r#"{dc="x"}"#.to_string(), vec![Some(4.0), Some(7.0)])]
        );
        // topk picks per step.
        let v = vector(eval("topk(1, m)", &data, 10, 20, 10));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1, vec![None, Some(5.0)]);
        assert_eq!(v[1].1, vec![Some(3.0), None]);
        // Many-to-one with group_left copies the named label.
        let v = vector(eval("m / on(host) group_left cap", &data, 20, 20, 1));
        assert_eq!(
            v,
            vec![(r#"{dc="x", host="a"}"#.to_string(), vec![Some(0.5)])]
        );
        // Comparisons filter and keep the name; bool does not.
        let v = vector(eval("m > 2", &data, 20, 20, 1));
        assert_eq!(
            v,
            vec![(r#"m{dc="x", host="a"}"#.to_string(), vec![Some(5.0)])]
        );
        let v = vector(eval("m > bool 2", &data, 20, 20, 1));
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|(l, _)| !l.starts_with('m')));
        let v = vector(eval("m unless on(host) cap", &data, 20, 20, 1));
        assert_eq!(v.len(), 1);
        assert!(v[0].0.contains("\"b\""));
    }

    #[test]
    fn subqueries_and_absent() {
        let data = [(A, (1..=60).map(f64::from).collect())];
        // max over the last minute of a 10 s subquery of m * 2.
        let v = vector(eval("max_over_time((m * 2)[1m:10s])", &data, 300, 300, 1));
        assert_eq!(v[0].1, vec![Some(60.0)]);
        let v = vector(eval(r#"absent(nope{job="j"})"#, &data, 300, 300, 1));
        assert_eq!(v, vec![(r#"{job="j"}"#.to_string(), vec![Some(1.0)])]);
    }
}
