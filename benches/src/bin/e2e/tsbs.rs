//! The TSBS cpu queries (/work/shared/tsbs-devops.md) as fleetlake SQL, run
//! `--query-runs` times each with seeded parameters, timed to the last byte
//! of a CSV answer. Answers are kept as a canonical text (header, then the
//! rows sorted) so that two runs of the suite — before and after
//! compaction — can be compared exactly.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::{HOUR_NS, Rng, START_NS, median, mix64, ms, rfc3339, sql};

const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// One TSBS query type and the SQL of each of its runs.
pub struct Query {
    pub name: &'static str,
    pub sql: Vec<String>,
}

/// A window of `len` ns starting uniformly in [start, end − len), whole
/// seconds; a window at least as long as the data covers all of it.
fn window(rng: &mut Rng, hours: u64, len: i64) -> (i64, i64) {
    let end = START_NS + hours as i64 * HOUR_NS;
    let span_s = (end - START_NS - len) / 1_000_000_000;
    if span_s <= 0 {
        return (START_NS, end);
    }
    let t0 = START_NS + rng.below(span_s as u64) as i64 * 1_000_000_000;
    (t0, t0 + len)
}

/// `n` distinct hosts, as a SQL list.
fn host_list(rng: &mut Rng, hosts: u64, n: u64) -> String {
    let mut picked: Vec<u64> = Vec::new();
    while picked.len() < n.min(hosts) as usize {
        let h = rng.below(hosts);
        if !picked.contains(&h) {
            picked.push(h);
        }
    }
    picked
        .iter()
        .map(|h| format!("'host_{h}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn max_of(m: usize) -> String {
    FIELDS[..m]
        .iter()
        .map(|f| format!("max({f}) AS max_{f}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn time_filter((t0, t1): (i64, i64)) -> String {
    format!("time >= '{}' AND time < '{}'", rfc3339(t0), rfc3339(t1))
}

/// single-groupby-M-H-1 and cpu-max-all-H: the max of the first `metrics`
/// fields over `hosts_n` hosts, per `bucket`, over a `hours_w`-hour window.
fn groupby(
    rng: &mut Rng,
    hosts: u64,
    data_hours: u64,
    metrics: usize,
    hosts_n: u64,
    hours_w: i64,
    bucket: &str,
) -> String {
    let list = host_list(rng, hosts, hosts_n);
    let w = window(rng, data_hours, hours_w * HOUR_NS);
    format!(
        "SELECT date_bin(INTERVAL '1 {bucket}', time) AS {bucket}, {} FROM cpu WHERE hostname IN ({list}) AND {} GROUP BY {bucket} ORDER BY {bucket}",
        max_of(metrics),
        time_filter(w)
    )
}

/// The suite: six of the fifteen TSBS query types, `runs` parameter draws each.
pub fn suite(seed: u64, hosts: u64, hours: u64, runs: usize) -> Vec<Query> {
    let mut rng = Rng::new(mix64(seed ^ 0x7473_6273_0000_0001));
    let mut draw = |f: fn(&mut Rng, u64, u64) -> String| -> Vec<String> {
        (0..runs).map(|_| f(&mut rng, hosts, hours)).collect()
    };
    vec![
        Query {
            name: "single-groupby-1-1-1",
            sql: draw(|r, h, d| groupby(r, h, d, 1, 1, 1, "minute")),
        },
        Query {
            name: "single-groupby-5-8-1",
            sql: draw(|r, h, d| groupby(r, h, d, 5, 8, 1, "minute")),
        },
        Query {
            name: "cpu-max-all-8",
            sql: draw(|r, h, d| groupby(r, h, d, 10, 8, 8, "hour")),
        },
        Query {
            name: "double-groupby-1",
            sql: draw(|r, _, d| {
                format!(
                    "SELECT date_bin(INTERVAL '1 hour', time) AS hour, hostname, avg(usage_user) AS mean_usage_user FROM cpu WHERE {} GROUP BY hour, hostname ORDER BY hour, hostname",
                    time_filter(window(r, d, 12 * HOUR_NS))
                )
            }),
        },
        Query {
            name: "high-cpu-all",
            sql: draw(|r, _, d| {
                format!(
                    "SELECT * FROM cpu WHERE usage_user > 90.0 AND {}",
                    time_filter(window(r, d, 12 * HOUR_NS))
                )
            }),
        },
        Query {
            name: "lastpoint",
            sql: draw(|_, _, _| {
                "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC".to_string()
            }),
        },
    ]
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
