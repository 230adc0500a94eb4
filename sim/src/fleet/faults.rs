//! Fault injection: the plan (which host or job, when) and its ground truth.
//!
//! The plan is drawn up front from its own stream, so hardware and jobs can
//! both ask it "is host H degraded at time T". Data-skew faults are the
//! exception: they name a time, and the first suitable job submitted after it
//! receives the skew while the jobs are planned.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::rng::stream;
use crate::time::{HOUR_NS, MINUTE_NS, SECOND_NS, rfc3339};
use crate::{Error, Result, SimConfig};

/// What `--faults K` injects: fault `i` is of kind `kinds[i % kinds.len()]`
/// for the kinds asked for (`--fault-kinds`), [`FaultKind::ALL`] (the five
/// classic ones) by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SMART 5/197 rising, then the disk saturated (utilisation > 90 % with
    /// fewer than 100 IOPS) for the rest of the window; tasks on the host
    /// slow down, then fail with I/O errors.
    FailingDisk,
    /// Bursts of correctable ECC errors on one DIMM, then an uncorrectable
    /// one at the end of the window, after which the host stops reporting.
    BadDimm,
    /// Throttle count rising and frequency well below base; tasks slower.
    ThermalThrottling,
    /// Link flaps, NIC errors and drops; tasks fetching shuffle data from
    /// the host fail.
    FlappingNic,
    /// One task of a job stage reads ≥ 10× the stage's median input. Not a
    /// host fault.
    DataSkew,
    /// A host that runs every task 2.5–4× slower with nothing in its
    /// hardware telemetry (a noisy neighbour, a misconfigured kernel).
    /// Opt-in.
    StragglerHost,
    /// A host whose executors crash on some attempts (40–70 % in the
    /// window): the attempt fails with `ExecutorLostFailure ... exited with
    /// code 134` and is retried elsewhere. Nothing in its hardware
    /// telemetry. Opt-in.
    FlakyHost,
    /// One scheduler queue congested: jobs submitted to it in the window
    /// wait 8–25 minutes more before they start. Not a host fault. Opt-in.
    Queueing,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::FailingDisk,
        FaultKind::BadDimm,
        FaultKind::ThermalThrottling,
        FaultKind::FlappingNic,
        FaultKind::DataSkew,
    ];

    /// Every kind, the opt-in ones after [`FaultKind::ALL`].
    pub const EVERY: [FaultKind; 8] = [
        FaultKind::FailingDisk,
        FaultKind::BadDimm,
        FaultKind::ThermalThrottling,
        FaultKind::FlappingNic,
        FaultKind::DataSkew,
        FaultKind::StragglerHost,
        FaultKind::FlakyHost,
        FaultKind::Queueing,
    ];

    /// The kind named `name` (as in the ground truth: `failing_disk`, …).
    pub fn from_name(name: &str) -> Option<FaultKind> {
        Self::EVERY.into_iter().find(|k| k.name() == name)
    }

    /// Does the fault sit on one host (which then has no other fault)?
    pub fn on_host(self) -> bool {
        !matches!(self, FaultKind::DataSkew | FaultKind::Queueing)
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::FailingDisk => "failing_disk",
            FaultKind::BadDimm => "bad_dimm",
            FaultKind::ThermalThrottling => "thermal_throttling",
            FaultKind::FlappingNic => "flapping_nic",
            FaultKind::DataSkew => "data_skew",
            FaultKind::StragglerHost => "straggler_host",
            FaultKind::FlakyHost => "flaky_host",
            FaultKind::Queueing => "queueing",
        }
    }

    fn signature(self) -> &'static str {
        match self {
            FaultKind::FailingDisk => {
                "smart.reallocated_sector_ct and current_pending_sector rise on the disk; diskio_hw util_pct > 90 with iops < 100 for over 10 minutes; job_tasks on the host slow, then FAILED with java.io.IOException"
            }
            FaultKind::BadDimm => {
                "edac.ce_count bursts on the DIMM and corrected memory mce events; then ue_count = 1 and an uncorrected mce at `end`, after which the host reports nothing; tasks running then fail with ExecutorLostFailure"
            }
            FaultKind::ThermalThrottling => {
                "cpu_thermal.throttle_count rises and freq_mhz < 0.8 × base_mhz with temp_c > 90; job_tasks on the host take about twice as long"
            }
            FaultKind::FlappingNic => {
                "nic.carrier_changes rises, link_up flaps, rx/tx errors and drops jump; job_tasks reading shuffle data from the host fail with FetchFailed naming it"
            }
            FaultKind::DataSkew => {
                "in job_tasks of the stage, one task's bytes_read is ≥ 10× the stage median and it runs far longer than its siblings"
            }
            FaultKind::StragglerHost => {
                "job_tasks on the host take 2.5-4x as long as their siblings with normal input; its hardware tables look healthy"
            }
            FaultKind::FlakyHost => {
                "job_tasks on the host fail with ExecutorLostFailure (exited with code 134) and are retried on other hosts; its hardware tables look healthy"
            }
            FaultKind::Queueing => {
                "job_runs of the queue submitted in the window have start_ns - submit_ns of 8-25 minutes (a healthy fleet: seconds)"
            }
        }
    }
}

