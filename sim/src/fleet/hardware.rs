//! Per-host hardware state: its dynamics, healthy and faulty, and its rows.
//!
//! Healthy noise is bounded so that it never crosses
//! [`super::thresholds`]: disks stay under 85 % busy with ≥ 150 IOPS, SMART
//! counters and throttle counts never move, DIMMs log about one correctable
//! error a day, NICs drop a packet now and then and never flap.

use super::faults::{Fault, FaultKind, FaultPlan};
use crate::lp::{push_bool, push_fixed, push_i64, push_int, push_str_field};
use crate::rng::{SplitMix64, stream};
use crate::time::{DAY_NS, HOUR_NS, SECOND_NS};

pub const DISKS: [&str; 4] = ["sda", "sdb", "sdc", "sdd"];
pub const DIMMS: [&str; 4] = ["DIMM_A1", "DIMM_A2", "DIMM_B1", "DIMM_B2"];
/// Hardware generations: (sku tag, base MHz, max turbo MHz).
const SKUS: [(&str, u32, u32); 3] = [("g9", 2200, 2900), ("g10", 2400, 3200), ("g11", 2600, 3500)];

pub const HOSTS_PER_RACK: u64 = 40;
pub const RACKS_PER_DATACENTER: u64 = 50;

/// Stream id of a host's hardware (the first key is the host id).
const HW_STREAM: u64 = 100;

/// The hardware tables, in emission order within an epoch.
pub const HW_TABLES: [&str; 7] = [
    "heartbeat",
    "cpu_thermal",
    "diskio_hw",
    "nic",
    "edac",
    "smart",
    "mce",
];
pub const HEARTBEAT: usize = 0;
pub const CPU_THERMAL: usize = 1;
pub const DISKIO_HW: usize = 2;
pub const NIC: usize = 3;
pub const EDAC: usize = 4;
pub const SMART: usize = 5;
pub const MCE: usize = 6;

#[derive(Debug, Clone, Default)]
struct Disk {
    util: f64,
    util_target: f64,
    iops: f64,
    read_frac: f64,
    latency_ms: f64,
    /// SMART attributes 5, 187, 188, 197, 198.
    reallocated: i64,
    reported_uncorrect: i64,
    command_timeout: i64,
    pending: i64,
    offline_uncorrectable: i64,
    temp_c: f64,
    power_on_hours_at_boot: i64,
}

#[derive(Debug, Clone, Default)]
struct Nic {
    rx_bytes: i64,
    tx_bytes: i64,
    rx_packets: i64,
    tx_packets: i64,
    rx_errors: i64,
    tx_errors: i64,
    rx_dropped: i64,
    tx_dropped: i64,
    carrier_changes: i64,
    link_up: bool,
    speed_mbps: i64,
    /// Mean bytes a second each way, a slow walk.
    rate: f64,
}

#[derive(Debug, Clone, Copy)]
enum Mce {
    CacheCorrected { bank: u8 },
    MemoryCorrected { dimm: u8 },
    MemoryUncorrected { dimm: u8 },
}

/// One host's hardware.
#[derive(Debug, Clone)]
pub(crate) struct HwHost {
    /// `,hostname=host_N,datacenter=…,rack=…,sku=…`
    tags: Box<str>,
    rng: SplitMix64,
    pub dead: bool,
    boot_ns: i64,
    base_mhz: u32,
    max_mhz: u32,
    cores: u32,
    util: f64,
    util_target: f64,
    temp_c: f64,
    freq_mhz: u32,
    throttle_count: i64,
    disks_len: u8,
    disks: [Disk; 4],
    nic: Nic,
    ce: [i64; 4],
    ue: [i64; 4],
    mce: Option<Mce>,
}

/// Tags of host `id`: racks of 40 hosts, data centres of 50 racks.
pub fn host_tags(id: u64, sku: &str) -> String {
    let rack = id / HOSTS_PER_RACK;
    format!(
        ",hostname=host_{id},datacenter=dc{},rack=r{rack:05},sku={sku}",
        rack / RACKS_PER_DATACENTER
    )
}

