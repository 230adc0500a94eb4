//! The baselines of `zscore` and `robust_zscore` kept up to date as a
//! window frame slides, so that scoring each row costs O(log n) (plus a
//! memmove within one chunk), not a sort of the frame.
//!
//! # Invariants
//! - [`WindowIndex`] holds exactly the valid values of the frame, the
//!   scored one included; a baseline leaves the scored value out.
//! - Its baselines equal [`score::mean_baseline`] and
//!   [`score::median_baseline`] of the same values up to float rounding.

use std::collections::BTreeMap;

use super::score::{self, Baseline, MAD_TO_SIGMA, MEAN_AD_TO_SIGMA, flat, step_exponent};

/// Values per chunk of [`Sorted`] before it splits in two.
const CHUNK: usize = 512;

/// A sorted multiset of floats in chunks, each with the mean of its values
/// and the sum of their squared deviations from it (remade from the values
/// when the chunk changes: nothing drifts as values come and go).
#[derive(Debug, Default)]
struct Sorted {
    chunks: Vec<Vec<f64>>,
    stats: Vec<Moments>,
    len: usize,
}

/// A count, mean and sum of squared deviations from the mean.
#[derive(Debug, Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let m2 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        Self { n, mean, m2 }
    }

    /// Both together (Chan et al.'s pairwise update: stable however far
    /// apart the means are).
    fn merge(self, o: Self) -> Self {
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        Self {
            n,
            mean: self.mean + delta * o.n / n,
            m2: self.m2 + o.m2 + delta * delta * self.n * o.n / n,
        }
    }
}

impl Sorted {
    /// The chunk `v` belongs in: the first whose last value is ≥ `v`.
    fn chunk_of(&self, v: f64) -> usize {
        let i = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|l| *l < v));
        i.min(self.chunks.len().saturating_sub(1))
    }

    fn resum(&mut self, i: usize) {
        self.stats[i] = Moments::of(&self.chunks[i]);
    }

    fn insert(&mut self, v: f64) {
        self.len += 1;
        if self.chunks.is_empty() {
            self.chunks.push(vec![v]);
            self.stats.push(Moments::of(&[v]));
            return;
        }
        let i = self.chunk_of(v);
        let c = &mut self.chunks[i];
        let at = c.partition_point(|x| *x < v);
        c.insert(at, v);
        if c.len() > 2 * CHUNK {
            let tail = c.split_off(CHUNK);
            self.chunks.insert(i + 1, tail);
            self.stats.insert(i + 1, Moments::default());
            self.resum(i + 1);
        }
        self.resum(i);
    }

    /// Removes one `v`; false when it is not held.
    fn remove(&mut self, v: f64) -> bool {
        if self.chunks.is_empty() {
            return false;
        }
        let i = self.chunk_of(v);
        let c = &mut self.chunks[i];
        let at = c.partition_point(|x| *x < v);
        if c.get(at) != Some(&v) {
            return false;
        }
        c.remove(at);
        self.len -= 1;
        if c.is_empty() {
            self.chunks.remove(i);
            self.stats.remove(i);
        } else {
            self.resum(i);
        }
        true
    }

    fn get(&self, mut i: usize) -> f64 {
        for c in &self.chunks {
            if i < c.len() {
                return c[i];
            }
            i -= c.len();
        }
        panic!("index {i} past {} values", self.len)
    }

    /// How many values are below `v`.
    fn rank(&self, v: f64) -> usize {
        let mut n = 0;
        for c in &self.chunks {
            if c.last().is_some_and(|l| *l < v) {
                n += c.len();
            } else {
                return n + c.partition_point(|x| *x < v);
            }
        }
        n
    }

    /// The sum of the `k` smallest values.
    fn sum_of_first(&self, mut k: usize) -> f64 {
        let mut s = 0.0;
        for (c, m) in self.chunks.iter().zip(&self.stats) {
            if k >= c.len() {
                s += m.mean * m.n;
                k -= c.len();
            } else {
                return s + c[..k].iter().sum::<f64>();
            }
        }
        s
    }

    fn total(&self) -> f64 {
        self.stats.iter().map(|m| m.mean * m.n).sum()
    }

    fn moments(&self) -> Moments {
        self.stats
            .iter()
            .fold(Moments::default(), |acc, m| acc.merge(*m))
    }
}

/// The `k`-th smallest (from 0) of two ascending sequences given by their
/// lengths and accessors.
fn kth_of_two(
    (na, a): (usize, &dyn Fn(usize) -> f64),
    (nb, b): (usize, &dyn Fn(usize) -> f64),
    mut k: usize,
) -> f64 {
    let (mut ia, mut ib) = (0, 0);
    loop {
        if ia == na {
            return b(ib + k);
        }
        if ib == nb {
            return a(ia + k);
        }
        if k == 0 {
            return a(ia).min(b(ib));
        }
        let half = k.div_ceil(2);
        let ja = (ia + half).min(na) - 1;
        let jb = (ib + half).min(nb) - 1;
        if a(ja) <= b(jb) {
            k -= ja - ia + 1;
            ia = ja + 1;
        } else {
            k -= jb - ib + 1;
            ib = jb + 1;
        }
    }
}

/// How many of a frame's values have each step exponent
/// ([`step_exponent`]): the frame's finest step as values come and go.
#[derive(Debug, Default)]
pub struct Steps(BTreeMap<i32, usize>);

impl Steps {
    pub fn add(&mut self, v: f64) {
        *self.0.entry(step_exponent(v)).or_default() += 1;
    }

