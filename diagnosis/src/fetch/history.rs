//! Host history: how the tasks of **other** jobs fared on a host around
//! this job's time. One slow task is a straggler; the same host slowing
//! other jobs' tasks too is a slow host (a noisy neighbour, a bad kernel,
//! a degraded part no telemetry measures).
//!
//! Only hosts that look slow in this job are asked about (an attempt at
//! least [`CANDIDATE_RATIO`] its stage's median duration, at most
//! [`MAX_HOSTS`] of them, the slowest first), in one query over
//! `job_tasks` from [`LoadOptions::history_lookback_ns`] before the job to
//! its end. Each other task is compared with the median of its own stage
//! (stages of at least 3 successful tasks), so the figure does not depend
//! on what the jobs were.
//!
//! The bulk form ([`fill_from_jobs`]) compares each job with the other jobs
//! loaded with it (those that ended in the range), in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fleetlake_query::QueryEngine;

use super::rows::Rows;
use super::{LoadOptions, job_window};
use crate::model::{HostHistory, JobInput, Status};
use crate::sql::{lit, lits, ts};

/// An attempt this much slower than its stage's median makes its host a
/// candidate.
pub const CANDIDATE_RATIO: f64 = 1.5;
/// Hosts asked about per job.
pub const MAX_HOSTS: usize = 8;

