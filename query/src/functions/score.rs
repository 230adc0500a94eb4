//! The arithmetic of the series functions, over points sorted by time.
//!
//! Pure functions of `&[Point]`: no Arrow, no DataFusion, so each one is
//! pinned by unit tests against values computed by hand.
//!
//! # Invariants (every function here)
//!
//! - `points` holds only finite values, sorted by time (ties in arrival
//!   order); the caller filters NULL, NaN and ±Infinity out first.
//! - The scored point is the last one; the baseline is every point before
//!   it and must hold at least [`MIN_BASELINE`] points, else the answer is
//!   `None` (SQL NULL).
//! - A score is finite. It divides by the baseline's spread estimate, but
//!   never by less than half the series' step (see [`Baseline`]): a
//!   quantized series (utilisation in whole percent) or a flat one (a
//!   counter that never moved) is only as precise as its values are. A
//!   flat baseline (min = max, decided exactly) scores exactly 0 for a
//!   last value equal to it.

/// One sample: Unix nanoseconds and a value.
pub type Point = (i64, f64);

/// Fewest baseline points a score is computed from.
pub const MIN_BASELINE: usize = 3;

/// MAD × this estimates the standard deviation of normal data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Mean absolute deviation × this estimates the standard deviation of
/// normal data (√(π/2)); `robust_zscore`'s estimate when the MAD is 0
/// (more than half the baseline is one value).
pub const MEAN_AD_TO_SIGMA: f64 = 1.253_314;

/// The decimal exponent `e` (at most 0) of a value's step `10^e`: the
/// coarsest power of ten it is a multiple of, to about nine significant
/// digits. Integers (and 0) have step 1; 0.25 has 0.01; 1e-12 has 1e-12.
pub fn step_exponent(v: f64) -> i32 {
    if v.fract() == 0.0 || !v.is_finite() {
        // Whole numbers (0 too): the common case, without a logarithm.
        return 0;
    }
    let top = v.abs().log10().floor() as i32;
    let start = top.min(0);
    let finest = (top - 9).min(start);
    // From the coarsest step down: the first that divides v.
    for e in (finest..=start).rev() {
        let scaled = v * 10f64.powi(-e);
        if (scaled - scaled.round()).abs() <= 1e-9 * scaled.abs().max(1.0) {
            return e;
        }
    }
    finest
}

/// A baseline's summary, from which a value is scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub center: f64,
    /// The spread estimate (in units of a standard deviation).
    pub spread: f64,
    /// min = max.
    pub flat: bool,
    /// The finest step exponent among the baseline's values (see
    /// [`step_exponent`]). Only a spread below 0.5 can be floored (a step
    /// is at most 1), so only then is it computed; 0 otherwise.
    pub step_exp: i32,
}

/// Below this spread the step's floor may apply ([`Baseline::step_exp`]).
pub const FLOORED_BELOW: f64 = 0.5;

impl Baseline {
    /// `(x − center) / scale` with `scale = max(spread, step / 2)`, the step
    /// being the finer of the baseline's and `x`'s. A flat baseline scores
    /// exactly 0 at its value (its float mean may not equal it).
    pub fn score(&self, x: f64) -> f64 {
        if self.flat && x == self.center {
            return 0.0;
        }
        let step = 10f64.powi(self.step_exp.min(step_exponent(x)));
        (x - self.center) / self.spread.max(step / 2.0)
    }
}

/// The finest step exponent of `values`.
fn finest_step(values: impl Iterator<Item = f64>) -> i32 {
    values.map(step_exponent).min().unwrap_or(0)
}

fn split_last(points: &[Point]) -> Option<(&[Point], f64)> {
    let (last, baseline) = points.split_last()?;
    (baseline.len() >= MIN_BASELINE).then_some((baseline, last.1))
}

