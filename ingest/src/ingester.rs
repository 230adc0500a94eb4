//! The write path end to end: validate → WAL (group commit) → buffer → ack,
//! and the flush of the buffer into Parquet plus one catalog commit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use fleetlake_storage::catalog::{Action, Catalog, CatalogState, Tombstone, now_ns};
use fleetlake_storage::layout::day_bounds;
use fleetlake_storage::memory_budget::{Consumer, MemoryBudget, Reservation};
use fleetlake_storage::parquet_file::{Encoded, Encoder, FileSpec, put_data_file};
use fleetlake_storage::schema::{ColumnDef, TIME_COLUMN, TableSchema, validate_name};
use fleetlake_storage::series_index::encode_series_rows;
use fleetlake_storage::series_sort::{TagOrder, order_by_series};
use fleetlake_storage::write_order::{SEQ_COLUMN, file_seq, row_seq};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::buffer::{BufferContents, align_to_schema};
use crate::error::{Error, Result};
use crate::metrics::IngestMetrics;
use crate::observer::WriteObserver;
use crate::precision::Precision;
use crate::series_index::SeriesIndexes;
use crate::validate::{RejectedLine, SchemaSource, validate};
use crate::wal::{self, AppendPayload, Wal, WalApply};

/// Configuration of the write path.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub wal_dir: PathBuf,
    /// Buffered plus in-flight bytes past which writes get [`Error::BufferFull`].
    pub memory_budget: usize,
    /// Buffer size that triggers a flush.
    pub flush_bytes: usize,
    /// Age of the oldest buffered write that triggers a flush.
    pub flush_interval: Duration,
    /// Columns a write may give a table (see
    /// [`crate::validate::DEFAULT_MAX_COLUMNS_PER_TABLE`]).
    pub max_columns_per_table: usize,
    /// The server's memory budget: the buffer, its writes in flight and
    /// flushes hold their bytes in it.
    pub budget: Arc<MemoryBudget>,
}

impl IngestConfig {
    pub fn new(wal_dir: PathBuf) -> Self {
        Self {
            wal_dir,
            memory_budget: 512 << 20,
            flush_bytes: 64 << 20,
            flush_interval: Duration::from_secs(300),
            max_columns_per_table: crate::validate::DEFAULT_MAX_COLUMNS_PER_TABLE,
            budget: MemoryBudget::unlimited(),
        }
    }
}

/// The outcome of one write request.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Rows stored (0 when a partial write was refused whole).
    pub rows: usize,
    /// The first rejected lines (at most [`crate::validate::MAX_REPORTED_LINES`]).
    pub rejected: Vec<RejectedLine>,
    /// Every rejected line.
    pub rejected_total: usize,
}

/// A snapshot of one buffered partition, for queries.
#[derive(Debug, Clone)]
pub struct BufferedPartition {
    pub day: i64,
    pub min_time: i64,
    pub max_time: i64,
    /// Each batch has some of the table's columns plus `__seq`.
    pub batches: Vec<RecordBatch>,
}

#[derive(Debug, Default)]
struct BufferState {
    active: BufferContents,
    /// Taken from `active` by a flush; visible to queries until committed.
    flushing: Option<Arc<BufferContents>>,
}

#[derive(Default)]
struct SharedBuffer {
    state: Mutex<BufferState>,
    observers: RwLock<Vec<Arc<dyn WriteObserver>>>,
}

impl std::fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBuffer").finish_non_exhaustive()
    }
}

impl WalApply for SharedBuffer {
    fn apply(&self, seq: u64, db: &str, payload: AppendPayload) {
        for o in self.observers.read().iter() {
            o.on_write(seq, db, &payload);
        }
        self.state.lock().active.insert(seq, db, payload);
    }
}

type Schemas = HashMap<String, HashMap<String, Arc<TableSchema>>>;

struct LiveSchemas(RwLock<Schemas>);

impl SchemaSource for LiveSchemas {
    fn table_schema(&self, db: &str, table: &str) -> Option<Arc<TableSchema>> {
        self.0.read().get(db)?.get(table).cloned()
    }
}

