//! TSBS `cpu-only`: one `cpu` row per host per epoch, ten clamped walks.

use super::{HostTags, Walk, emitted};
use crate::lp::Timestamp;
use crate::rng::{SplitMix64, stream};
use crate::{LineSource, SimConfig};

/// Stream id of the `cpu` table's walks (table index 0, plus one).
pub(crate) const STREAM_CPU: u64 = 1;

/// The ten `cpu` fields, each with the separator that precedes it.
pub const CPU_FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

const FIELD_KEYS: [&[u8]; 10] = [
    b" usage_user=",
    b",usage_system=",
    b",usage_idle=",
    b",usage_nice=",
    b",usage_iowait=",
    b",usage_irq=",
    b",usage_softirq=",
    b",usage_steal=",
    b",usage_guest=",
    b",usage_guest_nice=",
];

const CPU_WALK: Walk = Walk::Clamped {
    mean: 0.0,
    sd: 1.0,
    lo: 0.0,
    hi: 100.0,
};

/// The decimal text of 0..=100: the only values a cpu field takes.
static PERCENT_TEXT: [([u8; 3], u8); 101] = {
    let mut table = [([0u8; 3], 0u8); 101];
    let mut i = 0;
    while i <= 100 {
        table[i] = if i == 100 {
            (*b"100", 3)
        } else if i >= 10 {
            ([b'0' + (i / 10) as u8, b'0' + (i % 10) as u8, 0], 2)
        } else {
            ([b'0' + i as u8, 0, 0], 1)
        };
        i += 1;
    }
    table
};

/// One host's `cpu` table: its tags and its ten walks.
///
/// Stepping a `CpuHost` alone reproduces exactly the values that [`CpuOnly`]
/// and [`super::Devops`] emit for that host, which is what an independent
/// answer check needs.
#[derive(Debug, Clone)]
pub struct CpuHost {
    /// `,hostname=…,service_environment=…`
    tags: Box<str>,
    rng: SplitMix64,
    values: [f64; 10],
}

impl CpuHost {
    /// Host `id` at epoch 0 (its initial state).
    pub fn new(seed: u64, id: u64) -> Self {
        Self::with_tags(seed, &HostTags::draw(seed, id))
    }

    pub(crate) fn with_tags(seed: u64, tags: &HostTags) -> Self {
        let mut rng = stream(seed, tags.id, STREAM_CPU);
        let mut values = [0.0; 10];
        for v in &mut values {
            *v = rng.uniform() * 100.0;
        }
        Self {
            tags: tags.line_fragment().into_boxed_str(),
            rng,
            values,
        }
    }

    /// Advances every walk one epoch.
    #[inline]
    pub fn step(&mut self) {
        for v in &mut self.values {
            *v = CPU_WALK.step(*v, &mut self.rng);
        }
    }

    /// The ten emitted field values, in [`CPU_FIELDS`] order, each in 0..=100.
    pub fn fields(&self) -> [i64; 10] {
        self.values.map(emitted)
    }

    /// `,hostname=…` — the tag part of this host's lines.
    pub fn tags(&self) -> &str {
        &self.tags
    }

    #[inline]
    pub(crate) fn write_line(&self, out: &mut Vec<u8>, ts: &[u8]) {
        out.extend_from_slice(b"cpu");
        out.extend_from_slice(self.tags.as_bytes());
        for (key, &v) in FIELD_KEYS.iter().zip(&self.values) {
            out.extend_from_slice(key);
            let (text, len) = &PERCENT_TEXT[emitted(v) as usize];
            out.extend_from_slice(&text[..*len as usize]);
            out.push(b'i');
        }
        out.push(b' ');
        out.extend_from_slice(ts);
        out.push(b'\n');
    }
}

/// The TSBS `cpu-only` use case: `hosts × epochs` rows of table `cpu`.
#[derive(Debug)]
pub struct CpuOnly {
    config: SimConfig,
    hosts: Vec<CpuHost>,
    epoch: u64,
    epochs: u64,
    /// Next host to emit in `epoch`.
    next: usize,
    ts: Timestamp,
}

impl CpuOnly {
    /// # Panics
    ///
    /// If `config` is invalid (see [`SimConfig::new`]).
    pub fn new(config: &SimConfig) -> Self {
        config.validate().expect("valid SimConfig");
        let hosts = (0..config.hosts)
            .map(|id| CpuHost::new(config.seed, id))
            .collect();
        Self {
            config: config.clone(),
            hosts,
            epoch: 0,
            epochs: config.epochs(),
            next: 0,
            ts: Timestamp::new(config.start_ns),
        }
    }
}

impl LineSource for CpuOnly {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_lines: usize) -> usize {
        let mut n = 0;
        // Lines are ~300 bytes; one reservation instead of growth steps.
        out.reserve(max_lines.min(1 << 16) * 320);
        while n < max_lines && self.epoch < self.epochs {
            let host = &mut self.hosts[self.next];
            if self.epoch > 0 {
                host.step();
            }
            host.write_line(out, self.ts.as_bytes());
            n += 1;
            self.next += 1;
            if self.next == self.hosts.len() {
                self.next = 0;
                self.epoch += 1;
                self.ts = Timestamp::new(self.config.epoch_ns(self.epoch));
            }
        }
        n
    }

    fn total_lines(&self) -> Option<u64> {
        Some(self.config.hosts * self.epochs)
    }

    fn state_bytes(&self) -> usize {
        self.hosts.capacity() * size_of::<CpuHost>()
            + self.hosts.iter().map(|h| h.tags.len()).sum::<usize>()
    }
}
