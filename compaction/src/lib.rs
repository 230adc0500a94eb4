//! fleetlake compaction: merges a partition's overlapping files into one run
//! of sorted files with disjoint series ranges, and deletes what no commit
//! needs any more.
//!
//! # Policy, per table and day partition
//! - Flush files (level 0) pile up: once there are `l0_trigger` of them they
//!   are merged into one new run (older runs are left alone).
//! - Once a partition holds `max_runs` runs — or it is cold (no new file for
//!   `cold_after`) and holds more than one — all of its files are merged into
//!   one run.
//!
//! # Invariants
//! - New files are written first, then one catalog commit adds them and
//!   removes the inputs (strictly: if any input is gone, nothing changes).
//!   A crash before the commit leaves only unreferenced files (orphans); a
//!   crash after it leaves removed files awaiting deletion. Either way every
//!   row is visible exactly once.
//! - The output's `seq` is the highest input `seq`: within a partition every
//!   file not merged is older than all inputs (a run's inputs were all flush
//!   files present when it ran) or newer than all (flushed since).
//! - Removed and orphaned files are deleted only after `gc_grace`, so running
//!   queries finish reading them.
//!
//! Rollups (see [`rollup`]) run in the same background loop, before each
//! compaction pass, so late source files feed them before being merged.

pub mod error;
mod gc;
mod merge;
pub mod rollup;
mod system;

use std::collections::{BTreeMap, VecDeque};

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fleetlake_ingest::metrics::Counter;
use fleetlake_storage::catalog::{Action, Catalog, FileMeta, now_ns};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use error::{Error, Result};
pub use gc::GcReport;
pub use rollup::{RollupRecord, Rollups, RollupsTable};
pub use system::CompactionsTable;

/// Settings of the background compactor.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// How often partitions are examined.
    pub interval: Duration,
    /// Flush files in one partition that trigger merging them.
    pub l0_trigger: usize,
    /// Runs in one partition that trigger merging all of them.
    pub max_runs: usize,
    /// A partition without a new file for this long is merged into one run.
    pub cold_after: Duration,
    /// Rows per output file (cut at the next series boundary past it).
    pub target_rows: u64,
    /// Memory of one merge (DataFusion pool; sorts spill to disk beyond it).
    pub memory_limit: usize,
    /// Removed and orphaned files are deleted once this old.
    pub gc_grace: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            l0_trigger: 4,
            max_runs: 8,
            cold_after: Duration::from_secs(600),
            target_rows: 8 << 20,
            memory_limit: 512 << 20,
            gc_grace: Duration::from_secs(3600),
        }
    }
}

