//! Functions over range vectors: `rate`, `increase`, `delta`, `irate`,
//! `idelta`, `deriv`, `predict_linear`, `changes`, `resets` and the
//! `*_over_time` family, with Prometheus' exact arithmetic (extrapolation,
//! counter resets, Kahan sums where Prometheus uses them).

use std::borrow::Cow;

use promql_parser::parser::{Call, Expr};

use super::{Evaluator, merge_series};
use crate::error::{Error, Result};
use crate::plan::{self, at_ms, offset_ms};
use crate::value::{RawSeries, StepSeries, Value, is_stale};

/// A range-vector argument: its series and how windows are placed.
pub(crate) struct RangeArg<'a> {
    pub series: Cow<'a, [RawSeries]>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    /// The equality matchers of a plain selector (for `absent_over_time`).
    pub selector: Option<&'a promql_parser::parser::VectorSelector>,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn range_arg(&self, e: &'a Expr) -> Result<RangeArg<'a>> {
        match e {
            Expr::MatrixSelector(ms) => Ok(RangeArg {
                series: Cow::Borrowed(self.selected(plan::key(&ms.vs))),
                range: ms.range.as_millis() as i64,
                offset: offset_ms(&ms.vs.offset),
                at: at_ms(&ms.vs.at, &self.q),
                selector: Some(&ms.vs),
            }),
            Expr::Subquery(sq) => Ok(RangeArg {
                series: Cow::Owned(self.subquery_series(sq)?),
                range: sq.range.as_millis() as i64,
                offset: offset_ms(&sq.offset),
                at: at_ms(&sq.at, &self.q),
                selector: None,
            }),
            Expr::Paren(p) => self.range_arg(&p.expr),
            other => Err(Error::BadData(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }

    /// Applies `f(times, values, window_start, window_end, step_index)` to
    /// every series' window at every step.
    fn over_windows(
        &self,
        arg: &RangeArg<'_>,
        drop_name: bool,
        f: impl Fn(&[i64], &[f64], i64, i64, usize) -> Option<f64>,
    ) -> Result<Vec<StepSeries>> {
        let mut out = Vec::with_capacity(arg.series.len());
        let mut ts_buf = Vec::new();
        let mut vs_buf = Vec::new();
        for s in arg.series.iter() {
            let mut v = Vec::with_capacity(self.n());
            for (i, &t) in self.steps.iter().enumerate() {
                let end = arg.at.unwrap_or(t) - arg.offset;
                let start = end - arg.range;
                let a = s.t.partition_point(|&x| x <= start);
                let b = s.t.partition_point(|&x| x <= end);
                let (ts, vs) = (&s.t[a..b], &s.v[a..b]);
                let r = if vs.iter().any(|x| is_stale(*x)) {
                    ts_buf.clear();
                    vs_buf.clear();
                    for (t, x) in ts.iter().zip(vs).filter(|(_, x)| !is_stale(**x)) {
                        ts_buf.push(*t);
                        vs_buf.push(*x);
                    }
                    if ts_buf.is_empty() {
                        None
                    } else {
                        f(&ts_buf, &vs_buf, start, end, i)
                    }
                } else if ts.is_empty() {
                    None
                } else {
                    f(ts, vs, start, end, i)
                };
                v.push(r);
            }
            if v.iter().any(Option::is_some) {
                let labels = if drop_name {
                    s.labels.without_name()
                } else {
                    s.labels.clone()
                };
                out.push(StepSeries { labels, v });
            }
        }
        if drop_name {
            merge_series(out)
        } else {
            Ok(out)
        }
    }

    /// Evaluates a range function; `None` when `name` is not one.
    pub(crate) fn range_call(&self, name: &str, c: &'a Call) -> Result<Option<Value>> {
        let args = &c.args.args;
        let arg = |i: usize| -> Result<&'a Expr> {
            args.get(i)
                .map(|b| b.as_ref())
                .ok_or_else(|| Error::BadData(format!("{name}() needs {} arguments", i + 1)))
        };
        let v = match name {
            "rate" | "increase" | "delta" => {
                let a = self.range_arg(arg(0)?)?;
                let counter = name != "delta";
                let is_rate = name == "rate";
                let secs = a.range as f64 / 1000.0;
                self.over_windows(&a, true, |t, v, start, end, _| {
                    extrapolated_rate(t, v, start, end, counter, is_rate.then_some(secs))
                })?
            }
            "irate" | "idelta" => {
                let a = self.range_arg(arg(0)?)?;
                let is_rate = name == "irate";
                self.over_windows(&a, true, |t, v, _, _, _| instant_value(t, v, is_rate))?
            }
            "deriv" => {
                let a = self.range_arg(arg(0)?)?;
                self.over_windows(&a, true, |t, v, _, _, _| {
                    (t.len() >= 2).then(|| linear_regression(t, v, t[0]).0)
                })?
            }
            "predict_linear" => {
                let a = self.range_arg(arg(0)?)?;
                let dur = self.scalar_arg(arg(1)?, "the duration of predict_linear")?;
                let at = a.at;
                self.over_windows(&a, true, |t, v, _, _, i| {
                    if t.len() < 2 {
                        return None;
                    }
                    let (slope, intercept) = linear_regression(t, v, at.unwrap_or(self.steps[i]));
                    Some(intercept + slope * dur[i])
                })?
            }
            "changes" | "resets" => {
                let a = self.range_arg(arg(0)?)?;
                let resets = name == "resets";
                self.over_windows(&a, true, |_, v, _, _, _| {
                    let n = v
                        .windows(2)
                        .filter(|w| {
                            if resets {
                                w[1] < w[0]
                            } else {
                                !(w[1] == w[0] || (w[1].is_nan() && w[0].is_nan()))
                            }
                        })
                        .count();
                    Some(n as f64)
                })?
            }
            "avg_over_time" => {
                let a = self.range_arg(arg(0)?)?;
                self.over_windows(&a, true, |_, v, _, _, _| Some(avg(v)))?
            }
            "sum_over_time" => {
                let a = self.range_arg(arg(0)?)?;
                self.over_windows(&a, true, |_, v, _, _, _| Some(kahan_sum(v)))?
            }
            "min_over_time" | "max_over_time" => {
                let a = self.range_arg(arg(0)?)?;
                let max = name == "max_over_time";
                self.over_windows(&a, true, |_, v, _, _, _| Some(min_max(v, max)))?
            }
            "count_over_time" | "present_over_time" => {
                let a = self.range_arg(arg(0)?)?;
                let count = name == "count_over_time";
                self.over_windows(&a, true, |_, v, _, _, _| {
                    Some(if count { v.len() as f64 } else { 1.0 })
                })?
            }
            "last_over_time" => {
                let a = self.range_arg(arg(0)?)?;
                self.over_windows(&a, false, |_, v, _, _, _| v.last().copied())?
            }
            "stddev_over_time" | "stdvar_over_time" => {
                let a = self.range_arg(arg(0)?)?;
                let sd = name == "stddev_over_time";
                self.over_windows(&a, true, |_, v, _, _, _| {
                    let var = variance(v);
                    Some(if sd { var.sqrt() } else { var })
                })?
            }
            "quantile_over_time" => {
                let q = self.scalar_arg(arg(0)?, "the quantile of quantile_over_time")?;
                let a = self.range_arg(arg(1)?)?;
                self.over_windows(&a, true, |_, v, _, _, i| Some(quantile(q[i], v.to_vec())))?
            }
            "absent_over_time" => {
                let a = self.range_arg(arg(0)?)?;
                let present = self.over_windows(&a, true, |_, _, _, _, _| Some(1.0))?;
                let labels = super::functions::absent_labels(a.selector);
                let v: Vec<Option<f64>> = (0..self.n())
                    .map(|i| (!present.iter().any(|s| s.v[i].is_some())).then_some(1.0))
                    .collect();
                let out = if v.iter().any(Option::is_some) {
                    vec![StepSeries { labels, v }]
                } else {
                    Vec::new()
                };
                return Ok(Some(Value::Vector(out)));
            }
            _ => return Ok(None),
        };
        Ok(Some(Value::Vector(v)))
    }
}

