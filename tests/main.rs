//! End-to-end tests: the real `fleetlake` binary on a free port, over HTTP.

mod common;

mod bad_input;
mod compaction;
mod crash;
mod deletes;
mod duckdb;
mod grafana;
mod identity;
mod pruning;
mod rollup;
mod s3;
mod slt;
mod tsbs;
