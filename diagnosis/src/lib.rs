//! Job diagnosis: why a job was slow or failed, from its own rows and its
//! hosts' hardware signals.
//!
//! The core is pure: plain rows in ([`JobInput`]: the `job_runs` row,
//! `job_stages`, `job_tasks` and [`HostSignal`]s), a serializable
//! [`Report`] out, with no I/O. [`fetch::load`] fills a [`JobInput`] from
//! the store through the query engine: the job's rows by SQL (tags are
//! strings there: it parses the ids) and its hosts' hardware signals, found
//! with the rule pack's SQL functions and thresholds. The server and the
//! CLI serve the report, as JSON or as the self-contained HTML page of
//! [`html::render`] (a Gantt of stages and attempts, critical path
//! highlighted).
//!
//! [`diagnose`] rebuilds the stage DAG ([`Dag`]), walks the
//! [`CriticalPath`] (queue wait, then back from the job's end through the
//! last stage, its last task, that task's attempts and retry gaps, and the
//! scheduling gaps to the parent that ended last), runs the heuristics
//! (data skew, stragglers, failures by error class, slow hosts, queueing,
//! hardware cross-links), merges the symptoms a hardware cause explains into
//! it, and ranks the causes by confidence × the time they cost the job.
//!
//! # Invariants
//! - The critical path's segments are contiguous and sum to the wall time.
//! - A healthy job (inputs up to ~4× a stage's median, durations up to
//!   ~1.6×, a transient OOM retry) has no cause at or above the
//!   confidence cut ([`Config::confidence_cut`], 0.5).
//! - Bad rows (a cycle, an unknown parent, duplicates, backwards ranges) are
//!   an [`Error`], never a panic. A running job is diagnosed so far and the
//!   report says so; no hardware telemetry degrades to job-only causes with
//!   a note.
//!
//! # Example
//! ```
//! use fleetlake_diagnosis::{Attempt, CauseKind, Config, JobInput, JobRun, Stage, Status, diagnose};
//!
//! const S: i64 = 1_000_000_000;
//! const MIB: i64 = 1 << 20;
//! let task = |task_id: u32, mib: i64, secs: i64| Attempt {
//!     stage_id: 0, task_id, attempt: 0, hostname: format!("host_{task_id}"),
//!     status: Status::Succeeded, start_ns: 12 * S, end_ns: (12 + secs) * S,
//!     bytes_read: mib * MIB, shuffle_read_bytes: 0, records_read: mib * 4000, error: None,
//! };
//! // Four tasks of ~500 MiB in ~25 s, and one of 9 GiB in 380 s.
//! let mut attempts: Vec<Attempt> = (0..4).map(|t| task(t, 500 + 10 * t as i64, 25)).collect();
//! attempts.push(task(4, 9000, 380));
//! let input = JobInput {
//!     job_id: "job_000001".into(),
//!     run: Some(JobRun {
//!         job_id: "job_000001".into(), user: None, queue: Some("etl".into()),
//!         status: Status::Succeeded, submit_ns: Some(0), start_ns: Some(10 * S), end_ns: Some(393 * S),
//!     }),
//!     stages: vec![Stage {
//!         stage_id: 0, parents: vec![], status: Status::Succeeded,
//!         start_ns: Some(11 * S), end_ns: Some(392 * S), tasks: 5, attempts: 5, failed_attempts: 0,
//!     }],
//!     attempts,
//!     signals: None,
//!     notes: vec![],
//!     host_history: vec![],
//! };
//! let report = diagnose(&input, &Config::default()).unwrap();
//! assert_eq!(report.wall_ns, 393 * S);
//! let top = report.top().unwrap();
//! assert_eq!(top.kind, CauseKind::DataSkew);
//! assert_eq!(top.attempts[0].task_id, 4);
//! assert!(report.notes.iter().any(|n| n.contains("no hardware telemetry")));
//! ```

mod bars;
pub mod bulk;
mod cause;
mod config;
mod critical_path;
mod dag;
mod error;
mod error_class;
pub mod fetch;
mod heuristics;
pub mod html;
pub mod journal;
mod model;
mod rank;
mod report;
mod sql;
mod stats;
pub mod table_functions;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use bars::AttemptBar;
pub use cause::{AttemptRef, Cause, CauseKind, Evidence};
pub use config::Config;
pub use critical_path::{CriticalPath, JobSpan, Segment, SegmentKind};
pub use dag::{Dag, StageNode};
pub use error::{Error, QueryFailure, Result};
pub use error_class::ErrorClass;
pub use model::{Attempt, HostSignal, JobInput, JobRun, SignalKind, Stage, Status};
pub use report::{Report, StageTimeline};
pub use stats::{StageStats, Stats};

use cause::human_ns;
use critical_path::SegmentKind as Kind;

