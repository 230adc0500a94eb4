//! Streaming generators of fleet telemetry, as InfluxDB line protocol.
//!
//! This crate owns the simulated fleets that fleetlake is measured and
//! demonstrated with:
//!
//! - [`CpuOnly`] and [`Devops`]: the TSBS `cpu-only` and `devops` use cases
//!   (same tags, value sets, fields and walk dynamics as TSBS; see
//!   `shared/tsbs-devops.md`), so published results and peers can be compared
//!   on the same shapes.
//! - [`Fleet`]: what a big-data fleet really reports — hardware health (SMART,
//!   EDAC, machine checks, NIC, CPU thermals, disk I/O, heartbeats) and job
//!   telemetry (runs, stages, tasks) — with injected faults and their ground
//!   truth, for the anomaly, diagnosis and self-heal work. Its schema is
//!   documented in the [`fleet`] module.
//!
//! # Invariants
//!
//! - **Streaming.** A generator never holds the dataset: it keeps per-host
//!   state (O(hosts)), plus, for [`Fleet`], the rows of jobs still running.
//!   Output is appended to a caller's buffer in chunks
//!   ([`LineSource::next_chunk`]), so 100,000 hosts × 1 day runs in constant
//!   memory.
//! - **Deterministic.** The same [`SimConfig`] (seed included) gives the same
//!   bytes, whatever the chunk sizes. Every host table, job and the fault plan
//!   draws from its own PRNG stream ([`rng::stream`]).
//! - **Epoch-major.** Rows come epoch by epoch (all rows of `start`, then of
//!   `start + interval`, …); within an epoch, table by table, host by host.
//!   Job rows (fleet) carry their exact event time, inside their epoch.
//! - **Valid line protocol**, one row per line, `\n`-terminated, nanosecond
//!   timestamps.
//!
//! # Example
//!
//! ```
//! use fleetlake_sim::{CpuOnly, LineSource, SimConfig, time};
//!
//! let config = SimConfig::new(2, time::TSBS_START_NS, time::TSBS_START_NS + 20 * time::SECOND_NS, 10 * time::SECOND_NS, 1)?;
//! let mut source = CpuOnly::new(&config);
//! assert_eq!(source.total_lines(), Some(4));
//! let mut out = Vec::new();
//! while source.next_chunk(&mut out, 3) > 0 {}
//! let text = String::from_utf8(out).unwrap();
//! assert_eq!(text.lines().count(), 4);
//! assert!(text.starts_with("cpu,hostname=host_0,region="));
//! # Ok::<(), fleetlake_sim::Error>(())
//! ```

mod error;
pub mod fleet;
pub mod lp;
pub mod rng;
#[cfg(test)]
mod test_util;
pub mod time;
pub mod tsbs;

pub use error::{Error, Result};
pub use fleet::{FaultKind, Fleet, FleetOptions, GroundTruth};
pub use tsbs::{CpuHost, CpuOnly, Devops, HostTags};

/// The simulated fleet's size, time range and seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Hosts `host_0` … `host_{hosts-1}`.
    pub hosts: u64,
    /// First epoch, Unix nanoseconds.
    pub start_ns: i64,
    /// End of the range, exclusive.
    pub end_ns: i64,
    /// Time between epochs (TSBS: 10 s).
    pub interval_ns: i64,
    pub seed: u64,
}

impl Default for SimConfig {
    /// TSBS's defaults at a small size: 100 hosts, one hour from
    /// 2016-01-01T00:00:00Z, every 10 s, seed 1.
    fn default() -> Self {
        Self {
            hosts: 100,
            start_ns: time::TSBS_START_NS,
            end_ns: time::TSBS_START_NS + time::HOUR_NS,
            interval_ns: 10 * time::SECOND_NS,
            seed: 1,
        }
    }
}

impl SimConfig {
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when there are no hosts (or more than
    /// 2^32), the interval is not positive, or the range is empty.
    pub fn new(
        hosts: u64,
        start_ns: i64,
        end_ns: i64,
        interval_ns: i64,
        seed: u64,
    ) -> Result<Self> {
        let config = Self {
            hosts,
            start_ns,
            end_ns,
            interval_ns,
            seed,
        };
        config.validate()?;
        Ok(config)
    }

    /// See [`SimConfig::new`].
    pub fn validate(&self) -> Result<()> {
        if self.hosts == 0 || self.hosts > u64::from(u32::MAX) {
            return Err(Error::InvalidConfig(format!(
                "hosts must be in 1..=4294967295, got {}",
                self.hosts
            )));
        }
        if self.interval_ns <= 0 {
            return Err(Error::InvalidConfig(format!(
                "interval must be positive, got {} ns",
                self.interval_ns
            )));
        }
        if self.end_ns <= self.start_ns {
            return Err(Error::InvalidConfig(format!(
                "end ({}) must be after start ({})",
                time::rfc3339(self.end_ns),
                time::rfc3339(self.start_ns)
            )));
        }
        Ok(())
    }

    /// Number of epochs: start, start + interval, … while before the end.
    pub fn epochs(&self) -> u64 {
        let span = (self.end_ns - self.start_ns) as u64;
        span.div_ceil(self.interval_ns as u64)
    }

    /// Time of epoch `e`.
    pub fn epoch_ns(&self, e: u64) -> i64 {
        self.start_ns + e as i64 * self.interval_ns
    }
}

/// A generator of line protocol that appends to a caller's buffer.
pub trait LineSource {
    /// Appends at most `max_lines` whole lines to `out` and returns how many.
    /// Returns 0 only when the dataset is exhausted (or `max_lines` is 0);
    /// `out` is never cleared, so the caller decides when to flush it.
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_lines: usize) -> usize;

    /// Lines in the whole dataset, when known before generating it.
    fn total_lines(&self) -> Option<u64> {
        None
    }

    /// Heap bytes held by the generator's state, approximately. It depends
    /// on the number of hosts (and, for [`Fleet`], on the jobs in flight),
    /// never on how much has been generated: tests hold generators to that.
    fn state_bytes(&self) -> usize;
}

impl<T: LineSource + ?Sized> LineSource for Box<T> {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_lines: usize) -> usize {
        (**self).next_chunk(out, max_lines)
    }

    fn total_lines(&self) -> Option<u64> {
        (**self).total_lines()
    }

    fn state_bytes(&self) -> usize {
        (**self).state_bytes()
    }
}

/// Writes the whole dataset to `w` through one reused chunk buffer of
/// `chunk_lines` lines; returns (lines, bytes).
///
/// # Errors
///
/// The first error of `w`.
pub fn write_all(
    source: &mut dyn LineSource,
    w: &mut dyn std::io::Write,
    chunk_lines: usize,
) -> std::io::Result<(u64, u64)> {
    let mut buf = Vec::new();
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = source.next_chunk(&mut buf, chunk_lines.max(1));
        if n == 0 {
            return Ok((lines, bytes));
        }
        w.write_all(&buf)?;
        lines += n as u64;
        bytes += buf.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let c = SimConfig::default();
        assert_eq!(c.epochs(), 360);
        assert_eq!(c.epoch_ns(1), c.start_ns + c.interval_ns);
        assert!(SimConfig::new(0, 0, 10, 1, 1).is_err());
        assert!(SimConfig::new(1, 10, 10, 1, 1).is_err());
        assert!(SimConfig::new(1, 0, 10, 0, 1).is_err());
        // A partial last interval still has its epoch.
        assert_eq!(SimConfig::new(1, 0, 25, 10, 1).unwrap().epochs(), 3);
    }
}
