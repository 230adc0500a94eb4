//! The compactor's settings.

use std::sync::Arc;
use std::time::Duration;

use fleetlake_storage::memory_budget::MemoryBudget;

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
    /// A merge's output files each hold one time window of this length
    /// (aligned to the epoch), so a query of the newest minutes over every
    /// series reads one window's files rather than the partition's; a
    /// longer multiple when windows would hold less than half of
    /// `target_rows` each or their files (one open per window) would not
    /// fit a quarter of `memory_limit`. Zero: files are cut by series only.
    pub window: Duration,
    /// Memory of one merge (DataFusion pool; sorts spill to disk beyond it).
    pub memory_limit: usize,
    /// Removed files are deleted once no reader of this process holds them
    /// and their removal is this old: zero unless readers outside the
    /// process (another engine reading the Parquet) need time to finish.
    pub gc_grace: Duration,
    /// The server's memory budget: a merge takes its readers' and writer's
    /// estimate from it before it starts (or waits for the next round),
    /// and its DataFusion pool takes the rest as it goes.
    pub budget: Arc<MemoryBudget>,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            l0_trigger: 4,
            max_runs: 8,
            cold_after: Duration::from_secs(600),
            target_rows: 8 << 20,
            window: Duration::from_secs(3600),
            memory_limit: 512 << 20,
            gc_grace: Duration::ZERO,
            budget: MemoryBudget::unlimited(),
        }
    }
}