/// Prometheus' `extrapolatedRate`: the increase between the first and last
/// sample of the window (counter resets added back), extrapolated towards
/// the window's edges when the samples come close to them, never below a
/// counter's zero point. `rate_secs` divides by the range for `rate`.
pub fn extrapolated_rate(
    t: &[i64],
    v: &[f64],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    rate_secs: Option<f64>,
) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let n1 = v.len() - 1;
    let mut result = v[n1] - v[0];
    if is_counter {
        let mut prev = v[0];
        for &cur in &v[1..] {
            if cur < prev {
                result += prev;
            }
            prev = cur;
        }
    }
    let mut to_start = (t[0] - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - t[n1]) as f64 / 1000.0;
    let sampled = (t[n1] - t[0]) as f64 / 1000.0;
    let avg_between = sampled / n1 as f64;
    let threshold = avg_between * 1.1;
    let mut extrapolate_to = sampled;
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if is_counter && result > 0.0 && v[0] >= 0.0 {
        let to_zero = sampled * (v[0] / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    extrapolate_to += to_start;
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    extrapolate_to += to_end;
    let mut factor = extrapolate_to / sampled;
    if let Some(secs) = rate_secs {
        factor /= secs;
    }
    Some(result * factor)
}

/// `irate` / `idelta`: the last two samples.
fn instant_value(t: &[i64], v: &[f64], is_rate: bool) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let (last, prev) = (v[v.len() - 1], v[v.len() - 2]);
    let mut r = if is_rate && last < prev {
        last
    } else {
        last - prev
    };
    let dt = t[t.len() - 1] - t[t.len() - 2];
    if dt == 0 {
        return None;
    }
    if is_rate {
        r /= dt as f64 / 1000.0;
    }
    Some(r)
}

