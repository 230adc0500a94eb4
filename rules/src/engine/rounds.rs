//! Rounds: the evaluations of every rule due at one grid instant, and how
//! long after that instant the last of them finished — the figure a
//! fleet's alerting loop is judged by (`/metrics`:
//! `fleetlake_rules_round_duration_seconds`).
//!
//! # Invariants
//! - A round closes when every evaluation dispatched for its instant has
//!   finished (or been dropped); its duration is measured from the instant,
//!   so a late tick counts against it.

use std::collections::BTreeMap;

/// Upper bounds (seconds) of the round duration histogram.
pub const ROUND_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Rounds closed so far.
#[derive(Debug, Clone, Default)]
pub struct RoundStats {
    pub rounds: u64,
    pub evaluations: u64,
    /// Duration of the round that closed last, seconds.
    pub last_seconds: f64,
    pub sum_seconds: f64,
    /// Rounds at or under each of [`ROUND_BUCKETS`].
    pub buckets: [u64; ROUND_BUCKETS.len()],
}

#[derive(Debug, Default)]
pub(super) struct Rounds {
    /// Instant (ns) → (evaluations dispatched, finished).
    open: BTreeMap<i64, (usize, usize)>,
    pub(super) stats: RoundStats,
}

impl Rounds {
    /// `n` evaluations at `at` were dispatched.
    pub(super) fn begin(&mut self, at: i64, n: usize) {
        self.open.entry(at).or_default().0 += n;
    }

    /// One evaluation at `at` finished at `now` (ns).
    pub(super) fn finish(&mut self, at: i64, now: i64) {
        let Some(r) = self.open.get_mut(&at) else {
            return;
        };
        r.1 += 1;
        self.stats.evaluations += 1;
        if r.1 < r.0 {
            return;
        }
        self.open.remove(&at);
        let secs = (now - at).max(0) as f64 / 1e9;
        let s = &mut self.stats;
        s.rounds += 1;
        s.last_seconds = secs;
        s.sum_seconds += secs;
        for (i, le) in ROUND_BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
    }
}

/// Where an evaluation's wall time goes (`/metrics`:
/// `fleetlake_rules_evaluation_seconds_total{phase}`): what a slow round
/// is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Dispatched, waiting for an evaluation permit.
    Queued,
    /// Applying queued writes to the streaming state first.
    Drain,
    /// Waiting for the streaming state's lock (or a pass another
    /// evaluation of the same groups is making).
    Lock,
    /// Passing over the streaming state's series for a shape's groups.
    Pass,
    /// `HAVING` and the answer's batch from the groups.
    Answer,
    /// A batch rule's SQL (or a streaming rule's while its state fills).
    Sql,
    /// The alert/self-heal step, under the engine's lock.
    Apply,
    /// The decision log and state objects.
    Record,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Queued,
        Phase::Drain,
        Phase::Lock,
        Phase::Pass,
        Phase::Answer,
        Phase::Sql,
        Phase::Apply,
        Phase::Record,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Drain => "drain",
            Phase::Lock => "lock",
            Phase::Pass => "pass",
            Phase::Answer => "answer",
            Phase::Sql => "sql",
            Phase::Apply => "apply",
            Phase::Record => "record",
        }
    }
}

/// Seconds spent per [`Phase`], summed over evaluations (lock-free: every
/// evaluation adds to it).
#[derive(Debug, Default)]
pub struct Phases {
    ns: [std::sync::atomic::AtomicU64; Phase::ALL.len()],
}

impl Phases {
    pub fn add(&self, phase: Phase, took: std::time::Duration) {
        self.ns[phase as usize].fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Seconds per phase, in [`Phase::ALL`] order.
    pub fn seconds(&self) -> Vec<(Phase, f64)> {
        Phase::ALL
            .iter()
            .map(|p| {
                let ns = self.ns[*p as usize].load(std::sync::atomic::Ordering::Relaxed);
                (*p, ns as f64 / 1e9)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_closes_with_its_last_evaluation() {
        let mut r = Rounds::default();
        r.begin(10_000_000_000, 2);
        r.finish(10_000_000_000, 10_500_000_000);
        assert_eq!(r.stats.rounds, 0, "one of two evaluations is not a round");
        r.begin(10_000_000_000, 1);
        r.finish(10_000_000_000, 11_000_000_000);
        assert_eq!(r.stats.rounds, 0);
        r.finish(10_000_000_000, 12_500_000_000);
        assert_eq!(r.stats.rounds, 1);
        assert_eq!(r.stats.evaluations, 3);
        assert!((r.stats.last_seconds - 2.5).abs() < 1e-9);
        let le = |b: f64| r.stats.buckets[ROUND_BUCKETS.iter().position(|x| *x == b).unwrap()];
        assert_eq!((le(2.0), le(3.0)), (0, 1));
        r.finish(10_000_000_000, 13_000_000_000);
        assert_eq!(r.stats.rounds, 1, "a closed round is not counted twice");
    }
}
