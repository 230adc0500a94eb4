//! The simulated dataset as command-line flags, shared by `fleetlake bench`
//! and the peers helper so that a query run names exactly the data a load
//! wrote.

use anyhow::{Context, bail};
use clap::Args;
use fleetlake_sim::SimConfig;
use fleetlake_sim::time::{HOUR_NS, SECOND_NS};

use fleetlake_time::parse_rfc3339;

/// The same flags and defaults as `fleetlake gen`.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Number of hosts (host_0 … host_{N-1}).
    #[arg(long, env = "FLEETLAKE_BENCH_HOSTS", default_value_t = 100)]
    pub hosts: u64,

    /// Time of the first epoch (RFC 3339); the default is `fleetlake gen`'s.
    #[arg(
        long,
        env = "FLEETLAKE_BENCH_START",
        default_value = "2026-01-01T00:00:00Z"
    )]
    pub start: String,

    /// Hours of data (fractions allowed).
    #[arg(long, env = "FLEETLAKE_BENCH_HOURS", default_value_t = 1.0)]
    pub hours: f64,

    /// Seconds between epochs (TSBS: 10).
    #[arg(long, env = "FLEETLAKE_BENCH_INTERVAL_S", default_value_t = 10)]
    pub interval_s: u32,

    /// Seed of the generated data.
    #[arg(long, env = "FLEETLAKE_BENCH_SEED", default_value_t = 1)]
    pub seed: u64,
}

impl DataArgs {
    /// # Errors
    ///
    /// A start that is not RFC 3339, hours not positive, or an invalid
    /// configuration (no hosts, zero interval).
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        let start = parse_rfc3339(&self.start)
            .with_context(|| format!("--start {:?} is not an RFC 3339 time", self.start))?;
        if !(self.hours.is_finite() && self.hours > 0.0) {
            bail!("--hours must be positive");
        }
        let end = start + (self.hours * HOUR_NS as f64) as i64;
        Ok(SimConfig::new(
            self.hosts,
            start,
            end,
            i64::from(self.interval_s) * SECOND_NS,
            self.seed,
        )?)
    }
}