/// `(min, max)` of the values.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// The z-score's baseline: the mean and the sample standard deviation
/// (n − 1) of `values`.
pub fn mean_baseline(values: &[f64]) -> Baseline {
    let n = values.len() as f64;
    let (lo, hi) = range(values.iter().copied());
    if lo == hi {
        return flat(lo);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let spread = var.sqrt();
    Baseline {
        center: mean,
        spread,
        flat: false,
        step_exp: step_if_floored(spread, || finest_step(values.iter().copied())),
    }
}

/// The step exponent when `spread` may be floored, else 0 (unused).
pub fn step_if_floored(spread: f64, step: impl FnOnce() -> i32) -> i32 {
    if spread < FLOORED_BELOW { step() } else { 0 }
}

/// The baseline of values all equal to `v`.
pub fn flat(v: f64) -> Baseline {
    Baseline {
        center: v,
        spread: 0.0,
        flat: true,
        step_exp: step_exponent(v),
    }
}

/// Rolling z-score: the last value against the mean and the sample
/// standard deviation (n − 1) of the points before it.
pub fn zscore(points: &[Point]) -> Option<f64> {
    let (baseline, x) = split_last(points)?;
    let values: Vec<f64> = baseline.iter().map(|p| p.1).collect();
    Some(mean_baseline(&values).score(x))
}

/// The median of sorted values.
pub fn median_of_sorted(n: usize, at: impl Fn(usize) -> f64) -> f64 {
    if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    }
}

/// The robust z-score's baseline from sorted values: the median, and
/// 1.4826 × the median absolute deviation from it (1.2533 × the mean
/// absolute deviation when the MAD is 0).
pub fn median_baseline(sorted: &[f64]) -> Baseline {
    let n = sorted.len();
    let (lo, hi) = (sorted[0], sorted[n - 1]);
    if lo == hi {
        return flat(lo);
    }
    let med = median_of_sorted(n, |i| sorted[i]);
    let mut dev: Vec<f64> = sorted.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = median_of_sorted(n, |i| dev[i]);
    let spread = if mad > 0.0 {
        MAD_TO_SIGMA * mad
    } else {
        MEAN_AD_TO_SIGMA * dev.iter().sum::<f64>() / n as f64
    };
    Baseline {
        center: med,
        spread,
        flat: false,
        step_exp: step_if_floored(spread, || finest_step(sorted.iter().copied())),
    }
}

/// Robust z-score: the last value against the median of the points before
/// it, in units of 1.4826 × their median absolute deviation (1.2533 × their
/// mean absolute deviation when more than half are one value). One outlier
/// in the baseline moves neither.
pub fn robust_zscore(points: &[Point]) -> Option<f64> {
    let (baseline, x) = split_last(points)?;
    let mut values: Vec<f64> = baseline.iter().map(|p| p.1).collect();
    values.sort_by(f64::total_cmp);
    Some(median_baseline(&values).score(x))
}

/// The EWMA recurrence: starts at the first value with variance 0; for
/// each later value `x`: `d = x − m`, `m += α·d`, `v = (1 − α)(v + α·d²)`.
#[derive(Debug, Clone, Copy)]
pub struct Ewma {
    mean: f64,
    var: f64,
    lo: f64,
    hi: f64,
}

impl Ewma {
    pub fn new(first: f64) -> Self {
        Self {
            mean: first,
            var: 0.0,
            lo: first,
            hi: first,
        }
    }

    pub fn push(&mut self, x: f64, alpha: f64) {
        let diff = x - self.mean;
        let incr = alpha * diff;
        self.mean += incr;
        self.var = (1.0 - alpha) * (self.var + diff * incr);
        self.lo = self.lo.min(x);
        self.hi = self.hi.max(x);
    }

    /// The baseline, with `step` the finest step exponent of the values
    /// (asked for only when the floor may apply).
    pub fn baseline(&self, step: impl FnOnce() -> i32) -> Baseline {
        if self.lo == self.hi {
            return flat(self.lo);
        }
        let spread = self.var.sqrt();
        Baseline {
            center: self.mean,
            spread,
            flat: false,
            step_exp: step_if_floored(spread, step),
        }
    }
}

/// EWMA deviation: the last value against the exponentially weighted mean
/// of the points before it, in units of their exponentially weighted
/// standard deviation ([`Ewma`]). `alpha` in (0, 1] is the weight of each
/// new point.
pub fn ewma_deviation(points: &[Point], alpha: f64) -> Option<f64> {
    let (baseline, x) = split_last(points)?;
    let mut e = Ewma::new(baseline[0].1);
    for p in &baseline[1..] {
        e.push(p.1, alpha);
    }
    Some(
        e.baseline(|| finest_step(baseline.iter().map(|p| p.1)))
            .score(x),
    )
}

