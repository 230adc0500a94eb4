//! Loading one job from the store: its rows by SQL, then the hardware
//! signals of the hosts it touched ([`load`]).
//!
//! # How the rows are found
//! `time` is the **end** of each row (a task row at its attempt's end, a
//! job row at the job's end). So the `job_runs` row comes first: its span
//! (submit → end, widened by [`LoadOptions::margin_ns`]) bounds the
//! `job_stages` and `job_tasks` scans on `time`, which prunes partitions
//! and files. A running job has no `job_runs` row yet: its stages and
//! tasks are read by `job_id` alone and the report says it is running.
//!
//! Hardware evidence ([`signals`]) is searched on the hosts the attempts
//! ran on and the hosts their errors blame (a fetch failure names the
//! shuffle source), from [`LoadOptions::hardware_lookback_ns`] before the
//! job starts (the anomaly functions learn before they score) to its end.
//!
//! # Invariants
//! - Every value in the SQL is quoted with [`crate::sql::lit`], and the job
//!   id is validated first ([`validate_job_id`]).
//! - No hardware table at all: `signals` is `None` (job-only causes). A
//!   missing table or a signal query that fails: the other signals are
//!   kept and a note says what was not searched. Neither is an error.
//! - An unknown job is [`Error::NotFound`] naming it.

mod history;
mod range;
pub(crate) mod rows;
mod signals;

use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;
use fleetlake_query::QueryEngine;
use futures::StreamExt;

use crate::error::{Error, QueryFailure, Result};
use crate::error_class::ErrorClass;
use crate::model::{Attempt, HostSignal, JobInput, JobRun, Stage, Status};
use crate::sql::{lit, ts};
use rows::Rows;
use signals::Scope;

pub use range::{RangeOptions, load_range};

const MINUTE_NS: i64 = 60_000_000_000;

/// The job tables, as the simulator and collectors write them.
pub const JOB_TABLES: [&str; 3] = ["job_runs", "job_stages", "job_tasks"];

/// The hardware tables the signals read.
pub const HARDWARE_TABLES: [&str; 7] = [
    "diskio_hw",
    "smart",
    "edac",
    "mce",
    "cpu_thermal",
    "nic",
    "heartbeat",
];

/// Longest job id accepted.
pub const MAX_JOB_ID_LEN: usize = 256;

/// How far around the job to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Hardware is searched from this long before the job starts: the
    /// `anomaly_score` probes learn 150 points (25 min at 10 s) before they
    /// score, and the counter probes look back up to 15 min. 30 min.
    pub hardware_lookback_ns: i64,
    /// Stage and task rows are searched this far outside the `job_runs`
    /// span (reporters' clocks and rounding). 5 min.
    pub margin_ns: i64,
    /// Other jobs' tasks on a slow-looking host are compared from this long
    /// before the job starts (`fetch::history`). 2 h.
    pub history_lookback_ns: i64,
    /// A job that ran on more hosts has its hardware searched on this many
    /// ([`hosts_of_interest`]): the probes' cost grows with the hosts. 100.
    pub max_probed_hosts: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            hardware_lookback_ns: 30 * MINUTE_NS,
            margin_ns: 5 * MINUTE_NS,
            history_lookback_ns: 120 * MINUTE_NS,
            max_probed_hosts: 100,
        }
    }
}

/// Checks a job id before it goes anywhere near SQL: 1 to
/// [`MAX_JOB_ID_LEN`] characters of `[A-Za-z0-9._:-]`.
///
/// # Errors
/// [`Error::BadJobId`] saying what is wrong.
pub fn validate_job_id(job_id: &str) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::BadJobId {
            job_id: job_id.to_owned(),
            reason,
        })
    };
    if job_id.is_empty() {
        return bad("it is empty".into());
    }
    if job_id.len() > MAX_JOB_ID_LEN {
        return bad(format!("longer than {MAX_JOB_ID_LEN} bytes"));
    }
    if let Some(c) = job_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return bad(format!(
            "{c:?} is not allowed (letters, digits, '.', '_', ':' and '-' only)"
        ));
    }
    Ok(())
}