/// One compaction, as `system.compactions` shows it.
#[derive(Debug, Clone)]
pub struct CompactionRecord {
    pub started_ns: i64,
    pub db: String,
    pub table: String,
    pub day: String,
    pub input_files: u64,
    pub input_rows: u64,
    pub input_bytes: u64,
    pub output_files: u64,
    pub output_rows: u64,
    pub output_bytes: u64,
    pub duration: Duration,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct CompactionMetrics {
    pub compactions: Counter,
    pub errors: Counter,
    pub input_rows: Counter,
    pub output_rows: Counter,
    pub input_bytes: Counter,
    pub output_bytes: Counter,
    pub files_deleted: Counter,
    pub orphans_deleted: Counter,
}

const HISTORY: usize = 1000;

#[derive(Debug)]
pub struct Compactor {
    catalog: Arc<Catalog>,
    config: CompactionConfig,
    history: Mutex<VecDeque<CompactionRecord>>,
    metrics: CompactionMetrics,
    /// One compaction or GC pass at a time in this process.
    running: tokio::sync::Mutex<()>,
    /// Materialized in the background loop too, when set.
    rollups: OnceLock<Arc<Rollups>>,
}

/// Which files of a partition to merge now, if any. A partition with rows
/// a tombstone deletes (`dirty`) is rewritten whole, so deletes become
/// physical. `row_width` is the table's [`decoded_row_width`].
fn choose(
    files: &[&FileMeta],
    config: &CompactionConfig,
    now: i64,
    force: bool,
    dirty: bool,
    row_width: u64,
) -> Vec<usize> {
    let chosen = choose_all(files, config, now, force, dirty);
    within_memory(files, chosen, config.memory_limit, dirty, row_width)
}

/// Rows of a batch in the merge (DataFusion's default batch size).
const BATCH_ROWS: u64 = 8192;
/// Decoded batches' worth of memory one input holds at once: the reader's,
/// the visibility filter's output, the merge's sort-key rows, the output
/// being built — and two more for the reader's page buffers and decoders:
/// measured, 24 flush files of TSBS cpu merged 7 at a time under 128 MiB
/// cost ~12 MB per input where 4 batches estimated 8.8 MB, and the merge
/// peaked 22 % over the limit (benches/README.md, "Many inputs").
const BATCHES_PER_INPUT: u64 = 6;

/// Bytes one row of `schema` takes decoded, plus the merge's `__seq`.
pub(crate) fn decoded_row_width(schema: &arrow::datatypes::Schema) -> u64 {
    use arrow::datatypes::DataType;
    let column = |t: &DataType| match t {
        DataType::Boolean => 1,
        // Keys; the dictionary values are shared by a file's batches.
        DataType::Dictionary(_, _) => 8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 32,
        t => t.primitive_width().unwrap_or(16) as u64,
    };
    8 + schema
        .fields()
        .iter()
        .map(|f| column(f.data_type()))
        .sum::<u64>()
}

/// Compressed bytes of one row group of `f`.
fn row_group_bytes(f: &FileMeta) -> u64 {
    let row_groups = f
        .rows
        .div_ceil(fleetlake_storage::parquet_file::ROW_GROUP_ROWS as u64)
        .max(1);
    f.bytes / row_groups
}

/// The memory one input of a merge holds: the reader fetches a whole row
/// group's compressed column chunks and decompresses page by page (counted
/// twice), plus [`BATCHES_PER_INPUT`] decoded batches.
fn input_memory(f: &FileMeta, row_width: u64) -> u64 {
    2 * row_group_bytes(f) + BATCHES_PER_INPUT * BATCH_ROWS * row_width
}

/// The memory of the merge's output: the row group being encoded and its
/// serialized copy (sized like the inputs' row groups, at most a full one),
/// the upload part being filled and those in flight.
fn output_memory<'a>(inputs: impl Iterator<Item = &'a FileMeta>) -> u64 {
    let (bytes, rows) = inputs.fold((0u64, 0u64), |(b, r), f| (b + f.bytes, r + f.rows));
    let row_group_rows = rows.min(fleetlake_storage::parquet_file::ROW_GROUP_ROWS as u64);
    let row_group = bytes.checked_div(rows).unwrap_or(0) * row_group_rows;
    use fleetlake_storage::parquet_file::{UPLOAD_PART_BYTES, UPLOAD_PARTS_IN_FLIGHT};
    2 * row_group + ((1 + UPLOAD_PARTS_IN_FLIGHT) * UPLOAD_PART_BYTES) as u64
}

/// How a merge's memory limit is shared: what its inputs and output hold
/// (estimated), and the DataFusion pool for the rest (a sort of unordered
/// inputs spills past it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeMemory {
    pub readers: u64,
    pub writer: u64,
    pub pool: u64,
}

/// The smallest pool a merge runs with, as a share of the limit.
const MIN_POOL_SHARE: u64 = 4;

pub(crate) fn merge_memory(inputs: &[FileMeta], row_width: u64, limit: usize) -> MergeMemory {
    let limit = limit as u64;
    let readers = inputs.iter().map(|f| input_memory(f, row_width)).sum();
    let writer = output_memory(inputs.iter());
    let pool = limit
        .saturating_sub(readers + writer)
        .max(limit / MIN_POOL_SHARE);
    MergeMemory {
        readers,
        writer,
        pool,
    }
}

/// Keeps the oldest inputs whose readers, with the output, fit in the limit
/// less the pool's minimum share: whole runs, in `seq` order, at least two
/// (one when `dirty`, to apply deletes). Taking the oldest keeps the
/// invariant that every file left out is newer than every input; the next
/// pass merges the rest.
fn within_memory(
    files: &[&FileMeta],
    chosen: Vec<usize>,
    memory_limit: usize,
    dirty: bool,
    row_width: u64,
) -> Vec<usize> {
    let mut units: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
    for &i in &chosen {
        let f = files[i];
        // A run's files share a seq; a flush file is a unit of its own.
        let id = f.run.unwrap_or(u64::MAX - i as u64);
        units.entry((f.seq, id)).or_default().push(i);
    }
    let limit = memory_limit as u64;
    let budget = (limit - limit / MIN_POOL_SHARE)
        .saturating_sub(output_memory(chosen.iter().map(|&i| files[i])));
    let min_units = if dirty { 1 } else { 2 };
    let (mut out, mut used, mut n) = (Vec::new(), 0u64, 0usize);
    for unit in units.into_values() {
        let need: u64 = unit
            .iter()
            .map(|&i| input_memory(files[i], row_width))
            .sum();
        if n >= min_units && used + need > budget {
            break;
        }
        used += need;
        n += 1;
        out.extend(unit);
    }
    if n < min_units {
        return Vec::new();
    }
    out.sort_unstable();
    out
}

