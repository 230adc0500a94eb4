//! `FleetTable`: one fleetlake table as a DataFusion table provider.
//!
//! A scan unions persisted Parquet files and the write buffer. Where the time
//! ranges of chunks overlap, rows of one identity (series + time) may sit in
//! several of them: rows at those times go through sort → [`DedupExec`] so the
//! later write wins field by field. Every other row is unique and is scanned
//! directly with every filter pushed into Parquet (row groups, page index, row
//! filters). Flushes cut mid-epoch make files of a day touch at single
//! instants; only those instants are de-duplicated, not the whole day.
//!
//! # Filter contract
//! Every filter is answered `Inexact`: DataFusion re-applies them above the
//! scan. Below a de-duplication only filters on identity columns (tags and
//! `time`) are applied, because a field filter there could drop the newer of
//! two rows and resurrect the older value.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema as DfTableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::utils::{conjunction, disjunction};
use datafusion::logical_expr::{
    Expr, Filter, LogicalPlan, TableProviderFilterPushDown, TableScan, lit,
};
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::union::UnionExec;
use fleetlake_ingest::BufferedPartition;
use fleetlake_ingest::buffer::align_to_schema;
use fleetlake_storage::catalog::{CatalogState, FileMeta, Tombstone};
use fleetlake_storage::dedup::SERIES_SORT;
use fleetlake_storage::schema::{ColumnKind, TIME_COLUMN, TableSchema};
use fleetlake_storage::write_order::SEQ_COLUMN;

use crate::dedup_exec::DedupExec;
use crate::scan_size::FilePruning;
use crate::time_range::TimeRange;

/// A snapshot of one table: schema, files and buffered data as of planning.
#[derive(Debug)]
pub struct FleetTable {
    schema: Arc<TableSchema>,
    arrow_schema: SchemaRef,
    files: Files,
    buffered: Vec<BufferedPartition>,
    store_url: ObjectStoreUrl,
    tombstones: Vec<Tombstone>,
    /// Rows before this time (ns) have expired (retention).
    expired_before: Option<i64>,
    /// `(database, table)` for a table of the catalog; `None` for a scan
    /// over part of one (the last-value cache's catch-up).
    name: Option<(String, String)>,
    /// The table's highest tombstone `seq` so far (see `TableState`).
    delete_seq: u64,
    /// The catalog snapshot `files` come from. Held by this table and by
    /// every scan planned from it, it keeps those files from the garbage
    /// collector until the last batch is read (see `Catalog::in_use`).
    snapshot: Option<Arc<CatalogState>>,
    /// Tags are plain strings in `arrow_schema`, not dictionaries.
    plain_tags: bool,
    /// What [`FleetTable::estimated_rows`] pruned, for the scan planned
    /// next with the same filters.
    pruned: Mutex<Option<Pruned>>,
}

/// Every file's access plan for a scan with `filters` (unqualified): the
/// row groups and pages the statistics and page index leave. The size
/// estimate works them out before physical planning; the scan then reads
/// each file by its plan instead of pruning it a second time when it opens
/// it (that pruning was a tenth of a one-host hour's time).
#[derive(Debug)]
struct Pruned {
    filters: Vec<Expr>,
    plans: HashMap<String, ParquetAccessPlan>,
}

/// `plan` as a table scan with at most a filter above it.
pub(crate) fn filtered_scan(plan: &LogicalPlan) -> Option<(Option<&Filter>, &TableScan)> {
    match plan {
        LogicalPlan::TableScan(s) => Some((None, s)),
        LogicalPlan::Filter(f) => match f.input.as_ref() {
            LogicalPlan::TableScan(s) => Some((Some(f), s)),
            _ => None,
        },
        _ => None,
    }
}

/// Where a table's files are listed.
#[derive(Debug)]
enum Files {
    /// A list of its own (part of a table, a table sent to the cluster).
    Listed(Vec<FileMeta>),
    /// The files of the table `name` in `snapshot`, read in place: a table
    /// of a long-lived store has tens of thousands of files, and a query
    /// touches a few; copying every one's metadata for each query was its
    /// largest fixed cost on such stores.
    InSnapshot,
}

