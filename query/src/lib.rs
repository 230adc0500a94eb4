//! fleetlake query: SQL over the catalog's Parquet files and the write buffer,
//! with Apache DataFusion.
//!
//! Every database is a schema of the `fleetlake` catalog; `system` holds
//! `tables`, `columns` and `files`. A table scan prunes files by time, pushes
//! filters into Parquet, and de-duplicates (later write wins, field by field)
//! only where chunks overlap in time. See [`table::FleetTable`].
//!
//! ```
//! use fleetlake_query::time_range::TimeRange;
//! assert!(TimeRange::default().overlaps(0, 10));
//! ```

pub mod budget_pool;
pub mod catalog;
pub mod dedup_exec;
pub mod delete;
pub mod engine;
pub mod error;
pub mod front_door;
pub mod functions;
pub mod integer_compare;
pub mod last_value;
pub mod newest_buckets;
pub mod parquet_reader;
pub mod plan_cache;
pub mod rollup_rewrite;
pub mod scan_predicate;
pub mod scan_size;
pub mod shared_scan;
pub mod system;
pub mod table;
pub mod tag_pages;
pub mod time_range;

pub use engine::{QueryConfig, QueryEngine, QueryStream, SqlCheck};
pub use error::{Error, Result};
pub use shared_scan::{ScanShare, ScanShareStats};
