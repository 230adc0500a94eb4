//! TSBS `devops`: nine tables, 101 fields per host per epoch.
//!
//! Within an epoch the order is table-major (all hosts' `cpu`, then all
//! hosts' `diskio`, …), as `shared/tsbs-devops.md` specifies. A (host, table)
//! pair is stepped when its row is written, from its own stream, so chunk
//! boundaries never change the output.

use super::cpu_only::{CpuHost, STREAM_CPU};
use super::{HostTags, Walk, emitted};
use crate::lp::{Timestamp, push_float, push_int};
use crate::rng::{SplitMix64, stream};
use crate::{LineSource, SimConfig};

/// Table names in emission order. `postgresl` is TSBS's spelling.
pub const DEVOPS_TABLES: [&str; 9] = [
    "cpu",
    "diskio",
    "disk",
    "kernel",
    "mem",
    "net",
    "nginx",
    "postgresl",
    "redis",
];

const DISKIO: usize = 1;
const DISK: usize = 2;
const KERNEL: usize = 3;
const MEM: usize = 4;
const NET: usize = 5;
const NGINX: usize = 6;
const POSTGRESL: usize = 7;
const REDIS: usize = 8;

const fn mono(mean: f64) -> Walk {
    Walk::Monotonic { mean, sd: 1.0 }
}

const fn clamped(mean: f64, hi: f64) -> Walk {
    Walk::Clamped {
        mean,
        sd: 1.0,
        lo: 0.0,
        hi,
    }
}

const TERABYTE: f64 = (1u64 << 40) as f64;
const GIB: i64 = 1 << 30;
const SIXTEEN_GIB: f64 = (16u64 << 30) as f64;

/// Walked fields of the tables whose rows are just their walks (after any
/// constant leading field), with their dynamics and start values. `disk` and
/// `mem` derive most fields and are written by hand.
const DISKIO_FIELDS: [(&str, Walk, f64); 7] = [
    ("reads", mono(50.0), 0.0),
    ("writes", mono(50.0), 0.0),
    ("read_bytes", mono(100.0), 0.0),
    ("write_bytes", mono(100.0), 0.0),
    ("read_time", mono(5.0), 0.0),
    ("write_time", mono(5.0), 0.0),
    ("io_time", mono(5.0), 0.0),
];
const KERNEL_FIELDS: [(&str, Walk, f64); 5] = [
    ("interrupts", mono(5.0), 0.0),
    ("context_switches", mono(5.0), 0.0),
    ("processes_forked", mono(5.0), 0.0),
    ("disk_pages_in", mono(5.0), 0.0),
    ("disk_pages_out", mono(5.0), 0.0),
];
const NET_FIELDS: [(&str, Walk, f64); 8] = [
    ("bytes_sent", mono(50.0), 0.0),
    ("bytes_recv", mono(50.0), 0.0),
    ("packets_sent", mono(50.0), 0.0),
    ("packets_recv", mono(50.0), 0.0),
    ("err_in", mono(5.0), 0.0),
    ("err_out", mono(5.0), 0.0),
    ("drop_in", mono(5.0), 0.0),
    ("drop_out", mono(5.0), 0.0),
];
const NGINX_FIELDS: [(&str, Walk, f64); 7] = [
    ("accepts", mono(5.0), 0.0),
    ("active", clamped(5.0, 100.0), 0.0),
    ("handled", mono(5.0), 0.0),
    ("reading", clamped(5.0, 100.0), 0.0),
    ("requests", mono(5.0), 0.0),
    ("waiting", clamped(5.0, 100.0), 0.0),
    ("writing", clamped(5.0, 100.0), 0.0),
];
const PG: Walk = clamped(5.0, 1000.0);
const POSTGRESL_FIELDS: [(&str, Walk, f64); 16] = [
    ("numbackends", PG, 0.0),
    ("xact_commit", PG, 0.0),
    ("xact_rollback", PG, 0.0),
    ("blks_read", PG, 0.0),
    ("blks_hit", PG, 0.0),
    ("tup_returned", PG, 0.0),
    ("tup_fetched", PG, 0.0),
    ("tup_inserted", PG, 0.0),
    ("tup_updated", PG, 0.0),
    ("tup_deleted", PG, 0.0),
    ("conflicts", PG, 0.0),
    ("temp_files", PG, 0.0),
    ("temp_bytes", clamped(1024.0, GIB as f64), 0.0),
    ("deadlocks", PG, 0.0),
    ("blk_read_time", PG, 0.0),
    ("blk_write_time", PG, 0.0),
];
const FREE_1: Walk = Walk::Free { mean: 1.0, sd: 1.0 };
const REDIS_MEM: Walk = clamped(50.0, SIXTEEN_GIB);
const REDIS_LOW: Walk = clamped(5.0, 1000.0);
/// After `uptime_in_seconds`, which is the time since the start.
const REDIS_FIELDS: [(&str, Walk, f64); 30] = [
    ("total_connections_received", mono(5.0), 0.0),
    ("expired_keys", mono(50.0), 0.0),
    ("evicted_keys", mono(50.0), 0.0),
    ("keyspace_hits", mono(50.0), 0.0),
    ("keyspace_misses", mono(50.0), 0.0),
    ("instantaneous_ops_per_sec", FREE_1, 0.0),
    ("instantaneous_input_kbps", FREE_1, 0.0),
    ("instantaneous_output_kbps", FREE_1, 0.0),
    ("connected_clients", clamped(50.0, 10_000.0), 0.0),
    ("used_memory", REDIS_MEM, SIXTEEN_GIB / 2.0),
    ("used_memory_rss", REDIS_MEM, SIXTEEN_GIB / 2.0),
    ("used_memory_peak", REDIS_MEM, SIXTEEN_GIB / 2.0),
    ("used_memory_lua", REDIS_MEM, SIXTEEN_GIB / 2.0),
    ("rdb_changes_since_last_save", clamped(50.0, 10_000.0), 0.0),
    ("sync_full", REDIS_LOW, 0.0),
    ("sync_partial_ok", REDIS_LOW, 0.0),
    ("sync_partial_err", REDIS_LOW, 0.0),
    ("pubsub_channels", REDIS_LOW, 0.0),
    ("pubsub_patterns", REDIS_LOW, 0.0),
    ("latest_fork_usec", REDIS_LOW, 0.0),
    ("connected_slaves", REDIS_LOW, 0.0),
    ("master_repl_offset", REDIS_LOW, 0.0),
    ("repl_backlog_active", REDIS_LOW, 0.0),
    ("repl_backlog_size", REDIS_LOW, 0.0),
    ("repl_backlog_histlen", REDIS_LOW, 0.0),
    ("mem_fragmentation_ratio", clamped(5.0, 100.0), 0.0),
    ("used_cpu_sys", REDIS_LOW, 0.0),
    ("used_cpu_user", REDIS_LOW, 0.0),
    ("used_cpu_sys_children", REDIS_LOW, 0.0),
    ("used_cpu_user_children", REDIS_LOW, 0.0),
];
const DISK_FREE: Walk = clamped(50.0, TERABYTE);