impl FleetTable {
    pub fn new(
        schema: Arc<TableSchema>,
        files: Vec<FileMeta>,
        buffered: Vec<BufferedPartition>,
        store_url: ObjectStoreUrl,
    ) -> Self {
        Self {
            arrow_schema: schema.arrow_schema(),
            schema,
            files: Files::Listed(files),
            buffered,
            store_url,
            tombstones: Vec::new(),
            expired_before: None,
            name: None,
            delete_seq: 0,
            snapshot: None,
            plain_tags: false,
            pruned: Mutex::new(None),
        }
    }

    /// Table `name` of database `db` as of catalog `state`, plus the write
    /// buffer's `buffered` partitions: its files, deletes and retention,
    /// holding `state` for as long as a scan of it runs.
    pub fn from_catalog(
        state: &Arc<CatalogState>,
        db: &str,
        name: &str,
        schema: Arc<TableSchema>,
        buffered: Vec<BufferedPartition>,
        store_url: ObjectStoreUrl,
    ) -> Self {
        let persisted = state.table(db, name);
        let tombstones = persisted.map(|t| t.tombstones.clone()).unwrap_or_default();
        let expiry = state
            .databases
            .get(db)
            .and_then(|d| d.retention_of(name))
            .map(|ttl| fleetlake_storage::catalog::now_ns().saturating_sub(ttl));
        let mut table = Self::new(schema, Vec::new(), buffered, store_url)
            .with_tombstones(tombstones)
            .with_expiry(expiry)
            .with_identity(db, name, persisted.map_or(0, |t| t.delete_seq))
            .with_snapshot(Arc::clone(state));
        table.files = Files::InSnapshot;
        table
    }