    pub fn remove(&mut self, v: f64) {
        let e = step_exponent(v);
        if let Some(n) = self.0.get_mut(&e) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&e);
            }
        }
    }

    /// The finest step exponent held (0 when none is).
    pub fn finest(&self) -> i32 {
        self.0.keys().next().copied().unwrap_or(0)
    }
}

/// The valid values of a window frame, sorted, with their moments.
#[derive(Debug, Default)]
pub struct WindowIndex {
    sorted: Sorted,
    steps: Steps,
}

impl WindowIndex {
    pub fn len(&self) -> usize {
        self.sorted.len
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.len == 0
    }

    pub fn add(&mut self, v: f64) {
        self.sorted.insert(v);
        self.steps.add(v);
    }

    pub fn remove(&mut self, v: f64) {
        if self.sorted.remove(v) {
            self.steps.remove(v);
        }
    }

    /// Runs `f` on the index without one `x` (the scored value, held).
    fn without<T>(&mut self, x: f64, f: impl FnOnce(&Self) -> T) -> T {
        let held = self.sorted.remove(x);
        debug_assert!(held, "the scored value is in the frame");
        self.steps.remove(x);
        let out = f(self);
        self.add(x);
        out
    }

    fn finest_step(&self) -> i32 {
        self.steps.finest()
    }

    /// The z-score's baseline: every value but one `x`.
    pub fn mean_baseline(&mut self, x: f64) -> Baseline {
        self.without(x, |me| {
            let n = me.sorted.len;
            let (lo, hi) = (me.sorted.get(0), me.sorted.get(n - 1));
            if lo == hi {
                return flat(lo);
            }
            let m = me.sorted.moments();
            let spread = (m.m2 / (m.n - 1.0)).sqrt();
            Baseline {
                center: m.mean,
                spread,
                flat: false,
                step_exp: score::step_if_floored(spread, || me.finest_step()),
            }
        })
    }

    /// The robust z-score's baseline: every value but one `x`.
    pub fn median_baseline(&mut self, x: f64) -> Baseline {
        self.without(x, |me| {
            let s = &me.sorted;
            let n = s.len;
            let (lo, hi) = (s.get(0), s.get(n - 1));
            if lo == hi {
                return flat(lo);
            }
            let med = score::median_of_sorted(n, |i| s.get(i));
            // Distances from the median: those below it nearest first,
            // then those at or above it.
            let p = s.rank(med);
            let below = |j: usize| med - s.get(p - 1 - j);
            let above = |j: usize| s.get(p + j) - med;
            let kth = |k| kth_of_two((p, &below), (n - p, &above), k);
            let mad = score::median_of_sorted(n, kth);
            let spread = if mad > 0.0 {
                MAD_TO_SIGMA * mad
            } else {
                let low = s.sum_of_first(p);
                let high = s.total() - low;
                let mean_ad = (med * p as f64 - low + high - med * (n - p) as f64) / n as f64;
                MEAN_AD_TO_SIGMA * mean_ad
            };
            Baseline {
                center: med,
                spread,
                flat: false,
                step_exp: score::step_if_floored(spread, || me.finest_step()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn close(a: &Baseline, b: &Baseline, what: &str) {
        let near = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
        assert!(
            a.flat == b.flat
                // Computed only for a spread that may be floored.
                && (a.step_exp == b.step_exp || a.spread.min(b.spread) > 0.49)
                && near(a.center, b.center)
                && near(a.spread, b.spread),
            "{what}: {a:?} vs {b:?}"
        );
    }

    /// A frame sliding over quantized, flat and noisy stretches keeps the
    /// baselines the slice functions compute from scratch.
    #[test]
    fn sliding_baselines_equal_the_slice_ones() {
        let mut rng = Rng(42);
        for width in [4usize, 7, 40, 1500] {
            let mut idx = WindowIndex::default();
            let mut frame = std::collections::VecDeque::new();
            for i in 0..4000 {
                let v = match (i / 300) % 4 {
                    0 => 5.0,
                    1 => (rng.next() % 3) as f64,
                    2 => (rng.next() % 10_000) as f64 / 100.0 - 20.0,
                    _ => 1e6 + (rng.next() % 7) as f64 * 0.25,
                };
                frame.push_back(v);
                idx.add(v);
                if frame.len() > width {
                    idx.remove(frame.pop_front().unwrap());
                }
                if frame.len() < 4 {
                    continue;
                }
                let x = *frame.back().unwrap();
                let base: Vec<f64> = frame.iter().take(frame.len() - 1).copied().collect();
                let mut sorted = base.clone();
                sorted.sort_by(f64::total_cmp);
                close(
                    &idx.mean_baseline(x),
                    &score::mean_baseline(&base),
                    &format!("mean, width {width}, row {i}"),
                );
                close(
                    &idx.median_baseline(x),
                    &score::median_baseline(&sorted),
                    &format!("median, width {width}, row {i}"),
                );
            }
            assert_eq!(idx.len(), width.min(4000));
        }
    }

    #[test]
    fn kth_of_two_by_hand() {
        let a = [1.0, 3.0, 5.0];
        let b = [2.0, 4.0];
        let (fa, fb) = (|i: usize| a[i], |i: usize| b[i]);
        let got: Vec<f64> = (0..5).map(|k| kth_of_two((3, &fa), (2, &fb), k)).collect();
        assert_eq!(got, [1.0, 2.0, 3.0, 4.0, 5.0]);
        let none = |_: usize| unreachable!();
        assert_eq!(kth_of_two((0, &none), (2, &fb), 1), 4.0);
    }
}
