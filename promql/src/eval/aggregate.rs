//! Aggregation operators with `by` / `without`.

use std::collections::BTreeMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::Evaluator;
use super::range::{kahan_inc, min_max, quantile, variance};
use crate::error::{Error, Result};
use crate::value::{Labels, METRIC_NAME, StepSeries, Value, format_value};

impl<'a> Evaluator<'a> {
    pub(crate) fn aggregate(&self, a: &'a AggregateExpr) -> Result<Value> {
        let op = a.op.id();
        let input = self.vector_arg(&a.expr, &format!("the argument of {}", a.op))?;
        let grouping = |l: &Labels| -> Labels {
            match &a.modifier {
                None => Labels::default(),
                Some(LabelModifier::Include(by)) => l.keep(&by.labels),
                Some(LabelModifier::Exclude(without)) => {
                    let mut names = without.labels.clone();
                    names.push(METRIC_NAME.to_string());
                    l.drop(&names)
                }
            }
        };
        let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
        for (i, s) in input.iter().enumerate() {
            groups.entry(grouping(&s.labels)).or_default().push(i);
        }
        let param = |what: &str| -> Result<&'a Expr> {
            a.param
                .as_deref()
                .ok_or_else(|| Error::BadData(format!("{} needs {what}", a.op)))
        };
        let n = self.n();
        match op {
            T_TOPK | T_BOTTOMK => {
                let k = self.scalar_arg(param("a count")?, &format!("the count of {}", a.op))?;
                let top = op == T_TOPK;
                let mut keep: Vec<Vec<Option<f64>>> = vec![vec![None; n]; input.len()];
                for members in groups.values() {
                    for i in 0..n {
                        let kk = k[i];
                        if kk.is_nan() || kk < 1.0 {
                            continue;
                        }
                        let mut present: Vec<(usize, f64)> = members
                            .iter()
                            .filter_map(|&m| input[m].v[i].map(|x| (m, x)))
                            .collect();
                        // NaN last in both directions, as Prometheus' heaps.
                        present.sort_by(|x, y| {
                            match (x.1.is_nan(), y.1.is_nan()) {
                                (true, false) => return std::cmp::Ordering::Greater,
                                (false, true) => return std::cmp::Ordering::Less,
                                _ => {}
                            }
                            let o = x.1.partial_cmp(&y.1).unwrap_or(std::cmp::Ordering::Equal);
                            if top { o.reverse() } else { o }
                        });
                        for (m, x) in present.into_iter().take(kk.min(1e9) as usize) {
                            keep[m][i] = Some(x);
                        }
                    }
                }
                let out = input
                    .into_iter()
                    .zip(keep)
                    .filter(|(_, v)| v.iter().any(Option::is_some))
                    .map(|(s, v)| StepSeries {
                        labels: s.labels,
                        v,
                    })
                    .collect();
                Ok(Value::Vector(out))
            }
            T_COUNT_VALUES => {
                let label = match param("a label name")? {
                    Expr::StringLiteral(s) => s.val.clone(),
                    other => {
                        return Err(Error::BadData(format!(
                            "count_values needs a string label name, got {other}"
                        )));
                    }
                };
                let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
                for (g, members) in &groups {
                    for i in 0..n {
                        for &m in members {
                            if let Some(x) = input[m].v[i] {
                                let mut l = g.clone();
                                l.set(&label, &format_value(x));
                                let v = out.entry(l).or_insert_with(|| vec![None; n]);
                                v[i] = Some(v[i].unwrap_or(0.0) + 1.0);
                            }
                        }
                    }
                }
                Ok(Value::Vector(
                    out.into_iter()
                        .map(|(labels, v)| StepSeries { labels, v })
                        .collect(),
                ))
            }
            T_SUM | T_AVG | T_MIN | T_MAX | T_COUNT | T_GROUP | T_STDDEV | T_STDVAR
            | T_QUANTILE => {
                let q = if op == T_QUANTILE {
                    Some(self.scalar_arg(param("a quantile")?, "the quantile of quantile")?)
                } else {
                    None
                };
                let mut out = Vec::with_capacity(groups.len());
                let mut vals = Vec::new();
                for (labels, members) in groups {
                    let v: Vec<Option<f64>> = (0..n)
                        .map(|i| {
                            vals.clear();
                            vals.extend(members.iter().filter_map(|&m| input[m].v[i]));
                            if vals.is_empty() {
                                return None;
                            }
                            Some(match op {
                                T_SUM => sum(&vals),
                                T_AVG => sum(&vals) / vals.len() as f64,
                                T_MIN => min_max(&vals, false),
                                T_MAX => min_max(&vals, true),
                                T_COUNT => vals.len() as f64,
                                T_GROUP => 1.0,
                                T_STDDEV => variance(&vals).sqrt(),
                                T_STDVAR => variance(&vals),
                                _ => quantile(
                                    q.as_ref().map(|q| q[i]).unwrap_or(f64::NAN),
                                    vals.clone(),
                                ),
                            })
                        })
                        .collect();
                    out.push(StepSeries { labels, v });
                }
                Ok(Value::Vector(out))
            }
            _ => Err(Error::Unsupported(format!("the aggregation {}", a.op))),
        }
    }
}

fn sum(v: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for &x in v {
        (s, c) = kahan_inc(x, s, c);
    }
    if s.is_infinite() { s } else { s + c }
}
