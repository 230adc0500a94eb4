//! The catalog: an ordered commit log on the object store, plus checkpoints.
//!
//! ```text
//! _catalog/commits/00000000000000000001.json      one JSON commit per sequence number
//! _catalog/checkpoints/00000000000000000100.json  full state as of that commit
//! ```
//!
//! # Invariants
//! - Commit `n` is written with put-if-not-exists: two writers can never both
//!   own sequence `n`. A writer that loses the race reloads and retries.
//! - State = latest checkpoint + every later commit, applied in order; the log
//!   has no gaps.
//! - A data file is visible exactly when some applied commit added it and no
//!   later one removed it. Files that no commit references are garbage.
//! - A snapshot ([`Catalog::state`]) is a reference: a removed file that a
//!   live snapshot still lists is in use ([`Catalog::in_use`]), so a reader
//!   keeps the files it planned against by holding its snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::path_map::PathMap;
use crate::schema::{ColumnDef, TableSchema};

const COMMITS_DIR: &str = "_catalog/commits";
const CHECKPOINTS_DIR: &str = "_catalog/checkpoints";
const MAX_CONFLICT_RETRIES: usize = 32;
/// Checkpoints kept: the newest and one spare.
const CHECKPOINTS_KEPT: usize = 2;

/// A Parquet data file known to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Object-store path, relative to the store root.
    pub path: String,
    pub db: String,
    pub table: String,
    /// Partition day, `YYYY-MM-DD`.
    pub day: String,
    pub rows: u64,
    pub bytes: u64,
    /// Inclusive nanosecond bounds of `time` in the file.
    pub min_time: i64,
    pub max_time: i64,
    /// Ordering of the file's rows relative to other data: a row with a higher
    /// `seq` is a later write. Every row of a file has this one value.
    pub seq: u64,
    /// When the file was committed (ns since the epoch).
    pub created_ns: i64,
    /// 0: a flush file. 1: written by compaction.
    #[serde(default)]
    pub level: u8,
    /// Files of one compaction output share a run id; their series ranges
    /// are disjoint, so no row identity is in two files of one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// The tag order the rows are sorted by (then `time`). Empty for files
    /// written before the order was recorded: those merge only by re-sorting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort_order: Vec<String>,
    /// Every tombstone with a `seq` up to this one was applied when the file
    /// was written (compaction output): none of them deletes from it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deletes_applied: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One change in a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateDatabase {
        db: String,
    },
    CreateTable {
        db: String,
        table: String,
    },
    AddColumns {
        db: String,
        table: String,
        columns: Vec<ColumnDef>,
    },
    AddFiles {
        files: Vec<FileMeta>,
    },
    /// Removes files from view. They stay listed in `removed` until
    /// [`Action::PurgeFiles`], so running queries can finish reading them and
    /// the garbage collector knows to delete them after a grace period.
    RemoveFiles {
        db: String,
        table: String,
        paths: Vec<String>,
        /// When the removal was decided (ns since the epoch).
        #[serde(default)]
        at_ns: i64,
        /// Fail the commit if any path is not a live file (compaction: its
        /// inputs must not have been removed by someone else meanwhile).
        #[serde(default)]
        strict: bool,
    },
    /// The files' objects are deleted: forget them.
    PurgeFiles {
        db: String,
        table: String,
        paths: Vec<String>,
    },
    /// Rows written before this are deleted where they match (`DELETE`).
    AddTombstone {
        db: String,
        table: String,
        tombstone: Tombstone,
    },
    /// Tombstones every affected file has been rewritten without.
    RemoveTombstones {
        db: String,
        table: String,
        seqs: Vec<u64>,
    },
    /// Sets (or with `None` clears) the retention of a database, or of one
    /// of its tables when `table` is given.
    SetRetention {
        db: String,
        table: Option<String>,
        ttl_ns: Option<i64>,
    },
    /// Fixes the sort key of a table (no-op when it has one).
    SetSortKey {
        db: String,
        table: String,
        tags: Vec<String>,
    },
    /// Every WAL record up to and including this sequence is in Parquet.
    PersistedWal {
        wal_seq: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub seq: u64,
    pub time_ns: i64,
    pub actions: Vec<Action>,
}