    /// The same table with its tags as plain strings rather than
    /// dictionaries (scans cast), for an engine that hands dictionaries on
    /// between stages as plain strings (Ballista's shuffle).
    pub fn with_plain_tags(mut self) -> Self {
        let fields: Vec<Field> = self
            .arrow_schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Dictionary(_, v) => f.as_ref().clone().with_data_type(v.as_ref().clone()),
                _ => f.as_ref().clone(),
            })
            .collect();
        self.arrow_schema = Arc::new(Schema::new(fields));
        self.plain_tags = true;
        self
    }

    /// Holds `snapshot`, the catalog state `files` were taken from.
    pub fn with_snapshot(mut self, snapshot: Arc<CatalogState>) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// Names the snapshot as table `table` of database `db`, whose highest
    /// tombstone `seq` is `delete_seq`.
    pub fn with_identity(mut self, db: &str, table: &str, delete_seq: u64) -> Self {
        self.name = Some((db.to_string(), table.to_string()));
        self.delete_seq = delete_seq;
        self
    }

    pub fn identity(&self) -> Option<(&str, &str)> {
        self.name.as_ref().map(|(d, t)| (d.as_str(), t.as_str()))
    }

    /// The catalog commit this table was read at (0 for a listed part).
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.seq)
    }

    pub fn delete_seq(&self) -> u64 {
        self.delete_seq
    }

    /// The table's live files.
    pub fn files(&self) -> Vec<&FileMeta> {
        self.live_files().collect()
    }

    /// The table's live files, without collecting them.
    pub(crate) fn live_files(&self) -> Box<dyn Iterator<Item = &FileMeta> + '_> {
        match &self.files {
            Files::Listed(files) => Box::new(files.iter()),
            Files::InSnapshot => {
                let table = match (&self.snapshot, &self.name) {
                    (Some(state), Some((db, name))) => state.table(db, name),
                    _ => None,
                };
                Box::new(table.into_iter().flat_map(|t| t.files.values()))
            }
        }
    }

    /// The times a scan with `filters` reads: theirs, past the expiry.
    fn scan_range(&self, filters: &[Expr]) -> TimeRange {
        let mut range = TimeRange::from_filters(filters);
        if let Some(cutoff) = self.expired_before {
            range.min = range.min.max(cutoff);
        }
        range
    }

    /// At most how many rows a scan with `filters` decodes (see
    /// [`crate::scan_size`]); counting stops once past `limit`.
    pub fn estimated_rows(&self, state: &dyn Session, filters: &[Expr], limit: u64) -> u64 {
        let range = self.scan_range(filters);
        let mut rows: u64 = self
            .buffered
            .iter()
            .filter(|b| range.overlaps(b.min_time, b.max_time))
            .flat_map(|b| &b.batches)
            .map(|b| b.num_rows() as u64)
            .sum();
        let mut files = self
            .live_files()
            .filter(|f| range.overlaps(f.min_time, f.max_time))
            .peekable();
        if rows > limit || files.peek().is_none() {
            return rows;
        }
        let pruning = FilePruning::new(state, &self.arrow_schema, range, filters);
        let mut plans = HashMap::new();
        let mut complete = true;
        for f in files {
            let (n, plan) = pruning.file_rows(f);
            rows = rows.saturating_add(n);
            if rows > limit {
                return rows;
            }
            match plan {
                // Without the row groups the statistics prove fully matched:
                // the scan's predicate has conjuncts of its own (expiry,
                // overlaps), so its row filter must still run on them.
                Some(plan) => {
                    plans.insert(f.path.clone(), ParquetAccessPlan::new(plan.into_inner()));
                }
                None => complete = false,
            }
        }
        if complete {
            let filters = unnormalize_cols(filters.iter().cloned());
            *self.pruned.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Pruned { filters, plans });
        }
        rows
    }

    /// The access plans [`FleetTable::estimated_rows`] worked out for a scan
    /// with `filters`, if it was the last estimate made.
    fn take_pruned(&self, filters: &[Expr]) -> Option<HashMap<String, ParquetAccessPlan>> {
        let pruned = self
            .pruned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        (pruned.filters == unnormalize_cols(filters.iter().cloned())).then_some(pruned.plans)
    }

    pub fn buffered(&self) -> &[BufferedPartition] {
        &self.buffered
    }

    pub fn tombstones(&self) -> &[Tombstone] {
        &self.tombstones
    }

    pub fn expired_before(&self) -> Option<i64> {
        self.expired_before
    }

    pub fn table_schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    pub fn is_tag(&self, column: &str) -> bool {
        self.schema.kind_of(column) == Some(ColumnKind::Tag)
    }

    /// The same table (schema, deletes), reading only `files` and
    /// `buffered`, with no name and no retention.
    pub fn part(&self, files: Vec<FileMeta>, buffered: Vec<BufferedPartition>) -> Self {
        let mut part = Self::new(self.schema.clone(), files, buffered, self.store_url.clone())
            .with_tombstones(self.tombstones.clone());
        part.snapshot = self.snapshot.clone();
        part
    }

    /// Deletes to apply: rows written before a tombstone that it matches
    /// are not returned.
    pub fn with_tombstones(mut self, tombstones: Vec<Tombstone>) -> Self {
        self.tombstones = tombstones;
        self
    }

    /// Rows older than `cutoff` (ns) are not returned.
    pub fn with_expiry(mut self, cutoff: Option<i64>) -> Self {
        self.expired_before = cutoff;
        self
    }

    fn visible(&self, range: &TimeRange) -> Option<Expr> {
        visibility_of(
            &self.schema,
            &self.tombstones,
            self.expired_before,
            range,
            !self.plain_tags,
        )
    }

    fn is_identity(&self, e: &Expr) -> bool {
        e.column_refs().iter().all(|c| {
            matches!(
                self.schema.kind_of(&c.name),
                Some(ColumnKind::Tag | ColumnKind::Time)
            )
        })
    }

    /// Indices (into the table schema) of the identity: tags by name, then time.
    fn key_indices(&self) -> Vec<usize> {
        let mut key: Vec<usize> = self
            .schema
            .tags_sorted()
            .iter()
            .filter_map(|t| self.arrow_schema.index_of(t).ok())
            .collect();
        key.push(
            self.arrow_schema
                .index_of(TIME_COLUMN)
                .expect("time column"),
        );
        key
    }
}

