//! The publisher: after every catalog commit, brings each table's Delta log
//! in line with what [`super::policy`] says readers should see.
//!
//! # Invariants
//! - Our catalog commits first; the Delta commit that follows is derived
//!   from the catalog's state and the Delta log alone. A crash between the
//!   two leaves the log behind, never ahead: the next sync (at start-up, it
//!   runs before anything else touches the store) writes the difference.
//! - Garbage collection keeps every file a Delta log lists at its newest
//!   version ([`Catalog::retain_for_outside_readers`]), so a reader of the
//!   newest version never meets a deleted file. Older versions (time
//!   travel) are readable for `--gc-grace` after their files were removed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use object_store::path::Path;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::log::{self, Add, LogLine, Metadata, Protocol, Remove, Snapshot};
use futures::StreamExt;

use super::{checkpoint, policy, stats};
use crate::catalog::{Catalog, CatalogState, FileMeta, TableState, now_ns};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::fault;
use crate::layout::table_dir;

/// Commits lost to another writer in a row before a sync gives up.
const MAX_RACES: usize = 8;
/// Footers read at once for the statistics of newly published files.
const FOOTER_READS: usize = 8;
/// How often the lag is measured again when nothing is committed.
const IDLE_RESYNC: Duration = Duration::from_secs(30);
/// Wait after a failed sync before the next.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What `/metrics` shows of the publisher.
#[derive(Debug, Default)]
pub struct DeltaMetrics {
    pub commits: Counter,
    pub errors: Counter,
    /// Live files readers do not see yet (see [`policy`]).
    pub unpublished_files: AtomicU64,
    /// When the oldest of them was committed (ns since the epoch); 0 when
    /// there is none.
    pub oldest_unpublished_ns: AtomicI64,
    /// Tables that cannot be published (a column Delta cannot hold).
    pub refused_tables: AtomicU64,
    /// The catalog sequence of the last complete sync.
    pub synced_seq: AtomicU64,
}

impl DeltaMetrics {
    /// How long the oldest live file readers do not see has waited, at
    /// `now` (ns); 0 when they see every file.
    pub fn lag_seconds(&self, now: i64) -> f64 {
        match self.oldest_unpublished_ns.load(Ordering::Relaxed) {
            0 => 0.0,
            t => now.saturating_sub(t).max(0) as f64 / 1e9,
        }
    }
}

/// One table's log as we last read or wrote it.
struct TableLog {
    snapshot: Snapshot,
    /// Why the table cannot be published, when it cannot.
    refused: Option<String>,
}

