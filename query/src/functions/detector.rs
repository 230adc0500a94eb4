//! `anomaly_score`: an online detector that learns each series' normal
//! behaviour and scores every point in [0, 1], with one threshold
//! ([`THRESHOLD`]) that means the same on every series.
//!
//! # How it works
//!
//! Three statistics are taken of each point against the state before it:
//!
//! 1. **surprise**: |value − a fast EWMA (α 0.1) of the series| ÷ the
//!    long-run mean absolute size of that residual (α 0.01): spikes, dips,
//!    the start of a level shift;
//! 2. **volatility**: |ln(short-run mean absolute residual (α 0.1) ÷ the
//!    long-run one)|: a change in variance, a noisy series going flat;
//! 3. **displacement**: |value − a slow EW mean (α 0.003)| ÷ its EW
//!    standard deviation: a drift or a level that stays away.
//!
//! Each statistic is not compared with a fixed cut but with its own
//! history: a decayed histogram of the statistic's past values (96 bins,
//! a quarter of a binary order of magnitude each; decay 0.0005 per point,
//! i.e. about the last 2,000 points) gives the empirical probability `p`
//! of a value at least as large. A series whose residuals are heavy-tailed
//! (bursty CPU, small counts) thus learns that large residuals are normal
//! for it; a calm one that they are not.
//!
//! The three probabilities (p₁ and p₃ weighed by the series' moves first,
//! below) make one ([`combined`]): the smaller of 1.5 × the smallest, and
//! 10 × Fisher's combination of the two smallest (`x · (1 − ln x)` for
//! their product `x`: the chance that two independent uniform
//! probabilities multiply to `x` or less). A point odd in two ways at
//! once — a jump that also leaves the long-run level, a burst that also
//! changes the noise — is more likely a real change than one statistic's
//! record alone, which a series sets now and then by chance; so the
//! second needs half again as rare a value, and the first fires on two
//! moderately rare ones. (The factors cover the choice of the two
//! smallest of three and their dependence; they were chosen on NAB's real
//! streams and the generated corpus together, benches/README.md.) The
//! point's score is `min(1, −log₁₀(min(1, 3p)) ÷ 4)` (Bonferroni over the
//! three): 0.5 is a probability of 1%, 0.75 of 0.1%. A statistic beyond
//! everything in its history scores about 0.78 after 2,000 points, and
//! more the further beyond it is: past the highest value seen, each
//! quarter octave halves the probability.
//!
//! The probabilities of surprise and displacement (where the series is,
//! not how noisy) are first weighed by what the series has done before at
//! a coarse scale ([`Moves`]): the range of its first 400 values is cut
//! into 5 levels, and each move from one point's level to the next one's
//! is counted. A move made `c` times before multiplies them by 1 + c; a
//! move never made divides them by 3. Rare points the series
//! produces routinely (a nightly job's spike, seen every day) stop being
//! news, and a point that takes the series somewhere it never went is
//! news sooner. On NAB's real streams this is what keeps the recurring
//! bursts of cloud metrics from firing (benches/README.md, "anomaly_score
//! on NAB's real streams").
//!
//! Scales are floored at half the series' decimal step (as in
//! [`super::score::Baseline`]) so quantized and flat series give finite,
//! meaningful statistics.
//!
//! After a point scores at or above [`THRESHOLD`], the next [`REST`]
//! points score 0: one incident, one detection, as the detectors that lead
//! the Numenta Anomaly Benchmark do (CAD OSE, ARTime). The first [`LEARN`]
//! points of a series score NULL: there is nothing to compare them with
//! yet.
//!
//! # Invariants
//! - The state is a fixed size ([`Detector::BYTES`], under 3.2 KB: three
//!   histograms and 64 remembered moves), whatever the number of points.
//! - Every score is in [0, 1]; the input is finite (the caller filters
//!   NULL, NaN and ±Infinity out).

use super::score::{Point, step_exponent};

/// Points a series must have had before its points are scored.
pub const LEARN: usize = 150;
/// Points before the statistics are ranked against their history: the
/// first residuals are measured against scales made of a handful of
/// points (or of none, floored at the step), and would stay in the
/// histograms as outliers for thousands of points.
const WARM: usize = 16;
/// Points scored 0 after a detection.
pub const REST: usize = 100;
/// The score at and above which a point is anomalous.
pub const THRESHOLD: f64 = 0.5;

