//! The attempts a report carries for its timeline (the HTML Gantt), capped.
//!
//! A job of 10,000 tasks cannot be drawn bar by bar in a page a person
//! opens, nor should its JSON report carry every row: the report keeps at
//! most [`Config::timeline_attempts`](crate::Config::timeline_attempts)
//! attempts and counts the rest in [`Report::attempts_omitted`](crate::Report::attempts_omitted).
//!
//! # Invariants
//! - Every attempt on the critical path and every attempt a cause names is
//!   kept, even past the cap, and so is every other attempt of its task (a
//!   retry is drawn beside the failure it retried).
//! - Tasks are kept or dropped whole. After the ones above, tasks with a
//!   failed attempt come next (retries stay visible), then each stage gets
//!   a share of what is left in proportion to its remaining tasks, taken
//!   evenly across its tasks by start time, so the drawn bars keep the
//!   stage's shape.
//! - The kept attempts come out in stage order (the DAG's), then by task
//!   and attempt number.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cause::{Cause, CauseKind};
use crate::critical_path::{CriticalPath, SegmentKind};
use crate::dag::Dag;
use crate::model::{Attempt, Status};

/// Longest error message a bar keeps (stack traces run to kilobytes).
pub const MAX_ERROR_CHARS: usize = 300;

/// One attempt as the timeline draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptBar {
    pub stage_id: u32,
    pub task_id: u32,
    pub attempt: u32,
    pub hostname: String,
    pub status: Status,
    pub start_ns: i64,
    pub end_ns: i64,
    pub bytes_read: i64,
    pub shuffle_read_bytes: i64,
    /// The attempt's error, cut to [`MAX_ERROR_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the attempt is a segment of the critical path.
    #[serde(default)]
    pub critical: bool,
    /// The causes that name this attempt, in the report's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<CauseKind>,
}

impl AttemptBar {
    fn new(a: &Attempt, critical: bool, causes: Vec<CauseKind>) -> AttemptBar {
        AttemptBar {
            stage_id: a.stage_id,
            task_id: a.task_id,
            attempt: a.attempt,
            hostname: a.hostname.clone(),
            status: a.status,
            start_ns: a.start_ns,
            end_ns: a.end_ns,
            bytes_read: a.bytes_read,
            shuffle_read_bytes: a.shuffle_read_bytes,
            error: a.error.as_deref().map(cut),
            critical,
            causes,
        }
    }

    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The attempts to draw, at most `cap` unless the critical and named ones
/// alone exceed it (see the module invariants), and how many were left out.
pub fn select(
    dag: &Dag<'_>,
    path: &CriticalPath,
    causes: &[Cause],
    cap: usize,
) -> (Vec<AttemptBar>, usize) {
    let critical: HashSet<(u32, u32, u32)> = path
        .segments
        .iter()
        .filter(|s| matches!(s.kind, SegmentKind::Attempt | SegmentKind::FailedAttempt))
        .filter_map(|s| Some((s.stage_id?, s.task_id?, s.attempt?)))
        .collect();
    let mut named: HashMap<(u32, u32, u32), Vec<CauseKind>> = HashMap::new();
    for c in causes {
        for a in &c.attempts {
            let kinds = named.entry((a.stage_id, a.task_id, a.attempt)).or_default();
            if !kinds.contains(&c.kind) {
                kinds.push(c.kind);
            }
        }
    }
    let key = |a: &Attempt| (a.stage_id, a.task_id, a.attempt);

    // Tasks (stage, task) → their attempts, in DAG order.
    let mut tasks: Vec<Vec<&Attempt>> = Vec::new();
    for stage in dag.stages() {
        for task in stage.tasks.keys() {
            tasks.push(dag.task_attempts(stage, *task));
        }
    }
    let total: usize = tasks.iter().map(Vec::len).sum();
    let mut keep = vec![false; tasks.len()];
    let mut kept = 0usize;
    let take = |i: usize, keep: &mut Vec<bool>, kept: &mut usize| {
        if !keep[i] {
            keep[i] = true;
            *kept += tasks[i].len();
        }
    };
    // Must-haves, whatever the cap.
    for (i, t) in tasks.iter().enumerate() {
        if t.iter()
            .any(|a| critical.contains(&key(a)) || named.contains_key(&key(a)))
        {
            take(i, &mut keep, &mut kept);
        }
    }
    // Retried or failed tasks, while they fit.
    for (i, t) in tasks.iter().enumerate() {
        if !keep[i] && t.iter().any(|a| a.status == Status::Failed) && kept + t.len() <= cap {
            take(i, &mut keep, &mut kept);
        }
    }
    // The rest: a share per stage, evenly spread over its tasks by start.
    let mut by_stage: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if !keep[i] {
            by_stage.entry(t[0].stage_id).or_default().push(i);
        }
    }
    let remaining: usize = by_stage.values().map(Vec::len).sum();
    let budget = cap.saturating_sub(kept);
    if remaining > 0 && budget > 0 {
        for ids in by_stage.values_mut() {
            ids.sort_by_key(|&i| (tasks[i][0].start_ns, i));
            let share = (budget * ids.len()).div_ceil(remaining).min(ids.len());
            for k in 0..share {
                let i = ids[k * ids.len() / share];
                if kept + tasks[i].len() > cap {
                    break;
                }
                take(i, &mut keep, &mut kept);
            }
        }
    }

