//! Merging one partition's files into one run.
//!
//! Files that record the table's series order are each sorted by it, so a
//! streaming k-way merge (`SortPreservingMergeExec`) orders the rows with a
//! batch per input in memory. Files without a recorded order go through an
//! external sort that spills to disk past the memory limit. Either way
//! [`DedupExec`] then applies last-write-wins, and the output is cut into
//! files of about `target_rows` at series boundaries, a set of them per
//! time window (`CompactionConfig::window`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::kernels::partition::partition;
use arrow::compute::{concat, filter_record_batch, max, min};
use arrow::datatypes::{DataType, Field, SchemaRef, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema as DfTableSchema;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use fleetlake_query::budget_pool::BudgetPool;
use fleetlake_query::dedup_exec::DedupExec;
use fleetlake_query::table::visibility;
use fleetlake_query::time_range::TimeRange;
use fleetlake_storage::catalog::{Action, Catalog, FileMeta, now_ns};
use fleetlake_storage::dedup::SERIES_SORT;
use fleetlake_storage::memory_budget::{Consumer, Reservation};
use fleetlake_storage::parquet_file::{FileSpec, StreamingDataFile};
use fleetlake_storage::schema::TIME_COLUMN;
use fleetlake_storage::write_order::SEQ_COLUMN;
use fleetlake_storage::{Error, Result, fault};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::{debug, warn};

use crate::CompactionConfig;
use crate::memory::{decoded_row_width, merge_memory, output_window};

const STORE_URL: &str = "fleetlake://compaction";

fn df(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("merge: {e}"))
}

/// Merges `inputs` (files of one partition) into a new run, commits it in
/// place of the inputs, and returns the new files.
pub(crate) async fn merge_partition(
    catalog: &Catalog,
    config: &CompactionConfig,
    db: &str,
    table: &str,
    day: &str,
    inputs: &[FileMeta],
) -> Result<Vec<FileMeta>> {
    let state = catalog.state();
    let ts = state.table(db, table).ok_or_else(|| Error::TableNotFound {
        db: db.to_string(),
        table: table.to_string(),
    })?;
    let schema = ts.schema.arrow_schema();
    let order: Vec<String> = ts
        .schema
        .series_order()
        .into_iter()
        .map(str::to_string)
        .collect();
    let store = Arc::clone(catalog.store());

    // Readers and the writer hold memory the pool does not see; the pool
    // (sorts, the merge's own buffers) gets what the limit leaves.
    let refs: Vec<&FileMeta> = inputs.iter().collect();
    let window = output_window(&refs, config);
    let memory = merge_memory(
        &refs,
        decoded_row_width(&schema),
        config.memory_limit,
        window,
    );
    debug!(
        db,
        table,
        day,
        inputs = inputs.len(),
        ?memory,
        ?window,
        "merge memory"
    );
    // A streaming merge of sorted inputs holds one batch per input, which
    // the fan-in already budgets (as `readers`) and SortPreservingMergeExec
    // reserves from the pool again, unable to spill: its pool is the whole
    // limit, a backstop against a wrong estimate rather than a second
    // budget. (Pooled at what the rest left, a merge of 8 of 24 flush files
    // failed at 128 MB and would have failed on every retry.) A sort of
    // unordered inputs spills at what the readers and writer leave.
    let sorted_inputs = inputs.iter().all(|f| sorted_by(f, &order));
    let pool = if sorted_inputs {
        config.memory_limit
    } else {
        memory.pool as usize
    };
    // Held until the merge ends; refused, the partition waits for a round
    // with room.
    let mut held = Reservation::new(&config.budget, Consumer::Compaction);
    held.try_resize((memory.readers + memory.writer) as usize)?;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(BudgetPool::new(
            FairSpillPool::new(pool),
            Arc::clone(&config.budget),
            Consumer::Compaction,
        )))
        .build_arc()
        .map_err(df)?;
    let url = ObjectStoreUrl::parse(STORE_URL).map_err(df)?;
    runtime.register_object_store(url.as_ref(), Arc::clone(&store));
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    let expired_before = state
        .databases
        .get(db)
        .and_then(|d| d.retention_of(table))
        .map(|ttl| now_ns().saturating_sub(ttl));
    let visible = visibility(
        &ts.schema,
        &ts.tombstones,
        expired_before,
        &TimeRange::default(),
    );
    let deletes_applied = ts.tombstones.iter().map(|t| t.seq).max().unwrap_or(0);
    let plan = merge_plan(&schema, &order, inputs, url, visible)?;
    let mut stream = plan
        .execute(0, ctx.task_ctx() as Arc<TaskContext>)
        .map_err(df)?;

    let run = uuid::Uuid::new_v4().as_u64_pair().0;
    let seq = inputs.iter().map(|f| f.seq).max().unwrap_or(0);
    let mut out = Output {
        store: Arc::clone(&store),
        db,
        table,
        day,
        schema: Arc::clone(&schema),
        tags: order
            .iter()
            .map(|t| schema.index_of(t))
            .collect::<Result<_, _>>()?,
        time: schema.index_of(TIME_COLUMN)?,
        target_rows: config.target_rows.max(1),
        run,
        seq,
        order: order.clone(),
        deletes_applied,
        window,
        tiles: BTreeMap::new(),
        files: Vec::new(),
    };
    let result: Result<()> = async {
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df)?;
            // Drop `__seq`: the files' rows are unique now.
            let batch = batch.project(&(0..schema.fields().len()).collect::<Vec<_>>())?;
            out.push(batch).await?;
        }
        out.finish().await?;
        fault::point("compaction:before_commit");
        catalog
            .commit(vec![
                Action::AddFiles {
                    files: out.files.clone(),
                },
                Action::RemoveFiles {
                    db: db.to_string(),
                    table: table.to_string(),
                    paths: inputs.iter().map(|f| f.path.clone()).collect(),
                    at_ns: now_ns(),
                    strict: true,
                },
            ])
            .await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        out.abort().await;
        for f in &out.files {
            let path = object_store::path::Path::from(f.path.as_str());
            if let Err(del) = store.delete(&path).await {
                warn!(path = %f.path, error = %del, "could not delete an uncommitted output; GC will");
            }
        }
        return Err(e);
    }
    fault::point("compaction:after_commit");
    Ok(out.files)
}