/// Detection thresholds that separate injected faults from the noise of a
/// healthy fleet. A healthy fleet (`--faults 0`) crosses none of them; each
/// injected fault crosses its own. Rule authors can start from these.
pub mod thresholds {
    use crate::time::{MINUTE_NS, SECOND_NS};

    /// `diskio_hw`: a disk is stuck when `util_pct` > this …
    pub const DISK_BUSY_UTIL_PCT: f64 = 90.0;
    /// … and `iops` < this …
    pub const DISK_BUSY_MAX_IOPS: f64 = 100.0;
    /// … for longer than this.
    pub const DISK_BUSY_MIN_NS: i64 = 10 * MINUTE_NS;
    /// `edac`: an increase of `ce_count` by at least this much within
    /// [`WINDOW_NS`] is a burst. Healthy DIMMs log about one a day.
    pub const EDAC_CE_BURST: i64 = 10;
    /// `cpu_thermal`: throttling when `freq_mhz` < this × `base_mhz`.
    pub const THROTTLED_FREQ_RATIO: f64 = 0.8;
    /// `nic`: an increase of `rx_errors + tx_errors` by at least this much
    /// within [`WINDOW_NS`].
    pub const NIC_ERRORS_BURST: i64 = 100;
    /// `nic`: an increase of `rx_dropped + tx_dropped` by at least this
    /// much within [`WINDOW_NS`]. Healthy NICs drop a packet now and then.
    pub const NIC_DROPS_BURST: i64 = 1000;
    /// The sliding window of the burst thresholds.
    pub const WINDOW_NS: i64 = 10 * MINUTE_NS;
    /// `heartbeat`: a host silent for longer than this (while the dataset
    /// goes on) has stopped reporting.
    pub const HEARTBEAT_GAP_NS: i64 = 60 * SECOND_NS;
    /// `job_tasks`: a task reading at least this many times its stage's
    /// median `bytes_read` is skewed. Healthy stages stay under 4×.
    pub const SKEW_RATIO: f64 = 10.0;
    /// `job_tasks.error` prefixes that blame a host (the task's own, or the
    /// one named in the message). Healthy fleets only have the others
    /// (out-of-memory, containers killed for memory).
    pub const HOST_ERRORS: [&str; 3] =
        ["java.io.IOException", "ExecutorLostFailure", "FetchFailed"];
}

/// One planned fault.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub kind: FaultKind,
    pub host: Option<u32>,
    /// Disk index (failing disk) or DIMM index (bad DIMM).
    pub device: u8,
    pub start_ns: i64,
    /// Exclusive; for a bad DIMM, the time of the uncorrectable error (the
    /// host's last epoch).
    pub end_ns: i64,
    /// Data skew: the job, stage and task that received it.
    pub job: Option<u64>,
    pub stage: u32,
    pub task: u32,
    /// Jobs the fault touched (see [`FaultTruth::affected_jobs`]).
    pub affected: BTreeSet<u64>,
    /// The subset it slowed or failed (see [`FaultTruth::harmed_jobs`]).
    pub harmed: BTreeSet<u64>,
    /// Per-fault strength, drawn once: the slowdown factor (failing disk,
    /// thermal, straggler host) or the crash probability (flaky host).
    pub slowdown: f64,
    /// Queueing: the index of the congested queue.
    pub queue: u8,
}