pub struct Publisher {
    catalog: Arc<Catalog>,
    /// Versions between checkpoints.
    checkpoint_every: u64,
    /// How long log files stay after a newer checkpoint (time travel).
    log_retention: Duration,
    tables: tokio::sync::Mutex<BTreeMap<(String, String), TableLog>>,
    metrics: DeltaMetrics,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher that writes a checkpoint every `checkpoint_every`
    /// versions of a table, and then deletes the log files older than
    /// `log_retention` that the checkpoint replaces.
    pub fn new(catalog: Arc<Catalog>, checkpoint_every: u64, log_retention: Duration) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            checkpoint_every,
            log_retention,
            tables: tokio::sync::Mutex::new(BTreeMap::new()),
            metrics: DeltaMetrics::default(),
        })
    }

    pub fn metrics(&self) -> &DeltaMetrics {
        &self.metrics
    }

    /// Follows the catalog until `shutdown`: a sync after every commit (and
    /// every [`IDLE_RESYNC`], to measure the lag).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.catalog.subscribe();
        loop {
            let state = self.catalog.state();
            let wait = match self.sync(&state).await {
                Ok(()) => IDLE_RESYNC,
                Err(e) => {
                    warn!(error = %e, "publishing the Delta logs failed; retrying");
                    RETRY_AFTER
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Brings every table's Delta log in line with `state`.
    ///
    /// # Errors
    /// The first table that failed (the others are still synced).
    pub async fn sync(&self, state: &CatalogState) -> Result<()> {
        let mut tables = self.tables.lock().await;
        let mut first_err = None;
        let (mut unpublished, mut oldest, mut refused) = (0u64, None::<i64>, 0u64);
        // Whether what the logs list may differ from what was retained.
        let mut changed = false;
        let store = Arc::clone(self.catalog.store());
        for (db, dbs) in &state.databases {
            for (name, ts) in &dbs.tables {
                let key = (db.clone(), name.clone());
                let root = table_dir(db, name);
                if !tables.contains_key(&key) {
                    match log::replay(&store, &root).await {
                        Ok(snapshot) => {
                            changed = true;
                            tables.insert(
                                key.clone(),
                                TableLog {
                                    snapshot,
                                    refused: None,
                                },
                            );
                        }
                        Err(e) => {
                            self.metrics.errors.inc();
                            first_err.get_or_insert(e);
                            continue;
                        }
                    }
                }
                let tl = tables.get_mut(&key).expect("inserted above");
                match sync_table(&store, &root, name, ts, tl, state.seq).await {
                    Ok(s) => {
                        unpublished += s.unpublished;
                        oldest = match (oldest, s.oldest_ns) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        if let Some(reason) = s.refused {
                            refused += 1;
                            if s.first_refusal {
                                warn!(db, table = %name, %reason, "table not published as Delta");
                            }
                        }
                        if s.committed {
                            changed = true;
                            self.metrics.commits.inc();
                        }
                        if s.committed
                            && let Some(v) = tl.snapshot.version
                            && checkpoint::due(v, self.checkpoint_every)
                        {
                            match checkpoint::write(&store, &root, &tl.snapshot, &Protocol::basic())
                                .await
                            {
                                // Only reader time is at stake: log and go on.
                                Err(e) => {
                                    warn!(table = %root, error = %e, "writing a Delta checkpoint failed");
                                }
                                Ok(()) => {
                                    match checkpoint::clean_log(&store, &root, self.log_retention)
                                        .await
                                    {
                                        Ok(0) => {}
                                        Ok(n) => {
                                            info!(table = %root, deleted = n, "Delta log cleaned")
                                        }
                                        Err(e) => {
                                            warn!(table = %root, error = %e, "cleaning the Delta log failed")
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        self.metrics.errors.inc();
                        // Read the log again next time: it may be ahead of us.
                        tables.remove(&key);
                        changed = true;
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if changed {
            let listed: HashSet<String> = tables
                .iter()
                .flat_map(|((db, t), tl)| {
                    let root = table_dir(db, t);
                    tl.snapshot
                        .files
                        .keys()
                        .map(move |rel| format!("{root}/{rel}"))
                })
                .collect();
            // A table whose log could not be read may list more: keep what was
            // retained for it.
            self.catalog
                .retain_for_outside_readers(listed, first_err.is_some());
        }
        let m = &self.metrics;
        m.unpublished_files.store(unpublished, Ordering::Relaxed);
        m.oldest_unpublished_ns
            .store(oldest.unwrap_or(0), Ordering::Relaxed);
        m.refused_tables.store(refused, Ordering::Relaxed);
        match first_err {
            Some(e) => Err(e),
            None => {
                m.synced_seq.store(state.seq, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

struct TableSync {
    unpublished: u64,
    oldest_ns: Option<i64>,
    refused: Option<String>,
    first_refusal: bool,
    committed: bool,
}

/// The partition column's name: `day`, unless the table has a column of
/// that name.
fn partition_column(ts: &TableState) -> String {
    let mut name = String::from("day");
    while ts.schema.kind_of(&name).is_some() {
        name.insert(0, '_');
    }
    name
}

async fn sync_table(
    store: &Arc<dyn object_store::ObjectStore>,
    root: &Path,
    name: &str,
    ts: &TableState,
    tl: &mut TableLog,
    seq: u64,
) -> Result<TableSync> {
    let prefix = format!("{root}/");
    for _ in 0..MAX_RACES {
        let files = &tl.snapshot.files;
        let published = |path: &str| {
            path.strip_prefix(&prefix)
                .is_some_and(|rel| files.contains_key(rel))
        };
        let partition = tl
            .snapshot
            .metadata
            .as_ref()
            .and_then(|m| m.partition_columns.first().cloned())
            .unwrap_or_else(|| partition_column(ts));
        let arrow = ts.schema.arrow_schema();
        let schema = if arrow.field_with_name(&partition).is_ok() {
            Err(format!(
                "column {partition:?} was added after the table was published with {partition:?} as its partition column"
            ))
        } else {
            log::schema_string(&arrow, &partition)
        };
        // A table that cannot be published keeps what it has, minus what
        // the catalog dropped: its readers must not meet deleted files.
        let want: BTreeSet<&str> = match &schema {
            Ok(_) => policy::to_publish(ts, published),
            Err(_) => ts
                .files
                .keys()
                .map(String::as_str)
                .filter(|p| published(p))
                .collect(),
        };
        let want_rel: HashSet<&str> = want
            .iter()
            .filter_map(|p| p.strip_prefix(&prefix))
            .collect();
        let now_ms = now_ns() / 1_000_000;
        let mut lines = Vec::new();
        let metadata = match (&schema, &tl.snapshot.metadata) {
            (Ok(s), None) if !want.is_empty() => Some(Metadata {
                id: uuid::Uuid::new_v4().to_string(),
                name: Some(name.to_string()),
                format: Default::default(),
                schema_string: s.clone(),
                partition_columns: vec![partition.clone()],
                configuration: BTreeMap::new(),
                created_time: Some(now_ms),
            }),
            (Ok(s), Some(m)) if m.schema_string != *s => Some(Metadata {
                schema_string: s.clone(),
                ..m.clone()
            }),
            _ => None,
        };
        if let Some(m) = metadata {
            if tl.snapshot.version.is_none() {
                lines.push(LogLine {
                    protocol: Some(Protocol::basic()),
                    ..Default::default()
                });
            }
            lines.push(LogLine {
                meta_data: Some(m),
                ..Default::default()
            });
        }
        let (mut added, mut removed) = (0usize, 0usize);
        for (rel, add) in &tl.snapshot.files {
            if !want_rel.contains(rel.as_str()) {
                removed += 1;
                lines.push(LogLine {
                    remove: Some(Remove {
                        path: rel.clone(),
                        deletion_timestamp: Some(now_ms),
                        data_change: true,
                        extended_file_metadata: Some(true),
                        partition_values: Some(add.partition_values.clone()),
                        size: Some(add.size),
                    }),
                    ..Default::default()
                });
            }
        }
        // Only once the table has metadata (it names the partition column).
        if tl.snapshot.metadata.is_some() || lines.iter().any(|l| l.meta_data.is_some()) {
            let new: Vec<(&str, &FileMeta)> = want
                .iter()
                .filter_map(|path| Some((path.strip_prefix(&prefix)?, ts.files.get(path)?)))
                .filter(|(rel, _)| !tl.snapshot.files.contains_key(*rel))
                .collect();
            // A Vec of futures, not a mapped iterator: a closure in the
            // stream's type makes the publisher's future not provably Send.
            let mut reads = Vec::with_capacity(new.len());
            for (_, f) in &new {
                reads.push(stats::read(store, f, &ts.schema));
            }
            let stats: Vec<Option<stats::ColumnStats>> = futures::stream::iter(reads)
                .buffered(FOOTER_READS)
                .collect()
                .await;
            for ((rel, f), stats) in new.iter().zip(&stats) {
                added += 1;
                lines.push(LogLine {
                    add: Some(add_of(f, rel, &partition, stats.as_ref())),
                    ..Default::default()
                });
            }
        }
        let (unpublished, oldest_ns) = policy::unpublished(ts, &want);
        let refused = schema.err();
        let first_refusal = refused.is_some() && tl.refused.is_none();
        tl.refused.clone_from(&refused);
        let outcome = |committed| TableSync {
            unpublished,
            oldest_ns,
            first_refusal,
            refused: refused.clone(),
            committed,
        };
        if lines.is_empty() {
            return Ok(outcome(false));
        }
        lines.push(LogLine {
            commit_info: Some(serde_json::json!({
                "timestamp": now_ms,
                "operation": "WRITE",
                "operationParameters": {"mode": "Append"},
                "engineInfo": concat!("fleetlake/", env!("CARGO_PKG_VERSION")),
                "fleetlakeCatalogSeq": seq,
                "fleetlakeFilesAdded": added,
                "fleetlakeFilesRemoved": removed,
            })),
            ..Default::default()
        });
        fault::point("delta:before_commit");
        if log::commit(store, root, &mut tl.snapshot, lines).await? {
            fault::point("delta:after_commit");
            info!(table = %root, version = ?tl.snapshot.version, added, removed, "Delta commit");
            return Ok(outcome(true));
        }
        // Another writer took the version: start from the log as it is.
        tl.snapshot = log::replay(store, root).await?;
    }
    Err(Error::Invalid(format!(
        "Delta log of {root}: another writer took the next version {MAX_RACES} times in a row"
    )))
}

/// The `add` action of a catalog file, with its statistics: the row count
/// and the time bounds (milliseconds, widened outward: a reader may skip
/// files by them) from the catalog, and the other columns' from the footer.
fn add_of(f: &FileMeta, rel: &str, partition: &str, columns: Option<&stats::ColumnStats>) -> Add {
    const MS: i64 = 1_000_000;
    let floor = f.min_time.div_euclid(MS) * MS;
    let ceil = f.max_time.div_euclid(MS) * MS + if f.max_time.rem_euclid(MS) > 0 { MS } else { 0 };
    let iso = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let time = crate::schema::TIME_COLUMN.to_string();
    let mut min = serde_json::Map::from_iter([(time.clone(), iso(floor).into())]);
    let mut max = serde_json::Map::from_iter([(time.clone(), iso(ceil).into())]);
    let mut nulls = serde_json::Map::from_iter([(time, 0.into())]);
    if let Some(c) = columns {
        min.extend(c.min.iter().map(|(k, v)| (k.clone(), v.clone())));
        max.extend(c.max.iter().map(|(k, v)| (k.clone(), v.clone())));
        nulls.extend(c.null_count.iter().map(|(k, &n)| (k.clone(), n.into())));
    }
    let stats = serde_json::json!({
        "numRecords": f.rows,
        "minValues": min,
        "maxValues": max,
        "nullCount": nulls,
    });
    Add {
        path: rel.to_string(),
        partition_values: BTreeMap::from([(partition.to_string(), Some(f.day.clone()))]),
        size: f.bytes,
        modification_time: f.created_ns / 1_000_000,
        data_change: true,
        stats: Some(stats.to_string()),
    }
}
