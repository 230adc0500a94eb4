//! Which partitions to compact, and which of their files, at each pass.
//!
//! The rules are in the crate doc ("Policy"); what a merge of the chosen
//! files costs in memory is [`crate::memory`]'s estimate.
//!
//! # Invariants
//! - A file of the partition a merge leaves out is older than all its inputs
//!   (the runs a merge of flush files leaves alone) or newer than all (what
//!   the memory limit defers: whole runs and flush files go oldest first),
//!   as the output's `seq` requires.
//! - A merge has at least two units (runs or flush files), or one when the
//!   partition is dirty (a tombstone deletes some of its rows).

use std::collections::BTreeMap;

use fleetlake_storage::catalog::{CatalogState, FileMeta};

use crate::config::CompactionConfig;
use crate::memory::{
    MIN_POOL_SHARE, decoded_row_width, input_memory, output_memory, output_window,
};

/// One merge the policy picked: files of one table's day partition.
pub(crate) struct PartitionMerge<'a> {
    pub db: &'a str,
    pub table: &'a str,
    pub day: &'a str,
    pub inputs: Vec<FileMeta>,
}

/// The merges due in `state` at `now`, one per partition at most (with
/// `force`, every partition of more than one run).
pub(crate) fn merges_due<'a>(
    state: &'a CatalogState,
    config: &CompactionConfig,
    now: i64,
    force: bool,
) -> Vec<PartitionMerge<'a>> {
    let mut due = Vec::new();
    for (db, dbs) in &state.databases {
        for (table, ts) in &dbs.tables {
            let row_width = decoded_row_width(&ts.schema.arrow_schema());
            let mut days: BTreeMap<&str, Vec<&FileMeta>> = BTreeMap::new();
            for f in ts.files.values() {
                days.entry(f.day.as_str()).or_default().push(f);
            }
            for (day, files) in days {
                let dirty = files
                    .iter()
                    .any(|f| ts.tombstones.iter().any(|t| t.affects(f)));
                let chosen = choose(&files, config, now, force, dirty, row_width);
                if chosen.is_empty() {
                    continue;
                }
                due.push(PartitionMerge {
                    db,
                    table,
                    day,
                    inputs: chosen.iter().map(|&i| files[i].clone()).collect(),
                });
            }
        }
    }
    due
}

/// Which files of a partition to merge now, if any. A partition with rows
/// a tombstone deletes (`dirty`) is rewritten whole, so deletes become
/// physical. `row_width` is the table's [`decoded_row_width`].
fn choose(
    files: &[&FileMeta],
    config: &CompactionConfig,
    now: i64,
    force: bool,
    dirty: bool,
    row_width: u64,
) -> Vec<usize> {
    let chosen = choose_all(files, config, now, force, dirty);
    within_memory(files, chosen, config, dirty, row_width)
}

/// Keeps the oldest inputs whose readers, with the output, fit in the limit
/// less the pool's minimum share: whole runs, in `seq` order, at least two
/// (one when `dirty`, to apply deletes). Taking the oldest keeps the
/// invariant that every file left out is newer than every input; the next
/// pass merges the rest.
fn within_memory(
    files: &[&FileMeta],
    chosen: Vec<usize>,
    config: &CompactionConfig,
    dirty: bool,
    row_width: u64,
) -> Vec<usize> {
    let mut units: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
    for &i in &chosen {
        let f = files[i];
        // A run's files share a seq; a flush file is a unit of its own.
        let id = f.run.unwrap_or(u64::MAX - i as u64);
        units.entry((f.seq, id)).or_default().push(i);
    }
    let limit = config.memory_limit as u64;
    let all: Vec<&FileMeta> = chosen.iter().map(|&i| files[i]).collect();
    let window = output_window(&all, config);
    let budget = (limit - limit / MIN_POOL_SHARE).saturating_sub(output_memory(&all, window));
    let min_units = if dirty { 1 } else { 2 };
    let (mut out, mut used, mut n) = (Vec::new(), 0u64, 0usize);
    for unit in units.into_values() {
        let need: u64 = unit
            .iter()
            .map(|&i| input_memory(files[i], row_width))
            .sum();
        if n >= min_units && used + need > budget {
            break;
        }
        used += need;
        n += 1;
        out.extend(unit);
    }
    if n < min_units {
        return Vec::new();
    }
    out.sort_unstable();
    out
}