/// Hardware probes of one job run at once (see [`search`]).
const PROBES_AT_ONCE: usize = 4;

/// Reads job `job_id` of database `db`: its `job_runs` row, stages and
/// attempts, and the hardware signals of its hosts (see the module docs).
///
/// # Errors
/// [`Error::BadJobId`] for an id that is not one; [`Error::NotFound`] when
/// no job table has a row for it; [`Error::Query`] when reading the job's
/// rows fails; [`Error::Invalid`] for a row whose ids do not parse.
pub async fn load(
    engine: &QueryEngine,
    db: &str,
    job_id: &str,
    options: &LoadOptions,
) -> Result<JobInput> {
    validate_job_id(job_id)?;
    let tables: BTreeSet<String> = engine.ingester().tables(db).into_iter().collect();
    let not_found = || Error::NotFound {
        job_id: job_id.to_owned(),
        db: db.to_owned(),
    };
    if !JOB_TABLES.iter().any(|t| tables.contains(*t)) {
        return Err(not_found());
    }
    let reader = Reader { engine, db, job_id };
    let run = if tables.contains("job_runs") {
        reader.run().await?
    } else {
        None
    };
    // The job's span bounds the other scans (`time` is each row's end).
    let span = run.as_ref().map(|(r, time)| {
        let start = [r.submit_ns, r.start_ns]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(*time);
        let end = r.end_ns.unwrap_or(*time).max(*time);
        (start - options.margin_ns, end + options.margin_ns)
    });
    let mut stages = Vec::new();
    let mut attempts = Vec::new();
    for pass_span in [span, None] {
        let read_stages = async {
            match tables.contains("job_stages") {
                true => reader.stages(pass_span).await,
                false => Ok(Vec::new()),
            }
        };
        let read_attempts = async {
            match tables.contains("job_tasks") {
                true => reader.attempts(pass_span).await,
                false => Ok(Vec::new()),
            }
        };
        (stages, attempts) = futures::try_join!(read_stages, read_attempts)?;
        // Rows outside the run's span (a reporter's clock): look again
        // without the time filter before giving up.
        if pass_span.is_none() || !(stages.is_empty() && attempts.is_empty()) {
            break;
        }
    }
    if run.is_none() && stages.is_empty() && attempts.is_empty() {
        return Err(not_found());
    }
    let run = run.map(|(r, _)| r);

    let mut input = JobInput {
        job_id: job_id.to_owned(),
        run,
        stages,
        attempts,
        signals: None,
        notes: Vec::new(),
        host_history: Vec::new(),
    };
    let ((signals, hw_notes), (host_history, history_note)) = futures::join!(
        hardware(engine, db, &tables, &input, options),
        history::host_history(engine, db, &tables, &input, options)
    );
    input.signals = signals;
    input.notes.extend(hw_notes);
    input.notes.extend(history_note);
    input.host_history = host_history;
    Ok(input)
}

/// Reads the job tables for one job.
struct Reader<'a> {
    engine: &'a QueryEngine,
    db: &'a str,
    job_id: &'a str,
}

impl Reader<'_> {
    async fn query(&self, what: &str, sql: &str) -> Result<Vec<RecordBatch>> {
        match self.engine.query_collect(self.db, sql).await {
            Ok((_, batches)) => Ok(batches),
            Err(e) => Err(query_error(self.job_id, what, e)),
        }
    }

    /// The `job_runs` row and its `time`; the latest if there are several.
    async fn run(&self) -> Result<Option<(JobRun, i64)>> {
        let sql = format!("SELECT * FROM job_runs WHERE job_id = {}", lit(self.job_id));
        let mut best: Option<(JobRun, i64)> = None;
        for b in self.query("job_runs", &sql).await? {
            for (run, t) in parse_runs(&b) {
                if best.as_ref().is_none_or(|(_, bt)| *bt < t) {
                    best = Some((run, t));
                }
            }
        }
        Ok(best)
    }

    fn filter(&self, span: Option<(i64, i64)>) -> String {
        let mut f = format!("job_id = {}", lit(self.job_id));
        if let Some((lo, hi)) = span {
            f.push_str(&format!(" AND time >= {} AND time <= {}", ts(lo), ts(hi)));
        }
        f
    }

    async fn stages(&self, span: Option<(i64, i64)>) -> Result<Vec<Stage>> {
        let sql = format!("SELECT * FROM job_stages WHERE {}", self.filter(span));
        let mut out = Vec::new();
        for b in self.query("job_stages", &sql).await? {
            out.extend(parse_stages(&b, self.job_id)?.into_iter().map(|(_, s)| s));
        }
        out.sort_by_key(|s| s.stage_id);
        Ok(out)
    }

    async fn attempts(&self, span: Option<(i64, i64)>) -> Result<Vec<Attempt>> {
        let sql = format!("SELECT * FROM job_tasks WHERE {}", self.filter(span));
        let mut out = Vec::new();
        for b in self.query("job_tasks", &sql).await? {
            out.extend(parse_attempts(&b, self.job_id)?.into_iter().map(|(_, a)| a));
        }
        out.sort_by_key(|a| (a.stage_id, a.task_id, a.attempt));
        Ok(out)
    }
}

