//! The `fleet` use case: what a big-data fleet really reports, with faults.
//!
//! Every host reports hardware health on a fixed cadence; a scheduler
//! reports the jobs it runs on those hosts; `--faults K` injects hardware
//! and data faults with realistic signatures and records the ground truth
//! ([`GroundTruth`]) to score detectors against.
//!
//! # Schema
//!
//! Hardware rows carry the host tags `hostname` (`host_N`), `datacenter`
//! (`dcN`, 2,000 hosts each), `rack` (`rNNNNN`, 40 hosts each) and `sku`
//! (`g9`, `g10`, `g11`), plus the device tag shown.
//!
//! | table | cadence | device tag | fields |
//! |---|---|---|---|
//! | `heartbeat` | every epoch | — | `uptime_s` i, `load1` f, `cores` i |
//! | `cpu_thermal` | every epoch | — | `temp_c` f, `freq_mhz` i, `base_mhz` i, `throttle_count` i (cumulative), `util_pct` f |
//! | `diskio_hw` | every epoch | `disk` (`sda`…, 2–4 a host) | `util_pct` f, `iops` f, `read_iops` f, `write_iops` f, `latency_ms` f |
//! | `nic` | every epoch | `interface` (`eth0`) | `rx_bytes`, `tx_bytes`, `rx_packets`, `tx_packets`, `rx_errors`, `tx_errors`, `rx_dropped`, `tx_dropped`, `carrier_changes` (cumulative i), `speed_mbps` i, `link_up` bool |
//! | `edac` | every 60 s | `mc` (0, 1), `dimm` (`DIMM_A1` … `DIMM_B2`) | `ce_count` i, `ue_count` i (cumulative) |
//! | `smart` | every 60 s | `disk` | `reallocated_sector_ct` (attribute 5), `reported_uncorrect` (187), `command_timeout` (188), `current_pending_sector` (197), `offline_uncorrectable` (198), `temperature_celsius` (194), `power_on_hours` (9); all i, raw values |
//! | `mce` | events | — | `bank` i, `corrected` bool, `kind` s (`cache`, `memory`), `dimm` s (memory events) |
//!
//! The 60-s tables are sampled on epochs that are multiples of 60 s after
//! the start (every epoch when the interval is 60 s or more).
//!
//! Job rows are reported when the thing they describe ends, at its exact
//! (millisecond) end time; a job still running at the end of the range has
//! no row. `job_id` is `job_NNNNNN` in submit order. Times in fields are
//! Unix nanoseconds (`to_timestamp_nanos(start_ns)` in SQL).
//!
//! | table | tags | fields |
//! |---|---|---|
//! | `job_tasks` (one row per attempt) | `hostname`, `job_id`, `stage_id`, `task_id`, `attempt` | `status` s (`SUCCEEDED`, `FAILED`), `start_ns`, `end_ns`, `duration_ms`, `bytes_read`, `bytes_written`, `records_read`, `records_written`, `shuffle_read_bytes` (all i), `error` s (failed attempts only) |
//! | `job_stages` | `job_id`, `stage_id` | `status` s, `parents` s (comma-separated stage ids: the DAG), `tasks`, `attempts`, `failed_attempts`, `start_ns`, `end_ns`, `duration_ms`, `bytes_read`, `bytes_written` (i) |
//! | `job_runs` | `job_id`, `user`, `queue` | `status` s, `submit_ns`, `start_ns`, `end_ns`, `duration_ms`, `stages`, `tasks`, `attempts`, `failed_attempts`, `bytes_read`, `bytes_written` (i) |
//!
//! The ids are tags, not fields, because a row's identity is its series and
//! time: two attempts of one stage on one host may end in the same
//! millisecond and must not overwrite each other.
//!
//! # Order
//!
//! Epoch by epoch: jobs submitted in the epoch are planned; then every
//! live host's rows, table by table (in the order above); then the job rows
//! whose time falls in the epoch, by time. A host that died (bad DIMM)
//! writes nothing after its last epoch.
//!
//! # Faults
//!
//! See [`FaultKind`] for the signatures and [`thresholds`] for the lines a
//! healthy fleet never crosses. Fault `i` of `K` is of kind
//! `kinds[i % kinds.len()]` ([`FleetOptions::fault_kinds`], by default the
//! five of `FaultKind::ALL`); host faults hit distinct hosts; windows last
//! 30 minutes to 3 hours (at most 60 % of the range) and start after the
//! first 5 % of it, or within [`FleetOptions::fault_starts`]. A live fleet
//! (`fleetlake serve --demo`) writes its epochs as the clock reaches them
//! with [`Fleet::next_chunk_before`]. The ground truth is complete once the generator is
//! exhausted ([`Fleet::ground_truth`]): affected jobs are known only as they
//! are planned.

mod faults;
mod hardware;
mod jobs;
#[cfg(test)]
mod tests;

pub use faults::{FaultKind, FaultTruth, GroundTruth, thresholds};
pub use hardware::{DIMMS, DISKS, HW_TABLES};
pub use jobs::{JOB_TABLES, job_id};

use crate::lp::Timestamp;
use crate::time::SECOND_NS;
use crate::{LineSource, Result, SimConfig};
use faults::FaultPlan;
use hardware::{EDAC, HwHost, SMART};
use jobs::Scheduler;

