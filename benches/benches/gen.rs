//! Generator throughput (`fleetlake gen`): lines a second on one core for
//! TSBS cpu-only and devops, and the fleet use case, each writing 5,000-line
//! chunks into a reused buffer (as `fleetlake gen` and a loader do).
//!
//! ```text
//! cargo bench -p fleetlake-benches --bench gen
//! ```

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fleetlake_sim::time::{HOUR_NS, SECOND_NS, TSBS_START_NS};
use fleetlake_sim::{CpuOnly, Devops, Fleet, FleetOptions, LineSource, SimConfig};

/// Lines generated per measured iteration.
const LINES: usize = 200_000;
const CHUNK: usize = 5_000;

fn config(hosts: u64) -> SimConfig {
    SimConfig::new(
        hosts,
        TSBS_START_NS,
        TSBS_START_NS + 24 * HOUR_NS,
        10 * SECOND_NS,
        1,
    )
    .expect("valid config")
}

/// Generates `LINES` lines, chunk by chunk, into one reused buffer.
fn drain(source: &mut dyn LineSource, buf: &mut Vec<u8>) -> usize {
    let mut lines = 0;
    while lines < LINES {
        buf.clear();
        let n = source.next_chunk(buf, CHUNK.min(LINES - lines));
        assert!(n > 0, "the dataset is longer than one iteration");
        lines += n;
        black_box(&buf);
    }
    lines
}

fn generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("gen");
    group.throughput(Throughput::Elements(LINES as u64));
    // 4,000 hosts: the TSBS comparison size; the walks' state is 0.5–4 MB,
    // out of L2 as in a real run. Setup (drawing the hosts) is not timed.
    let cfg = config(4000);
    let mut buf = Vec::with_capacity(CHUNK * 512);
    group.bench_function("cpu-only", |b| {
        b.iter_batched_ref(
            || CpuOnly::new(&cfg),
            |source| drain(source, &mut buf),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("devops", |b| {
        b.iter_batched_ref(
            || Devops::new(&cfg),
            |source| drain(source, &mut buf),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("fleet (5 faults)", |b| {
        b.iter_batched_ref(
            || {
                Fleet::new(
                    &cfg,
                    &FleetOptions {
                        faults: 5,
                        ..Default::default()
                    },
                )
                .expect("fleet")
            },
            |source| drain(source, &mut buf),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);