impl LiveSchemas {
    /// Publishes columns a validated request creates, unless a table would
    /// pass `max_columns` (requests validated side by side can each fit).
    fn merge(
        &self,
        db: &str,
        new_columns: &[(String, Vec<ColumnDef>)],
        max_columns: usize,
    ) -> Result<()> {
        let mut all = self.0.write();
        let tables = all.entry(db.to_string()).or_default();
        // Check first, so that a conflict publishes nothing.
        for (table, cols) in new_columns {
            let existing = tables.get(table);
            let current = existing.map_or(0, |s| s.columns().len());
            let added = cols
                .iter()
                .filter(|c| existing.is_none_or(|s| s.kind_of(&c.name).is_none()))
                .count();
            if added > 0 && current + added > max_columns {
                return Err(Error::TooManyColumns {
                    table: table.clone(),
                    columns: current + added,
                    limit: max_columns,
                });
            }
            if let Some(s) = existing {
                for c in cols {
                    if s.kind_of(&c.name).is_some_and(|k| k != c.kind) {
                        return Err(Error::ConcurrentSchemaChange {
                            table: table.clone(),
                            column: c.name.clone(),
                        });
                    }
                }
            }
        }
        for (table, cols) in new_columns {
            let s = tables.entry(table.clone()).or_default();
            let s = Arc::make_mut(s);
            for c in cols {
                s.merge_column(table, &c.name, c.kind)
                    .expect("checked above");
            }
        }
        Ok(())
    }
}

/// The write path. Create with [`Ingester::open`]; stop with [`Ingester::shutdown`].
pub struct Ingester {
    catalog: Arc<Catalog>,
    schemas: Arc<LiveSchemas>,
    buffer: Arc<SharedBuffer>,
    wal: Wal,
    inflight_bytes: AtomicUsize,
    /// The buffer's bytes in the server's memory budget (see
    /// [`Self::account_buffer`]).
    buffer_held: parking_lot::Mutex<Reservation>,
    flush_lock: tokio::sync::Mutex<()>,
    flush_wanted: Notify,
    metrics: Arc<IngestMetrics>,
    config: IngestConfig,
    series: Arc<SeriesIndexes>,
}

impl std::fmt::Debug for Ingester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester")
            .field("config", &self.config)
            .finish()
    }
}

impl Ingester {
    /// Opens the write path: loads schemas from the catalog, replays the WAL
    /// past the last persisted record, and starts the WAL writer.
    pub async fn open(catalog: Arc<Catalog>, config: IngestConfig) -> Result<Arc<Self>> {
        let state = catalog.state();
        let mut schemas: Schemas = HashMap::new();
        for (db, d) in &state.databases {
            let tables = schemas.entry(db.clone()).or_default();
            for (name, t) in &d.tables {
                tables.insert(name.clone(), Arc::new(t.schema.clone()));
            }
        }
        let schemas = Arc::new(LiveSchemas(RwLock::new(schemas)));
        let buffer = Arc::new(SharedBuffer::default());
        let series = SeriesIndexes::start(catalog.clone());
        std::fs::create_dir_all(&config.wal_dir).map_err(|source| Error::WalIo {
            path: config.wal_dir.clone(),
            source,
        })?;
        let dir = config.wal_dir.clone();
        let records = tokio::task::spawn_blocking(move || wal::read_all(&dir))
            .await
            .expect("WAL read does not panic")?;
        let persisted = state.persisted_wal_seq;
        let mut last_seq = persisted;
        let mut replayed = 0usize;
        for r in records {
            last_seq = last_seq.max(r.seq);
            if r.seq <= persisted {
                continue;
            }
            // Acked rows come back whatever the column limit is now.
            let v = validate(
                schemas.as_ref(),
                &r.db,
                &r.lines,
                r.precision,
                r.default_time_ns,
                usize::MAX,
            )?;
            if !v.rejected.is_empty() {
                warn!(
                    seq = r.seq,
                    rejected = v.rejected.len(),
                    "WAL replay rejected lines"
                );
            }
            schemas.merge(&r.db, &v.new_columns, usize::MAX)?;
            replayed += v.rows;
            let pending = SeriesIndexes::pending(&v.tables);
            buffer.apply(r.seq, &r.db, v.tables);
            series.add_writes(&r.db, pending);
        }
        info!(
            replayed_rows = replayed,
            next_seq = last_seq + 1,
            "WAL replayed"
        );
        let metrics = Arc::new(IngestMetrics::default());
        let wal = Wal::start(
            &config.wal_dir,
            last_seq + 1,
            buffer.clone() as Arc<dyn WalApply>,
            metrics.clone(),
        )?;
        let buffer_held =
            parking_lot::Mutex::new(Reservation::new(&config.budget, Consumer::WriteBuffer));
        let ingester = Arc::new(Self {
            catalog,
            schemas,
            buffer,
            wal,
            inflight_bytes: AtomicUsize::new(0),
            buffer_held,
            flush_lock: tokio::sync::Mutex::new(()),
            flush_wanted: Notify::new(),
            metrics,
            config,
            series,
        });
        ingester.account_buffer();
        Ok(ingester)
    }

