//! A query over the write buffer: `QueryEngine` SQL over an `Ingester` that
//! holds only buffered rows (nothing flushed, an in-memory object store),
//! TSBS cpu-only 100 hosts × 1 h (36,000 rows) written through `write_lp`.
//! The queries are `fleetlake_benches::tsbs`'s SQL with seeded parameters:
//! one host's hour (single-groupby-1-1-1), every host's hourly average
//! (double-groupby-1) and the latest row per host (lastpoint).
//!
//! ```text
//! cargo bench -p fleetlake-benches --bench buffer_query
//! ```

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fleetlake_benches::tsbs::draw;
use fleetlake_ingest::{IngestConfig, Ingester, Precision};
use fleetlake_query::{QueryConfig, QueryEngine};
use fleetlake_sim::time::{HOUR_NS, TSBS_START_NS};
use fleetlake_sim::{CpuOnly, LineSource, SimConfig};
use fleetlake_storage::catalog::Catalog;
use object_store::ObjectStore;
use object_store::memory::InMemory;

fn buffer_query(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = SimConfig::new(
        100,
        TSBS_START_NS,
        TSBS_START_NS + HOUR_NS,
        10_000_000_000,
        1,
    )
    .unwrap();
    let wal = tempfile::tempdir().unwrap();
    let engine = rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let catalog = Arc::new(Catalog::load(store.clone(), 100).await.unwrap());
        let mut config = IngestConfig::new(wal.path().to_path_buf());
        // Nothing flushes: the flusher is not started and the thresholds are out of reach.
        config.flush_bytes = usize::MAX;
        config.flush_interval = Duration::from_secs(86_400);
        let ingester = Ingester::open(catalog, config).await.unwrap();
        let mut src = CpuOnly::new(&data);
        let mut buf = Vec::new();
        while src.next_chunk(&mut buf, 5000) > 0 {
            let body = String::from_utf8(std::mem::take(&mut buf)).unwrap();
            let out = ingester
                .write_lp("fleet", body, Precision::Nanosecond, true)
                .await
                .unwrap();
            assert!(out.rejected.is_empty());
        }
        assert_eq!(ingester.buffer_rows(), 36_000);
        QueryEngine::new(ingester, store, QueryConfig::default()).unwrap()
    });
    let mut g = c.benchmark_group("buffer_query");
    g.sample_size(20);
    for name in ["single-groupby-1-1-1", "double-groupby-1", "lastpoint"] {
        let sql = draw(name, &data, 1, 1).unwrap().remove(0).sql();
        let (_, batches) = rt.block_on(engine.query_collect("fleet", &sql)).unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0, "{name} answered nothing");
        g.bench_function(BenchmarkId::new(name, rows), |b| {
            b.to_async(&rt)
                .iter(|| async { engine.query_collect("fleet", &sql).await.unwrap() })
        });
    }
    g.finish();
}

criterion_group!(benches, buffer_query);
criterion_main!(benches);