fn choose_all(
    files: &[&FileMeta],
    config: &CompactionConfig,
    now: i64,
    force: bool,
    dirty: bool,
) -> Vec<usize> {
    if dirty && !files.is_empty() {
        return (0..files.len()).collect();
    }
    let mut runs: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
    let mut l0 = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match f.run {
            Some(r) => runs.entry(Some(r)).or_default().push(i),
            None => l0.push(i),
        }
    }
    let n_runs = runs.len() + l0.len();
    let newest = files.iter().map(|f| f.created_ns).max().unwrap_or(0);
    let cold = now.saturating_sub(newest) >= config.cold_after.as_nanos() as i64;
    if n_runs > 1 && (force || cold || n_runs >= config.max_runs) {
        return (0..files.len()).collect();
    }
    if l0.len() >= config.l0_trigger.max(2) {
        return l0;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::merge_memory;

    fn file(run: Option<u64>, created_ns: i64) -> FileMeta {
        FileMeta {
            path: String::new(),
            db: "d".into(),
            table: "t".into(),
            day: "2016-01-01".into(),
            rows: 1,
            bytes: 1,
            min_time: 0,
            max_time: 1,
            seq: 1,
            created_ns,
            level: u8::from(run.is_some()),
            run,
            sort_order: Vec::new(),
            deletes_applied: 0,
        }
    }

    #[test]
    fn policy() {
        let config = CompactionConfig {
            l0_trigger: 3,
            max_runs: 5,
            cold_after: Duration::from_secs(10),
            ..CompactionConfig::default()
        };
        let now = 100_000_000_000;
        let hot = now - 1;
        let files = [
            file(Some(1), hot),
            file(Some(1), hot),
            file(None, hot),
            file(None, hot),
        ];
        let refs: Vec<&FileMeta> = files.iter().collect();
        // Two flush files and one run: nothing yet.
        assert!(choose(&refs, &config, now, false, false, 0).is_empty());
        // Forced: everything.
        assert_eq!(
            choose(&refs, &config, now, true, false, 0),
            vec![0, 1, 2, 3]
        );
        // A third flush file: the flush files merge, the run stays.
        let mut more = files.to_vec();
        more.push(file(None, hot));
        let refs: Vec<&FileMeta> = more.iter().collect();
        assert_eq!(choose(&refs, &config, now, false, false, 0), vec![2, 3, 4]);
        // Cold: everything, into one run.
        let cold: Vec<FileMeta> = files.iter().map(|f| file(f.run, 0)).collect();
        let refs: Vec<&FileMeta> = cold.iter().collect();
        assert_eq!(
            choose(&refs, &config, now, false, false, 0),
            vec![0, 1, 2, 3]
        );
        // One run alone is never rewritten, cold or forced.
        let one = [file(Some(1), 0), file(Some(1), 0)];
        let refs: Vec<&FileMeta> = one.iter().collect();
        assert!(choose(&refs, &config, now, true, false, 0).is_empty());
        // Unless a delete applies to it.
        assert_eq!(choose(&refs, &config, now, false, true, 0), vec![0, 1]);
    }

    #[test]
    fn merges_fit_the_memory_limit_oldest_first() {
        // Six flush files of 8 MB row groups (2 x 8 MB to read each) under a
        // 64 MB limit: 48 MB for readers and writer, of which the writer
        // takes 24 (two 8 MB row groups and an 8 MB part); the oldest two
        // (the minimum) go.
        let config = CompactionConfig {
            l0_trigger: 2,
            memory_limit: 64 << 20,
            ..CompactionConfig::default()
        };
        let files: Vec<FileMeta> = (0..6u64)
            .map(|i| FileMeta {
                seq: 10 - i,
                rows: 1 << 20,
                bytes: 8 << 20,
                ..file(None, 0)
            })
            .collect();
        let refs: Vec<&FileMeta> = files.iter().collect();
        assert_eq!(choose(&refs, &config, 100, true, false, 0), vec![4, 5]);
        // A run counts whole, and is older than the flush files after it.
        let mut with_run = files.clone();
        for f in with_run.iter_mut().take(2) {
            f.run = Some(7);
            f.seq = 1;
        }
        let refs: Vec<&FileMeta> = with_run.iter().collect();
        assert_eq!(choose(&refs, &config, 100, true, false, 0), vec![0, 1, 5]);
    }

    #[test]
    fn decoded_batches_count_against_the_limit() {
        // Twenty 2 MB flush files of 100,000 rows; rows of 200 bytes decoded
        // make each input 2 x 2 MB + 4 x 8192 x 200 B (about 10.6 MB).
        let config = CompactionConfig {
            l0_trigger: 2,
            memory_limit: 128 << 20,
            ..CompactionConfig::default()
        };
        let files: Vec<FileMeta> = (0..20u64)
            .map(|i| FileMeta {
                seq: 100 - i,
                rows: 100_000,
                bytes: 2 << 20,
                ..file(None, 0)
            })
            .collect();
        let refs: Vec<&FileMeta> = files.iter().collect();
        let chosen = choose(&refs, &config, 100, true, false, 200);
        assert!(chosen.len() >= 2 && chosen.len() < 20, "{chosen:?}");
        // The oldest (highest index: lowest seq) go first.
        assert_eq!(chosen.last(), Some(&19));
        let inputs: Vec<&FileMeta> = chosen.iter().map(|&i| &files[i]).collect();
        let m = merge_memory(&inputs, 200, config.memory_limit, None);
        assert!(
            m.readers + m.writer + m.pool <= config.memory_limit as u64,
            "{m:?}"
        );
        assert!(m.pool >= (config.memory_limit / 4) as u64);
    }
}