impl HwHost {
    pub fn new(seed: u64, id: u64, start_ns: i64) -> Self {
        let mut rng = stream(seed, id, HW_STREAM);
        let (sku, base_mhz, max_mhz) = rng.pick(&SKUS);
        let disks_len = rng.between(2, 4) as u8;
        let mut disks: [Disk; 4] = Default::default();
        for d in &mut disks[..disks_len as usize] {
            d.util_target = rng.range(10.0, 60.0);
            d.util = d.util_target;
            d.read_frac = rng.range(0.3, 0.7);
            // Some disks have reallocated a few sectors long ago; a healthy
            // disk's counters do not move afterwards.
            if rng.chance(0.1) {
                d.reallocated = rng.between(1, 8) as i64;
            }
            d.command_timeout = rng.below(3) as i64;
            d.temp_c = rng.range(30.0, 38.0);
            d.power_on_hours_at_boot = rng.between(500, 40_000) as i64;
        }
        let util_target = rng.range(20.0, 70.0);
        let nic = Nic {
            link_up: true,
            speed_mbps: rng.pick(&[10_000i64, 25_000]),
            rate: rng.range(5e6, 2e8),
            rx_bytes: rng.below(1 << 40) as i64,
            tx_bytes: rng.below(1 << 40) as i64,
            ..Default::default()
        };
        Self {
            tags: host_tags(id, sku).into_boxed_str(),
            boot_ns: start_ns - rng.range(HOUR_NS as f64, 60.0 * DAY_NS as f64) as i64,
            throttle_count: if rng.chance(0.2) {
                rng.between(1, 50) as i64
            } else {
                0
            },
            base_mhz,
            max_mhz,
            cores: rng.pick(&[32u32, 48, 64]),
            util: util_target,
            util_target,
            temp_c: 50.0,
            freq_mhz: base_mhz,
            disks_len,
            disks,
            nic,
            ce: [0; 4],
            ue: [0; 4],
            mce: None,
            dead: false,
            rng,
        }
    }

    pub fn tags(&self) -> &str {
        &self.tags
    }

    /// Rows of `table` this host writes this epoch (after [`HwHost::step`]).
    pub fn rows(&self, table: usize) -> usize {
        if self.dead {
            return 0;
        }
        match table {
            DISKIO_HW | SMART => self.disks_len as usize,
            EDAC => DIMMS.len(),
            MCE => usize::from(self.mce.is_some()),
            _ => 1,
        }
    }

