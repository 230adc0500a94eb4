//! A candidate cause: what, how sure, what it cost, the evidence, the fix.

use serde::{Deserialize, Serialize};

use crate::model::{Attempt, SignalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// One task read far more than its siblings.
    DataSkew,
    /// A task ran far slower than its siblings with normal input, and no
    /// hardware signal explains it.
    Straggler,
    /// Attempts failed with errors that blame a host (I/O, lost executor,
    /// shuffle fetch from a source host).
    HostErrors,
    /// Attempts failed with errors that blame the job (out of memory).
    TaskFailures,
    /// A host whose tasks in this job all ran slower than their siblings.
    SlowHost,
    /// Submit → start took longer than the fleet baseline.
    QueueingDelay,
    FailingDisk,
    BadMemory,
    ThermalThrottling,
    FlappingNic,
    HostLost,
    HardwareAnomaly,
}

impl CauseKind {
    /// The hardware cause a signal points at.
    pub fn of_signal(kind: &SignalKind) -> CauseKind {
        match kind {
            SignalKind::DiskLatency | SignalKind::DiskSmart => CauseKind::FailingDisk,
            SignalKind::MemoryEcc => CauseKind::BadMemory,
            SignalKind::Thermal => CauseKind::ThermalThrottling,
            SignalKind::NicErrors => CauseKind::FlappingNic,
            SignalKind::HeartbeatGap => CauseKind::HostLost,
            SignalKind::Anomaly(_) => CauseKind::HardwareAnomaly,
        }
    }

    pub fn is_hardware(self) -> bool {
        matches!(
            self,
            CauseKind::FailingDisk
                | CauseKind::BadMemory
                | CauseKind::ThermalThrottling
                | CauseKind::FlappingNic
                | CauseKind::HostLost
                | CauseKind::HardwareAnomaly
        )
    }

    /// Symptoms that a hardware cause on the same attempts explains.
    pub fn is_host_symptom(self) -> bool {
        matches!(
            self,
            CauseKind::Straggler | CauseKind::HostErrors | CauseKind::SlowHost
        )
    }
}

/// Names one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptRef {
    pub stage_id: u32,
    pub task_id: u32,
    pub attempt: u32,
    pub hostname: String,
}

impl From<&Attempt> for AttemptRef {
    fn from(a: &Attempt) -> Self {
        AttemptRef {
            stage_id: a.stage_id,
            task_id: a.task_id,
            attempt: a.attempt,
            hostname: a.hostname.clone(),
        }
    }
}

/// One piece of evidence: what it shows, the rows, and the SQL that shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub description: String,
    /// Row ids: `stage 3 task 17 attempt 0 on host_5`, a signal's host, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

impl Evidence {
    pub fn new(description: impl Into<String>, rows: Vec<String>, sql: Option<String>) -> Evidence {
        Evidence {
            description: description.into(),
            rows,
            sql: sql.filter(|s| !s.is_empty()),
        }
    }
}

/// A candidate cause of the job's slowness or failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: CauseKind,
    /// How sure, in [0, 1].
    pub confidence: f64,
    /// Time it cost the job's wall time (0 when off the critical path).
    pub cost_ns: i64,
    /// confidence × cost in seconds: the ranking key.
    pub score: f64,
    /// Whether confidence reaches the report's cut.
    pub reported: bool,
    pub summary: String,
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<u32>,
    /// The attempts this cause explains.
    pub attempts: Vec<AttemptRef>,
    pub evidence: Vec<Evidence>,
    pub action: String,
}

impl Cause {
    /// A cause with no score yet (ranking fills `score` and `reported`).
    pub fn new(
        kind: CauseKind,
        confidence: f64,
        cost_ns: i64,
        summary: impl Into<String>,
    ) -> Cause {
        Cause {
            kind,
            confidence: confidence.clamp(0.0, 1.0),
            cost_ns: cost_ns.max(0),
            score: 0.0,
            reported: false,
            summary: summary.into(),
            hosts: Vec::new(),
            stage_id: None,
            attempts: Vec::new(),
            evidence: Vec::new(),
            action: String::new(),
        }
    }
}

/// `12.3 s`, `4.1 min`, for summaries.
pub fn human_ns(ns: i64) -> String {
    let s = ns as f64 / 1e9;
    if s.abs() >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// `3.2 GiB`, for summaries.
pub fn human_bytes(b: f64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}
