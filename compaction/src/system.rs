//! `system.compactions`: the compactions this process ran, newest last.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use fleetlake_query::system::SystemTable;

use crate::Compactor;

#[derive(Debug)]
pub struct CompactionsTable(pub Arc<Compactor>);

impl SystemTable for CompactionsTable {
    fn name(&self) -> &str {
        "compactions"
    }

    fn batch(&self) -> Result<RecordBatch> {
        let h = self.0.history();
        let u64s = |f: fn(&crate::CompactionRecord) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(h.iter().map(f)))
        };
        let strs = |f: fn(&crate::CompactionRecord) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(h.iter().map(f)))
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "started",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("database", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("day", DataType::Utf8, false),
            Field::new("input_files", DataType::UInt64, false),
            Field::new("input_rows", DataType::UInt64, false),
            Field::new("input_bytes", DataType::UInt64, false),
            Field::new("output_files", DataType::UInt64, false),
            Field::new("output_rows", DataType::UInt64, false),
            Field::new("output_bytes", DataType::UInt64, false),
            Field::new("duration_ms", DataType::UInt64, false),
            Field::new("error", DataType::Utf8, true),
        ]));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(h.iter().map(|r| r.started_ns))
                    .with_timezone("UTC"),
            ),
            strs(|r| &r.db),
            strs(|r| &r.table),
            strs(|r| &r.day),
            u64s(|r| r.input_files),
            u64s(|r| r.input_rows),
            u64s(|r| r.input_bytes),
            u64s(|r| r.output_files),
            u64s(|r| r.output_rows),
            u64s(|r| r.output_bytes),
            u64s(|r| r.duration.as_millis() as u64),
            Arc::new(StringArray::from_iter(h.iter().map(|r| r.error.as_deref()))),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}
