//! Per-stage medians that the heuristics compare tasks against.

use std::collections::HashMap;

use crate::dag::Dag;
use crate::model::{Attempt, Status};

/// Medians over a stage's successful final attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    /// Successful final attempts measured.
    pub samples: usize,
    /// Tasks in the stage (any status).
    pub tasks: usize,
    pub median_duration_ns: f64,
    pub median_input: f64,
    /// Median of duration per input byte; `None` when no task read bytes.
    pub median_rate: Option<f64>,
}

impl StageStats {
    pub fn duration_ratio(&self, a: &Attempt) -> f64 {
        a.duration_ns() as f64 / self.median_duration_ns.max(1.0)
    }

    pub fn input_ratio(&self, a: &Attempt) -> Option<f64> {
        (self.median_input > 0.0).then(|| a.input_bytes() as f64 / self.median_input)
    }

    /// How much slower than its siblings an attempt ran, discounting its
    /// input: the smaller of duration vs the median duration and duration
    /// per byte vs the median rate. A skewed task (long because it read
    /// more) is not slow by this measure; a small task with a fixed
    /// overhead (slow per byte, short overall) is not either.
    pub fn slowdown(&self, a: &Attempt) -> f64 {
        let by_duration = self.duration_ratio(a);
        match (self.median_rate, rate(a)) {
            (Some(m), Some(r)) if m > 0.0 => by_duration.min(r / m),
            _ => by_duration,
        }
    }

    /// Time beyond the median this attempt took (0 when it was faster).
    pub fn excess_ns(&self, a: &Attempt) -> i64 {
        (a.duration_ns() as f64 - self.median_duration_ns).max(0.0) as i64
    }
}

fn rate(a: &Attempt) -> Option<f64> {
    (a.input_bytes() > 0).then(|| a.duration_ns() as f64 / a.input_bytes() as f64)
}

/// Stats of every stage with at least one successful task.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    by_stage: HashMap<u32, StageStats>,
}

impl Stats {
    pub fn compute(dag: &Dag<'_>) -> Stats {
        let mut by_stage = HashMap::new();
        for stage in dag.stages() {
            let ok: Vec<&Attempt> = dag
                .final_attempts(stage)
                .into_iter()
                .filter(|a| a.status == Status::Succeeded)
                .collect();
            if ok.is_empty() {
                continue;
            }
            let durations = ok.iter().map(|a| a.duration_ns() as f64).collect();
            let inputs = ok.iter().map(|a| a.input_bytes() as f64).collect();
            let rates: Vec<f64> = ok.iter().filter_map(|a| rate(a)).collect();
            by_stage.insert(
                stage.stage_id,
                StageStats {
                    samples: ok.len(),
                    tasks: stage.tasks.len(),
                    median_duration_ns: upper_median(durations),
                    median_input: upper_median(inputs),
                    median_rate: (!rates.is_empty()).then(|| upper_median(rates)),
                },
            );
        }
        Stats { by_stage }
    }

    pub fn stage(&self, stage_id: u32) -> Option<&StageStats> {
        self.by_stage.get(&stage_id)
    }
}

/// The upper median (the simulator's skew is stated against it).
pub fn upper_median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Linear from (x0, y0) to (x1, y1), flat outside.
pub fn ramp(x: f64, x0: f64, y0: f64, x1: f64, y1: f64) -> f64 {
    if x <= x0 {
        y0
    } else if x >= x1 {
        y1
    } else {
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ramps() {
        assert_eq!(upper_median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(upper_median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(ramp(7.0, 4.0, 0.4, 10.0, 0.9), 0.65);
        assert_eq!(ramp(1.0, 4.0, 0.4, 10.0, 0.9), 0.4);
        assert_eq!(ramp(20.0, 4.0, 0.4, 10.0, 0.9), 0.9);
    }
}