/// Kahan-compensated addition (Prometheus `kahanSumInc`).
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

pub(crate) fn kahan_sum(v: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for &x in v {
        (s, c) = kahan_inc(x, s, c);
    }
    if s.is_infinite() { s } else { s + c }
}

fn avg(v: &[f64]) -> f64 {
    let s = kahan_sum(v);
    if s.is_infinite() {
        // Fall back to an incremental mean, as Prometheus does on overflow.
        let mut mean = 0.0;
        for (i, &x) in v.iter().enumerate() {
            mean += x / (i + 1) as f64 - mean / (i + 1) as f64;
        }
        return mean;
    }
    s / v.len() as f64
}

/// Prometheus' min/max: a NaN is replaced by any number that follows.
pub(crate) fn min_max(v: &[f64], max: bool) -> f64 {
    let mut cur = v[0];
    for &x in &v[1..] {
        if (max && cur < x) || (!max && cur > x) || cur.is_nan() {
            cur = x;
        }
    }
    cur
}

/// Population variance (Welford, as Prometheus).
pub(crate) fn variance(v: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &x in v {
        count += 1.0;
        let delta = x - mean;
        mean += delta / count;
        m2 += delta * (x - mean);
    }
    m2 / count
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, mut v: Vec<f64>) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Prometheus sorts NaN first (Go's sort.Float64s): keep that order.
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    v[lower as usize] * (1.0 - weight) + v[upper as usize] * weight
}

/// Least-squares slope and intercept (at `intercept_t`) of the samples,
/// with times in seconds (Prometheus `linearRegression`).
fn linear_regression(t: &[i64], v: &[f64], intercept_t: i64) -> (f64, f64) {
    let init = v[0];
    if v.iter().all(|&x| x == init) {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (&ti, &y) in t.iter().zip(v) {
        n += 1.0;
        let x = (ti - intercept_t) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(y, sy, cy);
        (sxy, cxy) = kahan_inc(x * y, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_extrapolates_to_the_window_edges() {
        // Samples every 10 s in (0, 60]: 10..=60, counter +1 per sample.
        let t: Vec<i64> = (1..=6).map(|i| i * 10_000).collect();
        let v: Vec<f64> = (1..=6).map(|i| 100.0 + i as f64).collect();
        // Increase 5 over 50 s, extrapolated by 10 s at the start only.
        let inc = extrapolated_rate(&t, &v, 0, 60_000, true, None).unwrap();
        assert!((inc - 6.0).abs() < 1e-12, "{inc}");
        let rate = extrapolated_rate(&t, &v, 0, 60_000, true, Some(60.0)).unwrap();
        assert!((rate - 0.1).abs() < 1e-12, "{rate}");
    }

    #[test]
    fn counter_resets_add_the_previous_value_and_zero_bounds_extrapolation() {
        let t = [10_000, 20_000, 30_000];
        let v = [5.0, 8.0, 2.0];
        // 3 + (8 reset) + ... = (2 - 5) + 8 = 5; first value 5 over slope
        // 5/20 s reaches zero 20 s before: not limiting (10 s to start).
        let inc = extrapolated_rate(&t, &v, 0, 30_000, true, None).unwrap();
        assert!((inc - 5.0 * 30.0 / 20.0).abs() < 1e-12, "{inc}");
        // delta does not treat drops as resets.
        let d = extrapolated_rate(&t, &v, 0, 30_000, false, None).unwrap();
        assert!((d + 3.0 * 1.5).abs() < 1e-12, "{d}");
    }

    #[test]
    fn quantile_interpolates_and_regression_finds_the_slope() {
        assert_eq!(quantile(0.5, vec![1.0, 3.0, 2.0, 4.0]), 2.5);
        assert_eq!(quantile(2.0, vec![1.0]), f64::INFINITY);
        let t = [0, 1000, 2000];
        let (slope, icpt) = linear_regression(&t, &[1.0, 3.0, 5.0], 0);
        assert!((slope - 2.0).abs() < 1e-12 && (icpt - 1.0).abs() < 1e-12);
        assert_eq!(variance(&[1.0, 3.0]), 1.0);
        assert_eq!(min_max(&[f64::NAN, 1.0, 3.0], true), 3.0);
    }
}