/// How a scan divides its chunks. `overlaps` are the half-open time
/// intervals `[start, end)` where rows of one identity may sit in more than one
/// chunk: where two or more files overlap, and the whole range of every
/// buffered partition (requests within it may repeat identities). Outside
/// them every row is unique, because each data file is de-duplicated within.
#[derive(Debug, Default, PartialEq)]
struct ChunkPlan {
    overlaps: Vec<(i64, i64)>,
    /// Files with rows outside `overlaps`: scanned directly, minus `overlaps`.
    plain: Vec<usize>,
    /// Files with rows inside `overlaps`: their rows there are de-duplicated.
    dedup_files: Vec<usize>,
    dedup_bufs: Vec<usize>,
}

/// `files` are `(min_time, max_time, run)`. Files of one compaction run hold
/// disjoint series, so a run counts as one chunk spanning its files' range.
fn plan_chunks(files: &[(i64, i64, Option<u64>)], buffered: &[(i64, i64)]) -> ChunkPlan {
    let mut chunks: Vec<(i64, i64)> = files
        .iter()
        .filter(|f| f.2.is_none())
        .map(|&(min, max, _)| (min, max))
        .collect();
    let mut runs: std::collections::BTreeMap<u64, (i64, i64)> = Default::default();
    for &(min, max, run) in files {
        if let Some(r) = run {
            let e = runs.entry(r).or_insert((min, max));
            *e = (e.0.min(min), e.1.max(max));
        }
    }
    chunks.extend(runs.into_values());
    // Sweep over half-open ranges for the places two or more chunks cover.
    let mut events: Vec<(i64, i32)> = chunks
        .iter()
        .flat_map(|&(min, max)| [(min, 1), (max.saturating_add(1), -1)])
        .collect();
    events.sort_unstable();
    let mut intervals: Vec<(i64, i64)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        let before = depth;
        while i < events.len() && events[i].0 == at {
            depth += events[i].1;
            i += 1;
        }
        if before < 2 && depth >= 2 {
            intervals.push((at, at));
        } else if before >= 2 && depth < 2 {
            intervals.last_mut().expect("opened above").1 = at;
        }
    }
    intervals.extend(
        buffered
            .iter()
            .map(|&(min, max)| (min, max.saturating_add(1))),
    );
    intervals.sort_unstable();
    let mut overlaps: Vec<(i64, i64)> = Vec::new();
    for (a, b) in intervals {
        match overlaps.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => overlaps.push((a, b)),
        }
    }
    let mut plan = ChunkPlan {
        dedup_bufs: (0..buffered.len()).collect(),
        ..ChunkPlan::default()
    };
    for (f, &(min, max, _)) in files.iter().enumerate() {
        let end = max.saturating_add(1);
        let touching = overlaps.iter().filter(|&&(a, b)| a < end && min < b);
        let mut covered_to = min;
        let mut touches = false;
        for &(a, b) in touching {
            touches = true;
            if a <= covered_to {
                covered_to = covered_to.max(b);
            }
        }
        if touches {
            plan.dedup_files.push(f);
        }
        if covered_to < end {
            plan.plain.push(f);
        }
    }
    plan.overlaps = overlaps;
    plan
}

/// What every row of a table must satisfy to be visible: not expired (time
/// at or after `expired_before`), and not deleted by a tombstone overlapping
/// `range` (one that names a tag the table lacks matches nothing). Refers to
/// `__seq`, `time` and tags.
pub fn visibility(
    schema: &TableSchema,
    tombstones: &[Tombstone],
    expired_before: Option<i64>,
    range: &TimeRange,
) -> Option<Expr> {
    visibility_of(schema, tombstones, expired_before, range, true)
}