    /// Advances the host to epoch time `t`. `slow_tick`: SMART and EDAC
    /// are sampled this epoch.
    pub fn step(&mut self, id: u32, t: i64, interval_ns: i64, slow_tick: bool, plan: &FaultPlan) {
        if self.dead {
            return;
        }
        let fault = plan.of_host(id).map(|(_, f)| f);
        if let Some(f) = fault
            && f.kind == FaultKind::BadDimm
            && t > f.end_ns
        {
            self.dead = true;
            return;
        }
        let active =
            |kind: FaultKind| -> Option<&Fault> { fault.filter(|f| f.kind == kind && f.active(t)) };
        let rng = &mut self.rng;
        let secs = interval_ns as f64 / SECOND_NS as f64;
        self.mce = None;

        // CPU: utilisation mean-reverts to a slowly drifting target.
        self.util_target = (self.util_target + 0.3 * rng.normal()).clamp(15.0, 75.0);
        self.util = (self.util + 0.15 * (self.util_target - self.util) + 4.0 * rng.normal())
            .clamp(2.0, 97.0);
        if active(FaultKind::ThermalThrottling).is_some() {
            self.temp_c = rng.range(93.0, 99.0);
            self.freq_mhz = (self.base_mhz as f64 * rng.range(0.45, 0.7)) as u32;
            self.throttle_count += rng.between(5, 45) as i64;
        } else {
            self.temp_c = (38.0 + 0.35 * self.util + rng.normal()).clamp(30.0, 82.0);
            let turbo =
                (self.max_mhz - self.base_mhz) as f64 * self.util / 100.0 * rng.range(0.6, 1.0);
            self.freq_mhz = (self.base_mhz as f64 + turbo + 15.0 * rng.normal())
                .clamp(self.base_mhz as f64 * 0.95, self.max_mhz as f64)
                as u32;
        }

        // Disks.
        let failing = active(FaultKind::FailingDisk);
        for (i, d) in self.disks[..self.disks_len as usize].iter_mut().enumerate() {
            d.util_target = (d.util_target + 0.2 * rng.normal()).clamp(5.0, 65.0);
            d.util =
                (d.util + 0.2 * (d.util_target - d.util) + 3.0 * rng.normal()).clamp(0.5, 85.0);
            d.iops = (150.0 + d.util * rng.range(6.0, 12.0) + 20.0 * rng.normal().abs()).max(150.0);
            d.latency_ms = 0.3 + d.util / 25.0 + 0.2 * rng.normal().abs();
            let this_disk = failing.filter(|f| f.device as usize == i);
            if let Some(f) = this_disk
                && t >= f.busy_from()
            {
                d.util = rng.range(92.0, 100.0);
                d.iops = rng.range(15.0, 90.0);
                d.latency_ms = rng.range(150.0, 1500.0);
            }
            if slow_tick {
                d.temp_c = (d.temp_c + 0.3 * rng.normal()).clamp(28.0, 45.0);
                if let Some(f) = this_disk {
                    let p = f.progress(t);
                    d.reallocated += rng.between(1, 3 + (30.0 * p) as u64) as i64;
                    d.pending += rng.between(0, 2 + (15.0 * p) as u64) as i64;
                    if p > 0.3 {
                        d.reported_uncorrect += rng.below(4) as i64;
                    }
                    if p > 0.5 {
                        d.offline_uncorrectable += rng.below(3) as i64;
                        d.command_timeout += rng.below(3) as i64;
                    }
                }
            }
        }

        // NIC.
        let nic = &mut self.nic;
        nic.rate = (nic.rate * (1.0 + 0.02 * rng.normal())).clamp(1e6, 1e9);
        let flapping = active(FaultKind::FlappingNic);
        if let Some(f) = flapping {
            // Flap, but leave the link up when the window closes.
            let last_tick = t + interval_ns >= f.end_ns;
            if rng.chance(0.35) || (last_tick && !nic.link_up) {
                nic.link_up = !nic.link_up;
                nic.carrier_changes += 1;
            }
            nic.rx_errors += rng.between(20, 500) as i64;
            nic.tx_errors += rng.between(0, 100) as i64;
            nic.rx_dropped += rng.between(100, 3000) as i64;
            nic.tx_dropped += rng.between(10, 300) as i64;
        } else if rng.chance(0.02) {
            nic.rx_dropped += 1;
        }
        if nic.link_up {
            let factor = if flapping.is_some() { 0.3 } else { 1.0 };
            let rx = (nic.rate * secs * factor * rng.range(0.8, 1.2)) as i64;
            let tx = (nic.rate * secs * factor * rng.range(0.6, 1.0)) as i64;
            nic.rx_bytes += rx;
            nic.tx_bytes += tx;
            nic.rx_packets += rx / 1200;
            nic.tx_packets += tx / 1000;
        }

        // Memory: EDAC and machine checks.
        if slow_tick {
            let bad = active(FaultKind::BadDimm);
            for dimm in 0..DIMMS.len() {
                if bad.is_some_and(|f| f.device as usize == dimm) {
                    if rng.chance(0.35) {
                        self.ce[dimm] += rng.between(20, 400) as i64;
                        self.mce = Some(Mce::MemoryCorrected { dimm: dimm as u8 });
                    } else {
                        self.ce[dimm] += rng.below(3) as i64;
                    }
                } else if rng.chance(1.0 / 1440.0) {
                    self.ce[dimm] += 1;
                }
            }
        }
        if let Some(f) = fault
            && f.kind == FaultKind::BadDimm
            && t == f.end_ns
        {
            self.ue[f.device as usize] += 1;
            self.mce = Some(Mce::MemoryUncorrected { dimm: f.device });
        }
        // About one corrected cache error per host per 30 days.
        if self.mce.is_none() && rng.chance(secs / (30.0 * 86_400.0)) {
            self.mce = Some(Mce::CacheCorrected {
                bank: rng.below(6) as u8,
            });
        }
    }