impl Fault {
    #[inline]
    pub fn active(&self, t: i64) -> bool {
        self.start_ns <= t && t < self.end_ns
    }

    /// Fraction of the window elapsed at `t` (0 before, 1 after).
    #[inline]
    pub fn progress(&self, t: i64) -> f64 {
        ((t - self.start_ns) as f64 / (self.end_ns - self.start_ns) as f64).clamp(0.0, 1.0)
    }

    /// Failing disk: the disk is saturated from here on.
    pub fn busy_from(&self) -> i64 {
        self.start_ns + (self.end_ns - self.start_ns) / 5
    }

    /// Failing disk: tasks fail with I/O errors from here on (before, they
    /// are slow).
    pub fn io_errors_from(&self) -> i64 {
        self.start_ns + (self.end_ns - self.start_ns) * 2 / 5
    }
}

/// How long a task on a dead host keeps the scheduler waiting.
pub(crate) const EXECUTOR_LOST_AFTER_NS: i64 = 30 * SECOND_NS;

/// Stream id (first key) of the plan; hosts use their id, below 2^32.
const PLAN_STREAM: u64 = 1 << 41;

#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    pub faults: Vec<Fault>,
    /// Host id → index of its fault (a host has at most one).
    by_host: HashMap<u32, usize>,
}

