//! Data skew: a task whose input (local plus shuffle bytes) is far above its
//! stage's median, in stages with enough tasks for a median to mean
//! something. Healthy stages stay under ~4×; the simulator's skew is
//! 12-25×. Confidence climbs from 0.4 at the ratio floor to 0.9 at 10×.

use crate::cause::{Cause, CauseKind, Evidence, human_bytes, human_ns};
use crate::model::Status;
use crate::sql;
use crate::stats::ramp;

use super::Context;

pub(crate) fn detect(cx: &Context<'_>) -> Vec<Cause> {
    let mut out = Vec::new();
    let floor = cx.config.skew_ratio;
    for stage in cx.dag.stages() {
        let Some(st) = cx.stats.stage(stage.stage_id) else {
            continue;
        };
        if st.tasks < cx.config.min_stage_tasks {
            continue;
        }
        for a in cx.dag.final_attempts(stage) {
            if a.status != Status::Succeeded {
                continue;
            }
            let Some(ratio) = st.input_ratio(a) else {
                continue;
            };
            if ratio <= floor {
                continue;
            }
            let confidence = ramp(ratio, floor, 0.4, floor.max(10.0), 0.9);
            let on_path = cx.path.attempt_ns(a) > 0;
            let cost = if on_path { st.excess_ns(a) } else { 0 };
            let mut c = Cause::new(
                CauseKind::DataSkew,
                confidence,
                cost,
                format!(
                    "stage {} task {} read {ratio:.1}x the stage median ({} vs {}) and ran {}{}",
                    a.stage_id,
                    a.task_id,
                    human_bytes(a.input_bytes() as f64),
                    human_bytes(st.median_input),
                    human_ns(a.duration_ns()),
                    if on_path {
                        format!(
                            ", {} more than the median task, on the critical path",
                            human_ns(cost)
                        )
                    } else {
                        ", off the critical path".to_owned()
                    }
                ),
            );
            c.stage_id = Some(a.stage_id);
            c.hosts = vec![a.hostname.clone()];
            c.attempts = vec![a.into()];
            c.evidence.push(Evidence::new(
                format!(
                    "input {} bytes vs stage median {:.0} over {} tasks",
                    a.input_bytes(),
                    st.median_input,
                    st.tasks
                ),
                vec![a.label()],
                Some(sql::tasks(cx.job_id(), Some(a.stage_id), None, false)),
            ));
            c.action = format!(
                "repartition stage {}: task {} read {ratio:.0}x the median; salt or split its hot key",
                a.stage_id, a.task_id
            );
            out.push(c);
        }
    }
    out
}