    /// Sets the buffer's share of the server's memory budget to what it
    /// holds now. Called after every change of size (a write, a flush).
    /// The reservation's lock is taken before the size is read, so the
    /// last caller leaves the newest size.
    fn account_buffer(&self) {
        let mut held = self.buffer_held.lock();
        held.resize(self.buffer_bytes());
    }

    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The series index of every table (label listing without data scans).
    pub fn series_index(&self) -> &Arc<SeriesIndexes> {
        &self.series
    }

    /// Buffered bytes (active plus being flushed) and in-flight request bytes.
    pub fn buffer_bytes(&self) -> usize {
        let st = self.buffer.state.lock();
        st.active.bytes + st.flushing.as_ref().map_or(0, |f| f.bytes)
    }

    pub fn buffer_rows(&self) -> usize {
        let st = self.buffer.state.lock();
        st.active.rows + st.flushing.as_ref().map_or(0, |f| f.rows)
    }

    /// Writes a line-protocol body to database `db`.
    ///
    /// Returns after the accepted lines are durable and visible to queries.
    /// With `accept_partial == false`, a body with any bad line stores nothing.
    ///
    /// # Errors
    /// [`Error::BufferFull`] past the memory budget (retry later); an invalid
    /// database name; WAL I/O failures.
    pub async fn write_lp(
        self: &Arc<Self>,
        db: &str,
        body: String,
        precision: Precision,
        accept_partial: bool,
    ) -> Result<WriteOutcome> {
        validate_name(db).map_err(Error::InvalidDatabase)?;
        // Buffered Arrow data takes about twice the line protocol's bytes.
        if body.len().saturating_mul(2) > self.config.memory_budget {
            return Err(Error::BodyOverBudget {
                bytes: body.len(),
                budget: self.config.memory_budget,
            });
        }
        let used = self.buffer_bytes() + self.inflight_bytes.load(Ordering::Relaxed);
        if used + body.len() > self.config.memory_budget {
            self.metrics.writes_refused_buffer_full.inc();
            self.flush_wanted.notify_one();
            return Err(Error::BufferFull {
                used,
                budget: self.config.memory_budget,
            });
        }
        let inflight = body.len() * 2;
        let mut in_budget = Reservation::new(&self.config.budget, Consumer::WriteBuffer);
        if let Err(e) = in_budget.try_resize(inflight) {
            self.metrics.writes_refused_memory.inc();
            return Err(e.into());
        }
        self.inflight_bytes.fetch_add(inflight, Ordering::Relaxed);
        let result = self.write_inner(db, body, precision, accept_partial).await;
        self.inflight_bytes.fetch_sub(inflight, Ordering::Relaxed);
        self.account_buffer();
        drop(in_budget);
        if self.buffer_bytes() >= self.config.flush_bytes {
            self.flush_wanted.notify_one();
        }
        result
    }

    async fn write_inner(
        self: &Arc<Self>,
        db: &str,
        body: String,
        precision: Precision,
        accept_partial: bool,
    ) -> Result<WriteOutcome> {
        let default_time = now_ns();
        let schemas = Arc::clone(&self.schemas);
        let db_owned = db.to_string();
        let max_columns = self.config.max_columns_per_table;
        let v = tokio::task::spawn_blocking(move || {
            validate(
                schemas.as_ref(),
                &db_owned,
                &body,
                precision,
                default_time,
                max_columns,
            )
        })
        .await
        .expect("validation does not panic")?;
        self.metrics.lines_rejected.add(v.rejected_total as u64);
        if v.rows == 0 || (!accept_partial && !v.rejected.is_empty()) {
            return Ok(WriteOutcome {
                rows: 0,
                rejected: v.rejected,
                rejected_total: v.rejected_total,
            });
        }
        self.schemas
            .merge(db, &v.new_columns, self.config.max_columns_per_table)?;
        let pending = SeriesIndexes::pending(&v.tables);
        self.wal
            .append(db, default_time, precision, v.accepted_lines, v.tables)
            .await?;
        // After the append: the buffer has the rows (see SeriesIndexes::seal).
        self.series.add_writes(db, pending);
        self.metrics.rows_written.add(v.rows as u64);
        self.metrics.fields_written.add(v.fields as u64);
        Ok(WriteOutcome {
            rows: v.rows,
            rejected: v.rejected,
            rejected_total: v.rejected_total,
        })
    }

