//! fleetlake's benchmark pieces, shared by `fleetlake bench` (the CLI in the
//! main binary), the end-to-end driver (`src/bin/e2e/`) and the side-by-side
//! peers helper (`src/bin/peers.rs`, driven by `peers.sh`).
//!
//! - [`load`]: an InfluxDB line-protocol loader. Bodies are prepared before
//!   the clock starts, in rounds of at most a memory budget; only sending is
//!   timed. 503s are retried after `Retry-After`.
//! - [`sink`]: an in-process HTTP server that reads and drops every body —
//!   the loader's own ceiling.
//! - [`tsbs`]: the fifteen TSBS cpu queries (`shared/tsbs-devops.md`) with
//!   seeded parameters, as fleetlake SQL (also DuckDB's), InfluxQL and
//!   MetricsQL, and each answer recomputed independently from the generator
//!   ([`fleetlake_sim::CpuHost`]).
//! - [`answer`]: answers as comparable tables (by column name, rows sorted,
//!   floats within a tolerance), parsed from CSV or peers' JSON.
//! - [`rules`]: `fleetlake bench rules` — rules over a fleet under its own
//!   real-time ingest: rounds, CPU, state, install and alert latency.
//! - [`server`]: a `fleetlake serve` child process, its CPU time and memory.
//! - [`victoria`]: VictoriaMetrics as a peer process.
//! - [`stats`] and [`time`]: percentiles, RFC 3339 parsing.
//!
//! No DataFusion here: everything talks HTTP or regenerates data.
//!
//! ```
//! use fleetlake_benches::stats::percentile;
//! assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
//! ```

pub mod answer;
pub mod data;
pub mod load;
pub mod peers;
pub mod query;
pub mod rules;
pub mod server;
pub mod sink;
pub mod stats;
pub mod tsbs;
pub mod victoria;