/// Options of the fleet use case beyond [`SimConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetOptions {
    /// Number of faults to inject (0: a healthy fleet).
    pub faults: u32,
    /// Their kinds, in turn; empty: [`FaultKind::ALL`], the five classic
    /// ones (the opt-in kinds are in [`FaultKind::EVERY`]).
    pub fault_kinds: Vec<FaultKind>,
    /// Where the faults start: fault `i` starts within `fault_starts[i]`
    /// (`[from, to)`, Unix nanoseconds, inside the range) when the list
    /// has an entry for it, else anywhere after the first 5 % of the range
    /// as usual. Its length is drawn as usual (it may outlast the range).
    /// A live fleet uses it to have faults under way when a viewer
    /// arrives; empty, the output is as it always was.
    pub fault_starts: Vec<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Entering the epoch: plan the jobs submitted in it.
    Plan,
    /// Writing row `dev` of host `host` in hardware table `table`.
    Hardware {
        table: usize,
        host: usize,
        dev: usize,
    },
    /// Writing the job rows due in the epoch.
    Jobs,
    Done,
}

/// The `fleet` use case.
pub struct Fleet {
    config: SimConfig,
    epochs: u64,
    /// SMART and EDAC are sampled every this many epochs (60 s).
    slow_every: u64,
    epoch: u64,
    phase: Phase,
    ts: Timestamp,
    hosts: Vec<HwHost>,
    plan: FaultPlan,
    jobs: Scheduler,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("config", &self.config)
            .field("epoch", &self.epoch)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// # Errors
    ///
    /// [`crate::Error::InvalidConfig`] when `config` is invalid, or faults
    /// are asked for with less than an hour of data or fewer hosts than
    /// hardware faults.
    pub fn new(config: &SimConfig, options: &FleetOptions) -> Result<Self> {
        config.validate()?;
        let slow_every = ((60 * SECOND_NS) / config.interval_ns).max(1) as u64;
        let plan = FaultPlan::new(
            config,
            options.faults,
            &options.fault_kinds,
            &options.fault_starts,
            slow_every,
        )?;
        Ok(Self {
            config: config.clone(),
            epochs: config.epochs(),
            slow_every,
            epoch: 0,
            phase: Phase::Plan,
            ts: Timestamp::new(config.start_ns),
            hosts: (0..config.hosts)
                .map(|id| HwHost::new(config.seed, id, config.start_ns))
                .collect(),
            plan,
            jobs: Scheduler::new(config),
        })
    }

    /// The injected faults. Complete (affected jobs, the skewed jobs) once
    /// [`LineSource::next_chunk`] has returned 0.
    pub fn ground_truth(&self) -> GroundTruth {
        self.plan.truth(&self.config)
    }

    /// [`LineSource::next_chunk`], but only of the epochs before
    /// `before_ns`: it returns 0 (and nothing is lost) once the next
    /// epoch's time is `before_ns` or later. A live fleet calls it as the
    /// clock advances, so each epoch is written once its time has come.
    pub fn next_chunk_before(
        &mut self,
        out: &mut Vec<u8>,
        max_lines: usize,
        before_ns: i64,
    ) -> usize {
        let mut n = 0;
        out.reserve(max_lines.min(1 << 16) * 160);
        while n < max_lines {
            match self.phase {
                Phase::Done => break,
                Phase::Plan => {
                    if self.epoch == self.epochs {
                        self.phase = Phase::Done;
                        break;
                    }
                    let t = self.config.epoch_ns(self.epoch);
                    if t >= before_ns {
                        break;
                    }
                    self.ts = Timestamp::new(t);
                    self.jobs
                        .plan_until(t + self.config.interval_ns, &mut self.plan);
                    self.phase = Phase::Hardware {
                        table: 0,
                        host: 0,
                        dev: 0,
                    };
                }
                Phase::Hardware { table, host, dev } => {
                    let slow_tick = self.epoch.is_multiple_of(self.slow_every);
                    if table == HW_TABLES.len() {
                        self.phase = Phase::Jobs;
                        continue;
                    }
                    if host == self.hosts.len() || ((table == EDAC || table == SMART) && !slow_tick)
                    {
                        self.phase = Phase::Hardware {
                            table: table + 1,
                            host: 0,
                            dev: 0,
                        };
                        continue;
                    }
                    let t = self.config.epoch_ns(self.epoch);
                    let h = &mut self.hosts[host];
                    if table == 0 && dev == 0 {
                        // Once per host and epoch: the first table's first row.
                        h.step(
                            host as u32,
                            t,
                            self.config.interval_ns,
                            slow_tick,
                            &self.plan,
                        );
                    }
                    if dev < h.rows(table) {
                        h.write(out, table, dev, t, self.ts.as_bytes());
                        n += 1;
                        self.phase = Phase::Hardware {
                            table,
                            host,
                            dev: dev + 1,
                        };
                    } else {
                        self.phase = Phase::Hardware {
                            table,
                            host: host + 1,
                            dev: 0,
                        };
                    }
                }
                Phase::Jobs => {
                    let t_end = self.config.epoch_ns(self.epoch) + self.config.interval_ns;
                    match self.jobs.pop_before(t_end) {
                        Some(row) => {
                            row.write(out);
                            n += 1;
                        }
                        None => {
                            self.epoch += 1;
                            self.phase = Phase::Plan;
                        }
                    }
                }
            }
        }
        n
    }

    /// The time of the epoch whose rows come next; `None` once exhausted.
    pub fn next_epoch_ns(&self) -> Option<i64> {
        (self.phase != Phase::Done && self.epoch < self.epochs)
            .then(|| self.config.epoch_ns(self.epoch))
    }

    /// The simulated fleet's size, range and seed.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }
}

impl LineSource for Fleet {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_lines: usize) -> usize {
        self.next_chunk_before(out, max_lines, i64::MAX)
    }

    fn state_bytes(&self) -> usize {
        self.hosts.capacity() * size_of::<HwHost>()
            + self.hosts.iter().map(|h| h.tags().len()).sum::<usize>()
            + self.jobs.state_bytes()
    }
}
