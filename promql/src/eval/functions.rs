//! Function calls: dispatch, and the functions over instant vectors and
//! scalars (math, clamps, labels, `histogram_quantile`, time functions).

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr, VectorSelector};
use regex::Regex;

use super::{Evaluator, merge_series};
use crate::error::{Error, Result};
use crate::value::{Labels, METRIC_NAME, StepSeries, Value};

impl<'a> Evaluator<'a> {
    pub(crate) fn call(&self, c: &'a Call) -> Result<Value> {
        let name = c.func.name;
        if let Some(v) = self.range_call(name, c)? {
            return Ok(v);
        }
        let args = &c.args.args;
        let arg = |i: usize| -> Result<&'a Expr> {
            args.get(i)
                .map(|b| b.as_ref())
                .ok_or_else(|| Error::BadData(format!("{name}() needs {} arguments", i + 1)))
        };
        if let Some(f) = math_fn(name) {
            let v = self.vector_arg(arg(0)?, &format!("the argument of {name}()"))?;
            return map_values(v, true, |_, x| Some(f(x)));
        }
        match name {
            "round" => {
                let v = self.vector_arg(arg(0)?, "the argument of round()")?;
                let to = match args.get(1) {
                    Some(e) => self.scalar_arg(e, "the precision of round()")?,
                    None => vec![1.0; self.n()],
                };
                // Prometheus rounds half up: floor(x / to + 0.5) * to, with
                // the inverse when it is exact.
                map_values(v, true, |i, x| {
                    let inv = 1.0 / to[i];
                    Some((x * inv + 0.5).floor() / inv)
                })
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let v = self.vector_arg(arg(0)?, &format!("the argument of {name}()"))?;
                let p1 = self.scalar_arg(arg(1)?, &format!("the bound of {name}()"))?;
                let p2 = if name == "clamp" {
                    Some(self.scalar_arg(arg(2)?, "the upper bound of clamp()")?)
                } else {
                    None
                };
                map_values(v, true, |i, x| match name {
                    "clamp_min" => Some(x.max(p1[i])),
                    "clamp_max" => Some(x.min(p1[i])),
                    _ => {
                        let (lo, hi) = (p1[i], p2.as_ref().map(|p| p[i]).unwrap_or(f64::NAN));
                        (lo <= hi).then(|| x.max(lo).min(hi))
                    }
                })
            }
            "scalar" => {
                let v = self.vector_arg(arg(0)?, "the argument of scalar()")?;
                Ok(Value::Scalar(
                    (0..self.n())
                        .map(|i| {
                            let mut it = v.iter().filter_map(|s| s.v[i]);
                            match (it.next(), it.next()) {
                                (Some(x), None) => x,
                                _ => f64::NAN,
                            }
                        })
                        .collect(),
                ))
            }
            "vector" => {
                let s = self.scalar_arg(arg(0)?, "the argument of vector()")?;
                Ok(Value::Vector(vec![StepSeries {
                    labels: Labels::default(),
                    v: s.into_iter().map(Some).collect(),
                }]))
            }
            "time" => Ok(Value::Scalar(
                self.steps.iter().map(|&t| t as f64 / 1000.0).collect(),
            )),
            "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; self.n()])),
            "timestamp" => {
                let e = strip_parens(arg(0)?);
                if let Expr::VectorSelector(vs) = e {
                    self.sample_timestamps(vs)
                } else {
                    let v = self.vector_arg(e, "the argument of timestamp()")?;
                    map_values(v, true, |i, _| Some(self.steps[i] as f64 / 1000.0))
                }
            }
            "absent" => {
                let v = self.vector_arg(arg(0)?, "the argument of absent()")?;
                let sel = match strip_parens(arg(0)?) {
                    Expr::VectorSelector(vs) => Some(vs),
                    _ => None,
                };
                let out: Vec<Option<f64>> = (0..self.n())
                    .map(|i| (!v.iter().any(|s| s.v[i].is_some())).then_some(1.0))
                    .collect();
                Ok(Value::Vector(if out.iter().any(Option::is_some) {
                    vec![StepSeries {
                        labels: absent_labels(sel),
                        v: out,
                    }]
                } else {
                    Vec::new()
                }))
            }
            // Order only matters for an instant query's answer, which
            // applies it (see `crate::query`).
            "sort" | "sort_desc" => Ok(Value::Vector(
                self.vector_arg(arg(0)?, &format!("the argument of {name}()"))?,
            )),
            "label_replace" => {
                let v = self.vector_arg(arg(0)?, "the argument of label_replace()")?;
                let dst = string_arg(arg(1)?, "the destination label of label_replace()")?;
                let repl = string_arg(arg(2)?, "the replacement of label_replace()")?;
                let src = string_arg(arg(3)?, "the source label of label_replace()")?;
                let re_text = string_arg(arg(4)?, "the regex of label_replace()")?;
                let re = Regex::new(&format!("^(?s:{re_text})$")).map_err(|e| {
                    Error::BadData(format!(
                        "invalid regular expression in label_replace(): {e}"
                    ))
                })?;
                if !is_valid_label_name(&dst) {
                    return Err(Error::BadData(format!(
                        "invalid destination label name in label_replace(): {dst}"
                    )));
                }
                let out = v
                    .into_iter()
                    .map(|mut s| {
                        let value = s.labels.get(&src).to_string();
                        if let Some(caps) = re.captures(&value) {
                            let mut res = String::new();
                            caps.expand(&repl, &mut res);
                            s.labels.set(&dst, &res);
                        }
                        s
                    })
                    .collect();
                Ok(Value::Vector(merge_series(out)?))
            }
            "label_join" => {
                let v = self.vector_arg(arg(0)?, "the argument of label_join()")?;
                let dst = string_arg(arg(1)?, "the destination label of label_join()")?;
                let sep = string_arg(arg(2)?, "the separator of label_join()")?;
                let srcs = args[3..]
                    .iter()
                    .map(|a| string_arg(a, "a source label of label_join()"))
                    .collect::<Result<Vec<_>>>()?;
                if !is_valid_label_name(&dst) {
                    return Err(Error::BadData(format!(
                        "invalid destination label name in label_join(): {dst}"
                    )));
                }
                let out = v
                    .into_iter()
                    .map(|mut s| {
                        let joined: Vec<&str> = srcs.iter().map(|l| s.labels.get(l)).collect();
                        let joined = joined.join(&sep);
                        s.labels.set(&dst, &joined);
                        s
                    })
                    .collect();
                Ok(Value::Vector(merge_series(out)?))
            }
            "histogram_quantile" => {
                let q = self.scalar_arg(arg(0)?, "the quantile of histogram_quantile()")?;
                let v = self.vector_arg(arg(1)?, "the buckets of histogram_quantile()")?;
                self.histogram_quantile(&q, v)
            }
            "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year"
            | "days_in_month" | "month" | "year" => {
                let v = match args.first() {
                    Some(e) => self.vector_arg(e, &format!("the argument of {name}()"))?,
                    None => vec![StepSeries {
                        labels: Labels::default(),
                        v: self
                            .steps
                            .iter()
                            .map(|&t| Some(t as f64 / 1000.0))
                            .collect(),
                    }],
                };
                map_values(v, true, |_, x| {
                    let t = DateTime::from_timestamp(x.floor() as i64, 0)?;
                    Some(match name {
                        "minute" => t.minute() as f64,
                        "hour" => t.hour() as f64,
                        "day_of_week" => t.weekday().num_days_from_sunday() as f64,
                        "day_of_month" => t.day() as f64,
                        "day_of_year" => t.ordinal() as f64,
                        "month" => t.month() as f64,
                        "year" => t.year() as f64,
                        _ => days_in_month(t.year(), t.month()) as f64,
                    })
                })
            }
            other => Err(Error::Unsupported(format!("the function {other}()"))),
        }
    }

    /// `timestamp(selector)`: the time of the sample each step picked.
    fn sample_timestamps(&self, vs: &VectorSelector) -> Result<Value> {
        let series = self.selected(crate::plan::key(vs));
        let at = crate::plan::at_ms(&vs.at, &self.q);
        let off = crate::plan::offset_ms(&vs.offset);
        let out = series
            .iter()
            .filter_map(|s| {
                let v: Vec<Option<f64>> = self
                    .steps
                    .iter()
                    .map(|&t| {
                        let te = at.unwrap_or(t) - off;
                        s.lookback_index(te, self.q.lookback)
                            .map(|i| s.t[i] as f64 / 1000.0)
                    })
                    .collect();
                v.iter().any(Option::is_some).then(|| StepSeries {
                    labels: s.labels.without_name(),
                    v,
                })
            })
            .collect();
        Ok(Value::Vector(merge_series(out)?))
    }

    /// Prometheus' classic-histogram `histogram_quantile`: series grouped by
    /// every label but `le` (and `__name__`), buckets interpolated linearly.
    fn histogram_quantile(&self, q: &[f64], v: Vec<StepSeries>) -> Result<Value> {
        let mut groups: std::collections::BTreeMap<Labels, Vec<(f64, &StepSeries)>> =
            Default::default();
        for s in &v {
            let Ok(le) = parse_le(s.labels.get("le")) else {
                continue;
            };
            let key = s.labels.drop(&["le".to_string(), METRIC_NAME.to_string()]);
            groups.entry(key).or_default().push((le, s));
        }
        let mut out = Vec::new();
        for (labels, buckets) in groups {
            let vals: Vec<Option<f64>> = (0..self.n())
                .map(|i| {
                    let mut b: Vec<(f64, f64)> = buckets
                        .iter()
                        .filter_map(|(le, s)| s.v[i].map(|c| (*le, c)))
                        .collect();
                    if b.is_empty() {
                        return None;
                    }
                    Some(bucket_quantile(q[i], &mut b))
                })
                .collect();
            if vals.iter().any(Option::is_some) {
                out.push(StepSeries { labels, v: vals });
            }
        }
        Ok(Value::Vector(out))
    }
}