impl FaultPlan {
    /// `k` faults of `kinds` (empty: [`FaultKind::ALL`]) over `config`;
    /// `slow_every` is the SMART/EDAC cadence in epochs (a bad DIMM's
    /// uncorrectable error lands on one of those). Fault `i` starts within
    /// `starts[i]` when there is one (see [`super::FleetOptions::fault_starts`]).
    pub fn new(
        config: &SimConfig,
        k: u32,
        kinds: &[FaultKind],
        starts: &[(i64, i64)],
        slow_every: u64,
    ) -> Result<Self> {
        let kinds = if kinds.is_empty() {
            &FaultKind::ALL[..]
        } else {
            kinds
        };
        if k == 0 {
            return Ok(Self::default());
        }
        if let Some((from, to)) = starts
            .iter()
            .find(|(from, to)| from >= to || *from < config.start_ns || *to > config.end_ns)
        {
            return Err(Error::InvalidConfig(format!(
                "fault start window {}..{} is empty or outside the range {}..{}",
                rfc3339(*from),
                rfc3339(*to),
                rfc3339(config.start_ns),
                rfc3339(config.end_ns)
            )));
        }
        let span = config.end_ns - config.start_ns;
        if span < HOUR_NS {
            return Err(Error::InvalidConfig(format!(
                "fault injection needs at least 1 hour of data, got {} s",
                span / SECOND_NS
            )));
        }
        let host_faults = (0..k)
            .filter(|i| kinds[*i as usize % kinds.len()].on_host())
            .count() as u64;
        if host_faults > config.hosts {
            return Err(Error::InvalidConfig(format!(
                "{k} faults need {host_faults} distinct hosts, the fleet has {}",
                config.hosts
            )));
        }
        let mut rng = stream(config.seed, PLAN_STREAM, 0);
        let mut used = BTreeSet::new();
        let mut faults = Vec::with_capacity(k as usize);
        for i in 0..k {
            let kind = kinds[i as usize % kinds.len()];
            let max_len = (3 * HOUR_NS).min(span * 3 / 5);
            let mut len = rng.range(30.0 * MINUTE_NS as f64, max_len as f64) as i64;
            len -= len % SECOND_NS;
            let earliest = config.start_ns + span / 20;
            let window = starts.get(i as usize).copied();
            let (from, to) = window.unwrap_or((earliest, config.end_ns - len));
            let mut start = rng.range(from as f64, to as f64) as i64;
            // Whole seconds: readable in the ground truth.
            start -= start.rem_euclid(SECOND_NS);
            let mut end = start + len;
            let mut fault = Fault {
                kind,
                host: None,
                device: 0,
                start_ns: start,
                end_ns: end,
                job: None,
                stage: 0,
                task: 0,
                affected: BTreeSet::new(),
                harmed: BTreeSet::new(),
                slowdown: 1.0,
                queue: 0,
            };
            match kind {
                FaultKind::Queueing => {
                    fault.queue = rng.below(super::jobs::QUEUES.len() as u64) as u8;
                }
                FaultKind::DataSkew => {
                    // A target time: the first suitable job submitted after it.
                    let target = config.start_ns + (rng.range(0.05, 0.45) * span as f64) as i64;
                    fault.start_ns = if window.is_some() { start } else { target };
                    fault.end_ns = fault.start_ns;
                }
                _ => {
                    let host = loop {
                        let h = rng.below(config.hosts) as u32;
                        if used.insert(h) {
                            break h;
                        }
                    };
                    fault.host = Some(host);
                    match kind {
                        FaultKind::FailingDisk => {
                            fault.device = rng.below(2) as u8; // every host has ≥ 2 disks
                            fault.slowdown = rng.range(2.5, 4.0);
                        }
                        FaultKind::BadDimm => {
                            fault.device = rng.below(super::hardware::DIMMS.len() as u64) as u8;
                            // The uncorrectable error shows in an EDAC row.
                            let period = slow_every as i64 * config.interval_ns;
                            let epoch = (end - config.start_ns) / period * period;
                            end = config.start_ns + epoch;
                            fault.end_ns = end;
                        }
                        FaultKind::ThermalThrottling => fault.slowdown = rng.range(1.7, 2.3),
                        FaultKind::StragglerHost => fault.slowdown = rng.range(2.5, 4.0),
                        FaultKind::FlakyHost => fault.slowdown = rng.range(0.4, 0.7),
                        _ => {}
                    }
                }
            }
            faults.push(fault);
        }
        let by_host = faults
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.host.map(|h| (h, i)))
            .collect();
        Ok(Self { faults, by_host })
    }

    /// The fault of `host`, if it has one (active or not).
    #[inline]
    pub fn of_host(&self, host: u32) -> Option<(usize, &Fault)> {
        if self.by_host.is_empty() {
            return None;
        }
        self.by_host.get(&host).map(|&i| (i, &self.faults[i]))
    }

    /// When `host` stops reporting (its bad DIMM's uncorrectable error).
    pub fn dead_after(&self, host: u32) -> Option<i64> {
        self.of_host(host)
            .filter(|(_, f)| f.kind == FaultKind::BadDimm)
            .map(|(_, f)| f.end_ns)
    }

    /// Can the scheduler place a task on `host` at `t`?
    pub fn alive(&self, host: u32, t: i64) -> bool {
        self.dead_after(host).is_none_or(|d| t <= d)
    }

    /// Factor on the duration of a task started on `host` at `t`.
    pub fn slowdown(&self, host: u32, t: i64) -> f64 {
        match self.of_host(host) {
            Some((_, f)) if f.active(t) => match f.kind {
                FaultKind::FailingDisk
                | FaultKind::ThermalThrottling
                | FaultKind::StragglerHost => f.slowdown,
                _ => 1.0,
            },
            _ => 1.0,
        }
    }

    /// Does a task started on `host` at `t` hit I/O errors?
    pub fn io_failing(&self, host: u32, t: i64) -> Option<usize> {
        match self.of_host(host) {
            Some((i, f))
                if f.kind == FaultKind::FailingDisk && f.active(t) && t >= f.io_errors_from() =>
            {
                Some(i)
            }
            _ => None,
        }
    }

    /// A flaky host's fault, active at `t`: (fault, crash probability).
    pub fn flaky(&self, host: u32, t: i64) -> Option<(usize, f64)> {
        match self.of_host(host) {
            Some((i, f)) if f.kind == FaultKind::FlakyHost && f.active(t) => Some((i, f.slowdown)),
            _ => None,
        }
    }

    /// The fault congesting queue `queue` at `t`, if any.
    pub fn congested(&self, queue: usize, t: i64) -> Option<usize> {
        self.faults
            .iter()
            .position(|f| f.kind == FaultKind::Queueing && f.queue as usize == queue && f.active(t))
    }

    /// A flapping NIC, active at `t`, on one of `hosts`: (fault, host).
    pub fn flapping_among(&self, hosts: &[u32], t: i64) -> Option<(usize, u32)> {
        self.faults.iter().enumerate().find_map(|(i, f)| {
            let h = f.host?;
            (f.kind == FaultKind::FlappingNic && f.active(t) && hosts.contains(&h))
                .then_some((i, h))
        })
    }

    /// The earliest unassigned data-skew fault due at `submit_ns`.
    pub fn skew_due(&self, submit_ns: i64) -> Option<usize> {
        self.faults.iter().position(|f| {
            f.kind == FaultKind::DataSkew && f.job.is_none() && f.start_ns <= submit_ns
        })
    }

    pub fn truth(&self, config: &SimConfig) -> GroundTruth {
        GroundTruth {
            use_case: "fleet",
            seed: config.seed,
            hosts: config.hosts,
            start: rfc3339(config.start_ns),
            end: rfc3339(config.end_ns),
            interval_s: config.interval_ns as f64 / SECOND_NS as f64,
            faults: self
                .faults
                .iter()
                .enumerate()
                // A skew that found no job finishing in range was never injected.
                .filter(|(_, f)| f.kind != FaultKind::DataSkew || f.job.is_some())
                .map(|(id, f)| FaultTruth {
                    id,
                    kind: f.kind,
                    host: f.host.map(|h| format!("host_{h}")),
                    device: match f.kind {
                        FaultKind::FailingDisk => {
                            Some(super::hardware::DISKS[f.device as usize].to_string())
                        }
                        FaultKind::BadDimm => {
                            Some(super::hardware::DIMMS[f.device as usize].to_string())
                        }
                        FaultKind::FlappingNic => Some("eth0".to_string()),
                        FaultKind::Queueing => {
                            Some(super::jobs::QUEUES[f.queue as usize].to_string())
                        }
                        _ => None,
                    },
                    job: f.job.map(super::jobs::job_id),
                    stage: f.job.map(|_| f.stage),
                    task: f.job.map(|_| f.task),
                    start: rfc3339(f.start_ns),
                    end: rfc3339(f.end_ns),
                    start_ns: f.start_ns,
                    end_ns: f.end_ns,
                    affected_jobs: f.affected.iter().map(|&j| super::jobs::job_id(j)).collect(),
                    harmed_jobs: f.harmed.iter().map(|&j| super::jobs::job_id(j)).collect(),
                    signature: f.kind.signature(),
                })
                .collect(),
        }
    }
}