/// Decay of the statistics' histograms per point.
const DECAY: f64 = 0.0005;
/// Histogram bins: `BINS_PER_OCTAVE` per binary order of magnitude from
/// 2^`LOWEST_OCTAVE` up.
const BINS: usize = 96;
const BINS_PER_OCTAVE: f64 = 4.0;
const LOWEST_OCTAVE: f64 = -12.0;
/// Decimal orders of magnitude of probability that make a score of 1.
const DECADES: f64 = 4.0;
/// Points whose range sets the size of the coarse levels of [`Moves`].
const MOVES_LEARN: usize = 400;
/// Levels the learned range is cut into (the levels go on beyond it).
const LEVELS: f64 = 5.0;
/// Beyond the learned range, each level is this many times as wide as
/// the one before it.
const WIDENING: f64 = 3.0;
/// Distinct moves a series remembers.
const MOVES: usize = 64;
/// How much more probable a move never made before makes a point.
const NOVEL: f64 = 3.0;

/// An exponentially weighted mean (and variance), that is a plain mean
/// of the first `1/α` values (so the first values do not dominate).
#[derive(Debug, Clone, Copy, Default)]
struct Ewm {
    n: u32,
    mean: f64,
    var: f64,
}

impl Ewm {
    fn add(&mut self, x: f64, alpha: f64) {
        self.n = self.n.saturating_add(1);
        let a = alpha.max(1.0 / f64::from(self.n));
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
    }