/// Reads every input with its `seq` as `__seq`, orders rows by series,
/// time and `__seq`, and de-duplicates.
fn merge_plan(
    schema: &SchemaRef,
    order: &[String],
    inputs: &[FileMeta],
    url: ObjectStoreUrl,
    visible: Option<Expr>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let n = schema.fields().len();
    let table_schema = DfTableSchema::builder(Arc::clone(schema))
        .with_table_partition_cols(vec![Arc::new(Field::new(
            SEQ_COLUMN,
            DataType::UInt64,
            false,
        ))])
        .build();
    let source = ParquetSource::new(table_schema);
    let groups: Vec<FileGroup> = inputs
        .iter()
        .map(|f| {
            let pf = PartitionedFile::new(f.path.clone(), f.bytes)
                .with_partition_values(vec![ScalarValue::UInt64(Some(f.seq))]);
            FileGroup::new(vec![pf])
        })
        .collect();
    // Each stream reads its own file: the merge below takes every stream
    // as sorted. Without this DataFusion lets a stream that finishes its
    // file take a sibling's (work stealing), and one stream then yields two
    // files one after the other — unsorted, so the dedup kept an older
    // write. Found when reads of a few pages began to complete without
    // waiting (the stream that finished first took the next file).
    let config = FileScanConfigBuilder::new(url, Arc::new(source))
        .with_file_groups(groups)
        .with_preserve_order(true)
        .with_projection_indices(Some((0..=n).collect()))
        .map_err(df)?
        .build();
    let mut scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
    let scan_schema = scan.schema();
    // Deletes and expiry become physical here; rows drop before the merge
    // so a deleted row's fields cannot fill NULLs of a later write.
    if let Some(v) = visible {
        let df_schema = DFSchema::try_from(scan_schema.as_ref().clone()).map_err(df)?;
        let predicate = create_physical_expr(
            &v,
            &df_schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .map_err(df)?;
        scan = Arc::new(FilterExec::try_new(predicate, scan).map_err(df)?);
    }
    let column = |name: &str| -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(PhysColumn::new(name, scan_schema.index_of(name)?)))
    };
    let mut key_names: Vec<&str> = order.iter().map(String::as_str).collect();
    key_names.push(TIME_COLUMN);
    let key: Vec<usize> = key_names
        .iter()
        .map(|k| scan_schema.index_of(k))
        .collect::<Result<_, _>>()?;
    let sort_exprs = key_names
        .iter()
        .copied()
        .chain([SEQ_COLUMN])
        .map(|name| Ok(PhysicalSortExpr::new(column(name)?, SERIES_SORT)))
        .collect::<Result<Vec<_>>>()?;
    let ordering = LexOrdering::new(sort_exprs).expect("non-empty ordering");
    let sorted_inputs = inputs.iter().all(|f| sorted_by(f, order));
    let ordered: Arc<dyn ExecutionPlan> = if sorted_inputs {
        Arc::new(SortPreservingMergeExec::new(ordering.clone(), scan))
    } else {
        Arc::new(SortExec::new(
            ordering.clone(),
            Arc::new(CoalescePartitionsExec::new(scan)),
        ))
    };
    Ok(Arc::new(DedupExec::new(ordered, key, ordering)))
}

