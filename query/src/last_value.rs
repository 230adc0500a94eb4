//! The last-value cache: the newest row of every series of a table, kept
//! between queries so that "the latest point of each host" does not scan
//! the whole table each time.
//!
//! A query of the form
//!
//! ```sql
//! SELECT DISTINCT ON (<tags>) <anything> FROM <table>
//!   [WHERE <predicates on tags only> AND <time > / >= a constant> ...]
//!   ORDER BY <the same tags>, time DESC
//! ```
//!
//! — TSBS's lastpoint — is answered from it: an analyzer rule
//! ([`LastValueRule`]) replaces the `DISTINCT ON` and its table scan with
//! [`LastValueTable`], sorted and projected as `DISTINCT ON` would. From the
//! newest row of each series it keeps those the `WHERE` keeps, then the
//! newest of each `DISTINCT ON` group. The answer is the same as the scan's:
//! the newest row of a group is the newest row of one of its series; a tag
//! predicate keeps or drops whole series; and a series has a row at or after
//! a lower time bound exactly when its newest row is. (Ties in time between
//! series of one group are broken arbitrarily either way.)
//!
//! A table's cache is built by the first such query, in one pass over the
//! table, then brought up to date by each later query from what was written
//! since: files with a higher `seq` than any it saw — except flush files
//! whose rows it already saw in the write buffer — and buffered rows of
//! newer WAL records. The newest row of a series is the row at its latest
//! time with every write at that time merged field by field, as scans
//! merge them. A delete (the table's `delete_seq` moved) or a new column
//! rebuilds the cache; retention is applied to its rows at every query.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::kernels::boolean::and;
use arrow::compute::{
    concat_batches, filter_record_batch, interleave, prep_null_mask_filter, take_record_batch,
};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType, UInt64Type};
use arrow::row::{RowConverter, Rows, SortField};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Distinct, DistinctOn, Expr, LogicalPlan, LogicalPlanBuilder, Operator,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use fleetlake_ingest::BufferedPartition;
use fleetlake_storage::catalog::FileMeta;
use fleetlake_storage::schema::TIME_COLUMN;
use fleetlake_storage::write_order::{SEQ_COLUMN, is_file_seq, wal_seq_of};
use futures::StreamExt;

use crate::table::{FleetTable, filtered_scan};

/// One table's cache; a query holds it while bringing it up to date.
type SharedCache = Arc<tokio::sync::Mutex<Cache>>;

/// The caches of every table that has been asked for its newest rows.
#[derive(Debug, Default)]
pub struct LastValueCaches {
    tables: parking_lot::Mutex<HashMap<(String, String), SharedCache>>,
}

impl LastValueCaches {
    /// The caches built so far: `(db, table, series)`, sorted. A cache
    /// being built or brought up to date at this moment is left out.
    pub fn built(&self) -> Vec<(String, String, usize)> {
        let mut out: Vec<(String, String, usize)> = self
            .tables
            .lock()
            .iter()
            .filter_map(|((db, table), cache)| {
                let rows = cache.try_lock().ok()?.rows.as_ref()?.num_rows();
                Some((db.clone(), table.clone(), rows))
            })
            .collect();
        out.sort();
        out
    }

    fn get(&self, db: &str, table: &str) -> SharedCache {
        self.tables
            .lock()
            .entry((db.to_string(), table.to_string()))
            .or_default()
            .clone()
    }
}

/// The analyzer rule that answers newest-row-per-series queries from the
/// cache (see the module documentation for the form it recognises).
#[derive(Debug)]
pub struct LastValueRule {
    caches: Arc<LastValueCaches>,
}

impl LastValueRule {
    pub fn new(caches: Arc<LastValueCaches>) -> Self {
        Self { caches }
    }

    fn rewrite(&self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Distinct(Distinct::On(on)) = &node else {
            return Ok(Transformed::no(node));
        };
        match self.answer_from_cache(on)? {
            Some(plan) => Ok(Transformed::yes(plan)),
            None => Ok(Transformed::no(node)),
        }
    }