/// A row whose id column does not parse.
fn invalid(job_id: &str, table: &str, column: &str, value: Option<&str>) -> Error {
    Error::Invalid(format!(
        "job {job_id}: a {table} row has {column} {value:?}, not a number"
    ))
}

/// The `job_runs` rows of a batch, with their `time`. A row without a
/// `job_id` column (or value) is not a job's.
fn parse_runs(b: &RecordBatch) -> Vec<(JobRun, i64)> {
    let r = Rows::new(b);
    let (job, user, queue, status, submit, start, end, time) = (
        r.strings("job_id"),
        r.strings("user"),
        r.strings("queue"),
        r.strings("status"),
        r.ints("submit_ns"),
        r.ints("start_ns"),
        r.ints("end_ns"),
        r.ints("time"),
    );
    let mut out = Vec::new();
    for i in 0..r.len() {
        let (Some(job_id), Some(t)) = (job.get(i), time.get(i)) else {
            continue;
        };
        out.push((
            JobRun {
                job_id: job_id.to_owned(),
                user: user.get(i).map(str::to_owned),
                queue: queue.get(i).map(str::to_owned),
                status: Status::parse(status.get(i).unwrap_or("")),
                submit_ns: submit.get(i),
                start_ns: start.get(i),
                end_ns: Some(end.get(i).unwrap_or(t)),
            },
            t,
        ));
    }
    out
}

/// The `job_stages` rows of a batch, with their job ids (`job` when the
/// batch has none).
fn parse_stages(b: &RecordBatch, job: &str) -> Result<Vec<(String, Stage)>> {
    let r = Rows::new(b);
    let (jobs, id_text, id, parents, status, start, end, tasks, attempts, failed) = (
        r.strings("job_id"),
        r.strings("stage_id"),
        r.ints("stage_id"),
        r.strings("parents"),
        r.strings("status"),
        r.ints("start_ns"),
        r.ints("end_ns"),
        r.ints("tasks"),
        r.ints("attempts"),
        r.ints("failed_attempts"),
    );
    let count = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let mut out = Vec::with_capacity(r.len());
    for i in 0..r.len() {
        let job_id = jobs.get(i).unwrap_or(job);
        let stage_id = id
            .get(i)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| invalid(job_id, "job_stages", "stage_id", id_text.get(i)))?;
        out.push((
            job_id.to_owned(),
            Stage {
                stage_id,
                parents: Stage::parse_parents(parents.get(i).unwrap_or(""))?,
                status: Status::parse(status.get(i).unwrap_or("")),
                start_ns: start.get(i),
                end_ns: end.get(i),
                tasks: count(tasks.get(i)),
                attempts: count(attempts.get(i)),
                failed_attempts: count(failed.get(i)),
            },
        ));
    }
    Ok(out)
}