    /// Databases known to the write path (persisted or buffered).
    pub fn databases(&self) -> Vec<String> {
        let mut dbs: Vec<String> = self.schemas.0.read().keys().cloned().collect();
        dbs.sort();
        dbs
    }

    /// Tables of `db`, sorted.
    pub fn tables(&self, db: &str) -> Vec<String> {
        let mut t: Vec<String> = self
            .schemas
            .0
            .read()
            .get(db)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        t.sort();
        t
    }

    /// The current schema of a table, including columns not yet persisted.
    pub fn table_schema(&self, db: &str, table: &str) -> Option<Arc<TableSchema>> {
        self.schemas.table_schema(db, table)
    }

    /// Makes a table that another component committed to the catalog (a
    /// rollup target) visible to queries, which list the write path's schemas.
    ///
    /// # Errors
    /// [`Error::ConcurrentSchemaChange`] when a column exists with another type.
    pub fn adopt_table_schema(&self, db: &str, table: &str, schema: &TableSchema) -> Result<()> {
        self.schemas.merge(
            db,
            &[(table.to_string(), schema.columns().to_vec())],
            usize::MAX,
        )
    }

    /// The highest WAL sequence applied to the buffer. Every acknowledged
    /// write up to it is in a buffer snapshot taken afterwards or, if flushed
    /// meanwhile, in a catalog snapshot taken after that.
    pub fn applied_wal_seq(&self) -> u64 {
        let buffered = {
            let st = self.buffer.state.lock();
            let flushing = st.flushing.as_ref().map_or(0, |f| f.last_wal_seq);
            st.active.last_wal_seq.max(flushing)
        };
        // A flush commits before it releases its snapshot: read the catalog after.
        buffered.max(self.catalog.state().persisted_wal_seq)
    }

    /// A snapshot of the buffered data of one table.
    pub fn buffered(&self, db: &str, table: &str) -> Vec<BufferedPartition> {
        let st = self.buffer.state.lock();
        let key = (db.to_string(), table.to_string());
        let mut out = Vec::new();
        let sources = st.flushing.as_deref().into_iter().chain([&st.active]);
        for contents in sources {
            if let Some(t) = contents.tables.get(&key) {
                for (day, p) in &t.partitions {
                    out.push(BufferedPartition {
                        day: *day,
                        min_time: p.min_time,
                        max_time: p.max_time,
                        batches: p.batches.clone(),
                    });
                }
            }
        }
        out
    }

    /// Whether the buffer is due for a flush (size or age).
    fn flush_due(&self) -> bool {
        let st = self.buffer.state.lock();
        st.flushing.is_some()
            || st.active.bytes >= self.config.flush_bytes
            || st
                .active
                .first_insert
                .is_some_and(|t| t.elapsed() >= self.config.flush_interval)
    }