    /// The `DISTINCT ON` answered from the cache, when the query is of the
    /// recognised form: the cache's newest row of each group (filtered
    /// first, as the `WHERE` was), sorted as `DISTINCT ON` sorts, then the
    /// select list. Its output is the `DISTINCT ON`'s, column for column.
    fn answer_from_cache(&self, on: &DistinctOn) -> Result<Option<LogicalPlan>> {
        let Some((filter, scan)) = filtered_scan(on.input.as_ref()) else {
            return Ok(None);
        };
        if scan.fetch.is_some() || !scan.filters.is_empty() {
            return Ok(None);
        }
        let Ok(provider) = source_as_provider(&scan.source) else {
            return Ok(None);
        };
        let Some(table) = provider.downcast_ref::<FleetTable>() else {
            return Ok(None);
        };
        let Some((db, name)) = table.identity() else {
            return Ok(None);
        };
        let Some(sort) = &on.sort_expr else {
            return Ok(None);
        };
        let newest_first = sort
            .last()
            .is_some_and(|s| !s.asc && matches!(&s.expr, Expr::Column(c) if c.name == TIME_COLUMN));
        let mut group = Vec::with_capacity(on.on_expr.len());
        for e in &on.on_expr {
            match e {
                Expr::Column(c) if table.is_tag(&c.name) => group.push(c.name.clone()),
                _ => return Ok(None),
            }
        }
        if group.is_empty()
            || sort.len() != group.len() + 1
            || !sort.iter().zip(&on.on_expr).all(|(s, e)| &s.expr == e)
            || !newest_first
        {
            return Ok(None);
        }
        if let Some(f) = filter
            && !split_conjunction(&f.predicate)
                .into_iter()
                .all(|c| whole_series(table, c))
        {
            return Ok(None);
        }
        let cached = Arc::new(LastValueTable {
            table: provider.clone(),
            cache: self.caches.get(db, name),
            group,
            filter: filter
                .map(|f| unqualified(f.predicate.clone()))
                .transpose()?,
        });
        let mut swapped = scan.clone();
        swapped.source = provider_as_source(cached);
        let plan = LogicalPlanBuilder::from(LogicalPlan::TableScan(swapped))
            .sort(sort[..sort.len() - 1].to_vec())?
            .project(on.select_expr.clone())?
            .build()?;
        if plan.schema() != &on.schema {
            return Ok(None); // not expected; the plain plan is always right
        }
        Ok(Some(plan))
    }
}

/// `e` with its columns' table qualifiers removed: the cache evaluates it
/// against the table's own schema.
fn unqualified(e: Expr) -> Result<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            Column::new_unqualified(c.name),
        ))),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

impl AnalyzerRule for LastValueRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up(|node| self.rewrite(node)).map(|t| t.data)
    }

    fn name(&self) -> &str {
        "fleetlake_last_value_cache"
    }
}

/// Whether `e` keeps or drops a series' newest row exactly as it keeps or
/// drops the series' having any row: it reads only tags, or it is a lower
/// bound on time.
fn whole_series(table: &FleetTable, e: &Expr) -> bool {
    if e.column_refs().iter().all(|c| table.is_tag(&c.name)) {
        return !e.is_volatile();
    }
    let is_time = |x: &Expr| matches!(x, Expr::Column(c) if c.name == TIME_COLUMN);
    let constant = |x: &Expr| x.column_refs().is_empty() && !x.is_volatile();
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Gt | Operator::GtEq => is_time(left) && constant(right),
            Operator::Lt | Operator::LtEq => constant(left) && is_time(right),
            _ => false,
        },
        _ => false,
    }
}

/// The newest row of each group of series, from the cache.
#[derive(Debug)]
pub struct LastValueTable {
    /// A [`FleetTable`]: the snapshot the query planned against.
    table: Arc<dyn TableProvider>,
    cache: SharedCache,
    /// The `DISTINCT ON` columns (tags): one row per distinct combination.
    group: Vec<String>,
    /// The query's `WHERE` (tags and lower time bounds), applied before
    /// the newest row of each group is chosen. Filters the optimizer pushes
    /// from above stay above this scan (pushdown is unsupported): they apply
    /// to the chosen rows, as they did above the `DISTINCT ON`.
    filter: Option<Expr>,
}