/// The `job_tasks` rows of a batch, with their job ids (`job` when the
/// batch has none).
fn parse_attempts(b: &RecordBatch, job: &str) -> Result<Vec<(String, Attempt)>> {
    let r = Rows::new(b);
    let jobs = r.strings("job_id");
    let ids = ["stage_id", "task_id", "attempt"].map(|c| (r.strings(c), r.ints(c)));
    let (host, status, start, end, duration_ms, time) = (
        r.strings("hostname"),
        r.strings("status"),
        r.ints("start_ns"),
        r.ints("end_ns"),
        r.ints("duration_ms"),
        r.ints("time"),
    );
    let (read, shuffle, records, error) = (
        r.ints("bytes_read"),
        r.ints("shuffle_read_bytes"),
        r.ints("records_read"),
        r.strings("error"),
    );
    let mut out = Vec::with_capacity(r.len());
    for i in 0..r.len() {
        let job_id = jobs.get(i).unwrap_or(job);
        let mut id = [0u32; 3];
        for (k, (text, num)) in ids.iter().enumerate() {
            id[k] = num
                .get(i)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    invalid(
                        job_id,
                        "job_tasks",
                        ["stage_id", "task_id", "attempt"][k],
                        text.get(i),
                    )
                })?;
        }
        let Some(end_ns) = end.get(i).or(time.get(i)) else {
            continue;
        };
        let start_ns = start
            .get(i)
            .or_else(|| duration_ms.get(i).map(|d| end_ns - d * 1_000_000))
            .unwrap_or(end_ns);
        out.push((
            job_id.to_owned(),
            Attempt {
                stage_id: id[0],
                task_id: id[1],
                attempt: id[2],
                hostname: host.get(i).unwrap_or("").to_owned(),
                status: Status::parse(status.get(i).unwrap_or("")),
                start_ns,
                end_ns,
                bytes_read: read.get(i).unwrap_or(0),
                shuffle_read_bytes: shuffle.get(i).unwrap_or(0),
                records_read: records.get(i).unwrap_or(0),
                error: error.get(i).filter(|e| !e.is_empty()).map(str::to_owned),
            },
        ));
    }
    Ok(out)
}

fn query_error(job_id: &str, what: &str, e: fleetlake_query::Error) -> Error {
    Error::Query {
        job_id: job_id.to_owned(),
        what: what.to_owned(),
        kind: failure(&e),
        message: e.to_string(),
    }
}

/// How the query engine classified a failed query.
pub(crate) fn failure(e: &fleetlake_query::Error) -> QueryFailure {
    use fleetlake_query::Error as E;
    match e {
        E::User(_) => QueryFailure::User,
        E::NotFound(_) => QueryFailure::NotFound,
        E::Timeout { .. } => QueryFailure::Timeout,
        E::MemoryLimit { .. } => QueryFailure::MemoryLimit,
        E::ServerBusy(_) => QueryFailure::ServerBusy,
        E::Internal(_) => QueryFailure::Internal,
    }
}

/// The hosts whose hardware matters: where the attempts ran, and whom
/// their errors blame.
fn hosts(attempts: &[Attempt]) -> Vec<String> {
    let mut hosts = BTreeSet::new();
    for a in attempts {
        if !a.hostname.is_empty() {
            hosts.insert(a.hostname.clone());
        }
        if let Some(blamed) = a
            .error
            .as_deref()
            .and_then(|e| ErrorClass::parse(e).blamed_host(&a.hostname))
        {
            hosts.insert(blamed);
        }
    }
    hosts.into_iter().collect()
}

/// At most `max` hosts for a job that ran on more: the hosts of failed
/// attempts and the hosts their errors blame, then the hosts of the
/// successful attempts slowest against their stage's median (the ones a
/// hardware cause can explain; the critical path's attempts are among
/// them), then the hosts of the rest.
fn hosts_of_interest(input: &JobInput, max: usize) -> Vec<String> {
    let mut picked: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut take = |h: &str, picked: &mut Vec<String>| {
        if picked.len() < max && !h.is_empty() && seen.insert(h.to_owned()) {
            picked.push(h.to_owned());
        }
    };
    for a in input.attempts.iter().filter(|a| a.status == Status::Failed) {
        take(&a.hostname, &mut picked);
        if let Some(b) = a
            .error
            .as_deref()
            .and_then(|e| ErrorClass::parse(e).blamed_host(&a.hostname))
        {
            take(&b, &mut picked);
        }
    }
    let mut slow: Vec<(&str, f64)> = history::slowdowns(input).map(|(h, _, r)| (h, r)).collect();
    slow.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    for (h, _) in slow {
        take(h, &mut picked);
    }
    for a in &input.attempts {
        take(&a.hostname, &mut picked);
    }
    picked.sort();
    picked
}

