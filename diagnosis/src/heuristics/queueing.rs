//! Queueing delay: submit → start longer than the fleet baseline. The cost
//! is the excess over the baseline; confidence 0.5 just past it, 0.9 at 3×.

use crate::cause::{Cause, CauseKind, Evidence, human_ns};
use crate::sql;
use crate::stats::ramp;

use super::Context;

pub(crate) fn detect(cx: &Context<'_>) -> Vec<Cause> {
    let Some(wait) = cx.queue_wait_ns else {
        return Vec::new();
    };
    let baseline = cx.config.queue_baseline_ns;
    if wait <= baseline {
        return Vec::new();
    }
    let ratio = wait as f64 / baseline.max(1) as f64;
    let queue = cx.queue.unwrap_or("its queue");
    let mut c = Cause::new(
        CauseKind::QueueingDelay,
        ramp(ratio, 1.0, 0.5, 3.0, 0.9),
        wait - baseline,
        format!(
            "waited {} in {queue} before starting, {ratio:.1}x the fleet baseline of {}",
            human_ns(wait),
            human_ns(baseline)
        ),
    );
    c.evidence.push(Evidence::new(
        "submit_ns → start_ns of the job_runs row",
        vec![cx.job_id().to_owned()],
        Some(sql::run(cx.job_id())),
    ));
    c.action = format!("{queue} is congested: submit off-peak, or raise its share or capacity");
    vec![c]
}
