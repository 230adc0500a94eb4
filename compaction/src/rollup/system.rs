//! `system.rollups`: the rollup runs of this process that did work or
//! failed, oldest first.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use fleetlake_query::system::SystemTable;

use super::{RollupRecord, Rollups};

#[derive(Debug)]
pub struct RollupsTable(pub Arc<Rollups>);

impl SystemTable for RollupsTable {
    fn name(&self) -> &str {
        "rollups"
    }

    fn batch(&self) -> Result<RecordBatch> {
        let h = self.0.history();
        let u64s = |f: fn(&RollupRecord) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(h.iter().map(f)))
        };
        let strs = |f: fn(&RollupRecord) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(h.iter().map(f)))
        };
        let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("started", ts(), false),
            Field::new("database", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("target", DataType::Utf8, false),
            Field::new("new_buckets", DataType::UInt64, false),
            Field::new("late_buckets", DataType::UInt64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("files", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("watermark", ts(), true),
            Field::new("duration_ms", DataType::UInt64, false),
            Field::new("error", DataType::Utf8, true),
        ]));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(h.iter().map(|r| r.started_ns))
                    .with_timezone("UTC"),
            ),
            strs(|r| &r.db),
            strs(|r| &r.source),
            strs(|r| &r.target),
            u64s(|r| r.new_buckets),
            u64s(|r| r.late_buckets),
            u64s(|r| r.rows),
            u64s(|r| r.files),
            u64s(|r| r.bytes),
            Arc::new(
                TimestampNanosecondArray::from(
                    h.iter().map(|r| r.watermark_ns).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            u64s(|r| r.duration.as_millis() as u64),
            Arc::new(StringArray::from_iter(h.iter().map(|r| r.error.as_deref()))),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}