    /// Runs flushes when due until `shutdown` fires. Failed flushes are retried
    /// with back-off; their data stays buffered and queryable meanwhile.
    pub async fn run_flusher(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.flush_wanted.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if !self.flush_due() {
                continue;
            }
            match self.flush().await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    self.metrics.flush_errors.inc();
                    error!(error = %e, "flush failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Persists everything buffered now: one Parquet file per table and day,
    /// one catalog commit, then drops the WAL segments it covers. Returns the
    /// number of files written.
    pub async fn flush(&self) -> Result<usize> {
        let _guard = self.flush_lock.lock().await;
        let snapshot = {
            let mut st = self.buffer.state.lock();
            if st.flushing.is_none() {
                // Rows, or only empty records (a delete's barrier) whose
                // sequence is still to be persisted.
                let persisted = self.catalog.state().persisted_wal_seq;
                if st.active.is_empty() && st.active.last_wal_seq <= persisted {
                    return Ok(0);
                }
                let taken = std::mem::take(&mut st.active);
                self.series.seal(taken.last_wal_seq);
                st.flushing = Some(Arc::new(taken));
            }
            st.flushing.clone().expect("set above")
        };
        self.wal.rotate().await;
        let started = std::time::Instant::now();
        let wal_seq = snapshot.last_wal_seq;
        let seq = file_seq(wal_seq);
        let cat_state = self.catalog.state();
        let mut actions = Vec::new();
        let mut files = Vec::new();
        let mut keys: Vec<_> = snapshot.tables.keys().collect();
        keys.sort();
        let mut dbs_created = Vec::new();
        for key in keys {
            let (db, table) = key;
            let tb = &snapshot.tables[key];
            let live = self
                .table_schema(db, table)
                .expect("buffered tables have a schema");
            actions.extend(schema_actions(
                &cat_state,
                db,
                table,
                &live,
                &mut dbs_created,
            ));
            let target = with_seq(live.arrow_schema());
            // Every file of a table sorts by one order, so files merge without
            // re-sorting; a table's first flush picks it.
            let mut sort_key: Option<Vec<String>> = cat_state
                .table(db, table)
                .map(|t| t.schema.sort_key().to_vec())
                .filter(|k| !k.is_empty());
            for (day, p) in &tb.partitions {
                let mut schema = (*live).clone();
                if let Some(k) = &sort_key {
                    schema.set_sort_key(k);
                }
                let fixed = sort_key.is_some();
                let tags: Vec<String> = live.tags_sorted().into_iter().map(String::from).collect();
                // Sorting and encoding a partition is CPU-heavy: keep it off the async workers.
                // Never refused: the flush frees the buffer it reads.
                let mut work = Reservation::new(&self.config.budget, Consumer::Flush);
                work.resize(flush_work_bytes(p.rows, p.bytes));
                let (target2, batches) = (target.clone(), p.batches.clone());
                let part = tokio::task::spawn_blocking(move || {
                    encode_partition(&schema, fixed, &target2, &batches, &tags)
                })
                .await
                .expect("encoding does not panic")?;
                work.resize(part.data.bytes.len() + part.series.len());
                let order = part.order;
                if sort_key.is_none() {
                    actions.push(Action::SetSortKey {
                        db: db.clone(),
                        table: table.clone(),
                        tags: order.clone(),
                    });
                    sort_key = Some(order.clone());
                }
                let (start, _) = day_bounds(*day);
                let day_name = fleetlake_storage::layout::day_of(start);
                let spec = FileSpec {
                    db,
                    table,
                    day: &day_name,
                    rows: part.data.rows,
                    min_time: part.data.min_time,
                    max_time: part.data.max_time,
                    seq,
                };
                let mut meta = put_data_file(self.catalog.store(), spec, part.data.bytes).await?;
                SeriesIndexes::put_series_file(self.catalog.store(), &meta.path, part.series)
                    .await?;
                drop(work);
                meta.sort_order = order;
                self.metrics.flushed_rows.add(meta.rows);
                self.metrics.flushed_bytes.add(meta.bytes);
                files.push(meta);
            }
        }
        let n = files.len();
        actions.push(Action::AddFiles { files });
        actions.push(Action::PersistedWal { wal_seq });
        fleetlake_storage::fault::point("flush:before_commit");
        self.catalog.commit(actions).await?;
        self.buffer.state.lock().flushing = None;
        self.account_buffer();
        self.metrics.flushes.inc();
        let wal = &self.wal;
        match wal.remove_persisted(wal_seq) {
            Ok(removed) => info!(
                files = n,
                rows = snapshot.rows,
                wal_seq,
                removed_segments = removed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "flushed"
            ),
            Err(e) => warn!(error = %e, "flushed, but removing WAL segments failed"),
        }
        Ok(n)
    }

    /// Deletes the rows of `db.table` written so far with `time` in
    /// `[min_time, max_time]` whose tags equal `tags`: persists the buffer,
    /// then commits a tombstone ordered after everything persisted. Rows
    /// written after this returns are not affected.
    pub async fn delete(
        &self,
        db: &str,
        table: &str,
        min_time: i64,
        max_time: i64,
        tags: Vec<(String, String)>,
    ) -> Result<Tombstone> {
        // Twice: the first may only finish a flush already under way.
        self.flush().await?;
        self.flush().await?;
        let mut state = self.catalog.state();
        let next = |state: &CatalogState| row_seq(state.persisted_wal_seq + 1, 0);
        if state
            .table(db, table)
            .is_some_and(|t| t.delete_seq >= next(&state))
        {
            // No write since the table's last delete: this one would get its
            // seq, and what follows deletes by seq (GC, rollups) could not
            // tell the two apart. An empty WAL record, persisted, moves the
            // sequence on.
            self.wal
                .append(
                    db,
                    now_ns(),
                    Precision::Nanosecond,
                    String::new(),
                    Vec::new(),
                )
                .await?;
            self.flush().await?;
            state = self.catalog.state();
        }
        if state.table(db, table).is_none() {
            // Known to the write path but never persisted: nothing to delete.
            return Ok(Tombstone {
                seq: 0,
                min_time,
                max_time,
                tags,
                created_ns: now_ns(),
            });
        }
        // Every file holding a row written so far has seq <= persisted << 32 | MAX;
        // every row written later has __seq >= (persisted + 1) << 32.
        let tombstone = Tombstone {
            seq: next(&state),
            min_time,
            max_time,
            tags,
            created_ns: now_ns(),
        };
        self.catalog
            .commit(vec![Action::AddTombstone {
                db: db.to_string(),
                table: table.to_string(),
                tombstone: tombstone.clone(),
            }])
            .await?;
        let before_seq = tombstone.seq >> 32;
        for o in self.buffer.observers.read().iter() {
            o.on_delete(db, table, min_time, max_time, &tombstone.tags, before_seq);
        }
        Ok(tombstone)
    }

    /// Tells `observer` of every write applied from now on and of every
    /// delete (replayed WAL records came before: read them by query).
    pub fn observe(&self, observer: Arc<dyn WriteObserver>) {
        self.buffer.observers.write().push(observer);
    }

    /// Stops accepting writes, waits for queued ones, and flushes everything.
    pub async fn shutdown(&self) -> Result<()> {
        self.wal.close();
        self.flush().await?;
        Ok(())
    }
}

fn with_seq(schema: SchemaRef) -> SchemaRef {
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(SEQ_COLUMN, DataType::UInt64, false)));
    Arc::new(Schema::new(fields))
}