/// [`visibility`], comparing tags as dictionaries (`dictionary_tags`) or
/// as plain strings.
fn visibility_of(
    schema: &TableSchema,
    tombstones: &[Tombstone],
    expired_before: Option<i64>,
    range: &TimeRange,
    dictionary_tags: bool,
) -> Option<Expr> {
    let mut parts: Vec<Expr> = Vec::new();
    if let Some(cutoff) = expired_before {
        parts.push(time_col().gt_eq(ts_lit(cutoff)));
    }
    for t in tombstones {
        if !range.overlaps(t.min_time, t.max_time)
            || t.tags
                .iter()
                .any(|(k, _)| schema.kind_of(k) != Some(ColumnKind::Tag))
        {
            continue;
        }
        let mut deleted = Expr::Column(Column::new_unqualified(SEQ_COLUMN))
            .lt(lit(ScalarValue::UInt64(Some(t.seq))))
            .and(time_col().gt_eq(ts_lit(t.min_time)))
            .and(time_col().lt_eq(ts_lit(t.max_time)));
        for (k, v) in &t.tags {
            let value = ScalarValue::Utf8(Some(v.clone()));
            let value = if dictionary_tags {
                ScalarValue::Dictionary(Box::new(DataType::Int32), Box::new(value))
            } else {
                value
            };
            deleted = deleted.and(Expr::Column(Column::new_unqualified(k)).eq(lit(value)));
        }
        // A row with a NULL tag is not matched: keep it, not drop it.
        parts.push(Expr::IsNotTrue(Box::new(deleted)));
    }
    conjunction(parts)
}

fn time_col() -> Expr {
    Expr::Column(Column::new_unqualified(TIME_COLUMN))
}

fn ts_lit(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// `time` within any of `intervals` (half-open).
fn time_in(intervals: &[(i64, i64)]) -> Option<Expr> {
    disjunction(
        intervals
            .iter()
            .map(|&(a, b)| time_col().gt_eq(ts_lit(a)).and(time_col().lt(ts_lit(b)))),
    )
}

#[async_trait]
impl datafusion::catalog::TableProvider for FleetTable {
    fn schema(&self) -> SchemaRef {
        self.arrow_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
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
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.arrow_schema.fields().len()).collect());
        let out_schema = Arc::new(self.arrow_schema.project(&projection)?);
        let range = self.scan_range(filters);
        let visible = self.visible(&range);
        let files: Vec<&FileMeta> = self
            .live_files()
            .filter(|f| range.overlaps(f.min_time, f.max_time))
            .collect();
        let buffered: Vec<&BufferedPartition> = self
            .buffered
            .iter()
            .filter(|b| range.overlaps(b.min_time, b.max_time))
            .collect();
        let plan = plan_chunks(
            &files
                .iter()
                .map(|f| (f.min_time, f.max_time, f.run))
                .collect::<Vec<_>>(),
            &buffered
                .iter()
                .map(|b| (b.min_time, b.max_time))
                .collect::<Vec<_>>(),
        );
        let in_overlaps = time_in(&plan.overlaps);

        let mut parts: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !plan.plain.is_empty() {
            let chosen: Vec<&FileMeta> = plan.plain.iter().map(|&i| files[i]).collect();
            let outside = in_overlaps.clone().map(|e| !e);
            let expiry = self.expired_before.map(|c| time_col().gt_eq(ts_lit(c)));
            let all = conjunction(filters.iter().cloned().chain(outside.clone()).chain(expiry));
            let exact = conjunction(outside.into_iter().chain(visible.clone()));
            let pruned = self.take_pruned(filters);
            parts.push(self.plain_scan(
                state,
                &chosen,
                &projection,
                all,
                exact,
                pruned.as_ref(),
            )?);
        }
        if !plan.dedup_files.is_empty() || !plan.dedup_bufs.is_empty() {
            let identity = conjunction(filters.iter().filter(|f| self.is_identity(f)).cloned());
            let chosen_files: Vec<&FileMeta> = plan.dedup_files.iter().map(|&i| files[i]).collect();
            let chosen_bufs: Vec<&BufferedPartition> =
                plan.dedup_bufs.iter().map(|&i| buffered[i]).collect();
            parts.push(self.dedup_scan(
                state,
                &chosen_files,
                &chosen_bufs,
                &projection,
                DedupFilters {
                    identity,
                    in_overlaps,
                    visible,
                },
            )?);
        }
        Ok(match parts.len() {
            0 => Arc::new(EmptyExec::new(out_schema)),
            1 => parts.pop().expect("one part"),
            _ => UnionExec::try_new(parts)?,
        })
    }
}

