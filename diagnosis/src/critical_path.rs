//! The critical path: the chain of things the job's wall time waited on.
//!
//! Walking back from the job's end: the stage that finished last (the failed
//! stage of a failed job), within it the task whose last attempt finished
//! last (the failed task of a failed stage), that task's attempts and retry
//! gaps, the launch gap back to the stage's start, then the scheduling gap
//! back to the parent stage that ended last, and so on to the job's start;
//! before that, the queue wait from submit to start.
//!
//! # Invariants
//! Segments are contiguous, chronological and non-empty, and their durations
//! sum to the wall time (submit, or start when submit is unknown, to end).
//! Where rows overlap or disagree the walk clamps rather than double counts,
//! and time it cannot attribute is an [`SegmentKind::Other`] segment.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::dag::{Dag, StageNode};
use crate::model::{Attempt, Status};

/// What a segment of the critical path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// Submit → start: waiting in the queue.
    QueueWait,
    /// Job start → a root stage's start, or a parent stage's end → a child
    /// stage's start. Names the stage that waited.
    SchedulingGap,
    /// Stage start → the critical task's first attempt start.
    TaskLaunch,
    /// An attempt that failed (and was retried, or failed the task).
    FailedAttempt,
    /// A failed attempt's end → the retry's start. Names the failed attempt.
    RetryGap,
    /// The critical task's final, successful attempt.
    Attempt,
    /// The critical task's end → the stage's end.
    StageTail,
    /// The last stage's end → the job's end (commit, or still running).
    JobTail,
    /// Time the walk could not attribute.
    Other,
}

/// One piece of the critical path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub kind: SegmentKind,
    pub start_ns: i64,
    pub end_ns: i64,
    pub duration_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl Segment {
    /// What the segment is, for a person: `attempt in stage 2 task 7
    /// attempt 0 on host_5` (not escaped).
    pub fn label(&self) -> String {
        let what = match self.kind {
            SegmentKind::QueueWait => "queue wait",
            SegmentKind::SchedulingGap => "scheduling gap before",
            SegmentKind::TaskLaunch => "task launch in",
            SegmentKind::FailedAttempt => "failed attempt in",
            SegmentKind::RetryGap => "retry gap after",
            SegmentKind::Attempt => "attempt in",
            SegmentKind::StageTail => "stage tail of",
            SegmentKind::JobTail => "job tail",
            SegmentKind::Other => "unattributed",
        };
        let mut text = what.to_owned();
        if let Some(st) = self.stage_id {
            text.push_str(&format!(" stage {st}"));
        }
        if let Some(t) = self.task_id {
            text.push_str(&format!(" task {t}"));
        }
        if let Some(a) = self.attempt {
            text.push_str(&format!(" attempt {a}"));
        }
        if let Some(h) = &self.hostname {
            text.push_str(&format!(" on {h}"));
        }
        text
    }
}

/// The job's span as the path needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpan {
    pub submit_ns: Option<i64>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub failed: bool,
}

/// The critical path, chronological.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CriticalPath {
    pub segments: Vec<Segment>,
}

impl CriticalPath {
    /// Walks the path of `dag` over `span` (see the module doc).
    pub fn compute(dag: &Dag<'_>, span: JobSpan) -> CriticalPath {
        let mut walk = Walk {
            segments: Vec::new(),
            cursor: span.end_ns,
            floor: span.start_ns,
        };
        let terminal = dag
            .stages()
            .filter(|s| !span.failed || s.status == Status::Failed)
            .max_by_key(|s| (s.last_ns, s.stage_id))
            .or_else(|| dag.stages().max_by_key(|s| (s.last_ns, s.stage_id)));
        let mut current = terminal;
        let mut first = true;
        while let Some(stage) = current {
            if first {
                walk.push(SegmentKind::JobTail, stage.last_ns, Ids::default());
                first = false;
            }
            walk.stage(dag, stage);
            let parent = stage
                .parents
                .iter()
                .filter_map(|p| dag.stage(*p))
                .max_by_key(|p| (p.last_ns, p.stage_id));
            let gap_to = parent.map_or(span.start_ns, |p| p.last_ns);
            walk.push(
                SegmentKind::SchedulingGap,
                gap_to,
                Ids::stage(stage.stage_id),
            );
            current = parent;
            if walk.cursor <= walk.floor {
                break;
            }
        }
        walk.push(SegmentKind::Other, span.start_ns, Ids::default());
        if let Some(submit) = span.submit_ns {
            walk.floor = submit.min(span.start_ns);
            walk.push(SegmentKind::QueueWait, submit, Ids::default());
        }
        walk.segments.reverse();
        CriticalPath {
            segments: walk.segments,
        }
    }

    /// Sum of the segments: the wall time.
    pub fn total_ns(&self) -> i64 {
        self.segments.iter().map(|s| s.duration_ns).sum()
    }

