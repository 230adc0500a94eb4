//! `FleetTable`: one fleetlake table as a DataFusion table provider.
//!
//! A scan unions persisted Parquet files and the write buffer. Chunks whose
//! time ranges overlap may hold the same row identity (series + time); those
//! go through sort → [`DedupExec`] so the later write wins field by field.
//! Chunks that overlap nothing are scanned directly with every filter pushed
//! into Parquet (row groups, page index, row filters).
//!
//! # Filter contract
//! Every filter is answered `Inexact`: DataFusion re-applies them above the
//! scan. Below a de-duplication only filters on identity columns (tags and
//! `time`) are applied, because a field filter there could drop the newer of
//! two rows and resurrect the older value.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema as DfTableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
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
use fleetlake_ingest::buffer::{SEQ_COLUMN, align_to_schema};
use fleetlake_storage::catalog::FileMeta;
use fleetlake_storage::dedup::SERIES_SORT;
use fleetlake_storage::schema::{ColumnKind, TIME_COLUMN, TableSchema};

use crate::dedup_exec::DedupExec;
use crate::time_range::TimeRange;

/// A snapshot of one table: schema, files and buffered data as of planning.
#[derive(Debug)]
pub struct FleetTable {
    schema: Arc<TableSchema>,
    arrow_schema: SchemaRef,
    files: Vec<FileMeta>,
    buffered: Vec<BufferedPartition>,
    store_url: ObjectStoreUrl,
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
            files,
            buffered,
            store_url,
        }
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

enum ChunkRef {
    File(usize),
    Buffer(usize),
}

/// Splits chunks into those that overlap no other chunk and those that need
/// de-duplication. A buffered partition always needs it: requests within it
/// may repeat identities.
fn cluster(
    files: &[&FileMeta],
    buffered: &[&BufferedPartition],
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut chunks: Vec<(i64, i64, ChunkRef)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.min_time, f.max_time, ChunkRef::File(i)))
        .chain(
            buffered
                .iter()
                .enumerate()
                .map(|(i, b)| (b.min_time, b.max_time, ChunkRef::Buffer(i))),
        )
        .collect();
    chunks.sort_by_key(|c| (c.0, c.1));
    let (mut plain, mut dedup_files, mut dedup_bufs) = (vec![], vec![], vec![]);
    let mut i = 0;
    while i < chunks.len() {
        let mut j = i + 1;
        let mut max = chunks[i].1;
        while j < chunks.len() && chunks[j].0 <= max {
            max = max.max(chunks[j].1);
            j += 1;
        }
        let group = &chunks[i..j];
        let needs_dedup = group.len() > 1 || matches!(group[0].2, ChunkRef::Buffer(_));
        for (_, _, c) in group {
            match (c, needs_dedup) {
                (ChunkRef::File(f), false) => plain.push(*f),
                (ChunkRef::File(f), true) => dedup_files.push(*f),
                (ChunkRef::Buffer(b), _) => dedup_bufs.push(*b),
            }
        }
        i = j;
    }
    (plain, dedup_files, dedup_bufs)
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
        let range = TimeRange::from_filters(filters);
        let files: Vec<&FileMeta> = self
            .files
            .iter()
            .filter(|f| range.overlaps(f.min_time, f.max_time))
            .collect();
        let buffered: Vec<&BufferedPartition> = self
            .buffered
            .iter()
            .filter(|b| range.overlaps(b.min_time, b.max_time))
            .collect();
        let (plain, dedup_files, dedup_bufs) = cluster(&files, &buffered);

        let mut parts: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !plain.is_empty() {
            let all = conjunction(filters.iter().cloned());
            let chosen: Vec<&FileMeta> = plain.iter().map(|&i| files[i]).collect();
            parts.push(self.parquet_scan(state, &chosen, false, projection.clone(), all)?);
        }
        if !dedup_files.is_empty() || !dedup_bufs.is_empty() {
            let identity = conjunction(filters.iter().filter(|f| self.is_identity(f)).cloned());
            let chosen_files: Vec<&FileMeta> = dedup_files.iter().map(|&i| files[i]).collect();
            let chosen_bufs: Vec<&BufferedPartition> =
                dedup_bufs.iter().map(|&i| buffered[i]).collect();
            parts.push(self.dedup_scan(
                state,
                &chosen_files,
                &chosen_bufs,
                &projection,
                identity,
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
    fn parquet_scan(
        &self,
        state: &dyn Session,
        files: &[&FileMeta],
        with_seq: bool,
        projection: Vec<usize>,
        predicate: Option<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
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
        let mut source = ParquetSource::new(table_schema)
            .with_enable_page_index(true)
            .with_pushdown_filters(true)
            .with_reorder_filters(true)
            .with_parquet_file_reader_factory(Arc::new(CachedParquetFileReaderFactory::new(
                store,
                metadata_cache,
            )));
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

    fn dedup_scan(
        &self,
        state: &dyn Session,
        files: &[&FileMeta],
        buffered: &[&BufferedPartition],
        projection: &[usize],
        identity: Option<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
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
            inputs.push(self.parquet_scan(state, files, true, inner.clone(), identity.clone())?);
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
            let mut plan: Arc<dyn ExecutionPlan> = mem;
            if let Some(p) = &identity {
                let df_schema = DFSchema::try_from(inner_schema.as_ref().clone())?;
                let physical = state.create_physical_expr(p.clone(), &df_schema)?;
                plan = Arc::new(FilterExec::try_new(physical, plan)?);
            }
            inputs.push(plan);
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
