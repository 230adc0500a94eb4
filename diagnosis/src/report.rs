//! The report: what a diagnosis returns, serializable as JSON.

use serde::{Deserialize, Serialize};

use crate::bars::AttemptBar;
use crate::cause::Cause;
use crate::critical_path::Segment;
use crate::model::Status;

/// One stage on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTimeline {
    pub stage_id: u32,
    pub parents: Vec<u32>,
    pub status: Status,
    /// Whether the stage has a `job_stages` row (a running stage has not).
    pub reported: bool,
    pub start_ns: i64,
    /// `None` while it runs.
    pub end_ns: Option<i64>,
    /// To the end, or to the latest attempt end seen.
    pub duration_ns: i64,
    pub tasks: usize,
    pub attempts: usize,
    pub failed_attempts: usize,
    /// Median duration of its successful tasks.
    pub median_task_ns: Option<i64>,
    pub on_critical_path: bool,
}

/// The diagnosis of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub job_id: String,
    pub status: Status,
    /// Still running: diagnosed from what was reported so far.
    pub running: bool,
    pub user: Option<String>,
    pub queue: Option<String>,
    pub submit_ns: Option<i64>,
    pub start_ns: i64,
    /// The job's end, or for a running job the latest time considered.
    pub end_ns: i64,
    /// Submit (start when unknown) → end; the critical path sums to it.
    pub wall_ns: i64,
    pub queue_wait_ns: Option<i64>,
    /// Causes at or above this confidence are reported.
    pub confidence_cut: f64,
    /// In topological order.
    pub stages: Vec<StageTimeline>,
    pub critical_path: Vec<Segment>,
    /// Reported causes first, by confidence × cost; then the rest.
    pub causes: Vec<Cause>,
    /// Attempts for the timeline, in stage order then by task and attempt:
    /// all of them up to [`Config::timeline_attempts`](crate::Config::timeline_attempts),
    /// else a sample that always holds the critical path's attempts, those a
    /// cause names, and the other attempts of their tasks (see `bars.rs`).
    #[serde(default)]
    pub attempts: Vec<AttemptBar>,
    /// Attempts of the job not in [`Report::attempts`].
    #[serde(default)]
    pub attempts_omitted: usize,
    pub notes: Vec<String>,
}

impl Report {
    /// Causes at or above the cut, best first.
    pub fn reported(&self) -> impl Iterator<Item = &Cause> {
        self.causes.iter().filter(|c| c.reported)
    }

    /// The top reported cause, if any.
    pub fn top(&self) -> Option<&Cause> {
        self.reported().next()
    }

    pub fn to_json(&self) -> serde_json::Value {
        // A Report is plain data (strings, numbers, enums): it always serializes.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
