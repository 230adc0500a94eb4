//! Six TSBS cpu queries (/work/shared/tsbs-devops.md; SQL from
//! `fleetlake_benches::tsbs`), run `--query-runs` times each with seeded parameters, timed to the last byte
//! of a CSV answer. Answers are kept as a canonical text (header, then the
//! rows sorted) so that two runs of the suite — before and after
//! compaction — can be compared exactly.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use fleetlake_benches::tsbs::{Params, draw};
use fleetlake_sim::SimConfig;

use crate::{HOUR_NS, INTERVAL_NS, START_NS, median, ms, sql};

/// One TSBS query type and the SQL of each of its runs.
pub struct Query {
    pub name: &'static str,
    pub sql: Vec<String>,
}

/// The six query types of the compaction comparison.
const SIX: [&str; 6] = [
    "single-groupby-1-1-1",
    "single-groupby-5-8-1",
    "cpu-max-all-8",
    "double-groupby-1",
    "high-cpu-all",
    "lastpoint",
];

/// The suite: six of the fifteen TSBS query types (their SQL and seeded
/// parameters from `fleetlake_benches::tsbs`), `runs` draws each.
pub fn suite(seed: u64, hosts: u64, hours: u64, runs: usize) -> Vec<Query> {
    let data = SimConfig::new(
        hosts,
        START_NS,
        START_NS + hours as i64 * HOUR_NS,
        INTERVAL_NS,
        seed,
    )
    .expect("a valid data range");
    SIX.iter()
        .map(|name| Query {
            name,
            sql: draw(name, &data, seed, runs)
                .expect("a known query type")
                .iter()
                .map(Params::sql)
                .collect(),
        })
        .collect()
}

/// An answer reduced to what comparing needs.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    pub rows: usize,
    pub hash: u64,
}

pub struct Timed {
    pub name: &'static str,
    /// Milliseconds per run, in run order; NaN for a failed run.
    pub times_ms: Vec<f64>,
    /// Per run; None for a failed run.
    pub answers: Vec<Option<Answer>>,
    /// Canonical text of the first run's answer, for showing a difference.
    pub first_text: Option<String>,
    pub errors: Vec<String>,
}

impl Timed {
    pub fn median_ms(&self) -> f64 {
        let mut t: Vec<f64> = self
            .times_ms
            .iter()
            .copied()
            .filter(|t| !t.is_nan())
            .collect();
        t.sort_by(f64::total_cmp);
        median(&t)
    }

    pub fn min_ms(&self) -> f64 {
        self.times_ms
            .iter()
            .copied()
            .filter(|t| !t.is_nan())
            .fold(f64::INFINITY, f64::min)
    }

    pub fn rows(&self) -> Option<usize> {
        self.answers.iter().flatten().next().map(|a| a.rows)
    }
}

/// Header line, then the data lines sorted: equal for equal multisets of
/// rows whatever order unordered queries return them in.
fn canonical(csv: &str) -> (String, usize) {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or("");
    let mut rows: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    rows.sort_unstable();
    let n = rows.len();
    let mut out = String::with_capacity(csv.len() + 1);
    out.push_str(header);
    for r in rows {
        out.push('\n');
        out.push_str(r);
    }
    (out, n)
}

pub async fn run_suite(client: &reqwest::Client, base: &str, suite: &[Query]) -> Vec<Timed> {
    let mut out = Vec::new();
    for q in suite {
        let mut t = Timed {
            name: q.name,
            times_ms: Vec::new(),
            answers: Vec::new(),
            first_text: None,
            errors: Vec::new(),
        };
        for (i, s) in q.sql.iter().enumerate() {
            match sql(client, base, s, "csv").await {
                Ok((text, elapsed)) => {
                    t.times_ms.push(ms(elapsed));
                    let (canon, rows) = canonical(&text);
                    let mut h = DefaultHasher::new();
                    canon.hash(&mut h);
                    t.answers.push(Some(Answer {
                        rows,
                        hash: h.finish(),
                    }));
                    if i == 0 {
                        t.first_text = Some(canon);
                    }
                }
                Err(e) => {
                    t.times_ms.push(f64::NAN);
                    t.answers.push(None);
                    t.errors.push(format!("run {i}: {}", crate::one_line(&e)));
                }
            }
        }
        out.push(t);
    }
    out
}

pub fn print_suite(label: &str, timed: &[Timed]) {
    println!("  {label}: median / min of the runs, rows of the first answer");
    for t in timed {
        println!(
            "    {:<22} median {:>9.2} ms  min {:>9.2} ms  rows {:>8}{}",
            t.name,
            t.median_ms(),
            t.min_ms(),
            t.rows().map(|r| r.to_string()).unwrap_or("-".into()),
            if t.errors.is_empty() {
                String::new()
            } else {
                format!("  ERRORS: {}", t.errors.join("; "))
            }
        );
    }
}

/// Differences between two runs of one suite (same SQL, run by run).
pub fn compare(suite: &[Query], before: &[Timed], after: &[Timed]) -> Vec<String> {
    let mut diffs = Vec::new();
    for ((q, b), a) in suite.iter().zip(before).zip(after) {
        for (i, (x, y)) in b.answers.iter().zip(&a.answers).enumerate() {
            let (Some(x), Some(y)) = (x, y) else {
                continue;
            };
            if x != y {
                let mut d = format!(
                    "{} run {i}: {} rows before, {} after; query: {}",
                    q.name, x.rows, y.rows, q.sql[i]
                );
                if i == 0
                    && let (Some(tb), Some(ta)) = (&b.first_text, &a.first_text)
                    && let Some((n, (lb, la))) = tb
                        .lines()
                        .zip(ta.lines())
                        .enumerate()
                        .find(|(_, (lb, la))| lb != la)
                {
                    d.push_str(&format!(
                        "; first difference at sorted line {n}: before {lb:?}, after {la:?}"
                    ));
                }
                diffs.push(d);
            }
        }
    }
    diffs
}
