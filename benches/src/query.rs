//! Running the TSBS queries against fleetlake's SQL API, timed to the last
//! byte of the answer, and checking a sample of the answers against the
//! generator.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetlake_sim::SimConfig;

use crate::answer::Table;
use crate::stats::{median, percentile, sorted};
use crate::tsbs::{Params, draw};

/// `POST {base}/api/v1/sql` with `format`; the answer text and the time to
/// its last byte.
///
/// # Errors
///
/// A connection error or a non-200 answer (with the server's message).
pub async fn fleetlake_sql(
    client: &reqwest::Client,
    base: &str,
    db: &str,
    sql: &str,
    format: &str,
) -> Result<(String, Duration)> {
    let body = serde_json::json!({"sql": sql, "db": db, "format": format});
    let t = Instant::now();
    let resp = client
        .post(format!("{}/api/v1/sql", base.trim_end_matches('/')))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("sending SQL: {sql}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of: {sql}"))?;
    let elapsed = t.elapsed();
    if status != reqwest::StatusCode::OK {
        bail!(
            "SQL answered HTTP {status}: {}\n  query: {sql}",
            text.chars().take(2000).collect::<String>()
        );
    }
    Ok((text, elapsed))
}

/// One query type's runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryResult {
    pub name: String,
    pub runs: usize,
    /// Milliseconds of each successful run.
    #[serde(skip)]
    pub times_ms: Vec<f64>,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub min_ms: f64,
    /// Rows of the first answer.
    pub rows: Option<usize>,
    /// Runs whose answer was checked, and how many of them matched.
    pub checked: usize,
    pub correct: usize,
    pub errors: Vec<String>,
}

impl QueryResult {
    pub fn new(name: &str, times_ms: Vec<f64>) -> Self {
        let s = sorted(&times_ms);
        Self {
            name: name.to_string(),
            runs: times_ms.len(),
            median_ms: median(&s),
            p95_ms: percentile(&s, 95.0),
            min_ms: s.first().copied().unwrap_or(f64::NAN),
            times_ms,
            rows: None,
            checked: 0,
            correct: 0,
            errors: Vec::new(),
        }
    }
}

/// How `bench query` runs.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub base: String,
    pub db: String,
    pub runs: usize,
    /// Answers of the first `check` runs of each type are recomputed.
    pub check: usize,
    pub seed: u64,
}

/// Runs each of `names` `runs` times with seeded parameters over `data`.
/// Every run's SQL differs (its parameters); the answers of the first
/// `check` runs are compared with [`Params::expected`].
///
/// # Errors
///
/// Only an unknown query name; failed runs are recorded in the result.
pub async fn run_fleetlake(
    client: &reqwest::Client,
    data: &SimConfig,
    names: &[&str],
    opts: &QueryOptions,
) -> Result<Vec<QueryResult>> {
    let mut out = Vec::new();
    for name in names {
        let draws = draw(name, data, opts.seed, opts.runs)?;
        let mut times = Vec::new();
        let mut errors = Vec::new();
        let (mut rows, mut checked, mut correct) = (None, 0, 0);
        for (i, p) in draws.iter().enumerate() {
            match fleetlake_sql(client, &opts.base, &opts.db, &p.sql(), "csv").await {
                Ok((text, elapsed)) => {
                    times.push(elapsed.as_secs_f64() * 1e3);
                    rows.get_or_insert(
                        text.lines()
                            .filter(|l| !l.is_empty())
                            .count()
                            .saturating_sub(1),
                    );
                    if i < opts.check {
                        checked += 1;
                        match check(p, data, &text) {
                            Ok(()) => correct += 1,
                            Err(e) => errors.push(format!(
                                "run {i}: wrong answer: {e:#}\n  query: {}",
                                p.sql()
                            )),
                        }
                    }
                }
                Err(e) => errors.push(format!("run {i}: {e:#}")),
            }
        }
        let mut r = QueryResult::new(name, times);
        r.rows = rows;
        r.checked = checked;
        r.correct = correct;
        r.errors = errors;
        out.push(r);
    }
    Ok(out)
}

/// Compares a CSV answer with the generator's.
fn check(p: &Params, data: &SimConfig, csv: &str) -> Result<()> {
    let expected = p.expected(data);
    let actual = Table::from_csv(csv, &p.columns())?;
    match expected.diff(&actual) {
        None => Ok(()),
        Some(d) => bail!("{d}"),
    }
}

/// The per-query table `bench query` prints.
pub fn print_results(results: &[QueryResult]) {
    println!(
        "{:<24} {:>5} {:>11} {:>11} {:>11} {:>9}  checked",
        "query", "runs", "median ms", "p95 ms", "min ms", "rows"
    );
    for r in results {
        println!(
            "{:<24} {:>5} {:>11.2} {:>11.2} {:>11.2} {:>9}  {}/{}{}",
            r.name,
            r.runs,
            r.median_ms,
            r.p95_ms,
            r.min_ms,
            r.rows.map_or("-".into(), |n| n.to_string()),
            r.correct,
            r.checked,
            if r.errors.is_empty() {
                String::new()
            } else {
                "  FAILED".into()
            }
        );
    }
    for r in results {
        for e in &r.errors {
            println!("{}: {e}", r.name);
        }
    }
}