/// Diagnoses one job.
///
/// # Errors
/// [`Error::Invalid`] for a bad `config`; the [`Dag::build`] errors for rows
/// that do not form a DAG; [`Error::Backwards`] when the job's run row ends
/// before it starts or starts before it was submitted.
pub fn diagnose(input: &JobInput, config: &Config) -> Result<Report> {
    config.validate()?;
    let dag = Dag::build(input)?;
    let run = input.run.as_ref();
    let (first_ns, last_ns) = dag.span();
    // A job_runs row with an end is final, even if a stage row is missing
    // (a note says so); without one, the job is still running.
    let running = run.is_none_or(|r| r.end_ns.is_none() || r.status == Status::Running);
    let start_ns = run.and_then(|r| r.start_ns).unwrap_or(first_ns);
    let end_ns = match run.and_then(|r| r.end_ns) {
        Some(end) => end,
        None => last_ns.max(config.now_ns.unwrap_or(last_ns)),
    };
    let backwards = |what: &str, start_ns: i64, end_ns: i64| Error::Backwards {
        job_id: input.job_id.clone(),
        what: what.to_owned(),
        start_ns,
        end_ns,
    };
    if end_ns < start_ns {
        return Err(backwards("the job", start_ns, end_ns));
    }
    let submit_ns = run.and_then(|r| r.submit_ns);
    if let Some(submit) = submit_ns
        && submit > start_ns
    {
        return Err(backwards("the job's queue wait", submit, start_ns));
    }
    let status = match run {
        Some(r) if !running => r.status,
        _ => Status::Running,
    };
    let span = JobSpan {
        submit_ns,
        start_ns,
        end_ns,
        failed: status == Status::Failed,
    };
    let path = CriticalPath::compute(&dag, span);
    let stats = Stats::compute(&dag);
    let signals = input.signals.as_deref().unwrap_or(&[]);
    let cx = heuristics::Context {
        dag: &dag,
        path: &path,
        stats: &stats,
        config,
        span,
        queue_wait_ns: submit_ns.map(|s| start_ns - s),
        queue: run.and_then(|r| r.queue.as_deref()),
        signals,
        history: &input.host_history,
    };
    let causes = rank::rank(heuristics::run_all(&cx), config.confidence_cut);

    let stages = timeline(&dag, &stats, &path);
    let (attempts, attempts_omitted) = bars::select(&dag, &path, &causes, config.timeline_attempts);
    let mut notes = Vec::new();
    if running {
        notes.push(format!(
            "job still running: diagnosed from the {} stage(s) and {} attempt(s) reported so far{}",
            stages.len(),
            input.attempts.len(),
            if run.is_none() {
                " (no job_runs row yet: user, queue and submit time unknown)"
            } else {
                ""
            }
        ));
    }
    let unreported: Vec<u32> = stages
        .iter()
        .filter(|s| !s.reported)
        .map(|s| s.stage_id)
        .collect();
    if !unreported.is_empty() {
        notes.push(format!(
            "stage(s) {unreported:?} have no job_stages row yet: known from their attempts only, parents unknown"
        ));
    }
    if input.signals.is_none() {
        notes.push("no hardware telemetry: job-only causes".to_owned());
    }
    notes.extend(input.notes.iter().cloned());
    if run.is_some() && submit_ns.is_none() {
        notes.push("submit time unknown: queue wait not judged".to_owned());
    }
    let other = path.by_kind().get(&Kind::Other).copied().unwrap_or(0);
    if other > 0 {
        notes.push(format!(
            "{} of the critical path could not be attributed",
            human_ns(other)
        ));
    }
    if !causes.iter().any(|c| c.reported) {
        notes.push(format!(
            "no cause reaches the confidence cut of {}: the job looks healthy",
            config.confidence_cut
        ));
    }
    Ok(Report {
        job_id: input.job_id.clone(),
        status,
        running,
        user: run.and_then(|r| r.user.clone()),
        queue: run.and_then(|r| r.queue.clone()),
        submit_ns,
        start_ns,
        end_ns,
        wall_ns: path.total_ns(),
        queue_wait_ns: cx.queue_wait_ns,
        confidence_cut: config.confidence_cut,
        stages,
        critical_path: path.segments,
        causes,
        attempts,
        attempts_omitted,
        notes,
    })
}

fn timeline(dag: &Dag<'_>, stats: &Stats, path: &CriticalPath) -> Vec<StageTimeline> {
    dag.stages()
        .map(|s| {
            let attempts: Vec<&Attempt> = s
                .tasks
                .keys()
                .flat_map(|t| dag.task_attempts(s, *t))
                .collect();
            StageTimeline {
                stage_id: s.stage_id,
                parents: s.parents.clone(),
                status: s.status,
                reported: s.reported,
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                duration_ns: s.last_ns - s.start_ns,
                tasks: s.tasks.len(),
                attempts: attempts.len(),
                failed_attempts: attempts
                    .iter()
                    .filter(|a| a.status == Status::Failed)
                    .count(),
                median_task_ns: stats
                    .stage(s.stage_id)
                    .map(|st| st.median_duration_ns as i64),
                on_critical_path: path.segments.iter().any(|seg| {
                    seg.stage_id == Some(s.stage_id) && !matches!(seg.kind, Kind::SchedulingGap)
                }),
            }
        })
        .collect()
}
