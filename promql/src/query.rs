//! Running one PromQL query: parse, plan, fetch through DataFusion,
//! evaluate off the async workers, under the engine's time limit.

use std::collections::HashMap;

use fleetlake_query::QueryEngine;
use promql_parser::parser::Expr;

use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::fetch::fetch;
use crate::names::metrics_of_db;
use crate::plan::{QueryTimes, plan};
use crate::value::{Labels, RawSeries, Value, is_stale};

/// Prometheus' limit of points per series of a range query.
pub const MAX_POINTS: i64 = 11_000;

/// Prometheus' default lookback of instant selectors: 5 minutes.
pub const DEFAULT_LOOKBACK_MS: i64 = 300_000;

/// One query: an instant query has `start == end` and `instant` set.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub expr: String,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub lookback: i64,
    pub instant: bool,
}

/// A query's answer, times in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOutput {
    Scalar(i64, f64),
    String(i64, String),
    Vector(Vec<(Labels, i64, f64)>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

impl QueryOutput {
    pub fn result_type(&self) -> &'static str {
        match self {
            QueryOutput::Scalar(..) => "scalar",
            QueryOutput::String(..) => "string",
            QueryOutput::Vector(_) => "vector",
            QueryOutput::Matrix(_) => "matrix",
        }
    }
}

/// The longest expression accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// The deepest nesting of parentheses, brackets and braces accepted.
pub const MAX_NESTING: usize = 128;
/// The most binary operators accepted in one expression: each nests the
/// expression tree one level deeper (`1+1+…+1`).
pub const MAX_OPERATORS: usize = 512;

/// Parses PromQL; a syntax error is [`Error::BadData`] with the parser's
/// message.
///
/// # Errors
/// Besides syntax errors, an expression too long or too deeply nested
/// ([`MAX_QUERY_BYTES`], [`MAX_NESTING`], [`MAX_OPERATORS`]) is refused
/// before it is parsed: parsing, evaluating and even dropping a tree
/// thousands of levels deep recurses past any thread's stack.
pub fn parse(expr: &str) -> Result<Expr> {
    check_size(expr)?;
    promql_parser::parser::parse(expr)
        .map_err(|e| Error::BadData(format!("invalid parameter \"query\": {e}")))
}

