//! The heuristics, one file each. Each looks at the job and returns
//! candidate causes with a confidence and the time they cost; ranking
//! (`rank.rs`) merges symptoms into the hardware causes that explain them.

mod failures;
mod hardware;
mod hosts;
mod queueing;
mod skew;
mod straggler;

use crate::cause::Cause;
use crate::config::Config;
use crate::critical_path::{CriticalPath, JobSpan};
use crate::dag::Dag;
use crate::model::HostSignal;
use crate::stats::Stats;

/// What every heuristic sees.
pub(crate) struct Context<'a> {
    pub dag: &'a Dag<'a>,
    pub path: &'a CriticalPath,
    pub stats: &'a Stats,
    pub config: &'a Config,
    pub span: JobSpan,
    /// Submit → start, when both are known.
    pub queue_wait_ns: Option<i64>,
    pub queue: Option<&'a str>,
    pub signals: &'a [HostSignal],
    /// Other jobs on the slow-looking hosts ([`crate::model::HostHistory`]).
    pub history: &'a [crate::model::HostHistory],
}

impl Context<'_> {
    pub fn job_id(&self) -> &str {
        self.dag.job_id
    }

    /// The wall time, submit (or start) to end.
    pub fn wall_ns(&self) -> i64 {
        self.span.end_ns
            - self
                .span
                .submit_ns
                .unwrap_or(self.span.start_ns)
                .min(self.span.start_ns)
    }
}

/// Every heuristic's candidates, unranked.
pub(crate) fn run_all(cx: &Context<'_>) -> Vec<Cause> {
    let mut causes = Vec::new();
    causes.extend(skew::detect(cx));
    causes.extend(straggler::detect(cx));
    causes.extend(failures::detect(cx));
    causes.extend(hosts::detect(cx));
    causes.extend(queueing::detect(cx));
    causes.extend(hardware::detect(cx));
    causes
}