    fn sd(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// A decayed histogram of a statistic's values: how often a value at
/// least this large came, lately.
#[derive(Debug, Clone)]
struct Tail {
    /// `at_least[b]`: the weight of the values in bin `b` or above (the
    /// histogram's suffix sums). A value is added once but looked up many
    /// times (the span form probes each point of its span against the
    /// same state), so the sums are kept, not taken per lookup.
    at_least: [f64; BINS],
    total: f64,
    /// The highest bin any value reached.
    top: usize,
    /// The weight of the next value: it grows by 1/(1 − decay) per value,
    /// which decays every earlier one without touching the bins.
    weight: f64,
}

impl Default for Tail {
    fn default() -> Self {
        Self {
            at_least: [0.0; BINS],
            total: 0.0,
            top: 0,
            weight: 1.0,
        }
    }
}

/// `⌊4 · log₂ x⌋` shifted to start at [`LOWEST_OCTAVE`], clamped to the
/// bins; 0 for x ≤ 0. From the float's bits (exponent, then the mantissa
/// against 2^¼, 2^½, 2^¾): a logarithm per statistic would cost more than
/// the rest of the point.
fn bin(x: f64) -> usize {
    // The mantissa bits of 2^0.25, 2^0.5 and 2^0.75.
    const QUARTERS: [u64; 3] = [
        0x0003_06fe_0a31_b715,
        0x0006_a09e_667f_3bcd,
        0x000a_e89f_995a_d3ad,
    ];
    // NaN and x ≤ 0 alike.
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let bits = x.to_bits();
    let octave = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mantissa = bits & ((1u64 << 52) - 1);
    let quarter = QUARTERS.iter().filter(|q| mantissa >= **q).count() as i64;
    let b = (octave - LOWEST_OCTAVE as i64) * BINS_PER_OCTAVE as i64 + quarter;
    b.clamp(0, BINS as i64 - 1) as usize
}

impl Tail {
    /// The probability of a value at least as large as `x` (by bin), with
    /// half a value of prior: never 0. Beyond the highest bin reached, the
    /// tail is extrapolated: each further quarter octave halves it (about
    /// an exponential tail's rate at the largest of a few thousand values),
    /// so a value far beyond everything in the history is told from one
    /// just beyond it.
    fn p(&self, x: f64) -> f64 {
        let b = bin(x);
        let p = (self.at_least[b] + 0.5 * self.weight) / (self.total + self.weight);
        match b.checked_sub(self.top + 1) {
            Some(beyond) if self.total > 0.0 => p * 0.5f64.powi(beyond as i32),
            _ => p,
        }
    }

    fn add(&mut self, x: f64) {
        let b = bin(x);
        self.top = self.top.max(b);
        for s in &mut self.at_least[..=b] {
            *s += self.weight;
        }
        self.total += self.weight;
        self.weight /= 1.0 - DECAY;
        if self.weight > 1e200 {
            for s in &mut self.at_least {
                *s /= self.weight;
            }
            self.total /= self.weight;
            self.weight = 1.0;
        }
    }
}

/// A coarse memory of how the series moves: the range of its first
/// [`MOVES_LEARN`] values is cut into [`LEVELS`] levels (they go on beyond
/// it, each [`WIDENING`] times as wide as the one before), and every move
/// from one point's level to the next one's is counted. A move the series
/// makes routinely (a daily batch job's spike, a counter's reset) is no
/// news however rare each point of it is; a move it never made is. The
/// levels widen beyond the range because bursts are heavy-tailed: a
/// series whose bursts reach 10 or 50 times its first range (tweet
/// volumes, network bytes) makes each of them a move never made if the
/// levels stay as wide, and pages on every burst; with levels three times
/// wider at each step out, bursts of about the same height share a level,
/// and become routine.
#[derive(Debug, Clone)]
struct Moves {
    /// The range while learning.
    lo: f64,
    hi: f64,
    /// The width of a level; 0 while learning.
    width: f64,
    last: i16,
    /// (from, to, times seen), kept nearly sorted by count: a count that
    /// passes its neighbour's is swapped ahead, so the routine moves are
    /// found first and the last entry is the one to forget.
    seen: [(i16, i16, u32); MOVES],
    len: u8,
}

impl Default for Moves {
    fn default() -> Self {
        Self {
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
            width: 0.0,
            last: 0,
            seen: [(0, 0, 0); MOVES],
            len: 0,
        }
    }
}

impl Moves {
    fn level(&self, v: f64) -> i16 {
        let x = (v - self.lo) / self.width;
        let level = if x >= LEVELS {
            LEVELS + (x - LEVELS + 1.0).log(WIDENING).floor()
        } else if x < 0.0 {
            -1.0 - (1.0 - x).log(WIDENING).floor()
        } else {
            x.floor()
        };
        // `as` saturates (an infinite x too).
        level as i16
    }

    /// Learns `v` (the `n`-th value; `floor` the smallest meaningful
    /// width) and returns how often the move to it was made before, or
    /// `None` while the levels are being learned.
    fn add(&mut self, v: f64, n: usize, floor: f64) -> Option<u32> {
        if self.width == 0.0 {
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
            if n >= MOVES_LEARN {
                self.width = ((self.hi - self.lo) / LEVELS).max(floor);
                self.last = self.level(v);
            }
            return None;
        }
        let to = self.level(v);
        let from = std::mem::replace(&mut self.last, to);
        let len = usize::from(self.len);
        match self.seen[..len]
            .iter()
            .position(|m| (m.0, m.1) == (from, to))
        {
            Some(mut i) => {
                let before = self.seen[i].2;
                self.seen[i].2 = before.saturating_add(1);
                while i > 0 && self.seen[i - 1].2 < self.seen[i].2 {
                    self.seen.swap(i - 1, i);
                    i -= 1;
                }
                Some(before)
            }
            None => {
                // Full: the least made move (about) is forgotten.
                let i = len.min(MOVES - 1);
                self.seen[i] = (from, to, 1);
                self.len = (len + 1).min(MOVES) as u8;
                Some(0)
            }
        }
    }

    /// How often the move from `prev` to `v` was made, without learning
    /// it; `None` while the levels are being learned.
    fn count(&self, prev: f64, v: f64) -> Option<u32> {
        if self.width == 0.0 {
            return None;
        }
        let (from, to) = (self.level(prev), self.level(v));
        let seen = &self.seen[..usize::from(self.len)];
        Some(
            seen.iter()
                .find(|m| (m.0, m.1) == (from, to))
                .map_or(0, |m| m.2),
        )
    }
}

/// A point's tail probability `p` weighed by how often its move was made
/// before (`None`: not known yet): divided by [`NOVEL`] for a new move,
/// multiplied by 1 + the count for a known one.
fn weigh(p: f64, moves: Option<u32>) -> f64 {
    match moves {
        None => p,
        Some(0) => p / NOVEL,
        Some(c) => p * (1.0 + f64::from(c)),
    }
}

/// How much rarer than a point's smallest probability one statistic alone
/// must be; and the factor on the Fisher combination of the two smallest.
const SINGLE: f64 = 1.5;
const PAIR: f64 = 10.0;

/// One probability from the point's three (positive; the moves' weighing
/// may take one above 1, which counts as 1): see the module's doc.
fn combined(ps: [f64; 3]) -> f64 {
    let [a, b, c] = ps.map(|p| p.min(1.0));
    // The smallest and the median of the three.
    let lo = a.min(b).min(c);
    let mid = a.min(b).max(a.max(b).min(c));
    let single = SINGLE * lo;
    // The pair's probability is at least PAIR · lo · mid (1 − ln x ≥ 1):
    // when that is no smaller than `single`, the logarithm is not taken
    // (the common case, and a point's cost).
    if mid >= SINGLE / PAIR {
        return single;
    }
    let x = lo * mid;
    // A product that underflows is as rare as can be (and ln 0 is −∞).
    let pair = if x > 0.0 {
        PAIR * x * (1.0 - x.ln())
    } else {
        0.0
    };
    single.min(pair)
}

/// One series' detector: feed it the series' values in time order.
#[derive(Debug, Clone)]
pub struct Detector {
    seen: usize,
    fast: Ewm,
    residual: Ewm,
    residual_short: Ewm,
    slow: Ewm,
    tails: [Tail; 3],
    moves: Moves,
    /// The finest decimal step exponent seen, and 10^−step_exp.
    step_exp: i32,
    step_inverse: f64,
    rest: usize,
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            seen: 0,
            fast: Ewm::default(),
            residual: Ewm::default(),
            residual_short: Ewm::default(),
            slow: Ewm::default(),
            tails: Default::default(),
            moves: Moves::default(),
            step_exp: 0,
            step_inverse: 1.0,
            rest: 0,
        }
    }
}

