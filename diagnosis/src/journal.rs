//! The diagnosis journal: jobs diagnosed once, as they end, and the
//! results kept as rows, so the fleet view ([`crate::bulk::host_impact`])
//! of a range is a read of those rows instead of a diagnosis of every job
//! in it (minutes on a 100,000-host store, where the probes read the
//! hardware of every host the range's jobs ran on).
//!
//! A pass diagnoses the jobs that ended in `(watermark, hi]` and writes,
//! in **one** line-protocol body (one WAL entry: a pass is stored whole or
//! not at all, and a crash redoes it), three tables of the job's database:
//!
//! | table | tags | fields | `time` |
//! |---|---|---|---|
//! | `diagnosis_jobs` | `job_id` | `status`, `top_cause`, `causes` (reported kinds, comma-separated), `cost_ns`, `wall_ns`, `start_ns` | the job's end |
//! | `diagnosis_host_harm` | `hostname`, `job_id` | `cost_ns`, `causes`, `start_ns` ([`JobHostHarm`]) | the job's end |
//! | `diagnosis_passes` | | `from_ns`, `jobs` | the pass's `hi` |
//!
//! # Invariants
//! - Passes are contiguous: each starts one nanosecond after the newest
//!   `diagnosis_passes` row, so the journal covers from the first pass's
//!   `from_ns` to the newest pass's `time` without a gap, across restarts.
//! - `hi` trails the newest job end by [`JournalOptions::settle_ns`] (the
//!   jobs' hardware telemetry arrives after them), unless the wall clock is
//!   past the newest end by as much: then every job is taken. Time follows
//!   the data, so a fleet written into the past is journaled too.
//! - A job whose `job_runs` row arrives after a pass covered its end is not
//!   journaled (the per-job and the computed views still see it).
//! - Re-diagnosing a job overwrites its rows (same series, same `time`).

use std::collections::BTreeSet;

use arrow::record_batch::RecordBatch;
use fleetlake_ingest::lp_writer::{push_measurement, push_string_value, push_tag};
use fleetlake_query::QueryEngine;

use crate::bulk::{HostImpact, JobHostHarm, fold_impact, harms};
use crate::cause::CauseKind;
use crate::error::{Error, Result};
use crate::fetch::rows::Rows;
use crate::report::Report;
use crate::sql::ts;
use crate::table_functions::serde_name;

pub const JOBS_TABLE: &str = "diagnosis_jobs";
pub const HARM_TABLE: &str = "diagnosis_host_harm";
pub const PASSES_TABLE: &str = "diagnosis_passes";

const MINUTE_NS: i64 = 60_000_000_000;

/// When and how much a pass takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// A job is journaled this long after the newest job end. 5 min.
    pub settle_ns: i64,
    /// The first pass of a database starts this long before its `hi`. 1 h.
    pub backfill_ns: i64,
    /// Most of a range one pass takes (a journal behind catches up in
    /// steps). 1 h.
    pub max_span_ns: i64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            settle_ns: 5 * MINUTE_NS,
            backfill_ns: 60 * MINUTE_NS,
            max_span_ns: 60 * MINUTE_NS,
        }
    }
}

/// The range the next pass of `db` should take, `None` when there is
/// nothing new (or no `job_runs` table).
///
/// # Errors
/// [`Error::RangeQuery`] when reading the newest job or pass fails.
pub async fn next_range(
    engine: &QueryEngine,
    db: &str,
    now_ns: i64,
    options: &JournalOptions,
) -> Result<Option<(i64, i64)>> {
    let tables: BTreeSet<String> = engine.ingester().tables(db).into_iter().collect();
    if !tables.contains("job_runs") {
        return Ok(None);
    }
    let Some(newest) = max_time(engine, db, "job_runs").await? else {
        return Ok(None);
    };
    let hi = (newest - options.settle_ns).max(newest.min(now_ns - options.settle_ns));
    let watermark = if tables.contains(PASSES_TABLE) {
        max_time(engine, db, PASSES_TABLE).await?
    } else {
        None
    };
    let lo = match watermark {
        Some(w) => w.saturating_add(1),
        None => hi.saturating_sub(options.backfill_ns),
    };
    if lo > hi {
        return Ok(None);
    }
    Ok(Some((lo, hi.min(lo.saturating_add(options.max_span_ns)))))
}

async fn max_time(engine: &QueryEngine, db: &str, table: &str) -> Result<Option<i64>> {
    let sql = format!("SELECT CAST(max(time) AS BIGINT) AS t FROM {table}");
    Ok(query(engine, db, table, &sql)
        .await?
        .iter()
        .find_map(|b| (b.num_rows() > 0).then(|| Rows::new(b).ints("t").get(0))?))
}

/// Runs one journal read; a failure names the table read.
async fn query(engine: &QueryEngine, db: &str, table: &str, sql: &str) -> Result<Vec<RecordBatch>> {
    match engine.query_collect(db, sql).await {
        Ok((_, batches)) => Ok(batches),
        Err(e) => Err(Error::RangeQuery {
            what: table.to_owned(),
            kind: crate::fetch::failure(&e),
            message: e.to_string(),
        }),
    }
}