#[async_trait]
impl TableProvider for LastValueTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = self
            .table
            .downcast_ref::<FleetTable>()
            .expect("the rule wraps FleetTables only");
        let rows = {
            let mut cache = self.cache.lock().await;
            cache.refresh(table, state).await?;
            cache.rows.clone().expect("refreshed")
        };
        let mut keep = BooleanArray::from(vec![true; rows.num_rows()]);
        if let Some(cutoff) = table.expired_before() {
            let time = time_of(&rows)?;
            keep = time.values().iter().map(|t| Some(*t >= cutoff)).collect();
        }
        if let Some(filter) = &self.filter {
            let df_schema = DFSchema::try_from(rows.schema().as_ref().clone())?;
            let predicate = state.create_physical_expr(filter.clone(), &df_schema)?;
            let matched = predicate.evaluate(&rows)?.into_array(rows.num_rows())?;
            let matched = matched.as_boolean();
            let matched = match matched.nulls() {
                Some(_) => prep_null_mask_filter(matched), // NULL: not kept
                None => matched.clone(),
            };
            keep = and(&keep, &matched)?;
        }
        let rows = filter_record_batch(&rows, &keep)?;
        let rows = newest_per_group(&rows, &self.group)?;
        let exec =
            MemorySourceConfig::try_new_exec(&[vec![rows]], self.schema(), projection.cloned())?;
        Ok(exec)
    }
}

/// The row with the latest time of each distinct combination of `group`'s
/// values (NULLs equal, as in `DISTINCT ON`).
fn newest_per_group(rows: &RecordBatch, group: &[String]) -> Result<RecordBatch> {
    let keys = row_keys(rows, group)?;
    let time = time_of(rows)?;
    let mut newest: HashMap<&[u8], u32> = HashMap::with_capacity(rows.num_rows());
    for i in 0..rows.num_rows() {
        newest
            .entry(keys.row(i).data())
            .and_modify(|best| {
                if time.value(i) > time.value(*best as usize) {
                    *best = i as u32;
                }
            })
            .or_insert(i as u32);
    }
    let mut picked: Vec<u32> = newest.into_values().collect();
    picked.sort_unstable();
    Ok(take_record_batch(rows, &UInt32Array::from(picked))?)
}

/// Each row's values of the `columns`, encoded as comparable bytes (equal
/// values, NULLs included, give equal keys).
fn row_keys(batch: &RecordBatch, columns: &[String]) -> Result<Rows> {
    let columns: Vec<ArrayRef> = columns
        .iter()
        .map(|c| {
            batch
                .column_by_name(c)
                .cloned()
                .ok_or_else(|| DataFusionError::Internal(format!("no column {c}")))
        })
        .collect::<Result<_>>()?;
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    Ok(converter.convert_columns(&columns)?)
}

fn time_of(batch: &RecordBatch) -> Result<&arrow::array::PrimitiveArray<TimestampNanosecondType>> {
    batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| DataFusionError::Internal("no nanosecond time column".into()))
}

#[derive(Debug, Default)]
struct Cache {
    /// One row per series, in the table's columns; `None` until built.
    rows: Option<RecordBatch>,
    /// Series key (tags, row-encoded) → row of `rows`.
    index: HashMap<Box<[u8]>, usize>,
    /// Files with a higher `seq` are new to the cache.
    seen_file_seq: u64,
    /// Every row of WAL records up to this one is reflected.
    seen_wal: u64,
    /// The table's `delete_seq` when the cache was built.
    delete_seq: u64,
}

impl Cache {
    async fn refresh(&mut self, table: &FleetTable, state: &dyn Session) -> Result<()> {
        let schema = table.schema();
        let stale = self
            .rows
            .as_ref()
            .is_some_and(|r| r.schema() != schema || self.delete_seq != table.delete_seq());
        if stale {
            *self = Cache::default();
        }
        let built = self.rows.is_some();
        let (seen_file, seen_wal) = (self.seen_file_seq, self.seen_wal);
        // New files: a higher seq than any seen, except flush files (and
        // compactions of them) whose rows were all seen in the buffer.
        let mut files: Vec<FileMeta> = Vec::new();
        let (mut newest_file, mut newest_wal) = (seen_file, seen_wal);
        for f in table.files() {
            let flushed = is_file_seq(f.seq);
            if !built || (f.seq > seen_file && !(flushed && wal_seq_of(f.seq) <= seen_wal)) {
                files.push(f.clone());
            }
            newest_file = newest_file.max(f.seq);
            if flushed {
                newest_wal = newest_wal.max(wal_seq_of(f.seq));
            }
        }
        let mut buffered = Vec::new();
        for p in table.buffered() {
            let mut batches = Vec::new();
            for b in &p.batches {
                let seq = b
                    .column_by_name(SEQ_COLUMN)
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                    .ok_or_else(|| {
                        DataFusionError::Internal("buffered batch without __seq".into())
                    })?;
                let records = seq.values().iter().map(|s| wal_seq_of(*s));
                newest_wal = newest_wal.max(records.clone().max().unwrap_or(0));
                if !built {
                    batches.push(b.clone());
                    continue;
                }
                let keep: BooleanArray = records.map(|r| Some(r > seen_wal)).collect();
                let part = filter_record_batch(b, &keep)?;
                if part.num_rows() > 0 {
                    batches.push(part);
                }
            }
            if !batches.is_empty() {
                buffered.push(BufferedPartition {
                    day: p.day,
                    min_time: p.min_time,
                    max_time: p.max_time,
                    batches,
                });
            }
        }

        let tags: Vec<String> = table
            .table_schema()
            .tags_sorted()
            .into_iter()
            .map(String::from)
            .collect();
        let current = self
            .rows
            .take()
            .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
        let merged = if files.is_empty() && buffered.is_empty() {
            current
        } else {
            let merged = newest_rows(table.part(files, buffered), &tags, state)
                .await
                .and_then(|delta| self.merge(current, &delta, &tags));
            // Half-updated state is no state: rebuild next time.
            merged.inspect_err(|_| *self = Cache::default())?
        };
        self.rows = Some(merged);
        self.seen_file_seq = newest_file;
        self.seen_wal = newest_wal;
        self.delete_seq = table.delete_seq();
        Ok(())
    }