    /// Time this attempt spent on the path (0 when off it).
    pub fn attempt_ns(&self, a: &Attempt) -> i64 {
        self.segments
            .iter()
            .filter(|s| matches!(s.kind, SegmentKind::Attempt | SegmentKind::FailedAttempt))
            .filter(|s| {
                s.stage_id == Some(a.stage_id)
                    && s.task_id == Some(a.task_id)
                    && s.attempt == Some(a.attempt)
            })
            .map(|s| s.duration_ns)
            .sum()
    }

    /// Time a failed attempt cost the path: itself plus the retry gap after it.
    pub fn failure_ns(&self, a: &Attempt) -> i64 {
        let gap: i64 = self
            .segments
            .iter()
            .filter(|s| s.kind == SegmentKind::RetryGap)
            .filter(|s| {
                s.stage_id == Some(a.stage_id)
                    && s.task_id == Some(a.task_id)
                    && s.attempt == Some(a.attempt)
            })
            .map(|s| s.duration_ns)
            .sum();
        self.attempt_ns(a) + gap
    }

    /// Whether any attempt of this task is on the path.
    pub fn has_task(&self, stage_id: u32, task_id: u32) -> bool {
        self.segments
            .iter()
            .any(|s| s.stage_id == Some(stage_id) && s.task_id == Some(task_id))
    }

    /// Total time per segment kind, for notes and summaries.
    pub fn by_kind(&self) -> HashMap<SegmentKind, i64> {
        let mut m = HashMap::new();
        for s in &self.segments {
            *m.entry(s.kind).or_insert(0) += s.duration_ns;
        }
        m
    }
}

#[derive(Debug, Clone, Default)]
struct Ids {
    stage_id: Option<u32>,
    task_id: Option<u32>,
    attempt: Option<u32>,
    hostname: Option<String>,
}

impl Ids {
    fn stage(stage_id: u32) -> Ids {
        Ids {
            stage_id: Some(stage_id),
            ..Ids::default()
        }
    }

    fn attempt(a: &Attempt) -> Ids {
        Ids {
            stage_id: Some(a.stage_id),
            task_id: Some(a.task_id),
            attempt: Some(a.attempt),
            hostname: Some(a.hostname.clone()),
        }
    }
}

/// Builds the path backwards: every segment ends at `cursor` and moves it to
/// the segment's (clamped) start, so the segments tile [floor, end].
struct Walk {
    segments: Vec<Segment>,
    cursor: i64,
    floor: i64,
}

impl Walk {
    fn push(&mut self, kind: SegmentKind, start_ns: i64, ids: Ids) {
        let start = start_ns.max(self.floor).min(self.cursor);
        if start < self.cursor {
            self.segments.push(Segment {
                kind,
                start_ns: start,
                end_ns: self.cursor,
                duration_ns: self.cursor - start,
                stage_id: ids.stage_id,
                task_id: ids.task_id,
                attempt: ids.attempt,
                hostname: ids.hostname,
            });
        }
        self.cursor = start;
    }

