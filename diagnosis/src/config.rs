//! The knobs of a diagnosis, with defaults calibrated on the simulator's
//! healthy variance (inputs up to ~4× a stage's median, durations up to
//! ~1.6×, about one transient OOM retry per ten jobs).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const SECOND_NS: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// A cause at or above this confidence is "reported"; a healthy job has
    /// none. Below it, causes are listed after the reported ones.
    pub confidence_cut: f64,
    /// The fleet's normal upper bound of submit → start. A longer wait is a
    /// queueing cause, costing the excess.
    pub queue_baseline_ns: i64,
    /// Skew and straggler heuristics only judge stages with at least this
    /// many tasks (a median of fewer says little; Sparklens and Dr.
    /// Elephant use the same kind of floor).
    pub min_stage_tasks: usize,
    /// A task reading more than this many times its stage's median input is
    /// a skew candidate; confidence reaches the cut near 5.2× and 0.9 at 10×.
    pub skew_ratio: f64,
    /// A task with normal input whose slowdown (duration and duration per
    /// byte, both vs the stage median) reaches this is a straggler.
    pub straggler_ratio: f64,
    /// With a hardware signal on its host, a slowdown of this much is
    /// enough to blame the hardware (the signal is the corroboration).
    pub hardware_slow_ratio: f64,
    /// A signal counts for an attempt that overlaps it widened by this much
    /// on each side (signals are sampled every 10-60 s and lag onset).
    pub signal_slack_ns: i64,
    /// "Now" for a running job: its wall time runs to here. `None`: to the
    /// latest reported end.
    pub now_ns: Option<i64>,
    /// At most this many attempts ride in the report for its timeline (the
    /// HTML Gantt): 2,000 bars keep the page around a megabyte. The critical
    /// path's attempts and those a cause names are kept beyond it; see
    /// [`Report::attempts`](crate::Report::attempts).
    pub timeline_attempts: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            confidence_cut: 0.5,
            queue_baseline_ns: 300 * SECOND_NS,
            min_stage_tasks: 4,
            skew_ratio: 4.0,
            straggler_ratio: 2.0,
            hardware_slow_ratio: 1.3,
            signal_slack_ns: 120 * SECOND_NS,
            now_ns: None,
            timeline_attempts: 2000,
        }
    }
}

impl Config {
    /// Checks the settings are usable.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("invalid diagnosis config: {what}")));
        if !(0.0..=1.0).contains(&self.confidence_cut) {
            return bad("confidence_cut must be in [0, 1]");
        }
        if self.queue_baseline_ns < 0 || self.signal_slack_ns < 0 {
            return bad("queue_baseline_ns and signal_slack_ns must not be negative");
        }
        if self.min_stage_tasks < 2 {
            return bad("min_stage_tasks must be at least 2");
        }
        if !(self.skew_ratio > 1.0 && self.straggler_ratio > 1.0 && self.hardware_slow_ratio > 1.0)
        {
            return bad("skew_ratio, straggler_ratio and hardware_slow_ratio must be above 1");
        }
        Ok(())
    }
}
