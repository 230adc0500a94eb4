//! Fault injection for crash tests: `FLEETLAKE_FAULT=<point>` makes the
//! process abort (as `kill -9` would stop it) when it reaches that point.
//! Points: `flush:before_commit`, `compaction:mid_write`,
//! `compaction:before_commit`, `compaction:after_commit`, `gc:after_delete`,
//! `rollup:after_commit` (between a rollup's commit and its progress record),
//! `delta:before_commit` (a catalog commit is in, the Delta commit that
//! follows it is not), `delta:after_commit`.

use std::sync::OnceLock;

/// Aborts the process if `FLEETLAKE_FAULT` names `point`.
pub fn point(point: &str) {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    let armed = FAULT.get_or_init(|| std::env::var("FLEETLAKE_FAULT").ok());
    if armed.as_deref() == Some(point) {
        eprintln!("fleetlake: fault injected at {point}: aborting");
        std::process::abort();
    }
}
