//! One scan of a table's time window for several plans run at the same
//! instant (batch rules of one round): the first plan that reads the
//! window reads every column of it once; the others read those rows from
//! memory.
//!
//! # Invariants
//! - A plan sees the same rows as without the share: the shared scan is
//!   the table's own scan (deduplicated, retention and deletes applied)
//!   with only the `time` bounds pushed down, and every filter of the plan
//!   is applied again above it (the share's pushdown is `Inexact`).
//! - A share holds at most `cap` bytes per window; a larger window is read
//!   by each plan on its own, as without the share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use fleetlake_storage::schema::TIME_COLUMN;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::time_range::TimeRange;

/// Counts of a [`ScanShare`]'s reads, kept across shares by their owner.
#[derive(Debug, Default)]
pub struct ScanShareStats {
    /// Windows read from a table into a share.
    pub scans: AtomicU64,
    /// Plans that read a window a share held already.
    pub reused: AtomicU64,
}

/// The rows of one window, or `None` when they were over the cap.
type Window = Option<Arc<Vec<RecordBatch>>>;

/// A window of a table: (database, table, first ns, last ns).
type WindowKey = (String, String, i64, i64);

/// The windows read at one instant, for the `(database, table)`s that
/// several plans read.
#[derive(Debug)]
pub struct ScanShare {
    tables: HashSet<(String, String)>,
    cap: usize,
    windows: Mutex<HashMap<WindowKey, Arc<OnceCell<Window>>>>,
    stats: Arc<ScanShareStats>,
}

impl ScanShare {
    /// A share for the tables `(database, table)` that holds at most
    /// `cap` bytes per window.
    pub fn new(tables: HashSet<(String, String)>, cap: usize, stats: Arc<ScanShareStats>) -> Self {
        Self {
            tables,
            cap,
            windows: Mutex::default(),
            stats,
        }
    }

    pub fn covers(&self, db: &str, table: &str) -> bool {
        self.tables.contains(&(db.to_string(), table.to_string()))
    }

    /// `provider` (table `table` of `db`) reading through this share.
    pub fn wrap(
        self: &Arc<Self>,
        db: &str,
        table: &str,
        provider: Arc<dyn TableProvider>,
    ) -> Arc<dyn TableProvider> {
        Arc::new(SharedScanTable {
            inner: provider,
            share: self.clone(),
            db: db.to_string(),
            table: table.to_string(),
        })
    }

    fn window(&self, db: &str, table: &str, range: TimeRange) -> Arc<OnceCell<Window>> {
        self.windows
            .lock()
            .entry((db.to_string(), table.to_string(), range.min, range.max))
            .or_default()
            .clone()
    }
}

#[derive(Debug)]
struct SharedScanTable {
    inner: Arc<dyn TableProvider>,
    share: Arc<ScanShare>,
    db: String,
    table: String,
}

/// A filter on `time` alone that bounds it (pushed down to the shared scan).
fn bounds_time(f: &Expr) -> bool {
    let cols = f.column_refs();
    !cols.is_empty()
        && cols.iter().all(|c| c.name == TIME_COLUMN)
        && TimeRange::from_filters(std::slice::from_ref(f)) != TimeRange::default()
}

#[async_trait]
impl TableProvider for SharedScanTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let range = TimeRange::from_filters(filters);
        if range.min == i64::MIN {
            // Not a window (all of the table's history): not held.
            return self.inner.scan(state, projection, filters, limit).await;
        }
        let cell = self.share.window(&self.db, &self.table, range);
        let read = AtomicBool::new(false);
        let rows = cell
            .get_or_try_init(|| async {
                read.store(true, Ordering::Relaxed);
                self.share.stats.scans.fetch_add(1, Ordering::Relaxed);
                let bounds: Vec<Expr> =
                    filters.iter().filter(|f| bounds_time(f)).cloned().collect();
                let plan = self.inner.scan(state, None, &bounds, None).await?;
                let mut stream = execute_stream(plan, state.task_ctx())?;
                let (mut out, mut bytes) = (Vec::new(), 0);
                while let Some(b) = stream.next().await {
                    let b = b?;
                    bytes += b.get_array_memory_size();
                    if bytes > self.share.cap {
                        return Ok::<_, datafusion::error::DataFusionError>(None);
                    }
                    out.push(b);
                }
                Ok(Some(Arc::new(out)))
            })
            .await?;
        let Some(rows) = rows else {
            return self.inner.scan(state, projection, filters, limit).await;
        };
        if !read.load(Ordering::Relaxed) {
            self.share.stats.reused.fetch_add(1, Ordering::Relaxed);
        }
        // Spread over the session's partitions, as a scan would be.
        let n = state
            .config()
            .target_partitions()
            .clamp(1, rows.len().max(1));
        let mut parts = vec![Vec::new(); n];
        for (i, b) in rows.iter().enumerate() {
            parts[i % n].push(b.clone());
        }
        let exec: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&parts, self.schema(), projection.cloned())?;
        Ok(exec)
    }
}