/// A delete: rows with `time` in `[min_time, max_time]` whose tags equal
/// `tags` are gone if they were written before it, i.e. if their write
/// sequence (a file's `seq`, a buffered row's `__seq`) is below `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub seq: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// `(tag, value)` pairs that must all match; empty matches every series.
    pub tags: Vec<(String, String)>,
    pub created_ns: i64,
}

impl Tombstone {
    /// Whether the tombstone may delete rows of `f`.
    pub fn affects(&self, f: &FileMeta) -> bool {
        f.seq < self.seq
            && f.deletes_applied < self.seq
            && f.min_time <= self.max_time
            && f.max_time >= self.min_time
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableState {
    pub schema: TableSchema,
    /// Files by path.
    pub files: PathMap<FileMeta>,
    /// Files removed from view, awaiting deletion: path → removal time (ns).
    #[serde(default)]
    pub removed: PathMap<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tombstones: Vec<Tombstone>,
    /// The highest tombstone `seq` ever added, kept after the tombstone is
    /// applied and dropped: a later delete must get a higher one, and
    /// whatever caches rows notices a delete by it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delete_seq: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatabaseState {
    pub tables: BTreeMap<String, Arc<TableState>>,
    /// Rows older than this (ns) expire, unless their table has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ns: Option<i64>,
    /// Per-table retention, by table name (a table may not exist yet).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub table_retention_ns: BTreeMap<String, i64>,
}

impl DatabaseState {
    /// The retention that applies to `table`: its own, else the database's.
    pub fn retention_of(&self, table: &str) -> Option<i64> {
        self.table_retention_ns
            .get(table)
            .copied()
            .or(self.retention_ns)
    }
}

/// The catalog's state as of commit `seq`. Immutable; replaced on each commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogState {
    pub seq: u64,
    pub persisted_wal_seq: u64,
    pub databases: BTreeMap<String, DatabaseState>,
}

impl CatalogState {
    /// Checkpoints written before tables recorded `delete_seq` hold 0 there:
    /// the tombstones left, and the deletes files were rewritten without,
    /// give it back (as high as any later reader can tell apart).
    fn restore_delete_seqs(&mut self) {
        for db in self.databases.values_mut() {
            for t in db.tables.values_mut() {
                let seen = t
                    .tombstones
                    .iter()
                    .map(|x| x.seq)
                    .chain(t.files.values().map(|f| f.deletes_applied))
                    .max()
                    .unwrap_or(0);
                if seen > t.delete_seq {
                    Arc::make_mut(t).delete_seq = seen;
                }
            }
        }
    }

    pub fn table(&self, db: &str, table: &str) -> Option<&Arc<TableState>> {
        self.databases.get(db)?.tables.get(table)
    }