/// Offsets of each table's walks in [`DevopsHost::values`].
const OFF_DISKIO: usize = 0;
const OFF_DISK: usize = OFF_DISKIO + DISKIO_FIELDS.len();
const OFF_KERNEL: usize = OFF_DISK + 1;
const OFF_MEM: usize = OFF_KERNEL + KERNEL_FIELDS.len();
const OFF_NET: usize = OFF_MEM + 3;
const OFF_NGINX: usize = OFF_NET + NET_FIELDS.len();
const OFF_PG: usize = OFF_NGINX + NGINX_FIELDS.len();
const OFF_REDIS: usize = OFF_PG + POSTGRESL_FIELDS.len();
const N_WALKS: usize = OFF_REDIS + REDIS_FIELDS.len();

/// One host's state for the eight non-cpu tables.
#[derive(Debug)]
struct DevopsHost {
    cpu: CpuHost,
    /// Per table: `,tag=value…` after the host tags (empty for most).
    extra_tags: [Box<str>; 9],
    /// Per table 1..=8 (index − 1).
    rngs: [SplitMix64; 8],
    values: [f64; N_WALKS],
    boot_time: i64,
    mem_total: i64,
}

impl DevopsHost {
    fn new(seed: u64, id: u64) -> Self {
        let tags = HostTags::draw(seed, id);
        let cpu = CpuHost::with_tags(seed, &tags);
        let mut rngs: [SplitMix64; 8] =
            std::array::from_fn(|t| stream(seed, id, STREAM_CPU + 1 + t as u64));
        let mut extra_tags: [Box<str>; 9] = Default::default();
        let mut values = [0.0; N_WALKS];
        let mut init = |off: usize, fields: &[(&str, Walk, f64)]| {
            for (i, (_, _, start)) in fields.iter().enumerate() {
                values[off + i] = *start;
            }
        };
        init(OFF_DISKIO, &DISKIO_FIELDS);
        init(OFF_KERNEL, &KERNEL_FIELDS);
        init(OFF_NET, &NET_FIELDS);
        init(OFF_NGINX, &NGINX_FIELDS);
        init(OFF_PG, &POSTGRESL_FIELDS);
        init(OFF_REDIS, &REDIS_FIELDS);
        values[OFF_DISK] = TERABYTE / 2.0;

        // Fixed per-host draws come first in each table's own stream.
        let r = &mut rngs[DISKIO - 1];
        extra_tags[DISKIO] = format!(
            ",serial={:03}-{:03}-{:03}",
            r.below(1000),
            r.below(1000),
            r.below(1000)
        )
        .into();
        let r = &mut rngs[DISK - 1];
        let path = r.below(10);
        extra_tags[DISK] = format!(
            ",path=/dev/sda{path},fstype={}",
            r.pick(&["ext3", "ext4", "btrfs"])
        )
        .into();
        let boot_time = rngs[KERNEL - 1].below(240) as i64;
        let r = &mut rngs[MEM - 1];
        let mem_total = r.pick(&[8 * GIB, 12 * GIB, 16 * GIB]);
        for i in 0..3 {
            values[OFF_MEM + i] = r.uniform() * mem_total as f64;
        }
        extra_tags[NET] = format!(",interface=eth{}", rngs[NET - 1].below(4)).into();
        for table in [NGINX, REDIS] {
            let r = &mut rngs[table - 1];
            let port = r.below(20_000) + 1024;
            let server = r.below(100_000);
            extra_tags[table] =
                format!(",port={port},server={}_{server}", DEVOPS_TABLES[table]).into();
        }
        Self {
            cpu,
            extra_tags,
            rngs,
            values,
            boot_time,
            mem_total,
        }
    }