impl Detector {
    /// What one series' detector holds, in bytes.
    pub const BYTES: usize = std::mem::size_of::<Detector>();

    /// A detector that has learned `values` (finite, in time order), and
    /// the last one's score.
    pub fn learned(values: impl IntoIterator<Item = f64>) -> (Self, Option<f64>) {
        let mut d = Self::default();
        let last = values.into_iter().fold(None, |_, v| d.push(v));
        (d, last)
    }

    /// Learns `v` (finite) and scores it: `None` while learning (the
    /// first [`LEARN`] points), else in [0, 1].
    pub fn push(&mut self, v: f64) -> Option<f64> {
        self.seen += 1;
        self.follow_step(v);
        let moves = self.moves.add(v, self.seen, self.step_floor());
        if self.seen == 1 {
            self.fast.add(v, 1.0);
            self.slow.add(v, 1.0);
            return None;
        }
        let stats = self.stats(v);
        // Each statistic's tail probability: surprise, volatility,
        // displacement.
        let mut ps = [1.0f64; 3];
        if self.seen > WARM {
            for ((tail, s), p) in self.tails.iter_mut().zip(stats).zip(&mut ps) {
                *p = tail.p(s);
                tail.add(s);
            }
        }
        let r = (v - self.fast.mean).abs();
        self.residual.add(r, 0.01);
        self.residual_short.add(r, 0.1);
        self.fast.add(v, 0.1);
        self.slow.add(v, 0.003);
        if self.seen <= LEARN {
            return None;
        }
        if self.rest > 0 {
            self.rest -= 1;
            return Some(0.0);
        }
        // Moves tell where the series goes, not how noisy it is: they
        // weigh the statistics of position only.
        let score = score_of(combined([weigh(ps[0], moves), ps[1], weigh(ps[2], moves)]));
        if score >= THRESHOLD {
            self.rest = REST;
        }
        Some(score)
    }

    /// Probes `v` against what was learned without learning it, nor
    /// moving any average: a spike among the probed points does not drag
    /// the fast average and make the points after it look anomalous, and
    /// a level that stays away stays surprising. Surprise and displacement
    /// only: the volatility statistic would be the same for every probe
    /// (the learned state's, not the probed points'). `prev` is the point
    /// before `v`, for its move. No rest period. `None` while learning.
    ///
    /// Returns the point's probability; its score is [`score_of`] it. The
    /// span form ranks its points by probability and takes one logarithm
    /// a span, not one a point.
    fn probe_p(&self, prev: f64, v: f64) -> Option<f64> {
        if self.seen <= LEARN {
            return None;
        }
        let [surprise, _, displacement] = self.stats(v);
        let p = self.tails[0].p(surprise).min(self.tails[2].p(displacement));
        // A routine move discounts; a new one is not made more anomalous:
        // a rule's window learns its levels from an hour or two, where a
        // healthy series still finds new ones (at ÷ 3 a healthy fleet
        // paged about twice per 1,000 host-hours, benches/README.md).
        let moves = self.moves.count(prev, v).filter(|&c| c > 0);
        Some(weigh(p, moves))
    }

    /// A multiple of the finest step so far cannot make it finer: the
    /// exponent is looked for only when v is not one.
    fn follow_step(&mut self, v: f64) {
        let scaled = v * self.step_inverse;
        if (scaled - scaled.round()).abs() > 1e-9 * scaled.abs().max(1.0) {
            let e = step_exponent(v);
            if e < self.step_exp {
                self.step_exp = e;
                self.step_inverse = 10f64.powi(-e);
            }
        }
    }

    /// Half the series' decimal step, and at least 10⁻⁹ of its level: no
    /// scale is finer than the values can tell.
    fn step_floor(&self) -> f64 {
        (0.5 / self.step_inverse).max(1e-9 * self.slow.mean.abs())
    }

    /// Surprise, volatility and displacement of `v` against the state.
    fn stats(&self, v: f64) -> [f64; 3] {
        let floor = self.step_floor();
        let r = v - self.fast.mean;
        [
            r.abs() / self.residual.mean.max(floor),
            ((self.residual_short.mean + floor) / (self.residual.mean + floor))
                .ln()
                .abs(),
            (v - self.slow.mean).abs() / self.slow.sd().max(floor),
        ]
    }
}

/// The score of a point's probability `p` ([`combined`], or the span
/// form's probe), Bonferroni over the three statistics (the span form's
/// probes rank two, and keep the factor: a little more conservative).
fn score_of(p: f64) -> f64 {
    let p = (3.0 * p).min(1.0);
    // + 0.0: −log₁₀ 1 is −0, which prints as "-0".
    (-p.log10() / DECADES).clamp(0.0, 1.0) + 0.0
}