/// Catalog actions that make the catalog's schema of `table` match `live`.
fn schema_actions(
    state: &CatalogState,
    db: &str,
    table: &str,
    live: &TableSchema,
    dbs_created: &mut Vec<String>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let existing = state.table(db, table).map(|t| &t.schema);
    if !state.databases.contains_key(db) && !dbs_created.iter().any(|d| d == db) {
        dbs_created.push(db.to_string());
        actions.push(Action::CreateDatabase { db: db.to_string() });
    }
    if existing.is_none() {
        actions.push(Action::CreateTable {
            db: db.to_string(),
            table: table.to_string(),
        });
    }
    let new: Vec<ColumnDef> = live
        .columns()
        .iter()
        .filter(|c| existing.is_none_or(|s| s.kind_of(&c.name).is_none()))
        .cloned()
        .collect();
    if !new.is_empty() {
        actions.push(Action::AddColumns {
            db: db.to_string(),
            table: table.to_string(),
            columns: new,
        });
    }
    actions
}

/// One partition's buffered batches as a file batch: aligned to the table's
/// schema, sorted by series, time and write order, de-duplicated, without
/// `__seq`. Returns it with the tag order it is sorted by: the schema's
/// series order when `fixed`, else highest cardinality first.
/// A partition's data file and series file, encoded.
struct EncodedPartition {
    data: Encoded,
    series: Vec<u8>,
    /// Tags in the order the rows are sorted by.
    order: Vec<String>,
}

/// Rows copied out of the buffer at a time: the sorted partition is never
/// in memory whole, only its order and the encoded file.
const FLUSH_SLICE_ROWS: usize = 64 * 1024;

/// What encoding a partition of `rows` rows and `bytes` buffered bytes
/// holds besides the buffer, estimated: the sort order (32 bytes a row),
/// one slice copied out, and the encoded file (taken as a quarter of the
/// buffered bytes until its size is known).
fn flush_work_bytes(rows: usize, bytes: usize) -> usize {
    let slice = if rows > FLUSH_SLICE_ROWS {
        bytes / rows * FLUSH_SLICE_ROWS
    } else {
        bytes
    };
    rows * 32 + slice + bytes / 4
}