    fn step(&mut self, table: usize) {
        let rng = &mut self.rngs[table - 1];
        let mut walk = |off: usize, fields: &[(&str, Walk, f64)]| {
            for (i, (_, w, _)) in fields.iter().enumerate() {
                self.values[off + i] = w.step(self.values[off + i], rng);
            }
        };
        match table {
            DISKIO => walk(OFF_DISKIO, &DISKIO_FIELDS),
            DISK => self.values[OFF_DISK] = DISK_FREE.step(self.values[OFF_DISK], rng),
            KERNEL => walk(OFF_KERNEL, &KERNEL_FIELDS),
            MEM => {
                let total = self.mem_total as f64;
                let w = Walk::Clamped {
                    mean: 0.0,
                    sd: total / 64.0,
                    lo: 0.0,
                    hi: total,
                };
                for i in 0..3 {
                    self.values[OFF_MEM + i] = w.step(self.values[OFF_MEM + i], rng);
                }
            }
            NET => walk(OFF_NET, &NET_FIELDS),
            NGINX => walk(OFF_NGINX, &NGINX_FIELDS),
            POSTGRESL => walk(OFF_PG, &POSTGRESL_FIELDS),
            REDIS => walk(OFF_REDIS, &REDIS_FIELDS),
            _ => unreachable!("table {table}"),
        }
    }

    fn write_walks(
        &self,
        out: &mut Vec<u8>,
        off: usize,
        fields: &[(&str, Walk, f64)],
        first: bool,
    ) {
        for (i, (name, _, _)) in fields.iter().enumerate() {
            out.push(if first && i == 0 { b' ' } else { b',' });
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            push_int(out, emitted(self.values[off + i]));
        }
    }

