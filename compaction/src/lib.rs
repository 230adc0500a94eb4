//! fleetlake compaction: merges a partition's overlapping files into one run
//! of sorted files, each of one time window and disjoint series ranges
//! within it, drops files past their table's retention, and deletes what no
//! commit needs any more.
//!
//! [`Compactor`] does all three: [`Compactor::start`] on a thread of its own
//! at every interval, or [`Compactor::run_once`] and
//! [`Compactor::collect_garbage`] on demand. Rollups (see [`rollup`]) run in
//! the same background loop, before each compaction pass, so late source
//! files feed them before being merged.
//!
//! # Policy, per table and day partition
//! - Flush files (level 0) pile up: once there are `l0_trigger` of them they
//!   are merged into one new run (older runs are left alone).
//! - Once a partition holds `max_runs` runs — or it is cold (no new file for
//!   `cold_after`) and holds more than one — all of its files are merged into
//!   one run.
//! - A partition with rows a tombstone deletes is rewritten whole, so the
//!   delete becomes physical.
//! - One merge takes the oldest of those inputs that fit its memory limit;
//!   the next pass takes the rest.
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
//! - A removed file is deleted only once no catalog snapshot a reader holds
//!   lists it (queries keep theirs until their last batch) and `gc_grace`
//!   has passed; an orphan only once it is older than any write in flight.
//! - One compaction or garbage-collection pass at a time per [`Compactor`].
//!
//! ```
//! use std::sync::Arc;
//! use fleetlake_compaction::{CompactionConfig, Compactor, GcReport};
//! use fleetlake_storage::catalog::Catalog;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = fleetlake_storage::store::open("memory://").unwrap();
//! let catalog = Arc::new(Catalog::load(store, 100).await.unwrap());
//! let config = CompactionConfig { l0_trigger: 8, ..CompactionConfig::default() };
//! let compactor = Compactor::new(catalog, config);
//! // Nothing written yet: nothing to merge, nothing to delete.
//! assert!(compactor.run_once(false).await.is_empty());
//! assert_eq!(compactor.collect_garbage_at_startup().await.unwrap(), GcReport::default());
//! # });
//! ```

mod config;
pub mod error;
mod gc;
mod memory;
mod merge;
mod policy;
mod retention;
pub mod rollup;
mod service;
mod system;

pub use config::CompactionConfig;
pub use error::{Error, Result};
pub use gc::GcReport;
pub use rollup::{RollupRecord, Rollups, RollupsTable};
pub use service::{CompactionMetrics, CompactionRecord, Compactor, lower_priority};
pub use system::CompactionsTable;
