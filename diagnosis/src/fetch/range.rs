//! Many jobs at once ([`load_range`]): every job whose `job_runs` row
//! (its end) falls in a time range, for the bulk forms (the
//! `job_diagnoses` and `host_impact` table functions, the fleet view).
//!
//! The per-job loader asks a handful of queries per job; at thousands of
//! jobs that is the cost. Here each job table is read once over the range
//! (stages and tasks from the earliest submit, less the margin), rows are
//! grouped by `job_id` in memory, and the hardware probes run once per
//! chunk of [`RangeOptions::host_chunk`] hosts over the whole range; each
//! job then keeps the signals of its own hosts that overlap its window
//! (from [`LoadOptions::hardware_lookback_ns`] before it starts). The
//! hosts that look slow in a job are compared with the other jobs of the
//! range in memory (`history::fill_from_jobs`), not by a query per job.
//!
//! # Invariants
//! - Only finished jobs: a job is in the range by its `job_runs` row.
//! - At most [`RangeOptions::max_jobs`] jobs: more is
//!   [`Error::TooManyJobs`], never a truncated answer.
//! - A job's notes say what its hardware search missed, as for one job.

use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;
use fleetlake_query::QueryEngine;

use super::{
    JOB_TABLES, LoadOptions, failure, has_hardware, hosts, job_window, missing_note,
    parse_attempts, parse_runs, parse_stages, search,
};
use crate::error::{Error, Result};
use crate::model::{HostSignal, JobInput, JobRun};
use crate::sql::ts;

/// How much a bulk diagnosis reads at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeOptions {
    pub load: LoadOptions,
    /// Most jobs in one range. 20,000.
    pub max_jobs: usize,
    /// Hosts per hardware probe query (the `IN` list). 500.
    pub host_chunk: usize,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            load: LoadOptions::default(),
            max_jobs: 20_000,
            host_chunk: 500,
        }
    }
}

/// The jobs of database `db` that ended from `start_ns` to `end_ns`
/// (inclusive), loaded as [`super::load`] loads one, ordered by end.
///
/// # Errors
/// [`Error::TooManyJobs`] past [`RangeOptions::max_jobs`];
/// [`Error::RangeQuery`] when reading a job table fails;
/// [`Error::Invalid`] for a row whose ids do not parse.
pub async fn load_range(
    engine: &QueryEngine,
    db: &str,
    start_ns: i64,
    end_ns: i64,
    options: &RangeOptions,
) -> Result<Vec<JobInput>> {
    let tables: BTreeSet<String> = engine.ingester().tables(db).into_iter().collect();
    if !tables.contains("job_runs") || end_ns < start_ns {
        return Ok(Vec::new());
    }
    let in_range = |lo: i64, hi: i64| format!("time >= {} AND time <= {}", ts(lo), ts(hi));

    // The latest run row of each job that ended in the range.
    let mut runs: BTreeMap<String, (JobRun, i64)> = BTreeMap::new();
    let sql = format!(
        "SELECT * FROM job_runs WHERE {}",
        in_range(start_ns, end_ns)
    );
    for b in read(engine, db, "job_runs", &sql).await? {
        for (run, t) in parse_runs(&b) {
            match runs.get(&run.job_id) {
                Some((_, seen)) if *seen >= t => {}
                _ => {
                    runs.insert(run.job_id.clone(), (run, t));
                }
            }
        }
    }
    if runs.len() > options.max_jobs {
        return Err(Error::TooManyJobs {
            jobs: runs.len(),
            max: options.max_jobs,
        });
    }
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let margin = options.load.margin_ns;
    let lo = runs
        .values()
        .map(|(r, t)| {
            [r.submit_ns, r.start_ns]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(*t)
        })
        .min()
        .unwrap_or(start_ns)
        - margin;
    let hi = end_ns + margin;

    let mut jobs: BTreeMap<String, JobInput> = runs
        .into_iter()
        .map(|(id, (run, _))| {
            let input = JobInput {
                job_id: id.clone(),
                run: Some(run),
                stages: Vec::new(),
                attempts: Vec::new(),
                signals: None,
                notes: Vec::new(),
                host_history: Vec::new(),
            };
            (id, input)
        })
        .collect();
    for table in &JOB_TABLES[1..] {
        if !tables.contains(*table) {
            continue;
        }
        let sql = format!("SELECT * FROM {table} WHERE {}", in_range(lo, hi));
        for b in read(engine, db, table, &sql).await? {
            if *table == "job_stages" {
                for (job, stage) in parse_stages(&b, "")? {
                    if let Some(j) = jobs.get_mut(&job) {
                        j.stages.push(stage);
                    }
                }
            } else {
                for (job, attempt) in parse_attempts(&b, "")? {
                    if let Some(j) = jobs.get_mut(&job) {
                        j.attempts.push(attempt);
                    }
                }
            }
        }
    }
    for j in jobs.values_mut() {
        j.stages.sort_by_key(|s| s.stage_id);
        j.attempts
            .sort_by_key(|a| (a.stage_id, a.task_id, a.attempt));
    }

    if has_hardware(&tables) {
        hardware(engine, db, &tables, &mut jobs, options).await;
    }
    super::history::fill_from_jobs(&mut jobs, options.load.history_lookback_ns);
    let mut out: Vec<JobInput> = jobs.into_values().collect();
    out.sort_by_key(|j| (j.run.as_ref().and_then(|r| r.end_ns), j.job_id.clone()));
    Ok(out)
}