    /// Writes row `dev` of `table` (see [`HwHost::rows`]) for time `t`.
    pub fn write(&self, out: &mut Vec<u8>, table: usize, dev: usize, t: i64, ts: &[u8]) {
        out.extend_from_slice(HW_TABLES[table].as_bytes());
        out.extend_from_slice(self.tags.as_bytes());
        match table {
            HEARTBEAT => {
                out.extend_from_slice(b" uptime_s=");
                push_int(out, (t - self.boot_ns) / SECOND_NS);
                out.extend_from_slice(b",load1=");
                push_fixed(out, self.util / 100.0 * self.cores as f64, 2);
                out.extend_from_slice(b",cores=");
                push_int(out, i64::from(self.cores));
            }
            CPU_THERMAL => {
                out.extend_from_slice(b" temp_c=");
                push_fixed(out, self.temp_c, 1);
                out.extend_from_slice(b",freq_mhz=");
                push_int(out, i64::from(self.freq_mhz));
                out.extend_from_slice(b",base_mhz=");
                push_int(out, i64::from(self.base_mhz));
                out.extend_from_slice(b",throttle_count=");
                push_int(out, self.throttle_count);
                out.extend_from_slice(b",util_pct=");
                push_fixed(out, self.util, 1);
            }
            DISKIO_HW => {
                let d = &self.disks[dev];
                out.extend_from_slice(b",disk=");
                out.extend_from_slice(DISKS[dev].as_bytes());
                out.extend_from_slice(b" util_pct=");
                push_fixed(out, d.util, 1);
                out.extend_from_slice(b",iops=");
                push_fixed(out, d.iops, 1);
                out.extend_from_slice(b",read_iops=");
                push_fixed(out, d.iops * d.read_frac, 1);
                out.extend_from_slice(b",write_iops=");
                push_fixed(out, d.iops * (1.0 - d.read_frac), 1);
                out.extend_from_slice(b",latency_ms=");
                push_fixed(out, d.latency_ms, 2);
            }
            NIC => {
                let n = &self.nic;
                out.extend_from_slice(b",interface=eth0 rx_bytes=");
                push_int(out, n.rx_bytes);
                for (key, v) in [
                    (&b",tx_bytes="[..], n.tx_bytes),
                    (b",rx_packets=", n.rx_packets),
                    (b",tx_packets=", n.tx_packets),
                    (b",rx_errors=", n.rx_errors),
                    (b",tx_errors=", n.tx_errors),
                    (b",rx_dropped=", n.rx_dropped),
                    (b",tx_dropped=", n.tx_dropped),
                    (b",carrier_changes=", n.carrier_changes),
                    (b",speed_mbps=", n.speed_mbps),
                ] {
                    out.extend_from_slice(key);
                    push_int(out, v);
                }
                out.extend_from_slice(b",link_up=");
                push_bool(out, n.link_up);
            }
            EDAC => {
                out.extend_from_slice(b",mc=");
                push_i64(out, (dev / 2) as i64);
                out.extend_from_slice(b",dimm=");
                out.extend_from_slice(DIMMS[dev].as_bytes());
                out.extend_from_slice(b" ce_count=");
                push_int(out, self.ce[dev]);
                out.extend_from_slice(b",ue_count=");
                push_int(out, self.ue[dev]);
            }
            SMART => {
                let d = &self.disks[dev];
                out.extend_from_slice(b",disk=");
                out.extend_from_slice(DISKS[dev].as_bytes());
                for (key, v) in [
                    (&b" reallocated_sector_ct="[..], d.reallocated),
                    (b",reported_uncorrect=", d.reported_uncorrect),
                    (b",command_timeout=", d.command_timeout),
                    (b",current_pending_sector=", d.pending),
                    (b",offline_uncorrectable=", d.offline_uncorrectable),
                    (b",temperature_celsius=", d.temp_c as i64),
                    (
                        b",power_on_hours=",
                        d.power_on_hours_at_boot + (t - self.boot_ns).max(0) / HOUR_NS,
                    ),
                ] {
                    out.extend_from_slice(key);
                    push_int(out, v);
                }
            }
            MCE => {
                let (bank, corrected, kind, dimm) = match self.mce.expect("an event") {
                    Mce::CacheCorrected { bank } => (bank, true, "cache", None),
                    Mce::MemoryCorrected { dimm } => (7 + dimm / 2, true, "memory", Some(dimm)),
                    Mce::MemoryUncorrected { dimm } => (7 + dimm / 2, false, "memory", Some(dimm)),
                };
                out.extend_from_slice(b" bank=");
                push_int(out, i64::from(bank));
                out.extend_from_slice(b",corrected=");
                push_bool(out, corrected);
                out.extend_from_slice(b",kind=");
                push_str_field(out, kind);
                if let Some(d) = dimm {
                    out.extend_from_slice(b",dimm=");
                    push_str_field(out, DIMMS[d as usize]);
                }
            }
            _ => unreachable!("table {table}"),
        }
        out.push(b' ');
        out.extend_from_slice(ts);
        out.push(b'\n');
    }
}
