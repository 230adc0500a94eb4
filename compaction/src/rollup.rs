//! Rollups: declarative downsampling of a table into buckets, materialized
//! incrementally as ordinary tables.
//!
//! A rollup file (TOML, `fleetlake serve --rollups FILE`) declares them:
//!
//! ```toml
//! [[rollup]]
//! source = "cpu"          # db = "fleet" unless given
//! target = "cpu_1m"
//! every = "1m"            # bucket width: ms, s, m, h or d
//! # delay = "2m"          # a bucket closes once now - delay passed its end; default = every
//! # fields = ["usage_user"]  # default: every float, integer and unsigned field
//! ```
//!
//! The target holds one row per series (the source's tags) per bucket, with
//! `time` = the bucket start (`date_bin(every, time)`) and, for each field
//! `F`: `F_min`, `F_max`, `F_sum` (the field's type, as `sum(F)`; integer sums
//! wrap past ±2^63 exactly as `sum` does), `F_count` (non-NULL values, Int64)
//! and `F_last` (the value at the latest time that has one). An exact
//! average over any span is `sum(F_sum) / sum(F_count)` — never an average
//! of averages. (Cast first for integers: `CAST(sum(F_sum) AS DOUBLE)`.)
//!
//! ```
//! use fleetlake_compaction::rollup::parse_rollups;
//! let specs = parse_rollups("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_1m\"\nevery = \"1m\"\n").unwrap();
//! assert_eq!(specs[0].every_ns, 60_000_000_000);
//! ```
//!
//! # How a pass works
//! 1. Snapshot: the highest WAL sequence applied, then the source's write
//!    buffer, then the catalog (in that order no acknowledged row is missed).
//! 2. Buckets to compute: those that closed since the watermark (the end of
//!    the last materialized bucket) plus, below the watermark, those touched
//!    by data written since the last pass — source files with a higher `seq`
//!    and buffered rows with a higher `__seq` — or by a `DELETE` since then
//!    (a source tombstone with a higher `seq`, or a file compaction rewrote
//!    without the rows of one). A late row, an overwrite, a new series and a
//!    delete all re-materialize their whole bucket from the source.
//! 3. Each day's buckets are one SQL aggregation over the source (files and
//!    buffer, de-duplicated as any query is), streamed into Parquet files of
//!    the target, sorted by series then time.
//! 4. One catalog commit adds the files (and creates the table or adds
//!    columns) and, for buckets a delete touched, a tombstone on the target
//!    ordered after its existing rows and before the new ones — a series
//!    whose rows are all gone from a bucket must lose its row there too;
//!    then the progress object is written (see [`progress`]).
//!
//! # Invariants
//! - A re-materialized bucket's rows carry a higher `seq` than any earlier
//!   rows of the target, so they win by last-write-wins: nothing is deleted.
//! - A crash anywhere in a pass leaves either uncommitted files (orphans,
//!   collected) or committed rows with stale progress (recomputed, identical).
//! - Rows a pass saw are never recomputed for the same reason again: the
//!   pass records the highest write sequence it covered.
//!
//! Not handled: changes of `fields` for buckets already materialized (they
//! need the buckets recomputed; deleting the progress object does that for
//! the whole table).

pub mod config;
mod materialize;
mod plan;
pub mod progress;
mod system;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetlake_ingest::Ingester;
use fleetlake_query::QueryEngine;
use fleetlake_query::rollup_rewrite::{RollupRegistry, RollupView};
use fleetlake_storage::catalog::{Action, FileMeta, Tombstone, now_ns};
use fleetlake_storage::fault;
use fleetlake_storage::layout::day_index;
use fleetlake_storage::write_order::file_seq;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use tracing::{info, warn};

pub use config::{RollupSpec, parse_rollups};
pub use system::RollupsTable;

use crate::error::{Error, Result};
use materialize::{Sink, plan_target, write_chunk};
use plan::{chunks, deleted_ranges, floor, late_ranges, normalize};
use progress::Progress;

/// Days of newly closed buckets computed per commit: a first pass over a
/// long history commits (and records progress) this many days at a time.
const DAYS_PER_COMMIT: usize = 31;
const HISTORY: usize = 1000;

/// What one rollup did in one run, as `system.rollups` and the admin API show it.
#[derive(Debug, Clone, Default)]
pub struct RollupRecord {
    pub started_ns: i64,
    pub db: String,
    pub source: String,
    pub target: String,
    /// Newly closed buckets computed (on days with source data; the
    /// watermark passes days without any at no cost).
    pub new_buckets: u64,
    /// Buckets below the watermark recomputed because data arrived for them.
    pub late_buckets: u64,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    /// Every bucket that starts before this is materialized.
    pub watermark_ns: Option<i64>,
    pub duration: Duration,
    pub error: Option<String>,
}

/// The configured rollups of a server and the means to materialize them.
pub struct Rollups {
    specs: Vec<RollupSpec>,
    ingester: Arc<Ingester>,
    engine: Arc<QueryEngine>,
    max_rows_per_file: u64,
    history: Mutex<VecDeque<RollupRecord>>,
    /// Where each pass publishes its progress for the queries it answers.
    registry: Arc<RollupRegistry>,
    /// One pass at a time: the background loop and the admin API share it.
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Rollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollups")
            .field("specs", &self.specs)
            .finish()
    }
}