    /// `current` with `delta`'s rows (each newer than any in `current`)
    /// merged in: a later time replaces a series' row; the same time merges
    /// field by field, `delta`'s values winning where it has them.
    fn merge(
        &mut self,
        current: RecordBatch,
        delta: &RecordBatch,
        tags: &[String],
    ) -> Result<RecordBatch> {
        enum Pick {
            Old(usize),
            New(usize),
            Both(usize, usize),
        }
        let schema = current.schema();
        let rows = row_keys(delta, tags)?;
        let (old_time, new_time) = (time_of(&current)?, time_of(delta)?);
        let mut picks: Vec<Pick> = (0..current.num_rows()).map(Pick::Old).collect();
        for j in 0..delta.num_rows() {
            let key = rows.row(j);
            match self.index.get(key.as_ref()) {
                Some(&i) => {
                    let (old, new) = (old_time.value(i), new_time.value(j));
                    if new > old {
                        picks[i] = Pick::New(j);
                    } else if new == old {
                        picks[i] = Pick::Both(i, j);
                    }
                }
                None => {
                    self.index.insert(key.as_ref().into(), picks.len());
                    picks.push(Pick::New(j));
                }
            }
        }
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, field)| {
                let old = current.column(c);
                let new = delta.column_by_name(field.name()).ok_or_else(|| {
                    DataFusionError::Internal(format!("no column {}", field.name()))
                })?;
                let indices: Vec<(usize, usize)> = picks
                    .iter()
                    .map(|p| match *p {
                        Pick::Old(i) => (0, i),
                        Pick::New(j) => (1, j),
                        Pick::Both(i, j) => {
                            if new.is_valid(j) {
                                (1, j)
                            } else {
                                (0, i)
                            }
                        }
                    })
                    .collect();
                Ok(interleave(&[old.as_ref(), new.as_ref()], &indices)?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// Rows held before [`newest_rows`] folds them again to one per series.
const FOLD_AT: usize = 1 << 16;

/// The newest row of each series of `part` (one streaming pass, rows
/// de-duplicated as any scan's are), in `part`'s columns.
async fn newest_rows(
    part: FleetTable,
    tags: &[String],
    state: &dyn Session,
) -> Result<RecordBatch> {
    let schema = part.schema();
    let state = state
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal("not a SessionState".into()))?
        .clone();
    let ctx = SessionContext::new_with_state(state);
    let mut stream = ctx.read_table(Arc::new(part))?.execute_stream().await?;
    // A scan yields each (series, time) once, so the newest of a series
    // over several batches is the newest of their newest rows.
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut held_rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = RecordBatch::try_new(schema.clone(), batch?.columns().to_vec())?;
        let newest = newest_per_group(&batch, tags)?;
        held_rows += newest.num_rows();
        held.push(newest);
        if held_rows > FOLD_AT {
            let folded = newest_per_group(&concat_batches(&schema, &held)?, tags)?;
            held_rows = folded.num_rows();
            held = vec![folded];
        }
    }
    newest_per_group(&concat_batches(&schema, &held)?, tags)
}