/// The job's host history (see the module docs); a failed query gives
/// none and a note.
pub(crate) async fn host_history(
    engine: &QueryEngine,
    db: &str,
    tables: &BTreeSet<String>,
    input: &JobInput,
    options: &LoadOptions,
) -> (Vec<HostHistory>, Option<String>) {
    let mut out = Vec::new();
    if !tables.contains("job_tasks") {
        return (out, None);
    }
    let hosts = candidates(input);
    if hosts.is_empty() {
        return (out, None);
    }
    let Some((start, end)) = job_window(input) else {
        return (out, None);
    };
    let (lo, hi) = (start - options.history_lookback_ns, end.max(start));
    let sql = history_sql(&input.job_id, &hosts, lo, hi);
    match engine.query_collect(db, &sql).await {
        Ok((_, batches)) => {
            for b in &batches {
                let rows = Rows::new(b);
                let (host, tasks, mean) = (
                    rows.strings("hostname"),
                    rows.ints("tasks"),
                    rows.floats("mean_slowdown"),
                );
                for i in 0..rows.len() {
                    let (Some(h), Some(n), Some(m)) = (host.get(i), tasks.get(i), mean.get(i))
                    else {
                        continue;
                    };
                    if n > 0 && m.is_finite() {
                        out.push(HostHistory {
                            hostname: h.to_owned(),
                            tasks: n as u64,
                            mean_slowdown: m,
                            start_ns: lo,
                            end_ns: hi,
                            sql: sql.clone(),
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
            (out, None)
        }
        Err(e) => (
            out,
            Some(format!("the hosts' other jobs were not compared: {e}")),
        ),
    }
}

/// The bulk form of [`host_history`]: each job's candidate hosts compared
/// with the other jobs of `jobs` over the same window, without a query.
pub(crate) fn fill_from_jobs(jobs: &mut BTreeMap<String, JobInput>, lookback_ns: i64) {
    // Host → (job, task end, slowdown) of every other job's task.
    let mut by_host: HashMap<String, Vec<(usize, i64, f64)>> = HashMap::new();
    for (i, j) in jobs.values().enumerate() {
        for (host, end, r) in slowdowns(j) {
            by_host
                .entry(host.to_owned())
                .or_default()
                .push((i, end, r));
        }
    }
    for (i, j) in jobs.values_mut().enumerate() {
        let Some((start, end)) = job_window(j) else {
            continue;
        };
        let (lo, hi) = (start - lookback_ns, end.max(start));
        for host in candidates(j) {
            let logs: Vec<f64> = by_host
                .get(&host)
                .into_iter()
                .flatten()
                .filter(|(k, t, _)| *k != i && (lo..=hi).contains(t))
                .map(|(_, _, r)| r.ln())
                .collect();
            if logs.is_empty() {
                continue;
            }
            let sql = history_sql(&j.job_id, std::slice::from_ref(&host), lo, hi);
            j.host_history.push(HostHistory {
                hostname: host,
                tasks: logs.len() as u64,
                mean_slowdown: (logs.iter().sum::<f64>() / logs.len() as f64).exp(),
                start_ns: lo,
                end_ns: hi,
                sql,
            });
        }
    }
}

/// (host, end, duration over its stage's median) of each successful
/// attempt in a stage of at least 3 of them.
pub(super) fn slowdowns(input: &JobInput) -> impl Iterator<Item = (&str, i64, f64)> {
    let mut by_stage: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for a in input
        .attempts
        .iter()
        .filter(|a| a.status == Status::Succeeded)
    {
        by_stage
            .entry(a.stage_id)
            .or_default()
            .push(a.duration_ns());
    }
    let medians: BTreeMap<u32, f64> = by_stage
        .into_iter()
        .filter(|(_, d)| d.len() >= 3)
        .map(|(s, mut d)| {
            d.sort_unstable();
            (s, d[d.len() / 2] as f64)
        })
        .collect();
    input.attempts.iter().filter_map(move |a| {
        let m = *medians.get(&a.stage_id)?;
        (a.status == Status::Succeeded && !a.hostname.is_empty() && m > 0.0 && a.duration_ns() > 0)
            .then(|| (a.hostname.as_str(), a.end_ns, a.duration_ns() as f64 / m))
    })
}

/// The hosts of this job's successful attempts that ran at least
/// [`CANDIDATE_RATIO`] their stage's median duration, slowest first.
fn candidates(input: &JobInput) -> Vec<String> {
    let mut slowest: BTreeMap<&str, f64> = BTreeMap::new();
    for (host, _, r) in slowdowns(input) {
        if r >= CANDIDATE_RATIO {
            let e = slowest.entry(host).or_insert(r);
            *e = e.max(r);
        }
    }
    let mut hosts: Vec<(&str, f64)> = slowest.into_iter().collect();
    hosts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    hosts
        .into_iter()
        .take(MAX_HOSTS)
        .map(|(h, _)| h.to_owned())
        .collect()
}

/// Per host: the other jobs' successful tasks in `[lo, hi]` (by `time`, a
/// task row's end) and their geometric-mean duration over their stage's
/// median.
fn history_sql(job_id: &str, hosts: &[String], lo: i64, hi: i64) -> String {
    let hosts = lits(hosts.iter().map(String::as_str));
    let window = format!("time >= {} AND time <= {}", ts(lo), ts(hi));
    format!(
        "WITH other AS (\
           SELECT DISTINCT job_id FROM job_tasks \
           WHERE {window} AND hostname IN ({hosts}) AND job_id <> {me}), \
         t AS (\
           SELECT job_id, stage_id, hostname, CAST(duration_ms AS DOUBLE) AS d FROM job_tasks \
           WHERE {window} AND status = 'SUCCEEDED' AND job_id IN (SELECT job_id FROM other)), \
         m AS (\
           SELECT job_id, stage_id, median(d) AS med, count(*) AS n FROM t GROUP BY job_id, stage_id) \
         SELECT t.hostname, count(*) AS tasks, exp(avg(ln(t.d / m.med))) AS mean_slowdown \
         FROM t JOIN m ON t.job_id = m.job_id AND t.stage_id = m.stage_id \
         WHERE t.hostname IN ({hosts}) AND m.n >= 3 AND m.med > 0 AND t.d > 0 \
         GROUP BY t.hostname",
        me = lit(job_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_quotes_what_it_is_given() {
        let sql = history_sql("job_1", &["host_1".into(), "o'brien".into()], 0, 1);
        assert!(sql.contains("'o''brien'"), "{sql}");
        assert!(sql.contains("job_id <> 'job_1'"), "{sql}");
    }
}