    fn write_line(&self, out: &mut Vec<u8>, table: usize, ts: &[u8], uptime_s: i64) {
        if table == 0 {
            self.cpu.write_line(out, ts);
            return;
        }
        out.extend_from_slice(DEVOPS_TABLES[table].as_bytes());
        out.extend_from_slice(self.cpu.tags().as_bytes());
        out.extend_from_slice(self.extra_tags[table].as_bytes());
        let field = |out: &mut Vec<u8>, first: bool, name: &str| {
            out.push(if first { b' ' } else { b',' });
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
        };
        match table {
            DISKIO => self.write_walks(out, OFF_DISKIO, &DISKIO_FIELDS, true),
            DISK => {
                let total = 1i64 << 40;
                let free = emitted(self.values[OFF_DISK]);
                let used = total - free;
                let inodes_total = total / 4096;
                let inodes_free = free / 4096;
                let ints = [
                    ("total", total),
                    ("free", free),
                    ("used", used),
                    (
                        "used_percent",
                        (100.0 * (used as f64 / total as f64)) as i64,
                    ),
                    ("inodes_total", inodes_total),
                    ("inodes_free", inodes_free),
                    ("inodes_used", inodes_total - inodes_free),
                ];
                for (i, (name, v)) in ints.iter().enumerate() {
                    field(out, i == 0, name);
                    push_int(out, *v);
                }
            }
            KERNEL => {
                field(out, true, "boot_time");
                push_int(out, self.boot_time);
                self.write_walks(out, OFF_KERNEL, &KERNEL_FIELDS, false);
            }
            MEM => {
                let total = self.mem_total;
                let used = emitted(self.values[OFF_MEM]);
                let cached = emitted(self.values[OFF_MEM + 1]);
                let buffered = emitted(self.values[OFF_MEM + 2]);
                let available = total - used;
                let ints = [
                    ("total", total),
                    ("available", available),
                    ("used", used),
                    ("free", available),
                    ("cached", cached),
                    ("buffered", buffered),
                ];
                for (i, (name, v)) in ints.iter().enumerate() {
                    field(out, i == 0, name);
                    push_int(out, *v);
                }
                let pct = |x: i64| 100.0 * (x as f64 / total as f64);
                for (name, v) in [
                    ("used_percent", pct(used)),
                    ("available_percent", pct(available)),
                    ("buffered_percent", pct(buffered)),
                ] {
                    field(out, false, name);
                    push_float(out, v);
                }
            }
            NET => self.write_walks(out, OFF_NET, &NET_FIELDS, true),
            NGINX => self.write_walks(out, OFF_NGINX, &NGINX_FIELDS, true),
            POSTGRESL => self.write_walks(out, OFF_PG, &POSTGRESL_FIELDS, true),
            REDIS => {
                field(out, true, "uptime_in_seconds");
                push_int(out, uptime_s);
                self.write_walks(out, OFF_REDIS, &REDIS_FIELDS, false);
            }
            _ => unreachable!("table {table}"),
        }
        out.push(b' ');
        out.extend_from_slice(ts);
        out.push(b'\n');
    }
}

/// The TSBS `devops` use case: nine rows per host per epoch.
#[derive(Debug)]
pub struct Devops {
    config: SimConfig,
    hosts: Vec<DevopsHost>,
    epochs: u64,
    epoch: u64,
    table: usize,
    next: usize,
    ts: Timestamp,
}

impl Devops {
    /// # Panics
    ///
    /// If `config` is invalid (see [`SimConfig::new`]).
    pub fn new(config: &SimConfig) -> Self {
        config.validate().expect("valid SimConfig");
        Self {
            config: config.clone(),
            hosts: (0..config.hosts)
                .map(|id| DevopsHost::new(config.seed, id))
                .collect(),
            epochs: config.epochs(),
            epoch: 0,
            table: 0,
            next: 0,
            ts: Timestamp::new(config.start_ns),
        }
    }
}

impl LineSource for Devops {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_lines: usize) -> usize {
        let mut n = 0;
        out.reserve(max_lines.min(1 << 16) * 400);
        let uptime_s = |epoch: u64| (epoch as i64 * self.config.interval_ns) / 1_000_000_000;
        while n < max_lines && self.epoch < self.epochs {
            let host = &mut self.hosts[self.next];
            if self.epoch > 0 {
                if self.table == 0 {
                    host.cpu.step();
                } else {
                    host.step(self.table);
                }
            }
            host.write_line(out, self.table, self.ts.as_bytes(), uptime_s(self.epoch));
            n += 1;
            self.next += 1;
            if self.next == self.hosts.len() {
                self.next = 0;
                self.table += 1;
                if self.table == DEVOPS_TABLES.len() {
                    self.table = 0;
                    self.epoch += 1;
                    self.ts = Timestamp::new(self.config.epoch_ns(self.epoch));
                }
            }
        }
        n
    }

    fn total_lines(&self) -> Option<u64> {
        Some(self.config.hosts * self.epochs * DEVOPS_TABLES.len() as u64)
    }

    fn state_bytes(&self) -> usize {
        self.hosts.capacity() * size_of::<DevopsHost>()
            + self
                .hosts
                .iter()
                .map(|h| h.cpu.tags().len() + h.extra_tags.iter().map(|t| t.len()).sum::<usize>())
                .sum::<usize>()
    }
}
