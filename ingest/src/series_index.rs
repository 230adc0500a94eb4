//! The live series index of every table: which series have data a query
//! can see, for label listing (Grafana variables, Prometheus `labels`,
//! `label/<name>/values`, `series`) without reading any Parquet data.
//!
//! Per table, one [`SeriesIndex`] (series → id, tag value → bitmap) plus
//! "where each series lives":
//! - **Data files:** each file's series ids, read from its series file
//!   (`_index/<data path>.series`, written by the flush next to the data
//!   file). A file written by someone else (compaction, rollups) or before
//!   series files existed gets its series file built once from the file's
//!   tag columns only. Files are matched against the catalog on every query,
//!   so compaction, retention and purges are reflected at once; a removed
//!   file's series file is deleted.
//! - **Buffer generations:** the series of every acknowledged write, per
//!   table and day, filled by a background thread from the validated batches
//!   (off the request's critical path; a query first waits for the thread to
//!   catch up, so an acknowledged write is always listed). A flush seals the
//!   current generation at its WAL position; once the catalog has persisted
//!   that position the files carry those series and the generation is dropped.
//!
//! # Precision
//! - Time ranges select files by their `[min_time, max_time]` and buffered
//!   series by day: a series is listed when a file or day it is in overlaps
//!   the range, though its own points may not.
//! - A `DELETE` is reflected once it covers a whole file's time range (or
//!   after compaction rewrites the file); a series deleted from part of a
//!   file stays listed until then. Series whose rows are all past the
//!   retention horizon disappear with their files (or at once, when every
//!   row of the file is older than the horizon).
//! - Ids of series that left every file stay allocated until restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use fleetlake_storage::catalog::{Catalog, FileMeta, now_ns};
use fleetlake_storage::layout::day_bounds;
use fleetlake_storage::series_index::{
    MatchOp, Matcher, SeriesIndex, encode_series_file, load_series_file, series_file_path,
};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use roaring::RoaringBitmap;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::validate::TableWrite;

/// Series files fetched at once when a table's index is loaded.
const FETCH_CONCURRENCY: usize = 16;

type TableKey = (String, String);

#[derive(Debug)]
struct FileSeries {
    ids: RoaringBitmap,
}

#[derive(Debug, Default)]
struct TableIndex {
    index: SeriesIndex,
    /// Live data files whose series are loaded, by path.
    files: HashMap<String, FileSeries>,
}

#[derive(Debug, Default)]
struct Generation {
    /// The WAL position of the flush that sealed it; `None` for the open one.
    sealed_at: Option<u64>,
    tables: HashMap<TableKey, BTreeMap<i64, RoaringBitmap>>,
}

#[derive(Debug)]
struct State {
    tables: HashMap<TableKey, TableIndex>,
    /// Oldest first; the last one is open.
    generations: Vec<Generation>,
}

enum Msg {
    Write {
        db: String,
        writes: Vec<(String, i64, RecordBatch)>,
    },
    Seal(u64),
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The series indexes of every table. See the module docs.
pub struct SeriesIndexes {
    catalog: Arc<Catalog>,
    state: Arc<Mutex<State>>,
    tx: Mutex<mpsc::Sender<Msg>>,
    /// Serialises loading of series files (two queries never fetch the same one).
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SeriesIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesIndexes").finish_non_exhaustive()
    }
}

/// A time range, inclusive nanoseconds; `None` ends are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl TimeRange {
    fn overlaps(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min <= e)
    }
}