/// Seasonal delta: the last value minus the value one `period_ns` earlier,
/// i.e. of the latest point at or before `t_last − period`. `None` when
/// there is no such point (the range does not reach back a period).
pub fn seasonal_delta(points: &[Point], period_ns: i64) -> Option<f64> {
    let (t, x) = *points.last()?;
    let target = t.checked_sub(period_ns)?;
    // Points are sorted by time: the ones at or before the target lead.
    let before = points.partition_point(|p| p.0 <= target);
    let base = points[..before].last()?;
    Some(x - base.1)
}

/// Counter increase with Prometheus's reset rule: a decrease means the
/// counter restarted from 0, so the new value is all increase. No
/// extrapolation to the edges of the range. `None` below 2 points.
pub fn increase(points: &[Point]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    Some(
        points
            .windows(2)
            .map(|w| {
                let d = w[1].1 - w[0].1;
                if d >= 0.0 { d } else { w[1].1 }
            })
            .sum(),
    )
}

/// Per-second rate of a counter: [`increase`] over the seconds between the
/// first and the last point. `None` below 2 points or when they share a
/// time.
pub fn rate(points: &[Point]) -> Option<f64> {
    let inc = increase(points)?;
    let span = points.last()?.0 - points.first()?.0;
    (span > 0).then(|| inc / (span as f64 / 1e9))
}

