//! Every table published as a Delta Lake table, in place: the table's
//! folder (`<db>/<table>/`, its data files under `day=YYYY-MM-DD/`) gets a
//! `_delta_log/` that Spark, Trino, DuckDB's `delta` extension and delta-rs
//! read as a consistent snapshot, with time travel.
//!
//! - [`log`]: the log's actions, replay and commits (the protocol's part).
//! - [`policy`]: which files readers see — each day partition as of its
//!   latest de-duplicated state with no delete pending.
//! - [`publisher`]: follows the catalog and writes the difference.
//! - [`checkpoint`]: the state as Parquet every so many versions, for readers.
//! - [`stats`]: each file's column bounds and null counts, from its footer.
//!
//! How readers see our columns: tags and string fields as `string`,
//! floats as `double`, integers as `long`, unsigned integers as
//! `decimal(20,0)` (Delta has no unsigned type), `time` as `timestamp`
//! (microseconds: Delta has no finer one, so readers truncate ours), and
//! the partition column `day` as a `date`.

pub mod checkpoint;
pub mod log;
pub mod policy;
pub mod publisher;
pub mod stats;

pub use publisher::{DeltaMetrics, Publisher};
