//! The compactor service: the background loop (rollups, a compaction pass,
//! garbage collection, every interval), one compaction pass (retention, then
//! the merges the policy picks), and what passes report
//! (`system.compactions`, `/metrics`).
//!
//! # Invariants
//! - One compaction or garbage-collection pass at a time per compactor
//!   (`running`).
//! - The loop's thread, and what it starts, run at a lower CPU priority than
//!   ingest and queries ([`lower_priority`]).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fleetlake_storage::catalog::{Catalog, FileMeta, now_ns};
use fleetlake_storage::counter::Counter;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::CompactionConfig;
use crate::gc::{self, GcReport};
use crate::rollup::Rollups;
use crate::{merge, policy, retention};

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
    /// The merge did not start: the server's memory budget had no room
    /// (a later round retries it).
    pub refused_memory: bool,
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
    /// Brought up to date before each garbage collection, so that files a
    /// Delta log stopped listing go at once, not a pass later.
    delta: OnceLock<Arc<fleetlake_storage::delta::Publisher>>,
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
            delta: OnceLock::new(),
        })
    }

    /// Runs `rollups` at every interval of the background loop. They are
    /// built after the compactor (they need the write path), hence not `new`.
    pub fn set_rollups(&self, rollups: Arc<Rollups>) {
        let _ = self.rollups.set(rollups);
    }

    /// Publishes the Delta logs before each garbage collection.
    pub fn set_delta(&self, publisher: Arc<fleetlake_storage::delta::Publisher>) {
        let _ = self.delta.set(publisher);
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
        if let Err(e) = retention::expire_files(&self.catalog).await {
            warn!(error = %e, "dropping expired files failed");
        }
        let state = self.catalog.state();
        let mut records = Vec::new();
        for m in policy::merges_due(&state, &self.config, now_ns(), force) {
            records.push(self.compact(m.db, m.table, m.day, m.inputs).await);
        }
        records
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
            refused_memory: false,
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
                record.refused_memory = matches!(e, fleetlake_storage::Error::MemoryBudget(_));
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

    /// Deletes removed files no reader holds (once past the grace period)
    /// and orphans older than [`gc::RUNNING_ORPHAN_AGE`].
    pub async fn collect_garbage(&self) -> fleetlake_storage::Result<GcReport> {
        self.gc(gc::RUNNING_ORPHAN_AGE.max(self.config.gc_grace))
            .await
    }

    /// Garbage collection at start-up, before anything writes: orphans (left
    /// by a crash between writing a file and committing it) go at once.
    pub async fn collect_garbage_at_startup(&self) -> fleetlake_storage::Result<GcReport> {
        self.gc(Duration::ZERO).await
    }

    async fn gc(&self, orphan_age: Duration) -> fleetlake_storage::Result<GcReport> {
        let _guard = self.running.lock().await;
        // A file a Delta log lists is kept; a removal just committed is not
        // in the log yet.
        if let Some(p) = self.delta.get()
            && let Err(e) = p.sync(&self.catalog.state()).await
        {
            tracing::warn!(error = %e, "publishing the Delta logs before garbage collection failed");
        }
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
/// which inherit it) runs at nice 10.
pub use fleetlake_storage::priority::lower_priority;

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
}
