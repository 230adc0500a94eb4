//! Slow hosts, two ways:
//! - **in this job**: a host that ran at least two successful tasks of this
//!   job, every one of them at least 1.5x slower than its stage's median
//!   and 1.8x on average (geometric), while other hosts ran the siblings.
//!   Confidence 0.55 for two tasks, 0.8 from four;
//! - **across jobs**: a host whose tasks in this job were each at least
//!   1.5x their stage's median, and whose tasks of other jobs around this
//!   one (the input's `host_history`, at least 3 of them) ran at least 1.5x
//!   their own stages' medians on average. Confidence 0.6 at 1.5x, 0.85
//!   from 2.5x. One slow task alone is a straggler; the same host slowing
//!   other jobs is the host.
//!
//! Failing hosts are `failures.rs`'s host-blaming groups.

use std::collections::BTreeMap;

use crate::cause::{Cause, CauseKind, Evidence, human_ns};
use crate::model::{Attempt, HostHistory, Status};
use crate::sql;
use crate::stats::ramp;

use super::Context;

const EACH_AT_LEAST: f64 = 1.5;
const MEAN_AT_LEAST: f64 = 1.8;
/// Across jobs: other jobs' tasks on the host, at least this many …
const HISTORY_TASKS: u64 = 3;
/// … at least this much slower than their stages on average.
const HISTORY_MEAN_AT_LEAST: f64 = 1.5;

/// The host's history, when it shows the host slowing other jobs too.
pub(crate) fn slow_elsewhere<'a>(cx: &Context<'a>, host: &str) -> Option<&'a HostHistory> {
    cx.history.iter().find(|h| {
        h.hostname == host && h.tasks >= HISTORY_TASKS && h.mean_slowdown >= HISTORY_MEAN_AT_LEAST
    })
}

pub(crate) fn detect(cx: &Context<'_>) -> Vec<Cause> {
    let mut by_host: BTreeMap<&str, Vec<(&Attempt, f64, i64)>> = BTreeMap::new();
    for a in cx
        .dag
        .attempts
        .iter()
        .filter(|a| a.status == Status::Succeeded)
    {
        let Some(st) = cx.stats.stage(a.stage_id) else {
            continue;
        };
        if st.samples < 3 {
            continue;
        }
        let cost = if cx.path.attempt_ns(a) > 0 {
            st.excess_ns(a)
        } else {
            0
        };
        by_host
            .entry(&a.hostname)
            .or_default()
            .push((a, st.slowdown(a), cost));
    }
    let mut out = Vec::new();
    for (host, tasks) in by_host {
        if tasks.iter().any(|(_, s, _)| *s < EACH_AT_LEAST) {
            continue;
        }
        let mean = (tasks.iter().map(|(_, s, _)| s.ln()).sum::<f64>() / tasks.len() as f64).exp();
        let in_job = (tasks.len() >= 2 && mean >= MEAN_AT_LEAST)
            .then(|| ramp(tasks.len() as f64, 2.0, 0.55, 4.0, 0.8));
        let history = slow_elsewhere(cx, host);
        let across = history.map(|h| ramp(h.mean_slowdown, 1.5, 0.6, 2.5, 0.85));
        let confidence = match (in_job, across) {
            (None, None) => continue,
            (a, b) => a.unwrap_or(0.0).max(b.unwrap_or(0.0)),
        };
        let cost: i64 = tasks.iter().map(|(_, _, c)| c).sum();
        let elsewhere = history
            .map(|h| {
                format!(
                    "; {} tasks of other jobs on it around this one ran {:.1}x their stages' medians",
                    h.tasks, h.mean_slowdown
                )
            })
            .unwrap_or_default();
        let mut c = Cause::new(
            CauseKind::SlowHost,
            confidence,
            cost,
            format!(
                "{host} ran {} task(s) of this job, all slower than their siblings on other hosts ({mean:.1}x on average){elsewhere}; {} of the critical path",
                tasks.len(),
                human_ns(cost)
            ),
        );
        c.hosts = vec![host.to_owned()];
        c.attempts = tasks.iter().map(|(a, _, _)| (*a).into()).collect();
        c.evidence.push(Evidence::new(
            tasks
                .iter()
                .map(|(a, s, _)| format!("{} {s:.1}x", a.label()))
                .collect::<Vec<_>>()
                .join("; "),
            tasks.iter().map(|(a, _, _)| a.label()).collect(),
            Some(sql::tasks(cx.job_id(), None, Some(host), false)),
        ));
        if let Some(h) = history {
            c.evidence.push(Evidence::new(
                format!(
                    "{} successful tasks of other jobs on {host} between {} and {}: {:.1}x their stages' medians (geometric mean)",
                    h.tasks,
                    fleetlake_time::rfc3339(h.start_ns),
                    fleetlake_time::rfc3339(h.end_ns),
                    h.mean_slowdown
                ),
                vec![host.to_owned()],
                Some(h.sql.clone()),
            ));
        }
        c.action = format!("re-run; drain {host} via a self_heal rule and look at its hardware");
        out.push(c);
    }
    out
}