/// The last point's score after learning every point before it (sorted
/// by time, finite values): the per-series (`GROUP BY`) form.
pub fn anomaly_score(points: &[Point]) -> Option<f64> {
    Detector::learned(points.iter().map(|p| p.1)).1
}

/// The sustained form, `anomaly_score(value, time, span)`: how anomalous
/// the last `span_ns` of the series is as a whole. The detector learns
/// every point up to one span before the span (the points at or before
/// the latest time minus twice `span_ns`), then probes each point of the
/// span against that state without learning it ([`Detector::probe_p`]); the span
/// scores what at least half its points score (the ⌈n/2⌉-th highest).
/// The span before the span is a guard: the first evaluation that finds
/// half the span anomalous has learned none of it (as long as evaluations
/// come at least every 1.5 spans), where learning even two points of a
/// jump would make the rest of it look ordinary. A lone outlier thus
/// does not make a span of three or more points anomalous; a level, a
/// variance or a pattern that stays away from normal for most of the span
/// does — what a rule evaluated every minute over a 10-s series needs,
/// where the per-point form would see one point in six and its rest period
/// would hide a fault that persists. Half, not all: the evaluation whose
/// span holds the start of a fault fires already.
///
/// `None` when fewer than [`LEARN`] points come before the guard.
/// `points`: sorted by time, finite values.
pub fn span_score(points: &[Point], span_ns: i64) -> Option<f64> {
    let latest = points.last()?.0;
    let learned =
        points.partition_point(|p| p.0 <= latest.saturating_sub(span_ns.saturating_mul(2)));
    let span = points.partition_point(|p| p.0 <= latest.saturating_sub(span_ns));
    let (d, _) = Detector::learned(points[..learned].iter().map(|p| p.1));
    let mut ps = points[span.max(1)..]
        .iter()
        .zip(&points[span.max(1) - 1..])
        .map(|(p, prev)| d.probe_p(prev.1, p.1))
        .collect::<Option<Vec<f64>>>()?;
    span_median(&mut ps)
}

/// The ⌈n/2⌉-th highest score of a span's points, from their
/// probabilities: [`score_of`] falls as `p` grows, so it is the score of
/// the ⌈n/2⌉-th lowest. `None` for an empty span.
fn span_median(ps: &mut [f64]) -> Option<f64> {
    let k = ps.len().div_ceil(2).checked_sub(1)?;
    let (_, p, _) = ps.select_nth_unstable_by(k, f64::total_cmp);
    Some(score_of(*p))
}

/// [`span_score`] kept up to date point by point, for a frame that only
/// grows (a window `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`):
/// each point is learned once, when it falls two spans behind the newest,
/// so a row costs its span's probes, not a pass over everything before it.
///
/// Invariant: after pushing `points` (sorted by time), [`SpanRun::score`]
/// equals `span_score(points, span_ns)`.
#[derive(Debug, Clone)]
pub struct SpanRun {
    span_ns: i64,
    detector: Detector,
    /// The points not learned yet: newer than the newest minus two spans.
    pending: std::collections::VecDeque<Point>,
    /// The last point learned, and how many were.
    last_learned: Option<f64>,
    learned: usize,
    /// The span's probabilities, reused from row to row.
    scratch: Vec<f64>,
}

impl SpanRun {
    pub fn new(span_ns: i64) -> Self {
        Self {
            span_ns,
            detector: Detector::default(),
            pending: std::collections::VecDeque::new(),
            last_learned: None,
            learned: 0,
            scratch: Vec::new(),
        }
    }

    /// Adds a point no older than the ones before it.
    pub fn push(&mut self, p: Point) {
        self.pending.push_back(p);
        let horizon = p.0.saturating_sub(self.span_ns.saturating_mul(2));
        while let Some(&(t, v)) = self.pending.front() {
            if t > horizon {
                break;
            }
            self.pending.pop_front();
            self.detector.push(v);
            self.last_learned = Some(v);
            self.learned += 1;
        }
    }

