//! Stragglers: a task with normal input (under the skew floor) whose
//! slowdown vs its stage (duration and duration per byte, both against the
//! medians) reaches `straggler_ratio` (2×). Confidence 0.4 there, reaching
//! the cut of 0.5 near 2.45× and 0.85 at 4×: healthy straggle alone stays
//! under 1.6×, but with the fixed per-task overhead (3-15 s) a short task
//! can run 2.0-2.3× its stage's median, seen in ~1 of 400 healthy
//! simulated jobs. Without a hardware signal on its host, a straggler is a
//! symptom with no known cause.

use crate::cause::{Cause, CauseKind, Evidence, human_ns};
use crate::model::Status;
use crate::sql;
use crate::stats::ramp;

use super::Context;

pub(crate) fn detect(cx: &Context<'_>) -> Vec<Cause> {
    let mut out = Vec::new();
    let ratio_at = cx.config.straggler_ratio;
    for stage in cx.dag.stages() {
        let Some(st) = cx.stats.stage(stage.stage_id) else {
            continue;
        };
        if st.tasks < cx.config.min_stage_tasks {
            continue;
        }
        for a in cx.dag.final_attempts(stage) {
            if a.status != Status::Succeeded
                || st.input_ratio(a).is_some_and(|r| r > cx.config.skew_ratio)
            {
                continue;
            }
            let slowdown = st.slowdown(a);
            if slowdown < ratio_at {
                continue;
            }
            let on_path = cx.path.attempt_ns(a) > 0;
            let cost = if on_path { st.excess_ns(a) } else { 0 };
            let mut c = Cause::new(
                CauseKind::Straggler,
                ramp(slowdown, ratio_at, 0.4, ratio_at * 2.0, 0.85),
                cost,
                format!(
                    "stage {} task {} on {} ran {slowdown:.1}x slower than its siblings with normal input ({} vs median {}){}",
                    a.stage_id,
                    a.task_id,
                    a.hostname,
                    human_ns(a.duration_ns()),
                    human_ns(st.median_duration_ns as i64),
                    if on_path {
                        ", on the critical path"
                    } else {
                        ", off the critical path"
                    }
                ),
            );
            c.stage_id = Some(a.stage_id);
            c.hosts = vec![a.hostname.clone()];
            c.attempts = vec![a.into()];
            c.evidence.push(Evidence::new(
                format!(
                    "duration {:.1}x the stage median, input {:.1}x",
                    st.duration_ratio(a),
                    st.input_ratio(a).unwrap_or(1.0)
                ),
                vec![a.label()],
                Some(sql::tasks(cx.job_id(), Some(a.stage_id), None, false)),
            ));
            c.action = format!(
                "re-run; check {} (no hardware signal explains it); speculative execution would hide such tasks",
                a.hostname
            );
            out.push(c);
        }
    }
    out
}