async fn read(engine: &QueryEngine, db: &str, what: &str, sql: &str) -> Result<Vec<RecordBatch>> {
    match engine.query_collect(db, sql).await {
        Ok((_, batches)) => Ok(batches),
        Err(e) => Err(Error::RangeQuery {
            what: what.to_owned(),
            kind: failure(&e),
            message: e.to_string(),
        }),
    }
}

/// A job's hosts and its window (from the hardware look-back to its end).
type JobScope = (Vec<String>, Option<(i64, i64)>);

/// Searches every job's hosts once over the union of the jobs' windows,
/// and hands each job the signals of its hosts that overlap its window.
async fn hardware(
    engine: &QueryEngine,
    db: &str,
    tables: &BTreeSet<String>,
    jobs: &mut BTreeMap<String, JobInput>,
    options: &RangeOptions,
) {
    let lookback = options.load.hardware_lookback_ns;
    // Each job's hosts and window.
    let mut scopes: BTreeMap<String, JobScope> = BTreeMap::new();
    let mut all_hosts = BTreeSet::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (id, j) in jobs.iter() {
        let hs = hosts(&j.attempts);
        let window = job_window(j).map(|(s, e)| (s - lookback, e.max(s)));
        if let Some((s, e)) = window {
            lo = lo.min(s);
            hi = hi.max(e);
            all_hosts.extend(hs.iter().cloned());
        }
        scopes.insert(id.clone(), (hs, window));
    }
    let all_hosts: Vec<String> = all_hosts.into_iter().collect();
    let mut by_host: BTreeMap<String, Vec<HostSignal>> = BTreeMap::new();
    let mut notes = BTreeSet::new();
    for chunk in all_hosts.chunks(options.host_chunk.max(1)) {
        let (found, failed) = search(engine, db, tables, chunk, (lo, hi), (chunk.len(), 1)).await;
        notes.extend(failed);
        for s in found {
            by_host.entry(s.hostname.clone()).or_default().push(s);
        }
    }
    let missing = missing_note(tables);
    for (id, j) in jobs.iter_mut() {
        let (hs, window) = &scopes[id];
        let mut signals = Vec::new();
        if let Some((s, e)) = window {
            for h in hs {
                signals.extend(
                    by_host
                        .get(h)
                        .into_iter()
                        .flatten()
                        .filter(|sig| sig.start_ns <= *e && sig.end_ns >= *s)
                        .map(|sig| clip(sig, *s, *e)),
                );
            }
        }
        signals.sort_by(|a, b| {
            (&a.hostname, &a.kind, a.start_ns).cmp(&(&b.hostname, &b.kind, b.start_ns))
        });
        j.notes.extend(notes.iter().cloned());
        j.notes.extend(missing.clone());
        j.signals = Some(signals);
    }
}

/// A signal cut to a job's window (and the minute after its end), as the
/// per-job search, bounded by that window, would have found it.
fn clip(sig: &HostSignal, start_ns: i64, end_ns: i64) -> HostSignal {
    const MINUTE_NS: i64 = 60_000_000_000;
    let mut s = sig.clone();
    s.start_ns = s.start_ns.max(start_ns - start_ns.rem_euclid(MINUTE_NS));
    s.end_ns = s.end_ns.min(end_ns + MINUTE_NS).max(s.start_ns);
    s
}