/// The job's hardware signals (`None` with no hardware table at all) and
/// the notes on what was not searched.
async fn hardware(
    engine: &QueryEngine,
    db: &str,
    tables: &BTreeSet<String>,
    input: &JobInput,
    options: &LoadOptions,
) -> (Option<Vec<HostSignal>>, Vec<String>) {
    if !has_hardware(tables) {
        return (None, Vec::new()); // and the report says so.
    }
    let mut notes = Vec::new();
    let all = hosts(&input.attempts);
    let hosts = if all.len() > options.max_probed_hosts {
        let picked = hosts_of_interest(input, options.max_probed_hosts);
        notes.push(format!(
            "hardware searched on {} of the job's {} hosts: those of its failed attempts and the hosts their errors blame, then of its slowest attempts",
            picked.len(),
            all.len()
        ));
        picked
    } else {
        all
    };
    let Some((start, end)) = job_window(input) else {
        return (Some(Vec::new()), notes);
    };
    let (found, failed) = search(
        engine,
        db,
        tables,
        &hosts,
        (start - options.hardware_lookback_ns, end.max(start)),
        (signals::PRUNABLE_IN_LIST, PROBES_AT_ONCE),
    )
    .await;
    notes.extend(failed);
    notes.extend(missing_note(tables));
    (Some(found), notes)
}

/// Whether any hardware table exists (else the job gets job-only causes).
fn has_hardware(tables: &BTreeSet<String>) -> bool {
    HARDWARE_TABLES.iter().any(|t| tables.contains(*t))
}

/// The job's start and end: its run row's, else its rows' extremes.
fn job_window(input: &JobInput) -> Option<(i64, i64)> {
    let run = input.run.as_ref();
    let first = input
        .attempts
        .iter()
        .map(|a| a.start_ns)
        .chain(input.stages.iter().filter_map(|s| s.start_ns))
        .min();
    let last = input
        .attempts
        .iter()
        .map(|a| a.end_ns)
        .chain(input.stages.iter().filter_map(|s| s.end_ns))
        .max();
    Some((
        run.and_then(|r| r.start_ns).or(first)?,
        run.and_then(|r| r.end_ns).or(last)?,
    ))
}

/// One probe's signals, or the note saying it failed.
type Probing<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<Vec<HostSignal>, String>> + Send + 'a>,
>;

/// The signals of `hosts` from `start_ns` to `end_ns`, from the hardware
/// tables that exist, sorted by host, kind and start; a note for each
/// probe that failed. Each probe asks about `hosts_per_query` hosts at a
/// time (every signal is one host's, so the split changes no answer), and
/// up to `concurrency` queries run at once: one job's probes each read
/// little (a short `IN` list prunes), and their latency (planning,
/// opening files) overlaps; the bulk form's read whole ranges and take
/// turns.
async fn search(
    engine: &QueryEngine,
    db: &str,
    tables: &BTreeSet<String>,
    hosts: &[String],
    (start_ns, end_ns): (i64, i64),
    (hosts_per_query, concurrency): (usize, usize),
) -> (Vec<HostSignal>, Vec<String>) {
    let scopes: Vec<Scope<'_>> = hosts
        .chunks(hosts_per_query.max(1))
        .map(|hosts| Scope {
            hosts,
            start_ns,
            end_ns,
        })
        .collect();
    let probes: Vec<_> = signals::probes()
        .into_iter()
        .filter(|p| tables.contains(p.table))
        .collect();
    // Boxed, so that the stream's item type names no closure (a closure
    // returning futures is not general enough for the `Send` bound of the
    // table functions' async trait).
    let mut runs: Vec<Probing<'_>> = Vec::new();
    for scope in &scopes {
        for probe in &probes {
            runs.push(Box::pin(async move {
                probe.run(engine, db, scope).await.map_err(|e| {
                    format!(
                        "hardware signal {} ({}) not searched: {e}",
                        probe.rule, probe.table
                    )
                })
            }));
        }
        if tables.contains("heartbeat") {
            runs.push(Box::pin(async move {
                signals::heartbeat_gaps(engine, db, scope)
                    .await
                    .map_err(|e| format!("hardware signal host_down (heartbeat) not searched: {e}"))
            }));
        }
    }
    let results: Vec<_> = futures::stream::iter(runs)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut found = Vec::new();
    let mut notes = BTreeSet::new();
    for r in results {
        match r {
            Ok(s) => found.extend(s),
            Err(note) => {
                notes.insert(note);
            }
        }
    }
    let notes = notes.into_iter().collect();
    found.sort_by(|a, b| {
        (&a.hostname, &a.kind, a.start_ns).cmp(&(&b.hostname, &b.kind, b.start_ns))
    });
    (found, notes)
}

