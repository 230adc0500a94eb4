//! `system.rollups`: the rollup runs of this process that did work or
//! failed, oldest first.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use fleetlake_query::system::{Columns, SystemTable};

use super::{RollupRecord, Rollups};

#[derive(Debug)]
pub struct RollupsTable(pub Arc<Rollups>);

impl SystemTable for RollupsTable {
    fn name(&self) -> &str {
        "rollups"
    }

    fn batch(&self) -> Result<RecordBatch> {
        let h: Vec<RollupRecord> = self.0.history();
        Columns::new(&h)
            .time("started", |r| r.started_ns)
            .str("database", |r| &r.db)
            .str("source", |r| &r.source)
            .str("target", |r| &r.target)
            .u64("new_buckets", |r| r.new_buckets)
            .u64("late_buckets", |r| r.late_buckets)
            .u64("rows", |r| r.rows)
            .u64("files", |r| r.files)
            .u64("bytes", |r| r.bytes)
            .opt_time("watermark", |r| r.watermark_ns)
            .u64("duration_ms", |r| r.duration.as_millis() as u64)
            .opt_str("error", |r| r.error.as_deref())
            .finish()
    }
}