/// Sorts and de-duplicates a partition's buffered `batches` by series and
/// time and encodes them, slice by slice, as a data file (without
/// [`SEQ_COLUMN`]) and its series file.
fn encode_partition(
    schema: &TableSchema,
    fixed: bool,
    target: &SchemaRef,
    batches: &[RecordBatch],
    tags: &[String],
) -> Result<EncodedPartition> {
    let aligned = batches
        .iter()
        .map(|b| align_to_schema(b, target))
        .collect::<Result<Vec<_>, _>>()?;
    let sort_tags: Vec<usize> = schema
        .series_order()
        .iter()
        .map(|t| target.index_of(t))
        .collect::<Result<_, _>>()?;
    let tag_order = if fixed {
        TagOrder::Given
    } else {
        TagOrder::ByCardinality
    };
    let time = target.index_of(TIME_COLUMN)?;
    let seq_idx = target.index_of(SEQ_COLUMN)?;
    let order = order_by_series(&aligned, &sort_tags, tag_order, time, Some(seq_idx))?;
    let keep: Vec<usize> = (0..target.fields().len())
        .filter(|&i| i != seq_idx)
        .collect();
    let mut encoder = Encoder::new(Arc::new(target.project(&keep)?))?;
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let series = encode_series_rows(&order.series_rows(&aligned)?, &tags)?;
    for slice in order.batches(&aligned, FLUSH_SLICE_ROWS) {
        encoder.write(&slice?.project(&keep)?)?;
    }
    Ok(EncodedPartition {
        data: encoder.finish()?,
        series,
        order: order
            .tag_order
            .iter()
            .map(|&i| target.field(i).name().clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    async fn ingester(budget: &Arc<MemoryBudget>, wal: &std::path::Path) -> Arc<Ingester> {
        let catalog = Arc::new(Catalog::load(Arc::new(InMemory::new()), 100).await.unwrap());
        let mut config = IngestConfig::new(wal.to_path_buf());
        config.budget = Arc::clone(budget);
        Ingester::open(catalog, config).await.unwrap()
    }

    fn lines(n: usize) -> String {
        (0..n)
            .map(|i| format!("cpu,host=h{} v={i} {}\n", i % 50, 1_000_000_000 + i))
            .collect()
    }

    #[tokio::test]
    async fn the_buffer_holds_its_bytes_in_the_shared_budget() {
        let budget = MemoryBudget::new(64 << 20);
        let wal = tempfile::tempdir().unwrap();
        let ing = ingester(&budget, wal.path()).await;
        ing.write_lp("fleet", lines(2_000), Precision::Nanosecond, true)
            .await
            .unwrap();
        assert!(ing.buffer_bytes() > 0);
        assert_eq!(budget.used_by(Consumer::WriteBuffer), ing.buffer_bytes());
        ing.flush().await.unwrap();
        assert_eq!(ing.buffer_bytes(), 0);
        assert_eq!(
            budget.used(),
            0,
            "the buffer and the flush gave everything back"
        );
    }

    #[tokio::test]
    async fn a_write_is_refused_while_others_hold_the_budget() {
        let budget = MemoryBudget::new(1 << 20);
        let wal = tempfile::tempdir().unwrap();
        let ing = ingester(&budget, wal.path()).await;
        // Queries hold all but 10 KB.
        budget.grow(Consumer::Query, (1 << 20) - 10_000);
        let body = lines(500);
        assert!(body.len() * 2 > 10_000);
        let e = ing
            .write_lp("fleet", body.clone(), Precision::Nanosecond, true)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::MemoryBudget(_)), "{e}");
        assert_eq!(ing.metrics().writes_refused_memory.get(), 1);
        assert_eq!(ing.metrics().writes_refused_buffer_full.get(), 0);
        assert!(e.to_string().contains("query"), "{e}");
        assert_eq!(ing.buffer_rows(), 0, "nothing was written");
        budget.shrink(Consumer::Query, (1 << 20) - 10_000);
        let out = ing
            .write_lp("fleet", body, Precision::Nanosecond, true)
            .await
            .unwrap();
        assert_eq!(out.rows, 500);
    }

    #[tokio::test]
    async fn queries_cannot_take_the_write_reserve() {
        let budget = MemoryBudget::with_write_reserve(1 << 20, 512 << 10);
        let wal = tempfile::tempdir().unwrap();
        let ing = ingester(&budget, wal.path()).await;
        budget.try_grow(Consumer::Query, 512 << 10).unwrap();
        assert!(budget.try_grow(Consumer::Query, 1).is_err());
        let out = ing
            .write_lp("fleet", lines(500), Precision::Nanosecond, true)
            .await
            .unwrap();
        assert_eq!(out.rows, 500);
    }
}
