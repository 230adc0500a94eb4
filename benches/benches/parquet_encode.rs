//! Parquet encode of one table batch with the storage crate's writer
//! (`fleetlake_storage::parquet_file::encode`: zstd, dictionary tags,
//! DELTA_BINARY_PACKED integers and time, page statistics) on a TSBS cpu
//! batch sorted as a flush sorts it: by series (`hostname` leading), then
//! time. 500 hosts × 1 h = 180,000 rows, 1.8M samples.
//!
//! ```text
//! cargo bench -p fleetlake-benches --bench parquet_encode
//! ```

use std::sync::Arc;

use arrow::array::{ArrayRef, DictionaryArray, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetlake_sim::time::{HOUR_NS, TSBS_START_NS};
use fleetlake_sim::tsbs::CPU_FIELDS;
use fleetlake_sim::{CpuHost, HostTags, SimConfig};
use fleetlake_storage::parquet_file::encode;
use fleetlake_storage::schema::{ColumnKind, FieldType, TableSchema};

const HOSTS: u64 = 500;

const TAGS: [&str; 10] = [
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
];

fn tag_value(t: &HostTags, tag: &str) -> String {
    match tag {
        "hostname" => format!("host_{}", t.id),
        "region" => t.region.into(),
        "datacenter" => t.datacenter.into(),
        "rack" => t.rack.to_string(),
        "os" => t.os.into(),
        "arch" => t.arch.into(),
        "team" => t.team.into(),
        "service" => t.service.to_string(),
        "service_version" => t.service_version.to_string(),
        "service_environment" => t.service_environment.into(),
        _ => unreachable!("a TSBS tag"),
    }
}

/// The batch, sorted by hostname (as text, like the flush's tag ranks),
/// then time.
fn batch() -> RecordBatch {
    let config = SimConfig::new(
        HOSTS,
        TSBS_START_NS,
        TSBS_START_NS + HOUR_NS,
        10_000_000_000,
        1,
    )
    .unwrap();
    let mut schema = TableSchema::new();
    for t in TAGS {
        schema.merge_column("cpu", t, ColumnKind::Tag).unwrap();
    }
    for f in CPU_FIELDS {
        schema
            .merge_column("cpu", f, ColumnKind::Field(FieldType::Integer))
            .unwrap();
    }
    let arrow_schema = schema.arrow_schema();
    let mut ids: Vec<u64> = (0..HOSTS).collect();
    ids.sort_by_key(|id| format!("host_{id}"));
    let epochs = config.epochs();
    let mut tags: Vec<Vec<String>> = vec![Vec::new(); TAGS.len()];
    let mut fields: Vec<Vec<i64>> = vec![Vec::new(); 10];
    let mut times = Vec::new();
    for id in ids {
        let t = HostTags::draw(config.seed, id);
        let mut host = CpuHost::new(config.seed, id);
        for e in 0..epochs {
            if e > 0 {
                host.step();
            }
            for (i, tag) in TAGS.iter().enumerate() {
                tags[i].push(tag_value(&t, tag));
            }
            for (i, v) in host.fields().iter().enumerate() {
                fields[i].push(*v);
            }
            times.push(config.epoch_ns(e));
        }
    }
    let columns: Vec<ArrayRef> = arrow_schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            let name = f.name().as_str();
            if let Some(i) = TAGS.iter().position(|t| *t == name) {
                let values: StringArray = tags[i].iter().map(|s| Some(s.as_str())).collect();
                let dict: DictionaryArray<Int32Type> = values.iter().collect();
                Arc::new(dict)
            } else if let Some(i) = CPU_FIELDS.iter().position(|c| *c == name) {
                Arc::new(Int64Array::from(fields[i].clone()))
            } else {
                Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC"))
            }
        })
        .collect();
    RecordBatch::try_new(arrow_schema, columns).unwrap()
}

fn parquet_encode(c: &mut Criterion) {
    let batch = batch();
    let bytes = encode(batch.schema(), std::slice::from_ref(&batch))
        .unwrap()
        .len();
    let samples = batch.num_rows() as u64 * 10;
    eprintln!(
        "parquet_encode: {} rows, {samples} samples -> {bytes} bytes = {:.3} bytes/sample",
        batch.num_rows(),
        bytes as f64 / samples as f64
    );
    let mut g = c.benchmark_group("parquet_encode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    g.bench_function("tsbs_cpu_500_hosts_1h_sorted", |b| {
        b.iter(|| encode(batch.schema(), std::slice::from_ref(&batch)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, parquet_encode);
criterion_main!(benches);
