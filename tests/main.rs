//! End-to-end tests: the real `fleetlake` binary on a free port, over HTTP.

mod common;

mod anomaly;
mod bad_input;
mod ballista;
mod compaction;
mod crash;
mod deletes;
mod delta;
mod demo;
mod diagnosis;
mod duckdb;
mod grafana;
mod identity;
mod last_value;
mod newest_buckets;
mod plan_cache;
mod prometheus;
mod promql;
mod pruning;
mod replica;
mod rollup;
mod rules;
mod s3;
mod security;
mod slt;
mod tsbs;
mod ui;
