//! Binary operators: arithmetic, comparisons (with `bool`) and the set
//! operators, between scalars and vectors, with `on` / `ignoring` and
//! `group_left` / `group_right` vector matching.

use std::collections::{BTreeMap, HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::{Evaluator, merge_series};
use crate::error::{Error, Result};
use crate::value::{Labels, METRIC_NAME, StepSeries, Value};

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// `lhs op rhs`: the value and whether the element is kept (comparisons
/// without `bool` filter).
fn elem(op: u16, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        other => {
            return Err(Error::Unsupported(format!(
                "the binary operator {}",
                promql_parser::parser::token::TokenType::new(other)
            )));
        }
    })
}

impl<'a> Evaluator<'a> {
    pub(crate) fn binary(&self, b: &'a BinaryExpr) -> Result<Value> {
        let op = b.op.id();
        let return_bool = b.return_bool();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let v = l
                    .iter()
                    .zip(&r)
                    .map(|(&l, &r)| {
                        let (v, keep) = elem(op, l, r)?;
                        Ok(if is_comparison(op) {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            v
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(Value::Scalar(v))
            }
            (Value::Vector(l), Value::Scalar(r)) => {
                self.vector_scalar(op, return_bool, l, &r, false)
            }
            (Value::Scalar(l), Value::Vector(r)) => {
                self.vector_scalar(op, return_bool, r, &l, true)
            }
            (Value::Vector(l), Value::Vector(r)) => match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(self.set_op(op, b, l, r))),
                _ => self.vector_vector(op, b, l, r),
            },
            (l, r) => Err(Error::BadData(format!(
                "binary operator {} is not defined between a {} and a {}",
                b.op,
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    fn vector_scalar(
        &self,
        op: u16,
        return_bool: bool,
        v: Vec<StepSeries>,
        s: &[f64],
        scalar_left: bool,
    ) -> Result<Value> {
        let drop_name = !is_comparison(op) || return_bool;
        let mut out = Vec::with_capacity(v.len());
        for series in v {
            let mut vals = Vec::with_capacity(self.n());
            for (i, x) in series.v.iter().enumerate() {
                let Some(x) = *x else {
                    vals.push(None);
                    continue;
                };
                let (l, r) = if scalar_left { (s[i], x) } else { (x, s[i]) };
                let (mut value, keep) = elem(op, l, r)?;
                if is_comparison(op) && scalar_left {
                    // The vector's value is the result, even on the right.
                    value = x;
                }
                vals.push(if return_bool {
                    Some(if keep { 1.0 } else { 0.0 })
                } else if keep {
                    Some(value)
                } else {
                    None
                });
            }
            if vals.iter().any(Option::is_some) {
                out.push(StepSeries {
                    labels: if drop_name {
                        series.labels.without_name()
                    } else {
                        series.labels
                    },
                    v: vals,
                });
            }
        }
        Ok(Value::Vector(if drop_name {
            merge_series(out)?
        } else {
            out
        }))
    }

    /// The labels two series are matched on.
    fn signature(b: &BinaryExpr, l: &Labels) -> Labels {
        match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(on)) => l.keep(&on.labels),
            Some(LabelModifier::Exclude(ign)) => {
                let mut names = ign.labels.clone();
                names.push(METRIC_NAME.to_string());
                l.drop(&names)
            }
            None => l.without_name(),
        }
    }

    fn set_op(
        &self,
        op: u16,
        b: &BinaryExpr,
        l: Vec<StepSeries>,
        r: Vec<StepSeries>,
    ) -> Vec<StepSeries> {
        let n = self.n();
        let sig_set = |side: &[StepSeries], i: usize| -> HashSet<Labels> {
            side.iter()
                .filter(|s| s.v[i].is_some())
                .map(|s| Self::signature(b, &s.labels))
                .collect()
        };
        let rsig: Vec<Labels> = r.iter().map(|s| Self::signature(b, &s.labels)).collect();
        let lsig: Vec<Labels> = l.iter().map(|s| Self::signature(b, &s.labels)).collect();
        match op {
            T_LAND | T_LUNLESS => {
                let present: Vec<HashSet<Labels>> = (0..n).map(|i| sig_set(&r, i)).collect();
                l.into_iter()
                    .zip(lsig)
                    .map(|(mut s, sig)| {
                        for (i, x) in s.v.iter_mut().enumerate() {
                            if present[i].contains(&sig) != (op == T_LAND) {
                                *x = None;
                            }
                        }
                        s
                    })
                    .filter(|s| s.v.iter().any(Option::is_some))
                    .collect()
            }
            _ => {
                let present: Vec<HashSet<Labels>> = (0..n).map(|i| sig_set(&l, i)).collect();
                let mut out: Vec<StepSeries> = l;
                for (mut s, sig) in r.into_iter().zip(rsig) {
                    for (i, x) in s.v.iter_mut().enumerate() {
                        if present[i].contains(&sig) {
                            *x = None;
                        }
                    }
                    if s.v.iter().any(Option::is_some) {
                        out.push(s);
                    }
                }
                out
            }
        }
    }

    fn vector_vector(
        &self,
        op: u16,
        b: &BinaryExpr,
        l: Vec<StepSeries>,
        r: Vec<StepSeries>,
    ) -> Result<Value> {
        let n = self.n();
        let return_bool = b.return_bool();
        let card = b
            .modifier
            .as_ref()
            .map(|m| m.card.clone())
            .unwrap_or(VectorMatchCardinality::OneToOne);
        let (include, one_to_many) = match &card {
            VectorMatchCardinality::ManyToOne(ls) => (ls.labels.clone(), false),
            VectorMatchCardinality::OneToMany(ls) => (ls.labels.clone(), true),
            VectorMatchCardinality::OneToOne => (Vec::new(), false),
            VectorMatchCardinality::ManyToMany => {
                return Err(Error::BadData(format!(
                    "many-to-many matching is only allowed for set operators, not {}",
                    b.op
                )));
            }
        };
        // `many` is the side whose every series yields output; `one` must
        // be unique per signature at each step.
        let (many, one) = if one_to_many { (r, l) } else { (l, r) };
        let mut one_by_sig: HashMap<Labels, Vec<usize>> = HashMap::new();
        for (i, s) in one.iter().enumerate() {
            one_by_sig
                .entry(Self::signature(b, &s.labels))
                .or_default()
                .push(i);
        }
        let on = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(on)) => Some(on.labels.clone()),
            _ => None,
        };
        let ignoring = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Exclude(ign)) => ign.labels.clone(),
            _ => Vec::new(),
        };
        let drop_name = !is_comparison(op) || return_bool;
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        // For one-to-one matching: which many-side series took a signature
        // at each step (a second one is an error).
        let mut taken: HashMap<(Labels, usize), ()> = HashMap::new();
        for ms in &many {
            let sig = Self::signature(b, &ms.labels);
            let Some(cands) = one_by_sig.get(&sig) else {
                continue;
            };
            for i in 0..n {
                let Some(mv) = ms.v[i] else { continue };
                let mut found = None;
                for &c in cands {
                    if let Some(ov) = one[c].v[i] {
                        if found.is_some() {
                            return Err(Error::Execution(format!(
                                "found duplicate series for the match group {sig} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                                if one_to_many { "left" } else { "right" }
                            )));
                        }
                        found = Some((c, ov));
                    }
                }
                let Some((c, ov)) = found else { continue };
                if one_to_one && taken.insert((sig.clone(), i), ()).is_some() {
                    return Err(Error::Execution(format!(
                        "multiple matches for labels {sig}: many-to-one matching must be explicit (group_left/group_right)"
                    )));
                }
                let (lv, rv) = if one_to_many { (ov, mv) } else { (mv, ov) };
                let (value, keep) = elem(op, lv, rv)?;
                let value = if return_bool {
                    if keep { 1.0 } else { 0.0 }
                } else if keep {
                    value
                } else {
                    continue;
                };
                // Prometheus' resultMetric.
                let mut labels = if drop_name {
                    ms.labels.without_name()
                } else {
                    ms.labels.clone()
                };
                if one_to_one {
                    labels = match &on {
                        Some(on) => labels.keep(on),
                        None => labels.drop(&ignoring),
                    };
                }
                for name in &include {
                    labels.set(name, one[c].labels.get(name));
                }
                let slot = out.entry(labels.clone()).or_insert_with(|| vec![None; n]);
                if slot[i].is_some() {
                    return Err(Error::Execution(format!(
                        "multiple matches for labels {labels}: grouping labels must ensure unique matches"
                    )));
                }
                slot[i] = Some(value);
            }
        }
        Ok(Value::Vector(
            out.into_iter()
                .map(|(labels, v)| StepSeries { labels, v })
                .collect(),
        ))
    }
}