impl Rollups {
    /// `engine` runs the aggregations: give it limits meant for background
    /// work (a long timeout, the compaction memory budget), not a user's.
    pub fn new(
        specs: Vec<RollupSpec>,
        ingester: Arc<Ingester>,
        engine: Arc<QueryEngine>,
        max_rows_per_file: u64,
        registry: Arc<RollupRegistry>,
    ) -> Arc<Self> {
        Arc::new(Self {
            specs,
            ingester,
            engine,
            max_rows_per_file: max_rows_per_file.max(1),
            history: Mutex::new(VecDeque::new()),
            registry,
            running: tokio::sync::Mutex::new(()),
        })
    }

    pub fn specs(&self) -> &[RollupSpec] {
        &self.specs
    }

    /// Runs that did work or failed, oldest first.
    pub fn history(&self) -> Vec<RollupRecord> {
        self.history.lock().iter().cloned().collect()
    }

    /// Materializes every rollup up to now. Failures are in the records.
    pub async fn run_once(&self) -> Vec<RollupRecord> {
        self.run_at(now_ns()).await
    }

    /// Materializes every rollup as if the time were `now` (ns).
    pub async fn run_at(&self, now: i64) -> Vec<RollupRecord> {
        let _guard = self.running.lock().await;
        let mut records = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            records.push(self.run_spec(spec, now).await);
        }
        records
    }

    async fn run_spec(&self, spec: &RollupSpec, now: i64) -> RollupRecord {
        let started = Instant::now();
        let mut record = RollupRecord {
            started_ns: now_ns(),
            db: spec.db.clone(),
            source: spec.source.clone(),
            target: spec.target.clone(),
            ..RollupRecord::default()
        };
        loop {
            match self.pass(spec, now, &mut record).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    warn!(db = spec.db, source = spec.source, target = spec.target, error = %e, "rollup failed");
                    record.error = Some(e.to_string());
                    break;
                }
            }
        }
        record.duration = started.elapsed();
        let did_work = record.new_buckets + record.late_buckets > 0;
        if did_work {
            info!(
                db = spec.db,
                target = spec.target,
                new_buckets = record.new_buckets,
                late_buckets = record.late_buckets,
                rows = record.rows,
                elapsed_ms = record.duration.as_millis() as u64,
                "rollup materialized"
            );
        }
        if did_work || record.error.is_some() {
            let mut h = self.history.lock();
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(record.clone());
        }
        record
    }

    /// One commit's worth of work. Returns whether more newly closed buckets
    /// remain (a long history is committed in pieces).
    async fn pass(&self, spec: &RollupSpec, now: i64, record: &mut RollupRecord) -> Result<bool> {
        let catalog = self.ingester.catalog();
        let store = catalog.store();
        let Some(source) = self.ingester.table_schema(&spec.db, &spec.source) else {
            return Ok(false); // nothing written yet
        };
        let progress = progress::load(store, &spec.db, &spec.target).await?;
        if let Some(p) = &progress
            && (p.every_ns != spec.every_ns || p.source != spec.source)
        {
            return Err(Error::Rollup(format!(
                "rollup {}: {}.{} was built from {} with buckets of {} ns; a target cannot change its source or bucket width — choose a new target",
                spec.describe(),
                spec.db,
                spec.target,
                p.source,
                p.every_ns
            )));
        }

        // Snapshot, in this order: every write up to `applied` is in the
        // buffer snapshot or in a file of the catalog snapshot.
        let applied = self.ingester.applied_wal_seq();
        let buffered = self.ingester.buffered(&spec.db, &spec.source);
        let state = catalog.state();
        let source_state = state.table(&spec.db, &spec.source);
        let files: Vec<&FileMeta> = source_state
            .map(|t| t.files.values().collect())
            .unwrap_or_default();
        let tombstones: &[Tombstone] = source_state.map_or(&[], |t| &t.tombstones);
        let every = spec.every_ns;
        let deletes_now = source_state.map_or(0, |t| t.delete_seq);
        let (watermark, seen, seen_deletes) = match &progress {
            Some(p) => (p.watermark_ns, p.seen_seq, p.seen_delete_seq),
            None => {
                let oldest = files
                    .iter()
                    .map(|f| f.min_time)
                    .chain(buffered.iter().map(|p| p.min_time))
                    .min();
                match oldest {
                    // Nothing is materialized: deletes so far need no undoing.
                    Some(t) => (floor(t, every), 0, deletes_now),
                    None => return Ok(false),
                }
            }
        };
        let covered = files
            .iter()
            .map(|f| f.seq)
            .max()
            .unwrap_or(0)
            .max(file_seq(applied))
            .max(seen);
        let data_days: BTreeSet<i64> = files
            .iter()
            .map(|f| day_index(f.min_time))
            .chain(buffered.iter().map(|p| p.day))
            .collect();

        let deletes_covered = deletes_now.max(seen_deletes);
        let deleted = deleted_ranges(&files, tombstones, seen_deletes, watermark, every);
        let mut late = late_ranges(&files, &buffered, seen, watermark, every);
        late.extend_from_slice(&deleted);
        let late_chunks = chunks(&normalize(late), every, &data_days);
        let closed = floor(now.saturating_sub(spec.delay_ns), every).max(watermark);
        let mut new_chunks = chunks(&[(watermark, closed)], every, &data_days);
        let mut next_watermark = closed;
        let mut more = false;
        // One chunk per day: the new span is one range.
        if new_chunks.len() > DAYS_PER_COMMIT {
            next_watermark = new_chunks[DAYS_PER_COMMIT].start;
            new_chunks.truncate(DAYS_PER_COMMIT);
            more = true;
        }
        let changed = progress.as_ref().is_none_or(|p| {
            (p.watermark_ns, p.seen_seq, p.seen_delete_seq)
                != (next_watermark, covered, deletes_covered)
        });

        let target = plan_target(spec, &source, &state)?;
        if late_chunks.is_empty()
            && new_chunks.is_empty()
            && deleted.is_empty()
            && target.actions.is_empty()
            && !changed
        {
            record.watermark_ns = Some(watermark);
            if let Some(p) = &progress {
                self.publish(spec, p, state.seq);
            }
            return Ok(false);
        }
        // Later than every row of the target: re-materialized buckets win,
        // and the tombstone for deleted buckets hides only the rows before.
        let tombstone_seq = state
            .table(&spec.db, &spec.target)
            .and_then(|t| t.files.values().map(|f| f.seq).max())
            .map_or(0, |s| s + 1);
        let target_seq = tombstone_seq.max(covered);
        let sink = Sink {
            store,
            spec,
            target: &target,
            seq: target_seq,
            max_rows: self.max_rows_per_file,
        };
        let source_tags = source.tags_sorted();
        let mut written: Vec<FileMeta> = Vec::new();
        for chunk in late_chunks.iter().chain(&new_chunks) {
            match write_chunk(&self.engine, &sink, &source_tags, chunk).await {
                Ok(files) => written.extend(files),
                Err(e) => {
                    delete_uncommitted(store, &written).await;
                    return Err(e);
                }
            }
        }
        record.late_buckets += late_chunks.iter().map(|c| c.buckets(every)).sum::<u64>();
        record.new_buckets += new_chunks.iter().map(|c| c.buckets(every)).sum::<u64>();

        let mut actions = target.actions;
        if state.table(&spec.db, &spec.target).is_some() {
            actions.extend(deleted.iter().map(|&(start, end)| Action::AddTombstone {
                db: spec.db.clone(),
                table: spec.target.clone(),
                tombstone: Tombstone {
                    seq: tombstone_seq,
                    min_time: start,
                    max_time: end - 1,
                    tags: Vec::new(),
                    created_ns: now_ns(),
                },
            }));
        }
        if !written.is_empty() {
            actions.push(Action::AddFiles {
                files: written.clone(),
            });
        }
        let mut catalog_seq = state.seq;
        if !actions.is_empty() {
            match catalog.commit(actions).await {
                Ok(committed) => catalog_seq = committed.seq,
                Err(e) => {
                    delete_uncommitted(store, &written).await;
                    return Err(e.into());
                }
            }
            // The query engine lists tables from the write path's schemas.
            self.ingester
                .adopt_table_schema(&spec.db, &spec.target, &target.schema)?;
            fault::point("rollup:after_commit");
        }
        record.rows += written.iter().map(|f| f.rows).sum::<u64>();
        record.files += written.len() as u64;
        record.bytes += written.iter().map(|f| f.bytes).sum::<u64>();
        let saved = Progress {
            source: spec.source.clone(),
            every_ns: every,
            watermark_ns: next_watermark,
            seen_seq: covered,
            seen_delete_seq: deletes_covered,
            updated_ns: now_ns(),
        };
        progress::save(store, &spec.db, &spec.target, &saved).await?;
        self.publish(spec, &saved, catalog_seq);
        record.watermark_ns = Some(next_watermark);
        Ok(more)
    }
}

impl Rollups {
    /// Queries may read `spec`'s buckets as `progress` describes them, from
    /// catalog commit `catalog_seq` on.
    fn publish(&self, spec: &RollupSpec, progress: &Progress, catalog_seq: u64) {
        self.registry.publish(RollupView {
            db: spec.db.clone(),
            source: spec.source.clone(),
            target: spec.target.clone(),
            every_ns: progress.every_ns,
            watermark_ns: progress.watermark_ns,
            seen_seq: progress.seen_seq,
            seen_delete_seq: progress.seen_delete_seq,
            catalog_seq,
        });
    }
}

/// Best effort: files of a failed pass are orphans the collector deletes
/// anyway; deleting them now just saves the wait.
async fn delete_uncommitted(store: &Arc<dyn ObjectStore>, files: &[FileMeta]) {
    for f in files {
        let path = object_store::path::Path::from(f.path.as_str());
        if let Err(e) = store.delete(&path).await {
            warn!(path = %f.path, error = %e, "could not delete an uncommitted rollup file; GC will");
        }
    }
}
