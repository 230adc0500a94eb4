//! The input rows, one struct per table (`job_runs`, `job_stages`,
//! `job_tasks`), plus the hardware evidence gathered elsewhere
//! ([`HostSignal`]). All times are Unix nanoseconds.
//!
//! These are plain data: the caller fills them from SQL (tags are strings
//! there, so `stage_id`, `task_id` and `attempt` are parsed by the caller).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Status of a job, stage or attempt, as the tables spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Succeeded,
    Failed,
    /// Not finished yet (no end row reported).
    Running,
}

impl Status {
    /// `SUCCEEDED` / `FAILED` (any case); anything else is [`Status::Running`],
    /// since the tables only ever report finished things.
    pub fn parse(s: &str) -> Status {
        if s.eq_ignore_ascii_case("succeeded") || s.eq_ignore_ascii_case("success") {
            Status::Succeeded
        } else if s.eq_ignore_ascii_case("failed") {
            Status::Failed
        } else {
            Status::Running
        }
    }
}

/// A `job_runs` row. A running job has no row yet: the caller passes
/// `None` for the whole run (see [`JobInput::run`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    pub job_id: String,
    pub user: Option<String>,
    pub queue: Option<String>,
    pub status: Status,
    pub submit_ns: Option<i64>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
}

/// A `job_stages` row (written when the stage ends, so a stage still
/// running has no row: its attempts alone describe it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub stage_id: u32,
    /// Parent stages; empty for a root.
    pub parents: Vec<u32>,
    pub status: Status,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub tasks: u32,
    pub attempts: u32,
    pub failed_attempts: u32,
}

impl Stage {
    /// Parses `job_stages.parents`: comma-separated stage ids, `""` for a root.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the text when an id is not a number.
    pub fn parse_parents(text: &str) -> Result<Vec<u32>> {
        text.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u32>().map_err(|_| {
                    Error::Invalid(format!(
                        "invalid stage parents {text:?}: {p:?} is not a stage id"
                    ))
                })
            })
            .collect()
    }
}

/// A `job_tasks` row: one attempt of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub stage_id: u32,
    pub task_id: u32,
    /// 0 for the first attempt, then 1, 2, ...
    pub attempt: u32,
    pub hostname: String,
    pub status: Status,
    pub start_ns: i64,
    pub end_ns: i64,
    pub bytes_read: i64,
    pub shuffle_read_bytes: i64,
    pub records_read: i64,
    /// Set on failed attempts only.
    pub error: Option<String>,
}

impl Attempt {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }

    /// The input this attempt read: local plus shuffle bytes. (In the
    /// simulator a child stage reports the same bytes in both columns, so
    /// take the larger rather than the sum.)
    pub fn input_bytes(&self) -> i64 {
        self.bytes_read.max(self.shuffle_read_bytes)
    }

    /// `stage 3 task 17 attempt 1 on host_5`, for evidence and errors.
    pub fn label(&self) -> String {
        format!(
            "stage {} task {} attempt {} on {}",
            self.stage_id, self.task_id, self.attempt, self.hostname
        )
    }
}

/// What a hardware signal shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// `diskio_hw`: a disk stuck busy, latency in the hundreds of ms.
    DiskLatency,
    /// `smart`: reallocated / pending / uncorrectable sectors rising.
    DiskSmart,
    /// `edac` / `mce`: a burst of corrected memory errors, or an uncorrected one.
    MemoryEcc,
    /// `cpu_thermal`: throttling (frequency well under base, hot).
    Thermal,
    /// `nic`: errors, drops, carrier changes.
    NicErrors,
    /// `heartbeat`: the host stopped reporting.
    HeartbeatGap,
    /// Any other anomaly (e.g. an `anomaly_score` rule), naming the metric.
    Anomaly(String),
}

/// One piece of hardware evidence on one host over one time range, found
/// elsewhere (rules' SQL functions over the hardware tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSignal {
    pub hostname: String,
    pub kind: SignalKind,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Short and human: `sdb latency 150-1500 ms, util 95 %`.
    pub detail: String,
    /// The SQL that shows it (empty when unknown).
    pub sql: String,
}

/// Everything known about one job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobInput {
    pub job_id: String,
    /// The `job_runs` row; `None` while the job runs.
    pub run: Option<JobRun>,
    pub stages: Vec<Stage>,
    pub attempts: Vec<Attempt>,
    /// Hardware signals on the job's hosts around its time span. `None` when
    /// there is no hardware telemetry at all (the tables do not exist): the
    /// report then holds job-only causes and says so. `Some(vec![])` means
    /// the telemetry was searched and showed nothing.
    pub signals: Option<Vec<HostSignal>>,
    /// What the caller could not gather (a missing hardware table, a signal
    /// query that failed): copied into the report's notes.
    #[serde(default)]
    pub notes: Vec<String>,
    /// How other jobs' tasks fared on the hosts that look slow in this one
    /// (`fetch::history`); empty when not searched.
    #[serde(default)]
    pub host_history: Vec<HostHistory>,
}

/// Other jobs' successful tasks on one host around a job's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostHistory {
    pub hostname: String,
    /// Tasks compared (in stages of at least 3 successful tasks).
    pub tasks: u64,
    /// Their geometric-mean duration over their own stage's median.
    pub mean_slowdown: f64,
    pub start_ns: i64,
    pub end_ns: i64,
    /// The SQL that computed it.
    pub sql: String,
}