/// What `--truth FILE` holds: every injected fault, for scoring detectors.
#[derive(Debug, Clone, Serialize)]
pub struct GroundTruth {
    pub use_case: &'static str,
    pub seed: u64,
    pub hosts: u64,
    pub start: String,
    pub end: String,
    pub interval_s: f64,
    pub faults: Vec<FaultTruth>,
}

impl GroundTruth {
    /// Pretty JSON, newline-terminated.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("ground truth serialises");
        s.push('\n');
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultTruth {
    pub id: usize,
    pub kind: FaultKind,
    /// `host_N` for hardware faults.
    pub host: Option<String>,
    /// The disk (`sdb`), DIMM (`DIMM_A2`), interface (`eth0`) or, for
    /// queueing, the congested queue (`etl`).
    pub device: Option<String>,
    /// Data skew: the job, and the stage and task that were skewed.
    pub job: Option<String>,
    pub stage: Option<u32>,
    pub task: Option<u32>,
    /// RFC 3339. For a bad DIMM, `end` is the uncorrectable error, after
    /// which the host reports nothing. For data skew, the skewed task's span.
    pub start: String,
    pub end: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Jobs whose reported tasks the fault touched: tasks on the host during
    /// the window (failing disk, thermal, straggler host), tasks lost with
    /// the host (bad DIMM) or crashed on it (flaky host), tasks whose
    /// shuffle fetch from the host failed (flapping NIC), the skewed job
    /// (data skew), the jobs of the queue submitted in the window that
    /// reported their run (queueing).
    pub affected_jobs: Vec<String>,
    /// The affected jobs that the fault actually harmed: with a reported
    /// attempt it slowed (started on the host inside the window: failing
    /// disk, thermal) or failed (I/O error, executor lost with the host,
    /// shuffle fetch from the host), and the skewed job. `affected_jobs`
    /// also holds jobs whose attempts merely overlapped the window (started
    /// before it, so not slowed, or failed for reasons of their own); a
    /// diagnosis can only be expected to find the fault in these.
    pub harmed_jobs: Vec<String>,
    /// Where to see it, in words.
    pub signature: &'static str,
}
