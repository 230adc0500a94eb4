//! fleetlake ingest: the line-protocol parser, validation against table
//! schemas, the write-ahead log with group commit, the in-memory write buffer
//! and its flush into Parquet.
//!
//! # Invariants
//! - A write is acknowledged only after its WAL record is fsynced, and is
//!   visible to queries from that moment ([`Ingester::buffered`]).
//! - A flush writes Parquet first, then commits the files and the WAL position
//!   they cover in one catalog commit, then deletes covered WAL segments. A
//!   crash at any point replays exactly the records the catalog lacks.
//!
//! ```
//! use fleetlake_ingest::line_protocol::parse_line;
//! let line = parse_line("cpu,host=a usage=1.5,n=3i 1000").unwrap();
//! assert_eq!(line.measurement, "cpu");
//! assert_eq!(line.timestamp, Some(1000));
//! ```

pub mod buffer;
pub mod error;
pub mod ingester;
pub mod line_protocol;
pub mod lp_writer;
pub mod metrics;
pub mod observer;
pub mod precision;
pub mod remote_write;
pub mod series_index;
pub mod validate;
pub mod wal;

pub use error::{Error, Result};
pub use ingester::{BufferedPartition, IngestConfig, Ingester, WriteOutcome};
pub use precision::Precision;
