//! Which samples an expression needs: every selector of the AST with the
//! time window its evaluation reads, so all raw data is fetched before
//! evaluation starts (evaluation itself is synchronous and CPU-only).

use std::collections::HashMap;

use promql_parser::label::Matcher;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use crate::error::{Error, Result};
use crate::fetch::selector_matchers;

/// Query-wide times (milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct QueryTimes {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub lookback: i64,
}

/// The default step of a subquery without one (Prometheus' default
/// evaluation interval).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// A selector's samples to read: `(lo, hi]` in milliseconds.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub matchers: Vec<Matcher>,
    pub lo: i64,
    pub hi: i64,
}

/// Identity of a selector node: its address in the (immutable, borrowed)
/// AST. Planning and evaluation walk the same tree.
pub fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

pub fn at_ms(at: &Option<AtModifier>, q: &QueryTimes) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(q.start),
        Some(AtModifier::End) => Some(q.end),
        Some(AtModifier::At(t)) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        }),
    }
}

/// The evaluation times `[first, last]` after `@` and `offset`.
fn shifted(
    first: i64,
    last: i64,
    at: &Option<AtModifier>,
    offset: &Option<Offset>,
    q: &QueryTimes,
) -> (i64, i64) {
    let o = offset_ms(offset);
    match at_ms(at, q) {
        Some(t) => (t - o, t - o),
        None => (first - o, last - o),
    }
}

/// The first sub-step of a subquery: the first multiple of `step` at or
/// after `from` (as Prometheus aligns subqueries).
pub fn subquery_start(from: i64, step: i64) -> i64 {
    let s = from.div_euclid(step) * step;
    if s < from { s + step } else { s }
}

/// Collects every selector of `e` evaluated at times in `[first, last]`.
pub fn plan(
    e: &Expr,
    first: i64,
    last: i64,
    q: &QueryTimes,
    out: &mut HashMap<usize, Fetch>,
) -> Result<()> {
    let mut add = |vs: &VectorSelector, window: i64| -> Result<()> {
        let (f, l) = shifted(first, last, &vs.at, &vs.offset, q);
        let fetch = out.entry(key(vs)).or_insert(Fetch {
            matchers: selector_matchers(vs)?,
            lo: f - window,
            hi: l,
        });
        fetch.lo = fetch.lo.min(f - window);
        fetch.hi = fetch.hi.max(l);
        Ok(())
    };
    match e {
        Expr::VectorSelector(vs) => add(vs, q.lookback),
        Expr::MatrixSelector(ms) => add(&ms.vs, ms.range.as_millis() as i64),
        Expr::Subquery(sq) => {
            let step = sq
                .step
                .map(|d| d.as_millis() as i64)
                .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
            if step <= 0 {
                return Err(Error::BadData("subquery step must be positive".into()));
            }
            let (f, l) = shifted(first, last, &sq.at, &sq.offset, q);
            let start = subquery_start(f - sq.range.as_millis() as i64, step);
            plan(&sq.expr, start, l, q, out)
        }
        Expr::Aggregate(a) => {
            plan(&a.expr, first, last, q, out)?;
            if let Some(p) = &a.param {
                plan(p, first, last, q, out)?;
            }
            Ok(())
        }
        Expr::Unary(u) => plan(&u.expr, first, last, q, out),
        Expr::Binary(b) => {
            plan(&b.lhs, first, last, q, out)?;
            plan(&b.rhs, first, last, q, out)
        }
        Expr::Paren(p) => plan(&p.expr, first, last, q, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                plan(a, first, last, q, out)?;
            }
            Ok(())
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(x) => Err(Error::Unsupported(format!(
            "the extension expression {}",
            x.expr.name()
        ))),
    }
}
