//! fleetlake storage: the object-store layout, table schemas, Parquet
//! encoding, last-write-wins de-duplication and the catalog.
//!
//! Everything durable except the WAL lives in one [`object_store::ObjectStore`]:
//! a local directory by default, S3 in production. Nothing here assumes a
//! local file system.
//!
//! ```
//! use fleetlake_storage::layout::{data_file_path, day_of};
//! let t = 1_451_606_400_000_000_000; // 2016-01-01T00:00:00Z
//! assert_eq!(
//!     data_file_path("fleet", "cpu", &day_of(t), "f1").to_string(),
//!     "fleet/cpu/day=2016-01-01/f1.parquet"
//! );
//! ```

pub mod catalog;
pub mod counter;
pub mod dedup;
pub mod delta;
pub mod error;
pub mod fault;
pub mod layout;
pub mod memory_budget;
pub mod parquet_file;
pub mod path_map;
pub mod priority;
pub mod schema;
pub mod series_index;
pub mod series_sort;
pub mod store;
pub mod write_order;

pub use error::{Error, Result};