/// Absence: seconds from the latest point's time to its value, where each
/// point is `(time, at)` with `at` the evaluation time in nanoseconds (the
/// largest `at` counts). `None` without points. Negative when data lies
/// after `at`.
pub fn staleness(points: &[Point]) -> Option<f64> {
    let last = points.last()?.0;
    let at = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    Some((at - last as f64) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn pts(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 10 * S, *v))
            .collect()
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn zscore_by_hand() {
        // Baseline 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32/7.
        let p = pts(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, 12.0]);
        close(zscore(&p), 7.0 / (32.0f64 / 7.0).sqrt());
        // Too few baseline points.
        assert_eq!(zscore(&pts(&[1.0, 2.0, 3.0])), None);
        assert_eq!(zscore(&[]), None);
        // Exactly three: mean 2, variance 1.
        close(zscore(&pts(&[1.0, 2.0, 3.0, 5.0])), 3.0);
    }

    #[test]
    fn step_exponents() {
        for (v, e) in [
            (0.0, 0),
            (7.0, 0),
            (2000.0, 0),
            (1e15, 0),
            (-3.0, 0),
            (0.1, -1),
            (0.3, -1),
            (0.25, -2),
            (50.0123, -4),
            (-0.007, -3),
            (1e-12, -12),
            (123456.5, -1),
        ] {
            assert_eq!(step_exponent(v), e, "{v}");
        }
        // Float noise past nine significant digits is not a step.
        assert_eq!(step_exponent(0.1 + 0.2), -1);
        assert!(step_exponent(std::f64::consts::PI) <= -8);
    }

    #[test]
    fn flat_baselines_score_finite_in_steps() {
        // Equal to a flat baseline: exactly 0, even where the float mean
        // of the baseline is not its value (ten 0.1s sum to 0.9999…).
        assert_eq!(zscore(&pts(&[3.0, 3.0, 3.0, 3.0])), Some(0.0));
        assert_eq!(zscore(&pts(&[0.1; 4])), Some(0.0));
        assert_eq!(zscore(&pts(&[0.1; 11])), Some(0.0));
        assert_eq!(robust_zscore(&pts(&[0.1; 11])), Some(0.0));
        assert_eq!(ewma_deviation(&pts(&[0.1; 11]), 0.3), Some(0.0));
        // Away from it: in halves of the step (1 for whole numbers).
        close(zscore(&pts(&[3.0, 3.0, 3.0, 4.0])), 2.0);
        close(robust_zscore(&pts(&[3.0, 3.0, 3.0, 1.0])), -4.0);
        close(ewma_deviation(&pts(&[3.0, 3.0, 3.0, 9.0]), 0.5), 12.0);
        // The finer step of the baseline and the value counts.
        close(zscore(&pts(&[3.0, 3.0, 3.0, 3.5])), 0.5 / 0.05);
        close(zscore(&pts(&[0.0, 0.0, 0.0, 1.0])), 2.0);
    }

    #[test]
    fn quantized_and_nearly_flat_baselines_score_finite() {
        // More than half the baseline is 50: the MAD is 0, the mean
        // absolute deviation (3/8) × 1.2533 = 0.47 is below half the step,
        // so the step's half scales.
        let p = pts(&[50.0, 50.0, 50.0, 51.0, 50.0, 52.0, 50.0, 50.0, 51.0]);
        close(robust_zscore(&p), 2.0);
        // Mean absolute deviation above the step's half: it scales.
        let p = pts(&[0.5, 0.5, 0.5, 0.5, 0.5, 0.7, 0.9, 0.9, 1.5]);
        let sd = MEAN_AD_TO_SIGMA * (0.2 + 0.4 + 0.4) / 8.0;
        close(robust_zscore(&p), 1.0 / sd);
        // A spread of float noise is no spread.
        let p = pts(&[100.0, 100.0 + 1e-12, 100.0 - 1e-12, 100.0, 101.0]);
        let z = zscore(&p).unwrap();
        assert!((z - 2.0).abs() < 1e-6, "{z}");
        let r = robust_zscore(&p).unwrap();
        assert!((r - 2.0).abs() < 1e-6, "{r}");
    }

    #[test]
    fn robust_zscore_by_hand() {
        // Baseline 1, 2, 3, 4, 100: median 3, deviations 2, 1, 0, 1, 97 →
        // MAD 1; the outlier 100 moves neither.
        let p = pts(&[1.0, 2.0, 3.0, 4.0, 100.0, 10.0]);
        close(robust_zscore(&p), 7.0 / 1.4826);
        // Even count: baseline 1, 2, 4, 8 → median 3; deviations 2, 1, 1, 5 → MAD 1.5.
        close(
            robust_zscore(&pts(&[1.0, 2.0, 4.0, 8.0, 0.0])),
            -3.0 / (1.4826 * 1.5),
        );
    }

    #[test]
    fn ewma_by_hand() {
        // alpha 0.5, baseline 0, 2, 2:
        //   x=2: d=2, m=1, v=0.5·(0 + 0.5·4)=1
        //   x=2: d=1, m=1.5, v=0.5·(1 + 0.5·1)=0.75
        // last 3.5: (3.5 − 1.5)/√0.75.
        close(
            ewma_deviation(&pts(&[0.0, 2.0, 2.0, 3.5]), 0.5),
            2.0 / 0.75f64.sqrt(),
        );
        assert_eq!(ewma_deviation(&pts(&[1.0, 2.0, 3.0]), 0.5), None);
    }

    #[test]
    fn seasonal_by_hand() {
        // Points every 10 s; period 30 s: last at 50 s (value 9) against the
        // point at 20 s (value 4).
        let p = pts(&[1.0, 2.0, 4.0, 5.0, 7.0, 9.0]);
        close(seasonal_delta(&p, 30 * S), 5.0);
        // 25 s: the latest point at or before 25 s is the one at 20 s.
        close(seasonal_delta(&p, 25 * S), 5.0);
        // Reaching back before the first point: no baseline.
        assert_eq!(seasonal_delta(&p, 51 * S), None);
        close(seasonal_delta(&p, 50 * S), 8.0);
        assert_eq!(seasonal_delta(&[], S), None);
    }

    #[test]
    fn counters_with_resets() {
        // 10 → 15 (+5) → 3 (reset: +3) → 8 (+5) → 8 (+0): 13 over 40 s.
        let p = pts(&[10.0, 15.0, 3.0, 8.0, 8.0]);
        close(increase(&p), 13.0);
        close(rate(&p), 13.0 / 40.0);
        // A reset to 0 adds nothing.
        close(increase(&pts(&[5.0, 0.0, 2.0])), 2.0);
        assert_eq!(increase(&pts(&[5.0])), None);
        assert_eq!(rate(&[(S, 1.0), (S, 2.0)]), None);
    }

    #[test]
    fn staleness_by_hand() {
        let at = (100 * S) as f64;
        close(staleness(&[(10 * S, at), (40 * S, at)]), 60.0);
        assert_eq!(staleness(&[]), None);
    }
}
