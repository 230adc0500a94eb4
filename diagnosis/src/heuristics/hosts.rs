//! Slow hosts: a host that ran at least two successful tasks of this job,
//! every one of them at least 1.5x slower than its stage's median and 1.8x
//! on average (geometric), while other hosts ran the siblings. One slow
//! task is a straggler; a pattern on one host is the host. Confidence 0.55
//! for two tasks, 0.8 from four. Failing hosts are `failures.rs`'s
//! host-blaming groups. (Across jobs is the fleet view's business: it needs
//! other jobs' rows.)

use std::collections::BTreeMap;

use crate::cause::{Cause, CauseKind, Evidence, human_ns};
use crate::model::{Attempt, Status};
use crate::sql;
use crate::stats::ramp;

use super::Context;

const EACH_AT_LEAST: f64 = 1.5;
const MEAN_AT_LEAST: f64 = 1.8;

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
        if tasks.len() < 2 || tasks.iter().any(|(_, s, _)| *s < EACH_AT_LEAST) {
            continue;
        }
        let mean = (tasks.iter().map(|(_, s, _)| s.ln()).sum::<f64>() / tasks.len() as f64).exp();
        if mean < MEAN_AT_LEAST {
            continue;
        }
        let cost: i64 = tasks.iter().map(|(_, _, c)| c).sum();
        let mut c = Cause::new(
            CauseKind::SlowHost,
            ramp(tasks.len() as f64, 2.0, 0.55, 4.0, 0.8),
            cost,
            format!(
                "{host} ran {} tasks of this job, all slower than their siblings on other hosts ({mean:.1}x on average); {} of the critical path",
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
        c.action = format!("re-run; drain {host} via a self_heal rule and look at its hardware");
        out.push(c);
    }
    out
}
