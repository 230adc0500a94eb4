//! How many rows a query's scans may read, estimated before physical
//! planning: a query that reads a few pages runs in one partition.
//!
//! DataFusion plans every query for `target_partitions` (the cores): a
//! one-host hour's 60-row answer was split by a round-robin and a hash
//! `RepartitionExec` into partial and final aggregates, two tasks handing
//! batches over channels — more than a third of its time went to planning
//! and running that parallelism (1.99 → 1.63 ms in one partition, measured
//! with `benches/fixed_cost.py`). DataFusion only skips the round-robin when
//! a scan's statistics prove it small, and our scans know nothing before
//! they prune.
//!
//! The estimate is an upper bound of what the scans will decode: the rows
//! of buffered data in the time range, and for each file in it the rows its
//! row groups and pages cannot be pruned from, by the same row-group
//! statistics and page index the scan itself uses, read from the metadata
//! cache. A file whose metadata is not cached yet (its first query) counts
//! its rows in the time range, assuming them evenly spread. A scan of
//! anything but a fleetlake table makes the size unknown.

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::datasource::physical_plan::parquet::{
    PagePruningAccessPlanFilter, ParquetAccessPlan, ParquetFileMetrics, RowGroupAccess,
    RowGroupAccessPlanFilter,
};
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use fleetlake_storage::catalog::FileMeta;
use fleetlake_storage::parquet_file::PAGE_ROWS;
use object_store::path::Path;
use parquet::file::metadata::ParquetMetaData;

use crate::table::FleetTable;
use crate::tag_pages::{self, ColumnValues};
use crate::time_range::TimeRange;

/// Scans of at most this many rows run in one partition: sixteen pages.
/// Below it a second core saves less than the repartitioning costs (a
/// single-groupby-5-8-1, eight hosts' hour, reads about this much).
pub const SMALL_SCAN_ROWS: u64 = 16 * PAGE_ROWS as u64;

/// Whether every scan of `plan` is a fleetlake table's and, together,
/// they read at most `limit` rows (see the module's doc).
pub fn is_small(plan: &LogicalPlan, state: &dyn Session, limit: u64) -> bool {
    let mut rows = 0u64;
    let mut small = true;
    let walked = plan.apply_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let table = source_as_provider(&scan.source)?;
        let Some(table) = table.downcast_ref::<FleetTable>() else {
            small = false;
            return Ok(TreeNodeRecursion::Stop);
        };
        rows = rows.saturating_add(table.estimated_rows(state, &scan.filters, limit - rows));
        if rows > limit {
            small = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    walked.is_ok() && small
}

/// A table's filters as a predicate for pruning one table's files.
pub struct FilePruning {
    range: TimeRange,
    /// Equality filters on string columns, pruned by [`tag_pages`].
    equal: Vec<ColumnValues>,
    /// The other filters, pruned by DataFusion (row groups by statistics,
    /// then pages); built once for every file of the table.
    rest: Option<(Option<Arc<PruningPredicate>>, PagePruningAccessPlanFilter)>,
    cache: Arc<FileMetadataCache>,
    schema: arrow::datatypes::SchemaRef,
}

impl FilePruning {
    pub fn new(
        state: &dyn Session,
        schema: &arrow::datatypes::SchemaRef,
        range: TimeRange,
        filters: &[Expr],
    ) -> Self {
        let (equal, rest) = tag_pages::split(&unnormalize_cols(filters.iter().cloned()), schema);
        // A filter the planner cannot make physical only loses precision.
        let predicate = conjunction(rest).and_then(|p| {
            let df_schema = DFSchema::try_from(schema.as_ref().clone()).ok()?;
            state.create_physical_expr(p, &df_schema).ok()
        });
        let rest = predicate.map(|p| {
            let groups = PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(schema))
                .build(Arc::clone(&p));
            (
                groups,
                PagePruningAccessPlanFilter::new(&p, Arc::clone(schema)),
            )
        });
        Self {
            range,
            equal,
            rest,
            cache: state.runtime_env().cache_manager.get_file_metadata_cache(),
            schema: Arc::clone(schema),
        }
    }

    /// The rows of `file` its scan may decode: all that its row groups'
    /// statistics and its page index do not rule out, or (metadata not
    /// cached) its rows in the time range. With the metadata cached, also
    /// the access plan that pruning leaves (what the scan would work out
    /// again when it opens the file).
    pub fn file_rows(&self, file: &FileMeta) -> (u64, Option<ParquetAccessPlan>) {
        let cached = self.cache.get(&Path::from(file.path.as_str()));
        let metadata = cached.as_ref().and_then(|c| {
            c.file_metadata
                .as_any()
                .downcast_ref::<CachedParquetMetaData>()
                .map(|m| Arc::clone(m.parquet_metadata()))
        });
        match metadata {
            Some(metadata) if self.rest.is_some() || !self.equal.is_empty() => {
                let plan = self.pruned(&metadata);
                (rows_of(&plan, &metadata), Some(plan))
            }
            _ => (self.rows_in_range(file), None),
        }
    }

    fn rows_in_range(&self, file: &FileMeta) -> u64 {
        let lo = self.range.min.max(file.min_time);
        let hi = self.range.max.min(file.max_time);
        if hi < lo {
            return 0;
        }
        let span = (file.max_time as i128 - file.min_time as i128 + 1) as f64;
        let part = (hi as i128 - lo as i128 + 1) as f64 / span;
        (file.rows as f64 * part).ceil() as u64
    }

    fn pruned(&self, metadata: &ParquetMetaData) -> ParquetAccessPlan {
        let groups = metadata.row_groups();
        let mut plan = ParquetAccessPlan::new_all(groups.len());
        tag_pages::prune(&mut plan, &self.equal, metadata);
        let Some((groups_pruning, pages_pruning)) = &self.rest else {
            return plan;
        };
        let parquet_schema = metadata.file_metadata().schema_descr();
        let metrics = ExecutionPlanMetricsSet::new();
        let file_metrics = ParquetFileMetrics::new(0, "estimate", &metrics);
        let mut plan = RowGroupAccessPlanFilter::new(plan);
        if let Some(pruning) = groups_pruning {
            plan.prune_by_statistics(&self.schema, parquet_schema, groups, pruning, &file_metrics);
        }
        pages_pruning.prune_plan_with_page_index(
            plan.build(),
            &self.schema,
            parquet_schema,
            metadata,
            &file_metrics,
        )
    }
}

/// The rows `plan` reads of a file with `metadata`.
fn rows_of(plan: &ParquetAccessPlan, metadata: &ParquetMetaData) -> u64 {
    plan.inner()
        .iter()
        .zip(metadata.row_groups())
        .map(|(access, group)| match access {
            RowGroupAccess::Skip => 0,
            RowGroupAccess::Scan => group.num_rows() as u64,
            RowGroupAccess::Selection(s) => s.row_count() as u64,
        })
        .sum()
}