    /// Applies `actions` as commit `seq`.
    ///
    /// # Errors
    /// A column type conflict or a reference to a table that does not exist.
    pub fn apply(&mut self, seq: u64, actions: &[Action]) -> Result<()> {
        for action in actions {
            match action {
                Action::CreateDatabase { db } => {
                    self.databases.entry(db.clone()).or_default();
                }
                Action::CreateTable { db, table } => {
                    self.databases
                        .entry(db.clone())
                        .or_default()
                        .tables
                        .entry(table.clone())
                        .or_default();
                }
                Action::AddColumns { db, table, columns } => {
                    let t = self.table_mut(db, table)?;
                    for c in columns {
                        t.schema.merge_column(table, &c.name, c.kind)?;
                    }
                }
                Action::AddFiles { files } => {
                    for f in files {
                        let t = self.table_mut(&f.db, &f.table)?;
                        t.files.insert(f.path.clone(), f.clone());
                    }
                }
                Action::RemoveFiles {
                    db,
                    table,
                    paths,
                    at_ns,
                    strict,
                } => {
                    let t = self.table_mut(db, table)?;
                    if *strict && let Some(p) = paths.iter().find(|p| !t.files.contains_key(p)) {
                        return Err(Error::FileNotLive { path: p.clone() });
                    }
                    for p in paths {
                        if t.files.remove(p).is_some() {
                            t.removed.insert(p.clone(), *at_ns);
                        }
                    }
                }
                Action::PurgeFiles { db, table, paths } => {
                    let t = self.table_mut(db, table)?;
                    for p in paths {
                        t.removed.remove(p);
                    }
                }
                Action::AddTombstone {
                    db,
                    table,
                    tombstone,
                } => {
                    let t = self.table_mut(db, table)?;
                    t.delete_seq = t.delete_seq.max(tombstone.seq);
                    t.tombstones.push(tombstone.clone());
                }
                Action::RemoveTombstones { db, table, seqs } => {
                    self.table_mut(db, table)?
                        .tombstones
                        .retain(|t| !seqs.contains(&t.seq));
                }
                Action::SetRetention { db, table, ttl_ns } => {
                    let d = self.databases.entry(db.clone()).or_default();
                    match (table, ttl_ns) {
                        (None, ttl) => d.retention_ns = *ttl,
                        (Some(t), Some(ttl)) => {
                            d.table_retention_ns.insert(t.clone(), *ttl);
                        }
                        (Some(t), None) => {
                            d.table_retention_ns.remove(t);
                        }
                    }
                }
                Action::SetSortKey { db, table, tags } => {
                    self.table_mut(db, table)?.schema.set_sort_key(tags);
                }
                Action::PersistedWal { wal_seq } => {
                    self.persisted_wal_seq = self.persisted_wal_seq.max(*wal_seq);
                }
            }
        }
        self.seq = seq;
        Ok(())
    }

    fn table_mut(&mut self, db: &str, table: &str) -> Result<&mut TableState> {
        let t = self
            .databases
            .get_mut(db)
            .and_then(|d| d.tables.get_mut(table))
            .ok_or_else(|| Error::TableNotFound {
                db: db.to_string(),
                table: table.to_string(),
            })?;
        Ok(Arc::make_mut(t))
    }

    pub fn file_count(&self) -> usize {
        self.databases
            .values()
            .flat_map(|d| d.tables.values())
            .map(|t| t.files.len())
            .sum()
    }
}

/// The catalog handle: the current state and the means to commit.
#[derive(Debug)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    state: RwLock<Arc<CatalogState>>,
    /// Serialises this process's commits; other processes race via put-if-not-exists.
    commit_lock: tokio::sync::Mutex<()>,
    checkpoint_every: u64,
    /// The checkpoint being written, off the commit path; each waits for the
    /// one before it, so they land in order.
    checkpointing: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Every state published that may still be alive: the snapshots readers
    /// hold. Dead ones are dropped at the next publish.
    published: parking_lot::Mutex<Vec<std::sync::Weak<CatalogState>>>,
    /// The sequence of the current state, for tasks that follow commits.
    changes: tokio::sync::watch::Sender<u64>,
    /// Files that readers outside the server may read (those the Delta logs
    /// list): in use whatever the snapshots say.
    retained: RwLock<Arc<std::collections::HashSet<String>>>,
}

fn commit_path(seq: u64) -> Path {
    Path::from(format!("{COMMITS_DIR}/{seq:020}.json"))
}

fn checkpoint_path(seq: u64) -> Path {
    Path::from(format!("{CHECKPOINTS_DIR}/{seq:020}.json"))
}

fn seq_of(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

fn os_err(path: &Path) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |source| Error::ObjectStore {
        path: path.to_string(),
        source,
    }
}

pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Catalog {
    /// Loads the catalog from `store`: the newest checkpoint plus later commits.
    pub async fn load(store: Arc<dyn ObjectStore>, checkpoint_every: u64) -> Result<Self> {
        let started = std::time::Instant::now();
        let state = newest_checkpoint(&store).await?.unwrap_or_default();
        let state = Arc::new(state);
        let catalog = Self {
            store,
            changes: tokio::sync::watch::Sender::new(state.seq),
            retained: RwLock::new(Arc::default()),
            published: parking_lot::Mutex::new(vec![Arc::downgrade(&state)]),
            state: RwLock::new(state),
            commit_lock: tokio::sync::Mutex::new(()),
            checkpoint_every: checkpoint_every.max(1),
            checkpointing: parking_lot::Mutex::new(None),
        };
        let applied = catalog.catch_up().await?;
        let s = catalog.state();
        info!(
            seq = s.seq,
            replayed_commits = applied,
            files = s.file_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "catalog loaded"
        );
        Ok(catalog)
    }

    /// The current state (a snapshot; later commits do not change it).
    pub fn state(&self) -> Arc<CatalogState> {
        Arc::clone(&self.state.read())
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Makes `next` the current state.
    fn publish(&self, next: Arc<CatalogState>) {
        let mut published = self.published.lock();
        published.retain(|w| w.strong_count() > 0);
        published.push(Arc::downgrade(&next));
        let seq = next.seq;
        *self.state.write() = next;
        self.changes.send_replace(seq);
    }

    /// Sets the files readers outside the server may still read (`keep`:
    /// in addition to those set before).
    pub fn retain_for_outside_readers(&self, paths: std::collections::HashSet<String>, keep: bool) {
        let mut retained = self.retained.write();
        if keep {
            let mut all = (**retained).clone();
            all.extend(paths);
            *retained = Arc::new(all);
        } else {
            *retained = Arc::new(paths);
        }
    }

    /// Follows commits: the receiver sees the sequence of each new state
    /// (it may skip some when several land before it looks).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether a snapshot somebody still holds, or a Delta log, lists `path`
    /// as a file of `db.table`: a reader planned against it and may still
    /// read it.
    pub fn in_use(&self, db: &str, table: &str, path: &str) -> bool {
        if self.retained.read().contains(path) {
            return true;
        }
        let live: Vec<Arc<CatalogState>> = self
            .published
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        live.iter().any(|s| {
            s.table(db, table)
                .is_some_and(|t| t.files.contains_key(path))
        })
    }

    /// Reads the commits another process wrote since our state (a read
    /// replica following the writer); returns how many it applied.
    ///
    /// # Errors
    /// The store fails, or a commit is corrupt or missing.
    pub async fn refresh(&self) -> Result<usize> {
        let _guard = self.commit_lock.lock().await;
        self.catch_up().await
    }

    /// Applies commits written after our state (by us or another writer).
    async fn catch_up(&self) -> Result<usize> {
        let mut state = (*self.state()).clone();
        let offset = commit_path(state.seq);
        let mut found: Vec<(u64, Path)> = self
            .store
            .list_with_offset(Some(&Path::from(COMMITS_DIR)), &offset)
            .try_filter_map(|m| async move { Ok(seq_of(&m.location).map(|s| (s, m.location))) })
            .try_collect()
            .await
            .map_err(os_err(&offset))?;
        found.retain(|(s, _)| *s > state.seq);
        found.sort_by_key(|(s, _)| *s);
        // Another writer checkpointed past us and deleted the commits in
        // between (see `write_checkpoint`): start from its checkpoint.
        let mut n = 0;
        if found.first().is_some_and(|(s, _)| *s > state.seq + 1)
            && let Some(newer) = newest_checkpoint(&self.store).await?
            && newer.seq > state.seq
        {
            n += (newer.seq - state.seq) as usize;
            state = newer;
            found.retain(|(s, _)| *s > state.seq);
        }
        n += found.len();
        for (seq, path) in found {
            if seq != state.seq + 1 {
                return Err(Error::CommitGap {
                    expected: state.seq + 1,
                    found: seq,
                });
            }
            let bytes = crate::store::read(self.store.as_ref(), &path).await?;
            let commit: Commit = serde_json::from_slice(&bytes)
                .map_err(|source| Error::CorruptCommit { seq, source })?;
            state.apply(seq, &commit.actions)?;
        }
        if n > 0 {
            self.publish(Arc::new(state));
        }
        Ok(n)
    }

    /// Commits `actions` as the next sequence number and returns the new state.
    ///
    /// # Errors
    /// The actions do not apply to the current state (e.g. a column type
    /// conflict introduced by another writer), or the store fails.
    pub async fn commit(&self, actions: Vec<Action>) -> Result<Arc<CatalogState>> {
        let _guard = self.commit_lock.lock().await;
        for _attempt in 0..MAX_CONFLICT_RETRIES {
            let current = self.state();
            let seq = current.seq + 1;
            let mut next = (*current).clone();
            if let Err(e) = next.apply(seq, &actions) {
                // Another writer may have made the actions valid (e.g. created
                // the table); judge them against the newest state.
                if self.catch_up().await? == 0 {
                    return Err(e);
                }
                continue;
            }
            let commit = Commit {
                seq,
                time_ns: now_ns(),
                actions: actions.clone(),
            };
            let body = serde_json::to_vec(&commit).expect("commits serialise");
            let path = commit_path(seq);
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body), opts)
                .await
            {
                Ok(_) => {
                    let next = Arc::new(next);
                    self.publish(Arc::clone(&next));
                    debug!(seq, "catalog commit");
                    if seq.is_multiple_of(self.checkpoint_every) {
                        self.start_checkpoint(Arc::clone(&next));
                    }
                    return Ok(next);
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    debug!(seq, "catalog commit lost a race; catching up");
                    self.catch_up().await?;
                }
                Err(source) => {
                    return Err(Error::ObjectStore {
                        path: path.to_string(),
                        source,
                    });
                }
            }
        }
        Err(Error::TooManyConflicts {
            attempts: MAX_CONFLICT_RETRIES,
        })
    }

    /// Writes a checkpoint of `state` in a task of the current runtime, so
    /// the commit does not wait for serialising the whole catalog (232 ms
    /// at 100,000 files). A checkpoint lost to a crash or a runtime shut
    /// down only costs start-up time: loading replays the commits after the
    /// newest checkpoint there is.
    fn start_checkpoint(&self, state: Arc<CatalogState>) {
        let store = Arc::clone(&self.store);
        let mut slot = self.checkpointing.lock();
        let before = slot.take();
        *slot = Some(tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            write_checkpoint(&store, state).await;
        }));
    }

    /// Waits for the checkpoint being written, if any.
    pub async fn checkpoint_written(&self) {
        let task = self.checkpointing.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The newest checkpoint's state, if there is one.
async fn newest_checkpoint(store: &Arc<dyn ObjectStore>) -> Result<Option<CatalogState>> {
    let checkpoints: Vec<_> = store
        .list(Some(&Path::from(CHECKPOINTS_DIR)))
        .try_collect()
        .await
        .map_err(os_err(&Path::from(CHECKPOINTS_DIR)))?;
    let Some(latest) = checkpoints.iter().filter_map(|m| seq_of(&m.location)).max() else {
        return Ok(None);
    };
    let path = checkpoint_path(latest);
    let bytes = crate::store::read(store.as_ref(), &path).await?;
    let mut state: CatalogState =
        serde_json::from_slice(&bytes).map_err(|source| Error::CorruptCheckpoint {
            seq: latest,
            source,
        })?;
    state.restore_delete_seqs();
    Ok(Some(state))
}

/// A failed checkpoint only costs start-up time, so it is logged, not raised.
async fn write_checkpoint(store: &Arc<dyn ObjectStore>, state: Arc<CatalogState>) {
    let seq = state.seq;
    let path = checkpoint_path(seq);
    let body = match tokio::task::spawn_blocking(move || serde_json::to_vec(&*state)).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            warn!(seq, error = %e, "serialising a catalog checkpoint failed");
            return;
        }
        Err(e) => {
            warn!(seq, error = %e, "the checkpoint's serialising task failed");
            return;
        }
    };
    if let Err(e) = store.put(&path, PutPayload::from(body)).await {
        warn!(seq, error = %e, "catalog checkpoint failed");
        return;
    }
    // Loading reads only the newest; one older stays as a spare. Each holds
    // the whole state (tens of MB at 100,000 files), so the rest go.
    let listed: Vec<_> = match store
        .list(Some(&Path::from(CHECKPOINTS_DIR)))
        .try_collect()
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "listing catalog checkpoints failed");
            return;
        }
    };
    let mut seqs: Vec<u64> = listed.iter().filter_map(|m| seq_of(&m.location)).collect();
    seqs.sort_unstable();
    let keep_from = seqs.len().saturating_sub(CHECKPOINTS_KEPT);
    for &old in &seqs[..keep_from] {
        if let Err(e) = store.delete(&checkpoint_path(old)).await {
            warn!(seq = old, error = %e, "deleting an old catalog checkpoint failed");
        }
    }
    // Commits up to the oldest checkpoint kept are in every checkpoint a
    // load can start from: nothing replays them again.
    let Some(&oldest_kept) = seqs.get(keep_from) else {
        return;
    };
    let commits: Vec<_> = match store
        .list(Some(&Path::from(COMMITS_DIR)))
        .try_collect()
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "listing catalog commits failed");
            return;
        }
    };
    for m in commits {
        if seq_of(&m.location).is_some_and(|s| s <= oldest_kept)
            && let Err(e) = store.delete(&m.location).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            warn!(path = %m.location, error = %e, "deleting a replayed catalog commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnKind, FieldType};
    use object_store::memory::InMemory;

    fn file(path: &str, seq: u64) -> FileMeta {
        FileMeta {
            path: path.into(),
            db: "fleet".into(),
            table: "cpu".into(),
            day: "2016-01-01".into(),
            rows: 10,
            bytes: 100,
            min_time: 0,
            max_time: 10,
            seq,
            created_ns: 0,
            level: 0,
            run: None,
            sort_order: Vec::new(),
            deletes_applied: 0,
        }
    }

    fn create() -> Vec<Action> {
        vec![
            Action::CreateDatabase { db: "fleet".into() },
            Action::CreateTable {
                db: "fleet".into(),
                table: "cpu".into(),
            },
            Action::AddColumns {
                db: "fleet".into(),
                table: "cpu".into(),
                columns: vec![ColumnDef {
                    name: "v".into(),
                    kind: ColumnKind::Field(FieldType::Float),
                }],
            },
        ]
    }

    #[tokio::test]
    async fn commits_survive_reload_with_checkpoints() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store), 3).await.unwrap();
        cat.commit(create()).await.unwrap();
        for i in 0..10 {
            cat.commit(vec![Action::AddFiles {
                files: vec![file(&format!("f{i}"), i)],
            }])
            .await
            .unwrap();
        }
        cat.commit(vec![Action::RemoveFiles {
            db: "fleet".into(),
            table: "cpu".into(),
            paths: vec!["f0".into()],
            at_ns: 7,
            strict: true,
        }])
        .await
        .unwrap();
        // Removing a file that is gone already fails a strict removal.
        let err = cat
            .commit(vec![Action::RemoveFiles {
                db: "fleet".into(),
                table: "cpu".into(),
                paths: vec!["f0".into(), "f1".into()],
                at_ns: 8,
                strict: true,
            }])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FileNotLive { .. }), "{err}");
        cat.checkpoint_written().await;
        let checkpoints: Vec<_> = store
            .list(Some(&Path::from(CHECKPOINTS_DIR)))
            .try_collect()
            .await
            .unwrap();
        let mut kept: Vec<u64> = checkpoints
            .iter()
            .filter_map(|m| seq_of(&m.location))
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![9, 12], "only the two newest checkpoints stay");
        let commits: Vec<_> = store
            .list(Some(&Path::from(COMMITS_DIR)))
            .try_collect()
            .await
            .unwrap();
        let mut left: Vec<u64> = commits.iter().filter_map(|m| seq_of(&m.location)).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            vec![10, 11, 12],
            "commits up to the spare checkpoint go"
        );
        let again = Catalog::load(Arc::clone(&store), 3).await.unwrap();
        let s = again.state();
        assert_eq!(s.seq, 12);
        assert_eq!(s.file_count(), 9);
        let cpu = s.table("fleet", "cpu").unwrap();
        assert_eq!(cpu.removed.get("f0"), Some(&7));
        again
            .commit(vec![Action::PurgeFiles {
                db: "fleet".into(),
                table: "cpu".into(),
                paths: vec!["f0".into()],
            }])
            .await
            .unwrap();
        assert!(
            again
                .state()
                .table("fleet", "cpu")
                .unwrap()
                .removed
                .is_empty()
        );
        assert_eq!(s.table("fleet", "cpu").unwrap().schema.columns().len(), 1);
    }

    #[tokio::test]
    async fn a_writer_behind_pruned_commits_starts_from_the_checkpoint() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Catalog::load(Arc::clone(&store), 3).await.unwrap();
        let b = Catalog::load(Arc::clone(&store), 3).await.unwrap();
        a.commit(create()).await.unwrap();
        for i in 0..9 {
            a.commit(vec![Action::AddFiles {
                files: vec![file(&format!("f{i}"), i)],
            }])
            .await
            .unwrap();
        }
        a.checkpoint_written().await;
        let s = b
            .commit(vec![Action::AddFiles {
                files: vec![file("x", 1)],
            }])
            .await
            .unwrap();
        assert_eq!(s.seq, 11);
        assert_eq!(s.file_count(), 10);
    }

    #[tokio::test]
    async fn a_removed_file_is_in_use_while_a_snapshot_lists_it() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(store, 100).await.unwrap();
        cat.commit(create()).await.unwrap();
        cat.commit(vec![Action::AddFiles {
            files: vec![file("a", 1)],
        }])
        .await
        .unwrap();
        let reader = cat.state();
        cat.commit(vec![Action::RemoveFiles {
            db: "fleet".into(),
            table: "cpu".into(),
            paths: vec!["a".into()],
            at_ns: 1,
            strict: true,
        }])
        .await
        .unwrap();
        assert!(
            cat.in_use("fleet", "cpu", "a"),
            "the reader's snapshot lists it"
        );
        assert!(!cat.in_use("fleet", "other", "a"));
        drop(reader);
        assert!(!cat.in_use("fleet", "cpu", "a"));
    }

    #[tokio::test]
    async fn two_writers_never_share_a_sequence_number() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Catalog::load(Arc::clone(&store), 100).await.unwrap();
        let b = Catalog::load(Arc::clone(&store), 100).await.unwrap();
        a.commit(create()).await.unwrap();
        // b has not seen a's commit; its commit must land after it, not over it.
        let s = b
            .commit(vec![Action::AddFiles {
                files: vec![file("x", 1)],
            }])
            .await
            .unwrap();
        assert_eq!(s.seq, 2);
        let c = Catalog::load(store, 100).await.unwrap();
        assert_eq!(c.state().file_count(), 1);
    }

    #[tokio::test]
    async fn conflicting_column_type_is_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Catalog::load(store, 100).await.unwrap();
        a.commit(create()).await.unwrap();
        let err = a
            .commit(vec![Action::AddColumns {
                db: "fleet".into(),
                table: "cpu".into(),
                columns: vec![ColumnDef {
                    name: "v".into(),
                    kind: ColumnKind::Field(FieldType::Integer),
                }],
            }])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ColumnTypeConflict { .. }));
        assert_eq!(a.state().seq, 1);
    }
}
