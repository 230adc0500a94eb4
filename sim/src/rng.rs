//! A small seeded PRNG: splitmix64, with ziggurat normals.
//!
//! Every simulated entity (a host's table, a job, the fault plan) draws from
//! its own stream, derived from the seed and the entity's identity with
//! [`stream`]. That is what makes the output independent of chunk sizes and
//! lets one host be regenerated alone (the end-to-end driver checks query
//! answers that way).
//!
//! # Invariants
//!
//! - The same seed gives the same sequence on every run and every platform
//!   for the integer draws. Normals go through `f64::ln`/`exp` once, when the
//!   ziggurat tables are built, and `ln` in the rare slow path; those are
//!   correctly rounded on the usual platforms, so sequences match in practice.

use std::sync::LazyLock;

/// splitmix64's output function: a bijective mixer of 64-bit values.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of entity `(a, b)` for `seed`: streams for different
/// entities are unrelated, and none depends on how many draws another made.
pub fn stream(seed: u64, a: u64, b: u64) -> SplitMix64 {
    SplitMix64::new(mix64(
        mix64(seed ^ 0x5EED_F1EE_71A4_E000)
            ^ mix64(a.wrapping_add(0x6A09_E667_F3BC_C908))
            ^ mix64(
                b.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(0xBB67_AE85),
            ),
    ))
}

/// splitmix64 (Steele, Lea and Flood 2014): 8 bytes of state, passes
/// BigCrush, and is fast enough for ten normals per generated line.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    #[inline]
    pub fn uniform_open0(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Uniform in [lo, hi).
    #[inline]
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-64·n).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// One element of `from`, uniformly.
    #[inline]
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    /// Exponential with the given mean.
    #[inline]
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -self.uniform_open0().ln() * mean
    }

    /// Standard normal, by the ziggurat method (Marsaglia and Tsang 2000,
    /// 256 layers): one 64-bit draw and a multiply in ~99% of calls, which is
    /// what keeps cpu-only generation above a million lines a second.
    #[inline]
    pub fn normal(&mut self) -> f64 {
        let z = &*ZIGGURAT;
        loop {
            let bits = self.next_u64();
            let i = (bits & 0xFF) as usize;
            // The top 52 bits as a float in [1, 2), mapped to [-1, 1); the
            // low 8 bits chose the layer, so the two are independent.
            let u = 2.0 * f64::from_bits((bits >> 12) | 0x3FF0_0000_0000_0000) - 3.0;
            let x = u * z.x[i];
            if x.abs() < z.x[i + 1] {
                return x;
            }
            if i == 0 {
                return self.normal_tail(u < 0.0);
            }
            if z.f[i + 1] + (z.f[i] - z.f[i + 1]) * self.uniform() < gauss(x) {
                return x;
            }
        }
    }

    /// Normal with mean `mean` and standard deviation `sd`.
    #[inline]
    pub fn normal_with(&mut self, mean: f64, sd: f64) -> f64 {
        mean + sd * self.normal()
    }

    /// A draw from the tail beyond ±R (Marsaglia 1964).
    #[cold]
    fn normal_tail(&mut self, negative: bool) -> f64 {
        loop {
            let x = self.uniform_open0().ln() / ZIG_R;
            let y = self.uniform_open0().ln();
            if -2.0 * y >= x * x {
                return if negative { x - ZIG_R } else { ZIG_R - x };
            }
        }
    }
}

/// Start of the tail and area of each of the 256 layers (Marsaglia and Tsang).
const ZIG_R: f64 = 3.654_152_885_361_009;
const ZIG_V: f64 = 0.004_928_673_233_99;

/// The unnormalised normal density.
#[inline]
fn gauss(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

struct Ziggurat {
    /// Right edges of the layers, decreasing: x[0] = V / f(R) (the base
    /// layer's equivalent width), x[1] = R, …, x[256] = 0.
    x: [f64; 257],
    /// f[i] = gauss(x[i]).
    f: [f64; 257],
}

static ZIGGURAT: LazyLock<Ziggurat> = LazyLock::new(|| {
    let mut x = [0.0; 257];
    let mut f = [0.0; 257];
    x[0] = ZIG_V / gauss(ZIG_R);
    x[1] = ZIG_R;
    for i in 1..256 {
        // Each layer has area V: x[i] · (gauss(x[i+1]) − gauss(x[i])) = V.
        let next = ZIG_V / x[i] + gauss(x[i]);
        x[i + 1] = if next >= 1.0 {
            0.0
        } else {
            (-2.0 * next.ln()).sqrt()
        };
    }
    x[256] = 0.0;
    for i in 0..257 {
        f[i] = gauss(x[i]);
    }
    Ziggurat { x, f }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| stream(1, 2, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut s = stream(1, 2, 3);
        let first: Vec<u64> = (0..8).map(|_| s.next_u64()).collect();
        let mut s = stream(1, 2, 3);
        assert_eq!(first, (0..8).map(|_| s.next_u64()).collect::<Vec<_>>());
        assert_ne!(stream(1, 2, 3).next_u64(), stream(2, 2, 3).next_u64());
        assert_ne!(stream(1, 2, 3).next_u64(), stream(1, 3, 3).next_u64());
        assert_ne!(stream(1, 2, 3).next_u64(), stream(1, 2, 4).next_u64());
        assert_ne!(stream(1, 2, 3).next_u64(), stream(1, 3, 2).next_u64());
    }

    #[test]
    fn ziggurat_tables_close() {
        let z = &*ZIGGURAT;
        assert!(z.x.windows(2).all(|w| w[0] > w[1]), "edges decrease");
        // The recurrence should land on (almost exactly) zero by itself.
        let last = ZIG_V / z.x[255] + gauss(z.x[255]);
        assert!((last - 1.0).abs() < 1e-9, "{last}");
    }

    #[test]
    fn normal_moments() {
        let mut r = SplitMix64::new(42);
        let n = 1_000_000;
        let (mut sum, mut sum2, mut within1, mut beyond3) = (0.0, 0.0, 0u32, 0u32);
        for _ in 0..n {
            let z = r.normal();
            sum += z;
            sum2 += z * z;
            within1 += u32::from(z.abs() < 1.0);
            beyond3 += u32::from(z.abs() > 3.0);
        }
        let mean = sum / n as f64;
        let var = sum2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        let p1 = within1 as f64 / n as f64;
        assert!((p1 - 0.682_689).abs() < 0.003, "P(|z|<1) = {p1}");
        let p3 = beyond3 as f64 / n as f64;
        assert!((p3 - 0.002_700).abs() < 0.0004, "P(|z|>3) = {p3}");
    }

    #[test]
    fn uniform_ranges() {
        let mut r = SplitMix64::new(7);
        for _ in 0..100_000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(10) < 10);
            let b = r.between(3, 5);
            assert!((3..=5).contains(&b));
        }
        assert_eq!(r.below(1), 0);
    }
}