fn choose_all(
    files: &[&FileMeta],
    config: &CompactionConfig,
    now: i64,
    force: bool,
    dirty: bool,
) -> Vec<usize> {
    if dirty && !files.is_empty() {
        return (0..files.len()).collect();
    }
    let mut runs: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
    let mut l0 = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match f.run {
            Some(r) => runs.entry(Some(r)).or_default().push(i),
            None => l0.push(i),
        }
    }
    let n_runs = runs.len() + l0.len();
    let newest = files.iter().map(|f| f.created_ns).max().unwrap_or(0);
    let cold = now.saturating_sub(newest) >= config.cold_after.as_nanos() as i64;
    if n_runs > 1 && (force || cold || n_runs >= config.max_runs) {
        return (0..files.len()).collect();
    }
    if l0.len() >= config.l0_trigger.max(2) {
        return l0;
    }
    Vec::new()
}

impl Compactor {
    pub fn new(catalog: Arc<Catalog>, config: CompactionConfig) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            config,
            history: Mutex::new(VecDeque::new()),
            metrics: CompactionMetrics::default(),
            running: tokio::sync::Mutex::new(()),
            rollups: OnceLock::new(),
        })
    }

    /// Runs `rollups` at every interval of the background loop. They are
    /// built after the compactor (they need the write path), hence not `new`.
    pub fn set_rollups(&self, rollups: Arc<Rollups>) {
        let _ = self.rollups.set(rollups);
    }

    pub fn metrics(&self) -> &CompactionMetrics {
        &self.metrics
    }

    pub fn history(&self) -> Vec<CompactionRecord> {
        self.history.lock().iter().cloned().collect()
    }

    /// Merges every partition the policy picks (with `force`, every partition
    /// of more than one run). Returns what ran, failures included.
    pub async fn run_once(&self, force: bool) -> Vec<CompactionRecord> {
        let _guard = self.running.lock().await;
        if let Err(e) = self.expire_files().await {
            warn!(error = %e, "dropping expired files failed");
        }
        let state = self.catalog.state();
        let now = now_ns();
        let mut records = Vec::new();
        for (db, dbs) in &state.databases {
            for (table, ts) in &dbs.tables {
                let row_width = decoded_row_width(&ts.schema.arrow_schema());
                let mut days: BTreeMap<&str, Vec<&FileMeta>> = BTreeMap::new();
                for f in ts.files.values() {
                    days.entry(f.day.as_str()).or_default().push(f);
                }
                for (day, files) in days {
                    let dirty = files
                        .iter()
                        .any(|f| ts.tombstones.iter().any(|t| t.affects(f)));
                    let chosen = choose(&files, &self.config, now, force, dirty, row_width);
                    if chosen.is_empty() {
                        continue;
                    }
                    let inputs: Vec<FileMeta> = chosen.iter().map(|&i| files[i].clone()).collect();
                    let record = self.compact(db, table, day, inputs).await;
                    records.push(record);
                }
            }
        }
        records
    }

    /// Removes files whose rows have all expired (retention); the garbage
    /// collector deletes them after the grace period.
    async fn expire_files(&self) -> fleetlake_storage::Result<()> {
        let state = self.catalog.state();
        let now = now_ns();
        let mut actions = Vec::new();
        for (db, dbs) in &state.databases {
            for (table, ts) in &dbs.tables {
                let Some(ttl) = dbs.retention_of(table) else {
                    continue;
                };
                let cutoff = now.saturating_sub(ttl);
                let paths: Vec<String> = ts
                    .files
                    .values()
                    .filter(|f| f.max_time < cutoff)
                    .map(|f| f.path.clone())
                    .collect();
                if !paths.is_empty() {
                    info!(
                        db,
                        table,
                        files = paths.len(),
                        "retention: dropping expired files"
                    );
                    actions.push(Action::RemoveFiles {
                        db: db.clone(),
                        table: table.clone(),
                        paths,
                        at_ns: now,
                        strict: false,
                    });
                }
            }
        }
        if !actions.is_empty() {
            self.catalog.commit(actions).await?;
        }
        Ok(())
    }

    async fn compact(
        &self,
        db: &str,
        table: &str,
        day: &str,
        inputs: Vec<FileMeta>,
    ) -> CompactionRecord {
        let started = Instant::now();
        let mut record = CompactionRecord {
            started_ns: now_ns(),
            db: db.to_string(),
            table: table.to_string(),
            day: day.to_string(),
            input_files: inputs.len() as u64,
            input_rows: inputs.iter().map(|f| f.rows).sum(),
            input_bytes: inputs.iter().map(|f| f.bytes).sum(),
            output_files: 0,
            output_rows: 0,
            output_bytes: 0,
            duration: Duration::ZERO,
            error: None,
        };
        match merge::merge_partition(&self.catalog, &self.config, db, table, day, &inputs).await {
            Ok(outputs) => {
                record.output_files = outputs.len() as u64;
                record.output_rows = outputs.iter().map(|f| f.rows).sum();
                record.output_bytes = outputs.iter().map(|f| f.bytes).sum();
                let m = &self.metrics;
                m.compactions.add(1);
                m.input_rows.add(record.input_rows);
                m.output_rows.add(record.output_rows);
                m.input_bytes.add(record.input_bytes);
                m.output_bytes.add(record.output_bytes);
                info!(
                    db,
                    table,
                    day,
                    inputs = record.input_files,
                    outputs = record.output_files,
                    rows_in = record.input_rows,
                    rows_out = record.output_rows,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compacted"
                );
            }
            Err(e) => {
                self.metrics.errors.add(1);
                warn!(db, table, day, error = %e, "compaction failed");
                record.error = Some(e.to_string());
            }
        }
        record.duration = started.elapsed();
        let mut h = self.history.lock();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(record.clone());
        record
    }

    /// Deletes removed files and orphans older than the grace period.
    pub async fn collect_garbage(&self) -> fleetlake_storage::Result<GcReport> {
        self.gc(self.config.gc_grace).await
    }

    /// Garbage collection at start-up, before anything writes: orphans (left
    /// by a crash between writing a file and committing it) go at once;
    /// removed files still wait out the grace period.
    pub async fn collect_garbage_at_startup(&self) -> fleetlake_storage::Result<GcReport> {
        self.gc(Duration::ZERO).await
    }

    async fn gc(&self, orphan_age: Duration) -> fleetlake_storage::Result<GcReport> {
        let _guard = self.running.lock().await;
        let report = gc::collect(&self.catalog, self.config.gc_grace, orphan_age).await?;
        self.metrics.files_deleted.add(report.removed_deleted);
        self.metrics.orphans_deleted.add(report.orphans_deleted);
        Ok(report)
    }

    /// Runs compaction and garbage collection every `interval` on a thread
    /// of its own, at a lower CPU priority than ingest and queries, until
    /// `shutdown`. A failed pass is logged and retried at the next interval.
    pub fn start(self: Arc<Self>, shutdown: CancellationToken) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("compactor".into())
            .spawn(move || {
                lower_priority();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        error!(error = %e, "cannot start the compactor's runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(self.config.interval) => {}
                        }
                        if let Some(rollups) = self.rollups.get() {
                            rollups.run_once().await;
                        }
                        self.run_once(false).await;
                        if let Err(e) = self.collect_garbage().await {
                            warn!(error = %e, "garbage collection failed");
                        }
                    }
                });
            })
            .expect("spawn the compactor thread")
    }
}