/// Whether `f`'s rows are sorted by `order`: its recorded order is `order`
/// without the tags added after it was written (NULL in it throughout).
fn sorted_by(f: &FileMeta, order: &[String]) -> bool {
    !f.sort_order.is_empty()
        && order
            .iter()
            .filter(|t| f.sort_order.contains(t))
            .eq(f.sort_order.iter())
}

struct Current {
    file: StreamingDataFile,
    rows: u64,
    min_time: i64,
    max_time: i64,
}

/// One window's output: the file being written and the tag values of the
/// last row written to the window.
#[derive(Default)]
struct Tile {
    current: Option<Current>,
    last_row: Option<Vec<ArrayRef>>,
}

/// Writes the merged stream as files of about `target_rows`, each cut at a
/// series boundary so that the run's files hold disjoint series, and each
/// holding one time window's rows when `window` is set (a file per window
/// open at once; the run's files then hold disjoint series within a
/// window, so the rows of one identity are still in one file).
struct Output<'a> {
    store: Arc<dyn ObjectStore>,
    db: &'a str,
    table: &'a str,
    day: &'a str,
    schema: SchemaRef,
    tags: Vec<usize>,
    time: usize,
    target_rows: u64,
    run: u64,
    seq: u64,
    order: Vec<String>,
    deletes_applied: u64,
    /// The windows' length in nanoseconds; `None`: one window.
    window: Option<i64>,
    /// By window number (time divided by `window`, rounded down).
    tiles: BTreeMap<i64, Tile>,
    files: Vec<FileMeta>,
}