/// Counts nesting and operators outside string literals, without parsing.
fn check_size(expr: &str) -> Result<()> {
    if expr.len() > MAX_QUERY_BYTES {
        return Err(Error::BadData(format!(
            "invalid parameter \"query\": the expression is {} bytes long; the limit is {MAX_QUERY_BYTES}",
            expr.len()
        )));
    }
    let (mut depth, mut max_depth, mut operators) = (0usize, 0usize, 0usize);
    let mut quote: Option<u8> = None;
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' && q != b'`' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'#' => {
                    // A comment runs to the end of the line.
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'!' | b'=' => {
                    operators += 1
                }
                _ => {}
            },
        }
        i += 1;
    }
    if max_depth > MAX_NESTING {
        return Err(Error::BadData(format!(
            "invalid parameter \"query\": nesting {max_depth} levels deep; the limit is {MAX_NESTING}"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(Error::BadData(format!(
            "invalid parameter \"query\": {operators} operators; the limit is {MAX_OPERATORS}"
        )));
    }
    Ok(())
}

fn strip_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Checks the request's times and evaluates it.
pub async fn run(engine: &QueryEngine, db: &str, req: &QueryRequest) -> Result<QueryOutput> {
    if !req.instant {
        if req.end < req.start {
            return Err(Error::BadData(
                "invalid parameter \"end\": end timestamp must not be before start time".into(),
            ));
        }
        if req.step <= 0 {
            return Err(Error::BadData(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        // i128: the times come from user text and may sit at i64's ends.
        if (i128::from(req.end) - i128::from(req.start)) / i128::from(req.step) + 1
            > i128::from(MAX_POINTS)
        {
            return Err(Error::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
    }
    if req.lookback <= 0 {
        return Err(Error::BadData("lookback_delta must be positive".into()));
    }
    // Boxed so that the selector nodes keep their addresses (the keys of
    // the fetched data) when the tree moves to the evaluating thread.
    let expr = Box::new(parse(&req.expr)?);
    let limit = engine.config().timeout;
    let limit_ms = limit.as_millis() as u64;
    match tokio::time::timeout(limit, run_parsed(engine, db, req, expr)).await {
        Err(_) => Err(Error::Timeout { limit_ms }),
        Ok(r) => r,
    }
}

async fn run_parsed(
    engine: &QueryEngine,
    db: &str,
    req: &QueryRequest,
    expr: Box<Expr>,
) -> Result<QueryOutput> {
    let q = QueryTimes {
        start: req.start,
        end: req.end,
        step: req.step.max(1),
        lookback: req.lookback,
    };
    let top = strip_parens(&expr);
    if !req.instant {
        match top {
            Expr::MatrixSelector(_) | Expr::Subquery(_) | Expr::StringLiteral(_) => {
                return Err(Error::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    if matches!(top, Expr::StringLiteral(_)) {
                        "string"
                    } else {
                        "range vector"
                    }
                )));
            }
            _ => {}
        }
    }
    let mut fetches = HashMap::new();
    plan(&expr, req.start, req.end, &q, &mut fetches)?;
    let metrics = metrics_of_db(engine.ingester(), db);
    let mut data: HashMap<usize, Vec<RawSeries>> = HashMap::new();
    for (key, f) in fetches {
        data.insert(
            key,
            fetch(engine, db, &metrics, &f.matchers, f.lo, f.hi).await?,
        );
    }
    let req = req.clone();
    tokio::task::spawn_blocking(move || evaluate(&expr, &data, &req, q))
        .await
        .map_err(|e| Error::Internal(format!("evaluation task failed: {e}")))?
}

fn evaluate(
    expr: &Expr,
    data: &HashMap<usize, Vec<RawSeries>>,
    req: &QueryRequest,
    q: QueryTimes,
) -> Result<QueryOutput> {
    let steps: Vec<i64> = if req.instant {
        vec![req.start]
    } else {
        (0..)
            .map(|i| req.start + i * req.step)
            .take_while(|&t| t <= req.end)
            .collect()
    };
    let ev = Evaluator::new(data, steps.clone(), q);
    let top = strip_parens(expr);
    if req.instant && matches!(top, Expr::MatrixSelector(_) | Expr::Subquery(_)) {
        let arg = ev.range_arg(top)?;
        let end = arg.at.unwrap_or(req.start) - arg.offset;
        let start = end - arg.range;
        let mut out: Vec<(Labels, Vec<(i64, f64)>)> = arg
            .series
            .iter()
            .map(|s| {
                let pts: Vec<(i64, f64)> =
                    s.t.iter()
                        .zip(&s.v)
                        .filter(|(t, v)| **t > start && **t <= end && !is_stale(**v))
                        .map(|(t, v)| (*t, *v))
                        .collect();
                (s.labels.clone(), pts)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(QueryOutput::Matrix(out));
    }
    let value = ev.eval(expr)?;
    Ok(match value {
        Value::Scalar(v) if req.instant => QueryOutput::Scalar(req.start, v[0]),
        Value::String(s) => QueryOutput::String(req.start, s),
        Value::Scalar(v) => QueryOutput::Matrix(vec![(
            Labels::default(),
            steps.iter().copied().zip(v).collect(),
        )]),
        Value::Vector(series) if req.instant => {
            let mut out: Vec<(Labels, i64, f64)> = series
                .into_iter()
                .filter_map(|s| s.v[0].map(|v| (s.labels, req.start, v)))
                .collect();
            match top {
                Expr::Call(c) if c.func.name == "sort" => {
                    out.sort_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal))
                }
                Expr::Call(c) if c.func.name == "sort_desc" => {
                    out.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal))
                }
                _ => {}
            }
            QueryOutput::Vector(out)
        }
        Value::Vector(series) => {
            let mut out: Vec<(Labels, Vec<(i64, f64)>)> = series
                .into_iter()
                .map(|s| {
                    let pts = steps
                        .iter()
                        .zip(s.v)
                        .filter_map(|(t, v)| v.map(|v| (*t, v)))
                        .collect::<Vec<_>>();
                    (s.labels, pts)
                })
                .filter(|(_, p)| !p.is_empty())
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            QueryOutput::Matrix(out)
        }
        Value::Matrix(m) => QueryOutput::Matrix(
            m.into_iter()
                .map(|s| (s.labels, s.t.into_iter().zip(s.v).collect()))
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fuzz corpus entry (fuzz/corpus/promql) parses or is refused,
    /// and what parses formats back to an expression that parses.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/promql");
        let mut parsed = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(Ok(e)) = std::str::from_utf8(&bytes).map(parse) {
                parse(&e.prettify()).expect("formatted expression parses");
                parsed += 1;
            }
        }
        assert!(parsed >= 3, "{parsed} corpus entries parsed");
    }

    #[test]
    fn deep_or_long_expressions_are_refused_before_parsing() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().to_string().contains("nesting"));
        let calls = format!("{}1{}", "abs(".repeat(5_000), ")".repeat(5_000));
        assert!(parse(&calls).unwrap_err().to_string().contains("nesting"));
        let chain = vec!["1"; 2_000].join("+");
        assert!(parse(&chain).unwrap_err().to_string().contains("operators"));
        let long = format!("up{{a=\"{}\"}}", "x".repeat(MAX_QUERY_BYTES));
        assert!(parse(&long).unwrap_err().to_string().contains("bytes long"));
        // Operators and brackets inside strings do not count.
        let quoted = format!("up{{a=\"{}\"}}", "(+".repeat(1_000));
        assert!(parse(&quoted).is_ok());
        assert!(parse("sum by (a) (rate(x[5m])) / on(a) group_left y > 3").is_ok());
    }
}