/// Ingest keeps priority: the compactor thread (and the threads it starts,
/// which inherit it) runs at nice 10. On Linux a "process" priority set for
/// a thread id applies to that thread only, so call it on a thread of its own
/// (never on a pooled one, which would keep the priority for other work).
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        warn!(error = %e, "cannot lower the compactor's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread only: a thread started afterwards by another
    /// thread keeps nice 0.
    #[cfg(target_os = "linux")]
    #[test]
    fn lower_priority_applies_to_the_calling_thread() {
        fn nice() -> i64 {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let rest = stat.rsplit_once(')').unwrap().1;
            // Field 19 of the line (nice) is the 17th after the command name.
            rest.split_whitespace().nth(16).unwrap().parse().unwrap()
        }
        let base = nice();
        let lowered = std::thread::spawn(|| {
            lower_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (base + 10).min(19));
        assert_eq!(std::thread::spawn(nice).join().unwrap(), base);
    }

    fn file(run: Option<u64>, created_ns: i64) -> FileMeta {
        FileMeta {
            path: String::new(),
            db: "d".into(),
            table: "t".into(),
            day: "2016-01-01".into(),
            rows: 1,
            bytes: 1,
            min_time: 0,
            max_time: 1,
            seq: 1,
            created_ns,
            level: u8::from(run.is_some()),
            run,
            sort_order: Vec::new(),
            deletes_applied: 0,
        }
    }

    #[test]
    fn policy() {
        let config = CompactionConfig {
            l0_trigger: 3,
            max_runs: 5,
            cold_after: Duration::from_secs(10),
            ..CompactionConfig::default()
        };
        let now = 100_000_000_000;
        let hot = now - 1;
        let files = [
            file(Some(1), hot),
            file(Some(1), hot),
            file(None, hot),
            file(None, hot),
        ];
        let refs: Vec<&FileMeta> = files.iter().collect();
        // Two flush files and one run: nothing yet.
        assert!(choose(&refs, &config, now, false, false, 0).is_empty());
        // Forced: everything.
        assert_eq!(
            choose(&refs, &config, now, true, false, 0),
            vec![0, 1, 2, 3]
        );
        // A third flush file: the flush files merge, the run stays.
        let mut more = files.to_vec();
        more.push(file(None, hot));
        let refs: Vec<&FileMeta> = more.iter().collect();
        assert_eq!(choose(&refs, &config, now, false, false, 0), vec![2, 3, 4]);
        // Cold: everything, into one run.
        let cold: Vec<FileMeta> = files.iter().map(|f| file(f.run, 0)).collect();
        let refs: Vec<&FileMeta> = cold.iter().collect();
        assert_eq!(
            choose(&refs, &config, now, false, false, 0),
            vec![0, 1, 2, 3]
        );
        // One run alone is never rewritten, cold or forced.
        let one = [file(Some(1), 0), file(Some(1), 0)];
        let refs: Vec<&FileMeta> = one.iter().collect();
        assert!(choose(&refs, &config, now, true, false, 0).is_empty());
        // Unless a delete applies to it.
        assert_eq!(choose(&refs, &config, now, false, true, 0), vec![0, 1]);
    }

    #[test]
    fn merges_fit_the_memory_limit_oldest_first() {
        // Six flush files of 8 MB row groups (2 x 8 MB to read each) under a
        // 64 MB limit: 48 MB for readers and writer, of which the writer
        // takes 24 (two 8 MB row groups and an 8 MB part); the oldest two
        // (the minimum) go.
        let config = CompactionConfig {
            l0_trigger: 2,
            memory_limit: 64 << 20,
            ..CompactionConfig::default()
        };
        let files: Vec<FileMeta> = (0..6u64)
            .map(|i| FileMeta {
                seq: 10 - i,
                rows: 1 << 20,
                bytes: 8 << 20,
                ..file(None, 0)
            })
            .collect();
        let refs: Vec<&FileMeta> = files.iter().collect();
        assert_eq!(choose(&refs, &config, 100, true, false, 0), vec![4, 5]);
        // A run counts whole, and is older than the flush files after it.
        let mut with_run = files.clone();
        for f in with_run.iter_mut().take(2) {
            f.run = Some(7);
            f.seq = 1;
        }
        let refs: Vec<&FileMeta> = with_run.iter().collect();
        assert_eq!(choose(&refs, &config, 100, true, false, 0), vec![0, 1, 5]);
    }

    #[test]
    fn decoded_batches_count_against_the_limit() {
        // Twenty 2 MB flush files of 100,000 rows; rows of 200 bytes decoded
        // make each input 2 x 2 MB + 4 x 8192 x 200 B (about 10.6 MB).
        let config = CompactionConfig {
            l0_trigger: 2,
            memory_limit: 128 << 20,
            ..CompactionConfig::default()
        };
        let files: Vec<FileMeta> = (0..20u64)
            .map(|i| FileMeta {
                seq: 100 - i,
                rows: 100_000,
                bytes: 2 << 20,
                ..file(None, 0)
            })
            .collect();
        let refs: Vec<&FileMeta> = files.iter().collect();
        let chosen = choose(&refs, &config, 100, true, false, 200);
        assert!(chosen.len() >= 2 && chosen.len() < 20, "{chosen:?}");
        // The oldest (highest index: lowest seq) go first.
        assert_eq!(chosen.last(), Some(&19));
        let inputs: Vec<FileMeta> = chosen.iter().map(|&i| files[i].clone()).collect();
        let m = merge_memory(&inputs, 200, config.memory_limit);
        assert!(
            m.readers + m.writer + m.pool <= config.memory_limit as u64,
            "{m:?}"
        );
        assert!(m.pool >= (config.memory_limit / 4) as u64);
    }
}
