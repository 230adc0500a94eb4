//! `system.compactions`: the compactions this process ran, newest last.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use fleetlake_query::system::{Columns, SystemTable};

use crate::Compactor;

#[derive(Debug)]
pub struct CompactionsTable(pub Arc<Compactor>);

impl SystemTable for CompactionsTable {
    fn name(&self) -> &str {
        "compactions"
    }

    fn batch(&self) -> Result<RecordBatch> {
        let h = self.0.history();
        Columns::new(&h)
            .time("started", |r| r.started_ns)
            .str("database", |r| &r.db)
            .str("table", |r| &r.table)
            .str("day", |r| &r.day)
            .u64("input_files", |r| r.input_files)
            .u64("input_rows", |r| r.input_rows)
            .u64("input_bytes", |r| r.input_bytes)
            .u64("output_files", |r| r.output_files)
            .u64("output_rows", |r| r.output_rows)
            .u64("output_bytes", |r| r.output_bytes)
            .u64("duration_ms", |r| r.duration.as_millis() as u64)
            .opt_str("error", |r| r.error.as_deref())
            .finish()
    }
}
