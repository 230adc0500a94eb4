//! Line-protocol parsing throughput: fleetlake's parser and the
//! `influxdb-line-protocol` crate (InfluxDB 3's) side by side, on the same
//! ~1 MB body of TSBS `cpu-only` lines (11 tags, 10 integer fields, a
//! nanosecond timestamp; ~300 bytes a line).
//!
//! ```text
//! cargo bench -p fleetlake-benches --bench line_protocol
//! ```

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Deterministic pseudo-random numbers (64-bit LCG, Knuth's MMIX constants):
/// the body is the same in every run and on every machine.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// TSBS `cpu-only` lines for `HOSTS` hosts at 10 s intervals, until the body
/// holds at least `min_bytes`.
fn tsbs_cpu_body(min_bytes: usize) -> String {
    const HOSTS: usize = 100;
    const REGIONS: &[&str] = &[
        "us-east-1",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-northeast-1",
        "sa-east-1",
    ];
    const FIELDS: &[&str] = &[
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
    let mut rng = Lcg(0x5eed);
    let hosts: Vec<String> = (0..HOSTS)
        .map(|i| {
            let region = rng.pick(REGIONS);
            format!(
                "cpu,hostname=host_{i},region={region},datacenter={region}{},rack={},os={},arch={},team={},service={},service_version={},service_environment={}",
                rng.pick(&["a", "b", "c"]),
                rng.below(100),
                rng.pick(&["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"]),
                rng.pick(&["x64", "x86"]),
                rng.pick(&["SF", "NYC", "LON", "CHI"]),
                rng.below(20),
                rng.below(2),
                rng.pick(&["production", "staging", "test"]),
            )
        })
        .collect();

    let mut body = String::with_capacity(min_bytes + 512);
    let mut timestamp: i64 = 1_451_606_400_000_000_000;
    'outer: loop {
        for host in &hosts {
            body.push_str(host);
            for (i, field) in FIELDS.iter().enumerate() {
                body.push(if i == 0 { ' ' } else { ',' });
                body.push_str(field);
                body.push('=');
                body.push_str(&rng.below(101).to_string());
                body.push('i');
            }
            body.push(' ');
            body.push_str(&timestamp.to_string());
            body.push('\n');
            if body.len() >= min_bytes {
                break 'outer;
            }
        }
        timestamp += 10_000_000_000;
    }
    body
}

fn line_protocol_parse(c: &mut Criterion) {
    let body = tsbs_cpu_body(1 << 20);
    let lines = body.lines().count();

    // Both parsers must accept every line, or the comparison means nothing.
    assert_eq!(
        fleetlake_ingest::line_protocol::parse_lines(&body)
            .filter(|l| l.parsed.is_ok())
            .count(),
        lines
    );
    assert_eq!(
        influxdb_line_protocol::parse_lines(&body)
            .filter(Result::is_ok)
            .count(),
        lines
    );

    let mut group = c.benchmark_group("line_protocol_parse");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("fleetlake", |b| {
        b.iter(|| {
            for line in fleetlake_ingest::line_protocol::parse_lines(black_box(&body)) {
                black_box(&line);
            }
        })
    });
    group.bench_function("influxdb_line_protocol", |b| {
        b.iter(|| {
            for line in influxdb_line_protocol::parse_lines(black_box(&body)) {
                black_box(&line);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, line_protocol_parse);
criterion_main!(benches);
