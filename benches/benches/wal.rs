//! WAL group commit: N concurrent appenders, each appending records of 100
//! TSBS cpu lines (~34 KB) one after another, every append acknowledged
//! only after its fsync. With more appenders in flight, one fsync covers
//! more records; the figure is records (requests) per second, and the
//! fsyncs per record are printed after each case.
//!
//! ```text
//! cargo bench -p fleetlake-benches --bench wal
//! ```
//! The temp dir is under `$TMPDIR` (default /tmp): the fsync cost is that
//! file system's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleetlake_ingest::Precision;
use fleetlake_ingest::metrics::IngestMetrics;
use fleetlake_ingest::wal::{AppendPayload, Wal, WalApply};
use fleetlake_sim::time::{HOUR_NS, TSBS_START_NS};
use fleetlake_sim::{CpuOnly, LineSource, SimConfig};

/// Counts the records applied (each after its fsync) and drops them.
#[derive(Default)]
struct Count(AtomicU64);

impl WalApply for Count {
    fn apply(&self, _seq: u64, _db: &str, _payload: AppendPayload) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records each appender writes per iteration.
const PER_APPENDER: u64 = 8;

fn body() -> String {
    let config = SimConfig::new(
        100,
        TSBS_START_NS,
        TSBS_START_NS + HOUR_NS,
        10_000_000_000,
        1,
    )
    .unwrap();
    let mut src = CpuOnly::new(&config);
    let mut buf = Vec::new();
    src.next_chunk(&mut buf, 100);
    String::from_utf8(buf).unwrap()
}

fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = body();
    let mut g = c.benchmark_group("wal_group_commit");
    g.sample_size(10);
    for appenders in [1u64, 4, 16, 64] {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(IngestMetrics::default());
        let applied = Arc::new(Count::default());
        let wal = Arc::new(Wal::start(dir.path(), 1, applied.clone(), metrics.clone()).unwrap());
        g.throughput(Throughput::Elements(appenders * PER_APPENDER));
        let before = (metrics.wal_fsyncs.get(), applied.0.load(Ordering::Relaxed));
        g.bench_function(BenchmarkId::new("appenders", appenders), |b| {
            b.to_async(&rt).iter(|| {
                let (wal, body) = (wal.clone(), body.clone());
                async move {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..appenders {
                        let (wal, body) = (wal.clone(), body.clone());
                        set.spawn(async move {
                            for _ in 0..PER_APPENDER {
                                wal.append(
                                    "fleet",
                                    0,
                                    Precision::Nanosecond,
                                    body.clone(),
                                    Vec::new(),
                                )
                                .await
                                .unwrap();
                            }
                        });
                    }
                    while let Some(r) = set.join_next().await {
                        r.unwrap();
                    }
                }
            });
        });
        let fsyncs = metrics.wal_fsyncs.get() - before.0;
        let recs = applied.0.load(Ordering::Relaxed) - before.1;
        eprintln!(
            "wal_group_commit/appenders/{appenders}: {recs} records, {fsyncs} fsyncs = {:.2} records per fsync",
            recs as f64 / fsyncs.max(1) as f64
        );
        wal.close();
    }
    g.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