impl FleetTable {
    fn schema_with_seq(&self) -> SchemaRef {
        let mut fields: Vec<_> = self.arrow_schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(SEQ_COLUMN, DataType::UInt64, false)));
        Arc::new(Schema::new(fields))
    }

    /// Scans `files`. With `with_seq`, each row gets the file's `__seq` as an
    /// extra last column (`projection` may then name index `n_columns`).
    /// With `pruned` holding every file's access plan (pruned by filters
    /// that `predicate` implies), each file is read by its plan and not
    /// pruned again, and a file it skips whole is not opened.
    fn parquet_scan(
        &self,
        state: &dyn Session,
        files: &[&FileMeta],
        with_seq: bool,
        projection: Vec<usize>,
        predicate: Option<Expr>,
        pruned: Option<&HashMap<String, ParquetAccessPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let pruned = pruned.filter(|p| files.iter().all(|f| p.contains_key(&f.path)));
        let files: Vec<&FileMeta> = match pruned {
            Some(p) => files
                .iter()
                .filter(|f| !p[&f.path].row_group_indexes().is_empty())
                .copied()
                .collect(),
            None => files.to_vec(),
        };
        let partition_cols = if with_seq {
            vec![Arc::new(Field::new(SEQ_COLUMN, DataType::UInt64, false))]
        } else {
            vec![]
        };
        let table_schema = DfTableSchema::builder(self.arrow_schema.clone())
            .with_table_partition_cols(partition_cols)
            .build();
        let store = state.runtime_env().object_store(&self.store_url)?;
        let metadata_cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let mut source = ParquetSource::new(table_schema);
        if pruned.is_some() {
            let mut options = source.table_parquet_options().clone();
            options.global.pruning = false;
            source = source.with_table_parquet_options(options);
        }
        let mut source = source
            .with_enable_page_index(pruned.is_none())
            .with_pushdown_filters(!self.plain_tags)
            .with_reorder_filters(true)
            // fleetlake writes no bloom filters: do not look for them.
            .with_bloom_filter_on_read(false)
            .with_parquet_file_reader_factory(Arc::new(
                crate::parquet_reader::PageIndexCachingFactory::new(store, metadata_cache)
                    .holding(self.snapshot.clone()),
            ));
        if let Some(p) = predicate {
            let df_schema = DFSchema::try_from(self.arrow_schema.as_ref().clone())?;
            let physical = state.create_physical_expr(p, &df_schema)?;
            source = source.with_predicate(physical);
        }
        let target = state.config_options().execution.target_partitions.max(1);
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); target.min(files.len()).max(1)];
        // Largest first, each to the currently smallest group.
        let mut sorted: Vec<&&FileMeta> = files.iter().collect();
        sorted.sort_by_key(|f| std::cmp::Reverse(f.bytes));
        let mut sizes = vec![0u64; groups.len()];
        for f in sorted {
            let g = (0..groups.len())
                .min_by_key(|&g| sizes[g])
                .expect("a group");
            sizes[g] += f.bytes;
            let mut pf = PartitionedFile::new(f.path.clone(), f.bytes);
            if let Some(plan) = pruned.and_then(|p| p.get(&f.path)) {
                pf = pf.with_extension(plan.clone());
            }
            if with_seq {
                pf = pf.with_partition_values(vec![ScalarValue::UInt64(Some(f.seq))]);
            }
            groups[g].push(pf);
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(Some(projection))?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// Scans files that need no de-duplication. `exact` must hold for every
    /// row returned (it keeps rows that a de-duplicating scan also returns
    /// out): it is applied above the scan, reading `time` if the projection
    /// does not.
    fn plain_scan(
        &self,
        state: &dyn Session,
        files: &[&FileMeta],
        projection: &[usize],
        predicate: Option<Expr>,
        exact: Option<Expr>,
        pruned: Option<&HashMap<String, ParquetAccessPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(exact) = exact else {
            return self.parquet_scan(state, files, false, projection.to_vec(), predicate, pruned);
        };
        let with_seq = self.schema_with_seq();
        let mut read = projection.to_vec();
        for c in exact.column_refs() {
            let i = with_seq.index_of(&c.name)?;
            if !read.contains(&i) {
                read.push(i);
            }
        }
        let needs_seq = read.contains(&self.arrow_schema.fields().len());
        let scan = self.parquet_scan(state, files, needs_seq, read.clone(), predicate, pruned)?;
        let filtered = exact_filter(state, scan, Some(exact))?;
        if read.len() == projection.len() {
            return Ok(filtered);
        }
        let schema = filtered.schema();
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = (0..projection.len())
            .map(|i| {
                let name = schema.field(i).name().clone();
                (
                    Arc::new(PhysColumn::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, filtered)?))
    }

    fn dedup_scan(
        &self,
        state: &dyn Session,
        files: &[&FileMeta],
        buffered: &[&BufferedPartition],
        projection: &[usize],
        filters: DedupFilters,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let DedupFilters {
            identity,
            in_overlaps,
            visible,
        } = filters;
        let n = self.arrow_schema.fields().len();
        let key = self.key_indices();
        // Columns read below the dedup: the projection plus the key, in table order, plus __seq.
        let mut inner: Vec<usize> = projection
            .iter()
            .chain(key.iter())
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        inner.sort_unstable();
        inner.push(n);
        let with_seq = self.schema_with_seq();
        let inner_schema = Arc::new(with_seq.project(&inner)?);

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let predicate = conjunction(identity.clone().into_iter().chain(in_overlaps.clone()));
            // Pruned by non-identity filters, a file could lose a row's newer
            // version: the de-duplicating scan prunes by its own predicate.
            let scan = self.parquet_scan(state, files, true, inner.clone(), predicate, None)?;
            // Rows outside the overlaps are the plain scan's: never both.
            // Deleted rows go before the merge, so their fields cannot fill
            // NULLs of a later write.
            let exact = conjunction(in_overlaps.clone().into_iter().chain(visible.clone()));
            inputs.push(exact_filter(state, scan, exact)?);
        }
        if !buffered.is_empty() {
            let batches = buffered
                .iter()
                .flat_map(|b| b.batches.iter())
                .map(|b| align_to_schema(b, &with_seq))
                .collect::<Result<Vec<_>, _>>()?;
            let mem = MemorySourceConfig::try_new_exec(
                &[batches],
                with_seq.clone(),
                Some(inner.clone()),
            )?;
            let keep = conjunction(identity.clone().into_iter().chain(visible));
            inputs.push(exact_filter(state, mem, keep)?);
        }
        let union: Arc<dyn ExecutionPlan> = if inputs.len() == 1 {
            inputs.pop().expect("one input")
        } else {
            UnionExec::try_new(inputs)?
        };
        let single: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(union));
        let pos = |table_idx: usize| {
            inner
                .iter()
                .position(|&i| i == table_idx)
                .expect("key is read")
        };
        let key_inner: Vec<usize> = key.iter().map(|&k| pos(k)).collect();
        let seq_inner = inner.len() - 1;
        let sort_exprs = key_inner.iter().chain([&seq_inner]).map(|&i| {
            PhysicalSortExpr::new(
                Arc::new(PhysColumn::new(inner_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>,
                SERIES_SORT,
            )
        });
        let ordering = LexOrdering::new(sort_exprs).expect("non-empty ordering");
        let sorted = Arc::new(SortExec::new(ordering.clone(), single));
        let dedup = Arc::new(DedupExec::new(sorted, key_inner, ordering));
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .iter()
            .map(|&p| {
                let i = pos(p);
                let name = inner_schema.field(i).name().clone();
                (
                    Arc::new(PhysColumn::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, dedup)?))
    }
}

/// The predicates below a de-duplicating scan.
struct DedupFilters {
    /// The query's filters on tags and `time` (pruning; re-applied above).
    identity: Option<Expr>,
    /// Where chunks overlap: file rows elsewhere belong to the plain scan.
    in_overlaps: Option<Expr>,
    /// Not deleted, not expired.
    visible: Option<Expr>,
}

/// `plan` filtered by `predicate`, exactly (a `FilterExec`).
fn exact_filter(
    state: &dyn Session,
    plan: Arc<dyn ExecutionPlan>,
    predicate: Option<Expr>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let Some(predicate) = predicate else {
        return Ok(plan);
    };
    let df_schema = DFSchema::try_from(plan.schema().as_ref().clone())?;
    let physical = state.create_physical_expr(predicate, &df_schema)?;
    Ok(Arc::new(FilterExec::try_new(physical, plan)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_touching_at_one_instant_overlap_only_there() {
        // Three flushes cut mid-epoch: each shares one timestamp with the next.
        let plan = plan_chunks(&[(0, 10, None), (10, 20, None), (20, 30, None)], &[]);
        assert_eq!(plan.overlaps, vec![(10, 11), (20, 21)]);
        assert_eq!(plan.plain, vec![0, 1, 2]);
        assert_eq!(plan.dedup_files, vec![0, 1, 2]);
        assert!(plan.dedup_bufs.is_empty());
    }

    #[test]
    fn disjoint_files_need_no_dedup() {
        let plan = plan_chunks(&[(0, 9, None), (10, 19, None)], &[]);
        assert!(plan.overlaps.is_empty());
        assert_eq!(plan.plain, vec![0, 1]);
        assert!(plan.dedup_files.is_empty());
    }

    #[test]
    fn a_file_inside_another_is_deduplicated_whole() {
        let plan = plan_chunks(&[(0, 100, None), (40, 50, None)], &[]);
        assert_eq!(plan.overlaps, vec![(40, 51)]);
        assert_eq!(plan.plain, vec![0]);
        assert_eq!(plan.dedup_files, vec![0, 1]);
    }

    #[test]
    fn buffers_are_always_deduplicated_with_the_files_they_touch() {
        let plan = plan_chunks(&[(0, 10, None), (30, 40, None)], &[(5, 20), (100, 100)]);
        assert_eq!(plan.overlaps, vec![(5, 21), (100, 101)]);
        assert_eq!(plan.plain, vec![0, 1]);
        assert_eq!(plan.dedup_files, vec![0]);
        assert_eq!(plan.dedup_bufs, vec![0, 1]);
    }

    #[test]
    fn three_way_overlap_is_one_interval() {
        let plan = plan_chunks(&[(0, 10, None), (5, 15, None), (8, 30, None)], &[]);
        assert_eq!(plan.overlaps, vec![(5, 16)]);
        // File 1 lies inside the overlap entirely.
        assert_eq!(plan.plain, vec![0, 2]);
        let plan = plan_chunks(&[(0, 10, None), (5, 15, None), (12, 30, None)], &[]);
        assert_eq!(plan.overlaps, vec![(5, 11), (12, 16)]);
        assert_eq!(plan.plain, vec![0, 1, 2]);
    }

    #[test]
    fn files_of_one_run_do_not_overlap_each_other() {
        // A compacted day: three files of run 7 spanning the whole day.
        let run = Some(7);
        let plan = plan_chunks(&[(0, 100, run), (0, 100, run), (1, 99, run)], &[]);
        assert!(plan.overlaps.is_empty());
        assert_eq!(plan.plain, vec![0, 1, 2]);
        // A late flush file over the run: only its range is de-duplicated.
        let plan = plan_chunks(&[(0, 100, run), (0, 100, run), (40, 50, None)], &[]);
        assert_eq!(plan.overlaps, vec![(40, 51)]);
        assert_eq!(plan.plain, vec![0, 1]);
        assert_eq!(plan.dedup_files, vec![0, 1, 2]);
    }
}