fn parse_le(s: &str) -> std::result::Result<f64, ()> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        t => t.parse::<f64>().map_err(|_| ()),
    }
}

/// Prometheus `bucketQuantile` over `(upper bound, cumulative count)`.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets of the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    // Force monotonic cumulative counts.
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let last = merged.len() - 1;
    let b = merged[..last].partition_point(|x| x.1 < rank);
    if b == last {
        return merged[last - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
    let next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days() as u32,
        _ => 30,
    }
}

fn strip_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn string_arg(e: &Expr, what: &str) -> Result<String> {
    match strip_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        other => Err(Error::BadData(format!(
            "expected a string literal as {what}, got {other}"
        ))),
    }
}

fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The labels of `absent(selector)`: its equality matchers (a label
/// matched twice is left out), never `__name__`.
pub(crate) fn absent_labels(sel: Option<&VectorSelector>) -> Labels {
    let Some(vs) = sel else {
        return Labels::default();
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut twice: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if pairs.iter().any(|(n, _)| *n == m.name) {
            twice.push(m.name.clone());
            continue;
        }
        if matches!(m.op, MatchOp::Equal) {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    pairs.retain(|(n, _)| !twice.contains(n));
    Labels::new(pairs)
}

/// Applies `f(step, value)` to every point; `drop_name` removes
/// `__name__` (and merges the series that become equal).
fn map_values(
    v: Vec<StepSeries>,
    drop_name: bool,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Value> {
    let out: Vec<StepSeries> = v
        .into_iter()
        .map(|s| StepSeries {
            labels: if drop_name {
                s.labels.without_name()
            } else {
                s.labels
            },
            v: s.v
                .into_iter()
                .enumerate()
                .map(|(i, x)| x.and_then(|x| f(i, x)))
                .collect(),
        })
        .filter(|s| s.v.iter().any(Option::is_some))
        .collect();
    Ok(Value::Vector(merge_series(out)?))
}

/// The element-wise math functions.
fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantile_interpolates_within_the_bucket() {
        let mut b = vec![(f64::INFINITY, 100.0), (0.1, 50.0), (0.5, 90.0)];
        // rank 50 lands at the top of the first bucket.
        assert_eq!(bucket_quantile(0.5, &mut b.clone()), 0.1);
        // rank 70: halfway through (0.1, 0.5].
        assert!((bucket_quantile(0.7, &mut b) - 0.3).abs() < 1e-12);
        // Above the last finite bucket: its bound.
        let mut b = vec![(0.1, 50.0), (f64::INFINITY, 100.0)];
        assert_eq!(bucket_quantile(0.99, &mut b), 0.1);
        let mut no_inf = vec![(0.1, 5.0)];
        assert!(bucket_quantile(0.5, &mut no_inf).is_nan());
    }

    #[test]
    fn label_names_are_checked() {
        assert!(is_valid_label_name("host_1"));
        assert!(!is_valid_label_name("1host"));
        assert!(!is_valid_label_name(""));
    }
}