    /// From the stage's end back to its start through its critical task.
    fn stage(&mut self, dag: &Dag<'_>, stage: &StageNode) {
        let finals = dag.final_attempts(stage);
        let critical = finals
            .iter()
            .filter(|a| stage.status != Status::Failed || a.status == Status::Failed)
            .max_by_key(|a| (a.end_ns, a.task_id))
            .or_else(|| finals.iter().max_by_key(|a| (a.end_ns, a.task_id)));
        let Some(last) = critical else {
            self.push(
                SegmentKind::Other,
                stage.start_ns,
                Ids::stage(stage.stage_id),
            );
            return;
        };
        self.push(
            SegmentKind::StageTail,
            last.end_ns,
            Ids::stage(stage.stage_id),
        );
        let chain = dag.task_attempts(stage, last.task_id);
        for (i, a) in chain.iter().enumerate().rev() {
            let kind = if a.status == Status::Failed {
                SegmentKind::FailedAttempt
            } else {
                SegmentKind::Attempt
            };
            self.push(kind, a.start_ns, Ids::attempt(a));
            if i > 0 {
                let prev = chain[i - 1];
                self.push(SegmentKind::RetryGap, prev.end_ns, Ids::attempt(prev));
            }
        }
        self.push(
            SegmentKind::TaskLaunch,
            stage.start_ns,
            Ids::stage(stage.stage_id),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobInput;
    use crate::testing::{JobBuilder, OOM, S, secs};

    fn path(input: &JobInput) -> CriticalPath {
        let dag = Dag::build(input).unwrap();
        let run = input.run.as_ref().unwrap();
        CriticalPath::compute(
            &dag,
            JobSpan {
                submit_ns: run.submit_ns,
                start_ns: run.start_ns.unwrap(),
                end_ns: run.end_ns.unwrap(),
                failed: run.status == Status::Failed,
            },
        )
    }

    fn assert_tiles(p: &CriticalPath, from: i64, to: i64) {
        assert_eq!(p.segments.first().unwrap().start_ns, from);
        assert_eq!(p.segments.last().unwrap().end_ns, to);
        for w in p.segments.windows(2) {
            assert_eq!(w[0].end_ns, w[1].start_ns, "{w:?}");
        }
        assert!(
            p.segments
                .iter()
                .all(|s| s.duration_ns > 0 && s.duration_ns == s.end_ns - s.start_ns)
        );
        assert_eq!(p.total_ns(), to - from);
    }

    fn shape(p: &CriticalPath) -> Vec<(SegmentKind, Option<u32>, Option<u32>)> {
        p.segments
            .iter()
            .map(|s| (s.kind, s.stage_id, s.task_id))
            .collect()
    }

    /// 0 → {1, 2} → 3, where 2 ends after 1: the path runs 0, 2, 3.
    #[test]
    fn diamond_goes_through_the_later_parent() {
        let mut b = JobBuilder::new("job_1");
        b.stage(0, &[], 11.0);
        b.task(0, 0, "host_1", 12.0, 20.0, 100.0)
            .task(0, 1, "host_2", 12.0, 25.0, 100.0); // ends 37, stage 38
        b.stage(1, &[0], 40.0);
        b.task(1, 0, "host_3", 41.0, 30.0, 100.0); // stage 1 ends 72
        b.stage(2, &[0], 40.0);
        b.task(2, 0, "host_4", 41.0, 60.0, 100.0)
            .task(2, 1, "host_5", 42.0, 10.0, 100.0); // ends 101, stage 102
        b.stage(3, &[1, 2], 105.0);
        b.task(3, 0, "host_6", 106.0, 14.0, 100.0); // ends 120, stage 121, job 122
        let input = b.build();
        let p = path(&input);
        assert_tiles(&p, 0, 122 * S);
        use SegmentKind::*;
        assert_eq!(
            shape(&p),
            vec![
                (QueueWait, None, None),
                (SchedulingGap, Some(0), None),
                (TaskLaunch, Some(0), None),
                (Attempt, Some(0), Some(1)),
                (StageTail, Some(0), None),
                (SchedulingGap, Some(2), None),
                (TaskLaunch, Some(2), None),
                (Attempt, Some(2), Some(0)),
                (StageTail, Some(2), None),
                (SchedulingGap, Some(3), None),
                (TaskLaunch, Some(3), None),
                (Attempt, Some(3), Some(0)),
                (StageTail, Some(3), None),
                (JobTail, None, None),
            ]
        );
        // The gap from stage 2's end (102 s) to stage 3's start (105 s).
        let gap = &p.segments[9];
        assert_eq!((gap.start_ns, gap.end_ns), (102 * S, 105 * S));
        assert!(!p.segments.iter().any(|s| s.stage_id == Some(1)));
        assert_eq!(p.segments[7].hostname.as_deref(), Some("host_4"));
    }

    #[test]
    fn a_retried_attempt_puts_the_failure_and_the_gap_on_the_path() {
        let mut b = JobBuilder::new("job_1");
        b.stage(0, &[], 11.0);
        b.task(0, 0, "host_1", 12.0, 20.0, 100.0);
        b.failed(0, 1, "host_2", 12.0, 15.0, OOM); // 12-27
        b.task(0, 1, "host_3", 30.0, 20.0, 100.0); // 30-50
        let input = b.build();
        let p = path(&input);
        assert_tiles(&p, 0, input.run.as_ref().unwrap().end_ns.unwrap());
        let kinds: Vec<_> = p.segments.iter().map(|s| (s.kind, s.attempt)).collect();
        use SegmentKind::*;
        assert_eq!(
            kinds,
            vec![
                (QueueWait, None),
                (SchedulingGap, None),
                (TaskLaunch, None),
                (FailedAttempt, Some(0)),
                (RetryGap, Some(0)),
                (Attempt, Some(1)),
                (StageTail, None),
                (JobTail, None),
            ]
        );
        let failed = &input.attempts[1];
        assert_eq!(p.attempt_ns(failed), 15 * S);
        assert_eq!(
            p.failure_ns(failed),
            18 * S,
            "15 s failed + 3 s before the retry"
        );
        assert_eq!(
            p.attempt_ns(&input.attempts[0]),
            0,
            "task 0 finished first: off the path"
        );
    }

    #[test]
    fn overlapping_rows_are_clamped_not_double_counted() {
        let mut b = JobBuilder::new("job_1");
        b.stage(0, &[], 11.0);
        b.task(0, 0, "host_1", 12.0, 30.0, 100.0); // ends 42
        b.stage(1, &[0], 40.0); // starts before its parent ended
        b.task(1, 0, "host_2", 39.0, 10.0, 100.0); // and its task before the stage
        let mut input = b.build();
        input.run.as_mut().unwrap().start_ns = Some(secs(11.5)); // after stage 0's start
        let p = path(&input);
        assert_tiles(&p, 0, input.run.as_ref().unwrap().end_ns.unwrap());
    }
}