    /// Points kept (not learned yet).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The newest span's score, as [`span_score`] gives it.
    pub fn score(&mut self) -> Option<f64> {
        let latest = self.pending.back()?.0;
        let from = self
            .pending
            .partition_point(|p| p.0 <= latest.saturating_sub(self.span_ns));
        // The very first point has nothing before it to move from.
        let from = if self.learned + from == 0 { 1 } else { from };
        let mut prev = match from {
            0 => self.last_learned?,
            k => self.pending[k - 1].1,
        };
        self.scratch.clear();
        for &(_, v) in self.pending.iter().skip(from) {
            self.scratch.push(self.detector.probe_p(prev, v)?);
            prev = v;
        }
        span_median(&mut self.scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noise in [-1, 1).
    fn noise(i: usize) -> f64 {
        let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
        (x as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn scores(values: impl Iterator<Item = f64>) -> Vec<Option<f64>> {
        let mut d = Detector::default();
        values.map(|v| d.push(v)).collect()
    }

    #[test]
    fn two_rare_statistics_fire_where_one_alone_does_not() {
        let one = score_of(combined([0.005, 1.0, 1.0]));
        let two = score_of(combined([0.005, 1.0, 0.005]));
        assert!(one < THRESHOLD, "{one}");
        assert!(two >= THRESHOLD, "{two}");
        // One statistic alone needs half again as rare a value as before
        // the combination (× 1.5), and the order does not matter.
        assert!((combined([1.0, 1e-4, 1.0]) - 1.5e-4).abs() < 1e-18);
        assert_eq!(combined([0.2, 0.01, 0.03]), combined([0.03, 0.2, 0.01]));
        // Fisher's combination of two: x (1 − ln x), × 10.
        let x: f64 = 0.004 * 0.006;
        assert!((combined([0.2, 0.004, 0.006]) - 10.0 * x * (1.0 - x.ln())).abs() < 1e-15);
        // ... where that is the smaller: not for [0.2, 0.01, 0.03].
        assert!((combined([0.2, 0.01, 0.03]) - 0.015).abs() < 1e-15);
        // A product that underflows is the rarest, not NaN.
        assert_eq!(combined([1e-200, 1e-200, 1.0]), 0.0);
        assert_eq!(score_of(combined([1e-200, 1e-200, 1.0])), 1.0);
        // Nothing odd: probability 1, score 0; a routine move's weighing
        // above 1 is no more than 1 (their product must not pass e, where
        // Fisher's formula turns negative).
        assert_eq!(score_of(combined([1.0, 1.0, 1.0])), 0.0);
        assert_eq!(combined([0.001, 300.0, 30.0]), 0.0015);
        assert_eq!(score_of(combined([40.0, 300.0, 30.0])), 0.0);
    }

    /// The shortcut (no logarithm when the median is large) changes no
    /// result: against the definition, over a grid of triples.
    #[test]
    fn the_combination_is_its_definition() {
        let grid = [
            1e-9, 1e-5, 1e-3, 0.004, 0.02, 0.1, 0.149, 0.15, 0.151, 0.5, 1.0, 7.0,
        ];
        for &a in &grid {
            for &b in &grid {
                for &c in &grid {
                    let mut ps = [a, b, c].map(|p: f64| p.min(1.0));
                    ps.sort_by(f64::total_cmp);
                    let x = ps[0] * ps[1];
                    let want = (SINGLE * ps[0]).min(PAIR * x * (1.0 - x.ln()));
                    let got = combined([a, b, c]);
                    assert!(
                        (got - want).abs() <= 1e-15 * want,
                        "{a} {b} {c}: {got} {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn learns_before_scoring_and_stays_in_range() {
        let s = scores((0..2_000).map(|i| 50.0 + 3.0 * noise(i)));
        assert!(s[..LEARN].iter().all(Option::is_none));
        assert!(
            s[LEARN..]
                .iter()
                .all(|v| v.is_some_and(|v| (0.0..=1.0).contains(&v)))
        );
        // Noise like the noise learned: rarely above the threshold.
        let over = s.iter().flatten().filter(|v| **v >= THRESHOLD).count();
        assert!(over <= 10, "{over} detections in plain noise");
    }

    #[test]
    fn a_spike_is_detected_once() {
        let mut values: Vec<f64> = (0..1_000).map(|i| 50.0 + noise(i)).collect();
        values[800] = 70.0;
        values[801] = 70.0;
        let s = scores(values.into_iter());
        // Beyond everything in ~660 points of decayed history: p ≈ 3 × 0.5 / 660.
        assert!(s[800].unwrap() >= 0.6, "{:?}", s[800]);
        // The rest period: the next points score 0.
        assert_eq!(s[801], Some(0.0));
        assert_eq!(s[800 + REST], Some(0.0));
    }

    #[test]
    fn flat_and_quantized_series_score_finite() {
        // A counter that never moves, then moves once.
        let mut values = vec![7.0; 600];
        values.push(8.0);
        let s = scores(values.into_iter());
        assert!(
            s[..600]
                .iter()
                .flatten()
                .all(|v| *v == 0.0 || *v < THRESHOLD)
        );
        assert!(s[600].unwrap() >= THRESHOLD, "{:?}", s[600]);
        // Whole percent utilisation with flat stretches.
        let s = scores((0..3_000).map(|i| {
            if (i / 400) % 3 == 2 {
                60.0
            } else {
                (60.0 + 10.0 * noise(i)).round()
            }
        }));
        assert!(s.iter().flatten().all(|v| v.is_finite()));
    }

    #[test]
    fn a_variance_change_and_a_level_shift_are_detected() {
        let s = scores((0..2_000).map(|i| {
            let n = noise(i);
            if i >= 1_500 { 50.0 + 8.0 * n } else { 50.0 + n }
        }));
        assert!(
            s[1_500..1_520].iter().flatten().any(|v| *v >= THRESHOLD),
            "variance"
        );
        let s = scores((0..2_000).map(|i| 50.0 + noise(i) + if i >= 1_500 { 6.0 } else { 0.0 }));
        assert!(s[1_500].unwrap() >= THRESHOLD, "level shift {:?}", s[1_500]);
    }

    #[test]
    fn the_group_form_scores_the_last_point() {
        let points: Vec<Point> = (0..500)
            .map(|i| (i as i64, if i == 499 { 90.0 } else { 50.0 + noise(i) }))
            .collect();
        let s = anomaly_score(&points).unwrap();
        assert!(s >= THRESHOLD);
        assert_eq!(anomaly_score(&points[..LEARN]), None);
        assert_eq!(anomaly_score(&[]), None);
    }

    /// Past the highest value of its history, a statistic's probability
    /// keeps falling: far beyond scores higher than just beyond.
    #[test]
    fn far_beyond_the_history_scores_higher() {
        let mut d = Detector::default();
        for i in 0..1_000 {
            d.push(50.0 + noise(i));
        }
        let sweep: Vec<f64> = [50.2, 51.0, 51.05, 51.1, 51.15, 51.2, 51.5, 53.0, 60.0, 90.0]
            .iter()
            .map(|&x| d.clone().push(x).unwrap())
            .collect();
        assert!(sweep.windows(2).all(|w| w[0] <= w[1]), "{sweep:?}");
        assert!(sweep[0] < THRESHOLD, "{sweep:?}");
        assert!(sweep[9] >= 0.99, "{sweep:?}");
        // Just beyond the history: anomalous, but told from far beyond.
        assert!(
            sweep.iter().any(|s| (THRESHOLD..0.95).contains(s)),
            "{sweep:?}"
        );
    }

    /// The sustained form: a lone outlier in the span does not make it
    /// anomalous, a shift that lasts the whole span does; plain noise
    /// almost never does; too little history is NULL.
    #[test]
    fn the_span_form_scores_runs_not_points() {
        const SPAN: i64 = 6;
        let series = |shift_from: usize, spike_at: Option<usize>| -> Vec<Point> {
            (0..600)
                .map(|i| {
                    let mut v = 50.0 + noise(i);
                    if i >= shift_from {
                        v += 8.0;
                    }
                    if spike_at == Some(i) {
                        v = 90.0;
                    }
                    (i as i64, v)
                })
                .collect()
        };
        // A spike one point before the end: the per-point form fires on
        // it, the span form does not.
        let spiked = series(usize::MAX, Some(597));
        assert!(anomaly_score(&spiked[..598]).unwrap() >= THRESHOLD);
        assert!(span_score(&spiked, SPAN).unwrap() < THRESHOLD);
        // A shift over the whole span (the last 6 points).
        let shifted = series(594, None);
        let s = span_score(&shifted, SPAN).unwrap();
        assert!(s >= THRESHOLD, "{s}");
        // ... but not when it covers only part of the span.
        assert!(span_score(&shifted[..596], SPAN).unwrap() < THRESHOLD);
        // Plain noise: span after span, (almost) never anomalous.
        let calm = series(usize::MAX, None);
        let over = (300..600)
            .filter(|&end| span_score(&calm[..end], SPAN).unwrap() >= THRESHOLD)
            .count();
        assert!(over <= 1, "{over} anomalous spans of noise");
        // Learning: LEARN points before the span and its guard (one more
        // span) are needed.
        let few = &calm[..LEARN + 2 * SPAN as usize];
        assert_eq!(span_score(few, SPAN), None);
        assert!(span_score(&calm[..LEARN + 1 + 2 * SPAN as usize], SPAN).is_some());
        // A jump learned for two points before the span would hide the
        // rest of it; the guard keeps it out: the evaluation a minute
        // after the jump still sees it whole.
        let jumped = series(592, None);
        let s = span_score(&jumped, SPAN).unwrap();
        assert!(s >= 0.9, "{s}");
        assert_eq!(span_score(&calm[..10], 1_000), None);
        assert_eq!(span_score(&[], SPAN), None);
    }

    /// A spike the series makes every 60 points from point 750 pages at first, and
    /// stops once the move to it is routine; the same spike on a calm
    /// copy of the series still pages.
    #[test]
    fn a_routine_spike_stops_paging() {
        let series = |spikes: bool| -> Vec<f64> {
            (0..3_000)
                .map(|i| {
                    if i == 2_990 || (spikes && i >= 700 && i % 60 == 30) {
                        70.0
                    } else {
                        50.0 + noise(i)
                    }
                })
                .collect()
        };
        let s = scores(series(true).into_iter());
        let at = |from: usize, to: usize| -> Vec<f64> {
            (from..to)
                .filter(|i| i % 60 == 30)
                .filter_map(|i| s[i])
                .collect()
        };
        assert!(s[750].unwrap() >= THRESHOLD, "{:?}", s[750]);
        let late = at(1_500, 3_000);
        assert!(late.iter().all(|v| *v < THRESHOLD), "{late:?}");
        let calm = scores(series(false).into_iter());
        assert!(calm[2_990].unwrap() >= THRESHOLD, "{:?}", calm[2_990]);
    }

    /// Moves: counted, nearly sorted, bounded; the learning range sets
    /// the levels, which widen threefold at each step beyond it.
    #[test]
    fn moves_are_counted_and_bounded() {
        let mut m = Moves::default();
        for n in 1..MOVES_LEARN {
            assert_eq!(m.add((n % 10) as f64, n, 0.5), None);
        }
        assert_eq!(m.add(0.0, MOVES_LEARN, 0.5), None);
        assert_eq!(m.width, 9.0 / LEVELS);
        assert_eq!(m.add(0.0, MOVES_LEARN + 1, 0.5), Some(0));
        assert_eq!(m.add(0.0, MOVES_LEARN + 2, 0.5), Some(1));
        assert_eq!(m.count(0.0, 0.5), Some(2));
        assert_eq!(m.count(0.0, 9.0), Some(0));
        // Levels beyond the range [0, 9] (width 1.8): [9, 12.6) is level
        // 5, [12.6, 23.4) level 6 (three times as wide), [23.4, 55.8) 7;
        // below it, (−3.6, 0) is −1, [−3.6, −14.4) −2.
        let w = 9.0 / LEVELS;
        assert_eq!(m.level(8.99), 4);
        assert_eq!(m.level(9.0), 5);
        assert_eq!(m.level(12.5), 5);
        assert_eq!(m.level(12.7), 6);
        assert_eq!(m.level(23.3), 6);
        assert_eq!(m.level(23.5), 7);
        assert_eq!(m.level(-0.1), -1);
        assert_eq!(m.level(-3.5), -1);
        assert_eq!(m.level(-3.7), -2);
        assert_eq!(m.level(w * (LEVELS - 1.0 + 3f64.powi(40)) * 1.001), 45);
        // A walk through a hundred levels keeps at most MOVES, the
        // routine move first.
        for n in 0..10_000 {
            let far = w * (LEVELS - 1.0 + 3f64.powi(n as i32 % 100)) * 1.001;
            m.add(if n % 2 == 0 { 0.0 } else { far }, MOVES_LEARN + 3 + n, 0.5);
        }
        assert_eq!(usize::from(m.len), MOVES);
        assert!(
            m.seen[..MOVES]
                .windows(2)
                .all(|w| w[0].2 >= w[1].2 || w[1].2 == 1)
        );
        assert_eq!(m.level(f64::INFINITY), i16::MAX);
        assert_eq!(m.level(f64::NEG_INFINITY), i16::MIN);
    }

    #[test]
    fn bins_are_quarter_octaves() {
        for i in 0..20_000 {
            let x = 2f64.powf(i as f64 / 1_000.0 - 14.0) * (1.0 + 1e-12);
            let want = ((x.log2() - LOWEST_OCTAVE) * BINS_PER_OCTAVE)
                .floor()
                .clamp(0.0, (BINS - 1) as f64) as usize;
            assert_eq!(bin(x), want, "{x}");
        }
        assert_eq!(bin(0.0), 0);
        assert_eq!(bin(-3.0), 0);
        assert_eq!(bin(f64::MAX), BINS - 1);
    }

    #[test]
    fn steps_follow_the_finest_value() {
        let mut d = Detector::default();
        d.push(50.0);
        assert_eq!(d.step_exp, 0);
        d.push(50.5);
        assert_eq!(d.step_exp, -1);
        d.push(41.25);
        assert_eq!(d.step_exp, -2);
        d.push(7.0);
        assert_eq!(d.step_exp, -2);
    }

    #[test]
    fn the_state_is_bounded() {
        const { assert!(Detector::BYTES < 3_200) };
        // Past ~920,000 values the weights are rescaled, not overflowed,
        // and the probabilities stay what they were.
        let mut t = Tail::default();
        for i in 0..1_000_000 {
            t.add(if i % 2 == 0 { 1.0 } else { 4.0 });
        }
        assert!(t.weight < 1e200 && t.total.is_finite());
        assert!((t.p(4.0) - 0.5).abs() < 0.01, "{}", t.p(4.0));
        assert!((t.p(0.5) - 1.0).abs() < 1e-3);
    }
}