    let bars: Vec<AttemptBar> = tasks
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .flat_map(|(t, _)| t.iter())
        .map(|a| {
            AttemptBar::new(
                a,
                critical.contains(&key(a)),
                named.get(&key(a)).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let omitted = total - bars.len();
    (bars, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{JobBuilder, OOM};
    use crate::{Config, diagnose};

    /// Stage 0: 300 tasks, task 7 skewed, task 11 retried after an OOM.
    fn job() -> JobBuilder {
        let mut b = JobBuilder::new("job_000001");
        b.stage(0, &[], 11.0);
        for t in 0..300u32 {
            let (dur, mib) = if t == 7 {
                (400.0, 9000.0)
            } else {
                (25.0, 500.0)
            };
            if t == 11 {
                b.failed(0, t, "host_flaky", 12.0, 5.0, OOM);
                b.task(0, t, "host_11b", 19.0, dur, mib);
            } else {
                b.task(
                    0,
                    t,
                    &format!("host_{t}"),
                    12.0 + f64::from(t % 5),
                    dur,
                    mib,
                );
            }
        }
        b
    }

    #[test]
    fn the_cap_keeps_critical_named_and_retried_attempts() {
        let config = Config {
            timeline_attempts: 20,
            ..Config::default()
        };
        let r = diagnose(&job().build(), &config).unwrap();
        assert_eq!(r.attempts.len() + r.attempts_omitted, 301);
        assert!(r.attempts.len() <= 20, "{}", r.attempts.len());
        let skew = r.top().unwrap();
        assert_eq!(skew.kind, CauseKind::DataSkew);
        let t7 = r.attempts.iter().find(|b| b.task_id == 7).unwrap();
        assert!(t7.critical, "the skewed task ends last: on the path");
        assert!(t7.causes.contains(&CauseKind::DataSkew));
        for c in &r.causes {
            for a in &c.attempts {
                assert!(
                    r.attempts
                        .iter()
                        .any(|b| (b.task_id, b.attempt) == (a.task_id, a.attempt)),
                    "{a:?} named by {:?} but not drawn",
                    c.kind
                );
            }
        }
        let retried: Vec<_> = r.attempts.iter().filter(|b| b.task_id == 11).collect();
        assert_eq!(retried.len(), 2, "the failure and its retry");
        assert_eq!(retried[0].status, Status::Failed);
        assert!(retried[0].error.as_deref().unwrap().contains("OutOfMemory"));
    }

    #[test]
    fn the_cap_still_keeps_the_must_haves_when_they_exceed_it() {
        let config = Config {
            timeline_attempts: 1,
            ..Config::default()
        };
        let r = diagnose(&job().build(), &config).unwrap();
        assert!(r.attempts.iter().any(|b| b.critical));
        assert!(r.attempts.iter().any(|b| b.task_id == 7));
        assert_eq!(r.attempts.len() + r.attempts_omitted, 301);
    }

    #[test]
    fn under_the_cap_everything_is_kept_in_order() {
        let r = diagnose(&job().build(), &Config::default()).unwrap();
        assert_eq!(r.attempts.len(), 301);
        assert_eq!(r.attempts_omitted, 0);
        let keys: Vec<_> = r.attempts.iter().map(|b| (b.task_id, b.attempt)).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "x".repeat(5000);
        assert_eq!(cut(&long).chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(cut("short"), "short");
    }
}