/// The note naming the hardware tables that do not exist and the signals
/// they would have given; `None` when all exist.
fn missing_note(tables: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<&str> = HARDWARE_TABLES
        .into_iter()
        .filter(|t| !tables.contains(*t))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let rules: BTreeMap<&str, Vec<&str>> = missing
        .iter()
        .map(|t| {
            let mut rules: Vec<&str> = signals::probes()
                .into_iter()
                .filter(|p| p.table == *t)
                .map(|p| p.rule)
                .collect();
            if *t == "heartbeat" {
                rules.push("host_down");
            }
            (*t, rules)
        })
        .collect();
    Some(format!(
        "no hardware table {}: those signals were not searched",
        rules
            .iter()
            .map(|(t, r)| format!("{t} ({})", r.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_checked_before_sql() {
        assert!(validate_job_id("job_000123").is_ok());
        assert!(validate_job_id("application_1700000000000_0042").is_ok());
        assert!(validate_job_id("spark-app:1.2").is_ok());
        for bad in ["", "job'1", "job 1", "job;DROP", "jöb", &"x".repeat(257)] {
            let e = validate_job_id(bad).unwrap_err();
            assert!(matches!(e, Error::BadJobId { .. }), "{bad}: {e}");
        }
        let e = validate_job_id("job'1").unwrap_err().to_string();
        assert!(e.contains("job'1") && e.contains("'\\''"), "{e}");
    }

    #[test]
    fn a_big_job_probes_its_failing_and_slowest_hosts_first() {
        let mut b = crate::testing::JobBuilder::new("job_1");
        b.stage(0, &[], 11.0);
        for t in 0..10 {
            b.task(0, t, &format!("host_{t}"), 12.0, 20.0 + f64::from(t), 500.0);
        }
        b.task(0, 10, "host_slow", 12.0, 60.0, 500.0);
        b.failed(
            0,
            11,
            "host_f",
            12.0,
            5.0,
            "FetchFailed: failed to fetch a shuffle block from host_src: reset",
        )
        .task(0, 11, "host_0", 19.0, 20.0, 500.0);
        let input = b.build();
        assert_eq!(
            hosts_of_interest(&input, 4),
            ["host_9", "host_f", "host_slow", "host_src"]
        );
        assert_eq!(hosts_of_interest(&input, 100).len(), 13);
    }

    #[test]
    fn hosts_include_the_ones_errors_blame() {
        let a = |host: &str, error: Option<&str>| Attempt {
            stage_id: 1,
            task_id: 0,
            attempt: 0,
            hostname: host.into(),
            status: Status::Failed,
            start_ns: 0,
            end_ns: 1,
            bytes_read: 0,
            shuffle_read_bytes: 0,
            records_read: 0,
            error: error.map(str::to_owned),
        };
        let hosts = hosts(&[
            a("host_1", None),
            a(
                "host_2",
                Some(
                    "FetchFailed: failed to fetch a shuffle block from host_9: Connection reset by peer",
                ),
            ),
        ]);
        assert_eq!(hosts, ["host_1", "host_2", "host_9"]);
    }
}