/// The line-protocol body of a pass over `(lo, hi)`: each diagnosed job's
/// rows, then the pass's own row (see the module docs). A job that could
/// not be diagnosed has no row.
pub fn pass_lines(reports: &[(String, Result<Report>)], lo: i64, hi: i64) -> String {
    let mut out = String::new();
    let mut jobs = 0u64;
    // A tag value ending in `\` does not read back from line protocol:
    // such a job (or host) has no row rather than failing the pass.
    let storable = |s: &str| !s.ends_with('\\');
    for r in reports.iter().filter_map(|(_, r)| r.as_ref().ok()) {
        if !storable(&r.job_id) {
            continue;
        }
        jobs += 1;
        let reported: Vec<CauseKind> = r.reported().map(|c| c.kind).collect();
        push_measurement(&mut out, JOBS_TABLE);
        push_tag(&mut out, "job_id", &r.job_id);
        out.push_str(" status=");
        push_string_value(&mut out, &serde_name(&r.status));
        out.push_str(",top_cause=");
        push_string_value(
            &mut out,
            &reported.first().map(serde_name).unwrap_or_default(),
        );
        out.push_str(",causes=");
        push_string_value(&mut out, &names(&reported));
        let cost: i64 = r.reported().map(|c| c.cost_ns).sum();
        out.push_str(&format!(
            ",cost_ns={cost}i,wall_ns={}i,start_ns={}i {}\n",
            r.wall_ns, r.start_ns, r.end_ns
        ));
        for h in harms(r).into_iter().filter(|h| storable(&h.hostname)) {
            push_measurement(&mut out, HARM_TABLE);
            push_tag(&mut out, "hostname", &h.hostname);
            push_tag(&mut out, "job_id", &h.job_id);
            out.push_str(&format!(" cost_ns={}i,causes=", h.cost_ns));
            push_string_value(&mut out, &names(&h.kinds));
            out.push_str(&format!(",start_ns={}i {}\n", h.start_ns, h.end_ns));
        }
    }
    push_measurement(&mut out, PASSES_TABLE);
    out.push_str(&format!(" from_ns={lo}i,jobs={jobs}i {hi}\n"));
    out
}

fn names(kinds: &[CauseKind]) -> String {
    kinds.iter().map(serde_name).collect::<Vec<_>>().join(",")
}

/// The fleet view of a range read from the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalImpact {
    /// Jobs journaled in the range.
    pub jobs: usize,
    pub hosts: Vec<HostImpact>,
    /// The range was read up to here: the newest pass, when `end` is past
    /// it (the jobs of the last minutes are not journaled yet).
    pub until_ns: i64,
}

/// The journal's coverage of `db`: from the first pass's start to the
/// newest pass's end; `None` before a first pass.
///
/// # Errors
/// [`Error::RangeQuery`] when the read fails.
pub async fn coverage(engine: &QueryEngine, db: &str) -> Result<Option<(i64, i64)>> {
    if !engine
        .ingester()
        .tables(db)
        .iter()
        .any(|t| t == PASSES_TABLE)
    {
        return Ok(None);
    }
    let sql =
        format!("SELECT min(from_ns) AS lo, CAST(max(time) AS BIGINT) AS hi FROM {PASSES_TABLE}");
    Ok(query(engine, db, PASSES_TABLE, &sql)
        .await?
        .iter()
        .find_map(|b| {
            let r = Rows::new(b);
            Some((r.ints("lo").get(0)?, r.ints("hi").get(0)?))
        }))
}

/// The hosts that hurt the jobs that ended from `start_ns` to `end_ns`, as
/// [`crate::bulk::host_impact`] of those jobs' reports, from the journal;
/// `None` when the journal does not cover `start_ns`.
///
/// # Errors
/// [`Error::RangeQuery`] when a read fails.
pub async fn read_impact(
    engine: &QueryEngine,
    db: &str,
    start_ns: i64,
    end_ns: i64,
) -> Result<Option<JournalImpact>> {
    let Some((from, to)) = coverage(engine, db).await? else {
        return Ok(None);
    };
    if start_ns < from || start_ns > to {
        return Ok(None);
    }
    let until = end_ns.min(to);
    let range = format!("time >= {} AND time <= {}", ts(start_ns), ts(until));
    let tables: BTreeSet<String> = engine.ingester().tables(db).into_iter().collect();
    let mut jobs = 0;
    if tables.contains(JOBS_TABLE) {
        let sql = format!("SELECT count(*) AS n FROM {JOBS_TABLE} WHERE {range}");
        jobs = query(engine, db, JOBS_TABLE, &sql)
            .await?
            .iter()
            .find_map(|b| Rows::new(b).ints("n").get(0))
            .unwrap_or(0) as usize;
    }
    let mut rows = Vec::new();
    if tables.contains(HARM_TABLE) {
        // In the bulk form's order (by end, then job), so ties for a host's
        // worst job go the same way.
        let sql = format!(
            "SELECT hostname, job_id, cost_ns, causes, start_ns, CAST(time AS BIGINT) AS end_ns \
             FROM {HARM_TABLE} WHERE {range} ORDER BY end_ns, job_id, hostname"
        );
        for b in &query(engine, db, HARM_TABLE, &sql).await? {
            let r = Rows::new(b);
            let (host, job, cost, causes, start, end) = (
                r.strings("hostname"),
                r.strings("job_id"),
                r.ints("cost_ns"),
                r.strings("causes"),
                r.ints("start_ns"),
                r.ints("end_ns"),
            );
            for i in 0..r.len() {
                let (Some(h), Some(j), Some(e)) = (host.get(i), job.get(i), end.get(i)) else {
                    continue;
                };
                rows.push(JobHostHarm {
                    hostname: h.to_owned(),
                    job_id: j.to_owned(),
                    cost_ns: cost.get(i).unwrap_or(0),
                    kinds: causes
                        .get(i)
                        .unwrap_or("")
                        .split(',')
                        .filter_map(parse_kind)
                        .collect(),
                    start_ns: start.get(i).unwrap_or(e),
                    end_ns: e,
                });
            }
        }
    }
    Ok(Some(JournalImpact {
        jobs,
        hosts: fold_impact(rows),
        until_ns: until,
    }))
}

fn parse_kind(name: &str) -> Option<CauseKind> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}