impl SeriesIndexes {
    /// Starts the indexing thread.
    pub fn start(catalog: Arc<Catalog>) -> Arc<Self> {
        let state = Arc::new(Mutex::new(State {
            tables: HashMap::new(),
            generations: vec![Generation::default()],
        }));
        let (tx, rx) = mpsc::channel::<Msg>();
        let st = state.clone();
        std::thread::Builder::new()
            .name("series-index".into())
            .spawn(move || index_loop(&st, rx))
            .expect("spawn the series-index thread");
        Arc::new(Self {
            catalog,
            state,
            tx: Mutex::new(tx),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    fn send(&self, msg: Msg) {
        // The thread lives as long as `self`: it only stops when the sender is dropped.
        let _ = self.tx.lock().send(msg);
    }

    /// The parts of a validated write the index needs (cheap `Arc` clones).
    pub(crate) fn pending(writes: &[TableWrite]) -> Vec<(String, i64, RecordBatch)> {
        writes
            .iter()
            .filter(|w| w.batch.num_rows() > 0)
            .map(|w| (w.table.clone(), w.day, w.batch.clone()))
            .collect()
    }

    /// Queues the series of rows applied to the buffer. Call only after the
    /// buffer has them (see [`Self::seal`]).
    pub(crate) fn add_writes(&self, db: &str, writes: Vec<(String, i64, RecordBatch)>) {
        if !writes.is_empty() {
            self.send(Msg::Write {
                db: db.to_string(),
                writes,
            });
        }
    }

    /// Seals the open buffer generation: a flush took the buffer up to WAL
    /// record `wal_seq`. Must be called while the buffer's lock is held, so
    /// that every write applied after the snapshot lands in a later generation.
    pub(crate) fn seal(&self, wal_seq: u64) {
        self.send(Msg::Seal(wal_seq));
    }

    /// Waits until every write queued before the call is indexed.
    async fn barrier(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Barrier(tx));
        let _ = rx.await;
    }

    /// Stores the series file (encoded by
    /// [`fleetlake_storage::series_index::SeriesFile`]) of a data file the
    /// flush is writing.
    ///
    /// # Errors
    /// Object-store failures.
    pub(crate) async fn put_series_file(
        store: &Arc<dyn ObjectStore>,
        data_path: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let path = series_file_path(data_path);
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| fleetlake_storage::Error::ObjectStore {
                path: path.to_string(),
                source,
            })?;
        Ok(())
    }

    /// Runs `f` on the index of `db.table` and the series live in `range`
    /// (in files the catalog lists now, or buffered), after loading any new
    /// file's series.
    ///
    /// # Errors
    /// Object-store failures while loading series files.
    pub async fn with_live<R>(
        &self,
        db: &str,
        table: &str,
        range: TimeRange,
        f: impl FnOnce(&SeriesIndex, &RoaringBitmap) -> R,
    ) -> Result<R> {
        self.barrier().await;
        let cat = self.catalog.state();
        let key = (db.to_string(), table.to_string());
        // Borrowed from the snapshot `cat`, which lives to the end of the call.
        let t = cat.table(db, table);
        if let Some(t) = &t {
            // Works whatever map type the catalog keeps files in.
            let files: HashMap<&str, &FileMeta> =
                t.files.values().map(|f| (f.path.as_str(), f)).collect();
            self.load_files(&key, &files, t.schema.tags_sorted())
                .await?;
        }
        let cutoff = cat
            .databases
            .get(db)
            .and_then(|d| d.retention_of(table))
            .map(|ttl| now_ns().saturating_sub(ttl));
        let mut st = self.state.lock();
        let persisted = cat.persisted_wal_seq;
        st.generations
            .retain(|g| g.sealed_at.is_none_or(|s| s > persisted));
        let State {
            tables,
            generations,
        } = &mut *st;
        let ti = tables.entry(key.clone()).or_default();
        let mut live = RoaringBitmap::new();
        if let Some(t) = &t {
            for (path, meta) in &t.files {
                if !range.overlaps(meta.min_time, meta.max_time)
                    || cutoff.is_some_and(|c| meta.max_time < c)
                {
                    continue;
                }
                let Some(fs) = ti.files.get(path) else {
                    continue;
                };
                let mut ids = fs.ids.clone();
                for ts in &t.tombstones {
                    if ts.affects(meta)
                        && ts.min_time <= meta.min_time
                        && ts.max_time >= meta.max_time
                    {
                        let m: Vec<Matcher> = ts
                            .tags
                            .iter()
                            .map(|(k, v)| {
                                Matcher::new(k.as_str(), MatchOp::Equal, v.as_str())
                                    .expect("equality matchers have no regex")
                            })
                            .collect();
                        let gone = ti.index.select(&m, &ids);
                        ids -= gone;
                    }
                }
                live |= ids;
            }
        }
        for g in generations.iter() {
            if let Some(days) = g.tables.get(&key) {
                for (day, ids) in days {
                    let (start, end) = day_bounds(*day);
                    if range.overlaps(start, end - 1) && cutoff.is_none_or(|c| end > c) {
                        live |= ids;
                    }
                }
            }
        }
        Ok(f(&ti.index, &live))
    }

    /// Loads the series of files not yet known and forgets files no longer live.
    async fn load_files(
        &self,
        key: &TableKey,
        files: &HashMap<&str, &FileMeta>,
        tags: Vec<&str>,
    ) -> Result<()> {
        let missing = |st: &State| -> Vec<FileMeta> {
            let known = st.tables.get(key).map(|t| &t.files);
            files
                .values()
                .filter(|f| known.is_none_or(|k| !k.contains_key(&f.path)))
                .map(|f| (*f).clone())
                .collect()
        };
        let stale: Vec<String> = {
            let st = self.state.lock();
            st.tables
                .get(key)
                .map(|t| {
                    t.files
                        .keys()
                        .filter(|p| !files.contains_key(p.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        if missing(&self.state.lock()).is_empty() && stale.is_empty() {
            return Ok(());
        }
        let _guard = self.refresh.lock().await;
        let todo = missing(&self.state.lock());
        let store = self.catalog.store().clone();
        let tags: Vec<String> = tags.into_iter().map(String::from).collect();
        let started = std::time::Instant::now();
        // Owned tasks (a JoinSet): dropping the query aborts them.
        let mut fetched: Vec<(String, Bytes)> = Vec::with_capacity(todo.len());
        for chunk in todo.chunks(FETCH_CONCURRENCY) {
            let mut set = tokio::task::JoinSet::new();
            for f in chunk {
                let (store, tags, f) = (store.clone(), tags.clone(), f.clone());
                set.spawn(async move {
                    let bytes = fetch_or_build(&store, &f, &tags).await?;
                    Ok::<_, Error>((f.path, bytes))
                });
            }
            while let Some(r) = set.join_next().await {
                fetched.push(r.expect("series file load does not panic")?);
            }
        }
        let n = fetched.len();
        let mut removed = Vec::new();
        {
            let mut st = self.state.lock();
            let ti = st.tables.entry(key.clone()).or_default();
            for (path, bytes) in fetched {
                let ids = load_series_file(&mut ti.index, bytes)?;
                ti.files.insert(path, FileSeries { ids });
            }
            ti.files.retain(|p, _| {
                let keep = files.contains_key(p.as_str());
                if !keep {
                    removed.push(p.clone());
                }
                keep
            });
        }
        if n > 0 {
            info!(
                db = %key.0,
                table = %key.1,
                files = n,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "series index loaded"
            );
        }
        // The data files stay readable for a grace period; their series are no longer needed.
        for p in removed {
            let path = series_file_path(&p);
            if let Err(e) = store.delete(&path).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                warn!(path = %path, error = %e, "deleting a series file failed");
            }
        }
        Ok(())
    }

    /// Tag keys of `db.table` among the series `matchers` select in `range`.
    ///
    /// # Errors
    /// See [`Self::with_live`].
    pub async fn label_names(
        &self,
        db: &str,
        table: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>> {
        self.with_live(db, table, range, |idx, live| {
            idx.label_names(&idx.select(matchers, live))
        })
        .await
    }

    /// Values of tag `key` of `db.table` among the series `matchers` select in `range`.
    ///
    /// # Errors
    /// See [`Self::with_live`].
    pub async fn label_values(
        &self,
        db: &str,
        table: &str,
        key: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>> {
        self.with_live(db, table, range, |idx, live| {
            if matchers.is_empty() {
                idx.label_values(key, live)
            } else {
                idx.label_values(key, &idx.select(matchers, live))
            }
        })
        .await
    }

    /// The tag sets of the series of `db.table` that `matchers` select in `range`.
    ///
    /// # Errors
    /// See [`Self::with_live`].
    pub async fn series(
        &self,
        db: &str,
        table: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<Vec<(String, String)>>> {
        self.with_live(db, table, range, |idx, live| {
            idx.select(matchers, live)
                .iter()
                .map(|id| {
                    idx.series_tags(id)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect()
        })
        .await
    }
}

/// The series file of `f`, built from the data file's tag columns (and
/// stored) when it does not exist.
async fn fetch_or_build(
    store: &Arc<dyn ObjectStore>,
    f: &FileMeta,
    tags: &[String],
) -> Result<Bytes> {
    let path = series_file_path(&f.path);
    let os_err = |p: &object_store::path::Path| {
        let p = p.to_string();
        move |source| Error::from(fleetlake_storage::Error::ObjectStore { path: p, source })
    };
    match store.get(&path).await {
        Ok(r) => return r.bytes().await.map_err(os_err(&path)),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(os_err(&path)(e)),
    }
    // Repair path: the whole object is fetched, only the tag columns are decoded.
    let data = object_store::path::Path::from(f.path.as_str());
    let raw = store
        .get(&data)
        .await
        .map_err(os_err(&data))?
        .bytes()
        .await
        .map_err(os_err(&data))?;
    let tags = tags.to_vec();
    let bytes = tokio::task::spawn_blocking(move || series_file_from_parquet(raw, &tags))
        .await
        .expect("series file build does not panic")?;
    store
        .put(&path, PutPayload::from(bytes.clone()))
        .await
        .map_err(os_err(&path))?;
    info!(file = %f.path, rows = f.rows, "series file rebuilt from the data file's tag columns");
    Ok(Bytes::from(bytes))
}

/// A series file from a data file's bytes, decoding only its tag columns.
fn series_file_from_parquet(raw: Bytes, tags: &[String]) -> Result<Vec<u8>> {
    let storage = fleetlake_storage::Error::from;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(raw)
        .map_err(storage)?;
    let rows = builder.metadata().file_metadata().num_rows();
    let present: Vec<&str> = tags
        .iter()
        .map(String::as_str)
        .filter(|t| builder.schema().field_with_name(t).is_ok())
        .collect();
    if present.is_empty() {
        // No tags: the file's rows are one series.
        let b = RecordBatch::try_new_with_options(
            Arc::new(arrow::datatypes::Schema::empty()),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(usize::from(rows > 0))),
        )?;
        return Ok(encode_series_file(&b, &[])?);
    }
    let mask =
        parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), present.iter().copied());
    let reader = builder.with_projection(mask).build().map_err(storage)?;
    let mut idx = SeriesIndex::default();
    let mut parts = Vec::new();
    for b in reader {
        let b = b?;
        // Keep only batches that bring new series: memory follows the series count.
        let before = idx.len();
        idx.insert_batch(&b, &present);
        if idx.len() > before {
            parts.push(b);
        }
    }
    if parts.is_empty() {
        return Ok(encode_series_file(
            &RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty())),
            &[],
        )?);
    }
    let all = crate::buffer::unify_and_concat(&parts)?;
    Ok(encode_series_file(&all, &present)?)
}

/// Adds the series of one validated write batch (its tag columns are the
/// dictionary-encoded ones) to `index`: the indexing thread's work per batch.
pub fn index_write(index: &mut SeriesIndex, batch: &RecordBatch) -> RoaringBitmap {
    let schema = batch.schema();
    let tags: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Dictionary(..)))
        .map(|f| f.name().as_str())
        .collect();
    index.insert_batch(batch, &tags)
}

fn index_loop(state: &Mutex<State>, rx: mpsc::Receiver<Msg>) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Write { db, writes } => {
                let mut st = state.lock();
                let State {
                    tables,
                    generations,
                } = &mut *st;
                let open = generations.last_mut().expect("an open generation");
                for (table, day, batch) in writes {
                    let key = (db.clone(), table);
                    let ids =
                        index_write(&mut tables.entry(key.clone()).or_default().index, &batch);
                    *open.tables.entry(key).or_default().entry(day).or_default() |= ids;
                }
            }
            Msg::Seal(wal_seq) => {
                let mut st = state.lock();
                st.generations
                    .last_mut()
                    .expect("an open generation")
                    .sealed_at = Some(wal_seq);
                st.generations.push(Generation::default());
            }
            Msg::Barrier(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// HTTP handlers await these: they must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(x: &SeriesIndexes) {
        assert_send(&x.label_values("db", "t", "k", &[], TimeRange::default()));
        assert_send(&x.label_names("db", "t", &[], TimeRange::default()));
        assert_send(&x.series("db", "t", &[], TimeRange::default()));
    }
}
