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
//! - A baseline without spread (all equal values) scores 0 when the last
//!   point equals it and ±Infinity otherwise: a counter that never moved
//!   and then jumps is infinitely unusual, and `score > 3` is true for it.

/// One sample: Unix nanoseconds and a value.
pub type Point = (i64, f64);

/// Fewest baseline points a score is computed from.
pub const MIN_BASELINE: usize = 3;

/// MAD × this estimates the standard deviation of normal data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// `(x - center) / scale`, with the zero-spread rule of the module docs.
fn standardize(x: f64, center: f64, scale: f64) -> f64 {
    if scale > 0.0 {
        (x - center) / scale
    } else if x == center {
        0.0
    } else if x > center {
        f64::INFINITY
    } else {
        f64::NEG_INFINITY
    }
}

fn split_last(points: &[Point]) -> Option<(&[Point], f64)> {
    let (last, baseline) = points.split_last()?;
    (baseline.len() >= MIN_BASELINE).then_some((baseline, last.1))
}

/// Rolling z-score: the last value against the mean and the sample
/// standard deviation (n − 1) of the points before it.
pub fn zscore(points: &[Point]) -> Option<f64> {
    let (baseline, x) = split_last(points)?;
    let n = baseline.len() as f64;
    let mean = baseline.iter().map(|p| p.1).sum::<f64>() / n;
    let var = baseline.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(standardize(x, mean, var.sqrt()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Robust z-score: the last value against the median of the points before
/// it, in units of 1.4826 × their median absolute deviation. One outlier
/// in the baseline moves neither.
pub fn robust_zscore(points: &[Point]) -> Option<f64> {
    let (baseline, x) = split_last(points)?;
    let mut values: Vec<f64> = baseline.iter().map(|p| p.1).collect();
    let med = median(&mut values);
    for v in &mut values {
        *v = (*v - med).abs();
    }
    let mad = median(&mut values);
    Some(standardize(x, med, MAD_TO_SIGMA * mad))
}

/// EWMA deviation: the last value against the exponentially weighted mean
/// of the points before it, in units of their exponentially weighted
/// standard deviation. `alpha` in (0, 1] is the weight of each new point.
///
/// The recurrence starts at the first baseline value with variance 0; for
/// each later value `x`: `d = x − m`, `m += α·d`, `v = (1 − α)(v + α·d²)`.
pub fn ewma_deviation(points: &[Point], alpha: f64) -> Option<f64> {
    let (baseline, x) = split_last(points)?;
    let mut mean = baseline[0].1;
    let mut var = 0.0;
    for p in &baseline[1..] {
        let diff = p.1 - mean;
        let incr = alpha * diff;
        mean += incr;
        var = (1.0 - alpha) * (var + diff * incr);
    }
    Some(standardize(x, mean, var.sqrt()))
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
    fn zero_spread() {
        assert_eq!(zscore(&pts(&[3.0, 3.0, 3.0, 3.0])), Some(0.0));
        assert_eq!(zscore(&pts(&[3.0, 3.0, 3.0, 4.0])), Some(f64::INFINITY));
        assert_eq!(
            robust_zscore(&pts(&[3.0, 3.0, 3.0, 1.0])),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(
            ewma_deviation(&pts(&[3.0, 3.0, 3.0, 9.0]), 0.5),
            Some(f64::INFINITY)
        );
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