impl Output<'_> {
    /// Routes `batch`'s rows to their windows, keeping their order.
    async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let Some(len) = self.window else {
            return self.push_to(0, batch).await;
        };
        let t = batch
            .column(self.time)
            .as_primitive::<TimestampNanosecondType>();
        let (Some(lo), Some(hi)) = (min(t), max(t)) else {
            return Ok(());
        };
        let (first, last) = (lo.div_euclid(len), hi.div_euclid(len));
        if first == last {
            return self.push_to(first, batch).await;
        }
        // A batch crosses a window edge at each of its series' edges only.
        let windows: Vec<i64> = t.values().iter().map(|t| t.div_euclid(len)).collect();
        for w in first..=last {
            let mask: BooleanArray = windows.iter().map(|&x| Some(x == w)).collect();
            let rows = filter_record_batch(&batch, &mask)?;
            if rows.num_rows() > 0 {
                self.push_to(w, rows).await?;
            }
        }
        Ok(())
    }

    async fn push_to(&mut self, window: i64, mut batch: RecordBatch) -> Result<()> {
        while batch.num_rows() > 0 {
            let rows = self
                .tiles
                .get(&window)
                .and_then(|t| t.current.as_ref())
                .map_or(0, |c| c.rows);
            let take = if rows < self.target_rows {
                let room = (self.target_rows - rows).min(batch.num_rows() as u64);
                room as usize
            } else {
                // Full: finish the last row's series, then start a new file.
                self.same_series_prefix(window, &batch)?
            };
            if take > 0 {
                self.write(window, &batch.slice(0, take)).await?;
                batch = batch.slice(take, batch.num_rows() - take);
            }
            if rows >= self.target_rows && batch.num_rows() > 0 {
                self.close(window).await?;
            }
        }
        Ok(())
    }

    /// How many leading rows of `batch` continue the series of the last
    /// row written to `window`.
    fn same_series_prefix(&self, window: i64, batch: &RecordBatch) -> Result<usize> {
        let Some(last) = self.tiles.get(&window).and_then(|t| t.last_row.as_ref()) else {
            return Ok(0);
        };
        if self.tags.is_empty() {
            return Ok(batch.num_rows());
        }
        let cols = self
            .tags
            .iter()
            .zip(last)
            .map(|(&i, prev)| concat(&[prev.as_ref(), batch.column(i).as_ref()]))
            .collect::<Result<Vec<_>, _>>()?;
        let ranges = partition(&cols)?.ranges();
        Ok(ranges[0].end - 1)
    }

    async fn write(&mut self, window: i64, batch: &RecordBatch) -> Result<()> {
        let tile = self.tiles.entry(window).or_default();
        if tile.current.is_none() {
            tile.current = Some(Current {
                file: StreamingDataFile::create(
                    &self.store,
                    self.db,
                    self.table,
                    self.day,
                    Arc::clone(&self.schema),
                )?,
                rows: 0,
                min_time: i64::MAX,
                max_time: i64::MIN,
            });
        }
        let cur = tile.current.as_mut().expect("set above");
        cur.file.write(batch).await?;
        cur.rows += batch.num_rows() as u64;
        let t = batch
            .column(self.time)
            .as_primitive::<TimestampNanosecondType>();
        if let (Some(lo), Some(hi)) = (min(t), max(t)) {
            cur.min_time = cur.min_time.min(lo);
            cur.max_time = cur.max_time.max(hi);
        }
        let last = batch.num_rows() - 1;
        tile.last_row = Some(
            self.tags
                .iter()
                .map(|&i| batch.column(i).slice(last, 1))
                .collect(),
        );
        Ok(())
    }

    async fn close(&mut self, window: i64) -> Result<()> {
        let Some(cur) = self.tiles.get_mut(&window).and_then(|t| t.current.take()) else {
            return Ok(());
        };
        let mut meta = cur
            .file
            .finish(FileSpec {
                db: self.db,
                table: self.table,
                day: self.day,
                rows: cur.rows,
                min_time: cur.min_time,
                max_time: cur.max_time,
                seq: self.seq,
            })
            .await?;
        meta.level = 1;
        meta.run = Some(self.run);
        meta.sort_order = self.order.clone();
        meta.deletes_applied = self.deletes_applied;
        self.files.push(meta);
        if self.files.len() == 1 {
            fault::point("compaction:mid_write");
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        let windows: Vec<i64> = self.tiles.keys().copied().collect();
        for w in windows {
            self.close(w).await?;
        }
        Ok(())
    }

    /// Abandons the files being written, if any (the merge failed).
    async fn abort(&mut self) {
        for tile in std::mem::take(&mut self.tiles).into_values() {
            if let Some(cur) = tile.current {
                cur.file.abort().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_orders_compatible_with_the_table_order() {
        let f = |order: &[&str]| FileMeta {
            path: String::new(),
            db: String::new(),
            table: String::new(),
            day: String::new(),
            rows: 0,
            bytes: 0,
            min_time: 0,
            max_time: 0,
            seq: 0,
            created_ns: 0,
            level: 0,
            run: None,
            sort_order: order.iter().map(|s| s.to_string()).collect(),
            deletes_applied: 0,
        };
        let order: Vec<String> = ["host", "arch", "zone"].map(String::from).to_vec();
        assert!(sorted_by(&f(&["host", "arch", "zone"]), &order));
        // Written before `arch` existed.
        assert!(sorted_by(&f(&["host", "zone"]), &order));
        assert!(!sorted_by(&f(&["arch", "host", "zone"]), &order));
        assert!(!sorted_by(&f(&[]), &order));
    }
}
