//! Failed attempts, grouped by error class and the host the error blames.
//!
//! Host-blaming errors (see `error_class.rs`) point at a host: 0.65 for one
//! attempt, 0.8 for several, 0.9 when they failed a task. Memory errors point
//! at the job: one is the fleet's background noise (about one job in ten
//! retries one, scattered over its stages), so 0.3; the same task failing
//! twice, or three failures in one stage, 0.55; a task that ran out of attempts, 0.85. The cost is the failed
//! attempts' time on the critical path plus the retry gaps after them, or
//! the whole wall time when they failed the job.

use std::collections::{BTreeMap, BTreeSet};

use crate::cause::{Cause, CauseKind, Evidence, human_ns};
use crate::error_class::ErrorClass;
use crate::model::{Attempt, Status};
use crate::sql;

use super::Context;

pub(crate) fn detect(cx: &Context<'_>) -> Vec<Cause> {
    // (class, blamed host) → failed attempts.
    let mut groups: BTreeMap<(&'static str, Option<String>), Vec<&Attempt>> = BTreeMap::new();
    for a in cx
        .dag
        .attempts
        .iter()
        .filter(|a| a.status == Status::Failed)
    {
        let class = ErrorClass::parse(a.error.as_deref().unwrap_or(""));
        let blamed = class.blamed_host(&a.hostname);
        groups.entry((class.name(), blamed)).or_default().push(a);
    }
    let mut out = Vec::new();
    for ((class, blamed), attempts) in groups {
        let host_error = matches!(class, "local_io" | "executor_lost" | "fetch_failed");
        let failed_task = attempts.iter().any(|a| task_failed(cx, a));
        let mut per_task: BTreeMap<(u32, u32), usize> = BTreeMap::new();
        for a in &attempts {
            *per_task.entry((a.stage_id, a.task_id)).or_default() += 1;
        }
        let repeated = per_task.values().any(|&n| n >= 2);
        let mut per_stage: BTreeMap<u32, usize> = BTreeMap::new();
        for a in &attempts {
            *per_stage.entry(a.stage_id).or_default() += 1;
        }
        let clustered = per_stage.values().any(|&n| n >= 3);
        let n = attempts.len();
        let confidence = match (host_error, failed_task) {
            (true, true) => 0.9,
            (true, false) if n >= 2 => 0.8,
            (true, false) => 0.65,
            (false, true) => 0.85,
            (false, false) if repeated || clustered => 0.55,
            (false, false) => 0.3,
        };
        let cost = if failed_task && cx.span.failed {
            cx.wall_ns()
        } else {
            attempts.iter().map(|a| cx.path.failure_ns(a)).sum()
        };
        let hosts: Vec<String> = match &blamed {
            Some(h) => vec![h.clone()],
            None => attempts
                .iter()
                .map(|a| a.hostname.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let on = blamed
            .as_deref()
            .map(|h| format!(" blaming {h}"))
            .unwrap_or_default();
        let mut c = Cause::new(
            if host_error {
                CauseKind::HostErrors
            } else {
                CauseKind::TaskFailures
            },
            confidence,
            cost,
            format!(
                "{n} attempt(s) failed with {class}{on}{}; {} of the critical path",
                if failed_task {
                    ", failing a task"
                } else {
                    ", retried"
                },
                human_ns(cost)
            ),
        );
        c.hosts = hosts;
        c.stage_id = attempts
            .first()
            .map(|a| a.stage_id)
            .filter(|s| attempts.iter().all(|a| a.stage_id == *s));
        c.attempts = attempts.iter().map(|a| (*a).into()).collect();
        for a in &attempts {
            c.evidence.push(Evidence::new(
                format!(
                    "{}: {}",
                    a.label(),
                    a.error.as_deref().unwrap_or("(no message)")
                ),
                vec![a.label()],
                None,
            ));
        }
        if let Some(e) = c.evidence.first_mut() {
            e.sql = Some(sql::tasks(cx.job_id(), c.stage_id, None, true));
        }
        c.action = match (class, blamed.as_deref()) {
            ("fetch_failed", Some(h)) => {
                format!(
                    "re-run; shuffle fetches from {h} failed: check its NIC and drain {h} via a self_heal rule"
                )
            }
            (_, Some(h)) => format!("re-run on other hosts; drain {h} via a self_heal rule"),
            ("out_of_memory" | "container_killed", None) if confidence >= 0.5 => {
                "raise executor memory (or memory overhead) for this stage, or split its partitions"
                    .to_owned()
            }
            (_, None) if confidence >= 0.5 => {
                "read the task logs: the same error repeats".to_owned()
            }
            _ => "none: a single transient failure, retried".to_owned(),
        };
        out.push(c);
    }
    out
}

/// Whether this attempt is the last of a task that failed.
fn task_failed(cx: &Context<'_>, a: &Attempt) -> bool {
    cx.dag.stage(a.stage_id).is_some_and(|s| {
        cx.dag
            .task_attempts(s, a.task_id)
            .last()
            .is_some_and(|last| last.status == Status::Failed && last.attempt == a.attempt)
    })
}
