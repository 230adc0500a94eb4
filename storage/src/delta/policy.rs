//! Which of a table's files Delta readers see.
//!
//! A Delta reader neither de-duplicates rows nor applies our tombstones, so
//! a day partition is published only in a state where its files cannot hold
//! one row identity twice: a single file (a flush file is de-duplicated when
//! written), or the files of a single compaction run (their series ranges are
//! disjoint), with no tombstone pending on them. While a partition is in any
//! other state — flush files beside a run, several runs, a delete not yet
//! applied — readers keep its last published files, minus those the catalog
//! has dropped since. So a reader sees every partition as of its latest
//! clean state: never a row twice, never a file that is gone, possibly
//! stale (the lag is measured, see [`unpublished`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{FileMeta, TableState};

/// The catalog paths of `table`'s files to publish, given which paths are
/// `published` now.
pub fn to_publish(table: &TableState, published: impl Fn(&str) -> bool) -> BTreeSet<&str> {
    let mut days: BTreeMap<&str, Vec<&FileMeta>> = BTreeMap::new();
    for f in table.files.values() {
        days.entry(f.day.as_str()).or_default().push(f);
    }
    let mut out = BTreeSet::new();
    for files in days.values() {
        if is_clean(table, files) {
            out.extend(files.iter().map(|f| f.path.as_str()));
        } else {
            out.extend(
                files
                    .iter()
                    .map(|f| f.path.as_str())
                    .filter(|p| published(p)),
            );
        }
    }
    out
}

/// Whether one day's `files` hold every row identity at most once, with no
/// delete pending on them.
fn is_clean(table: &TableState, files: &[&FileMeta]) -> bool {
    let one_unit = match files {
        [] => false,
        [_] => true,
        [first, rest @ ..] => first.run.is_some() && rest.iter().all(|f| f.run == first.run),
    };
    one_unit
        && !files
            .iter()
            .any(|f| table.tombstones.iter().any(|t| t.affects(f)))
}

/// The live files of `table` not in `published`, and the creation time
/// (ns) of the oldest of them.
pub fn unpublished(table: &TableState, published: &BTreeSet<&str>) -> (u64, Option<i64>) {
    let mut n = 0;
    let mut oldest: Option<i64> = None;
    for f in table.files.values() {
        if !published.contains(f.path.as_str()) {
            n += 1;
            oldest = Some(oldest.map_or(f.created_ns, |o| o.min(f.created_ns)));
        }
    }
    (n, oldest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Tombstone;

    fn file(path: &str, day: &str, run: Option<u64>, seq: u64) -> FileMeta {
        FileMeta {
            path: path.into(),
            db: "db".into(),
            table: "t".into(),
            day: day.into(),
            rows: 1,
            bytes: 1,
            min_time: 0,
            max_time: 10,
            seq,
            created_ns: seq as i64,
            level: u8::from(run.is_some()),
            run,
            sort_order: Vec::new(),
            deletes_applied: 0,
        }
    }

    fn table(files: &[FileMeta]) -> TableState {
        let mut t = TableState::default();
        for f in files {
            t.files.insert(f.path.clone(), f.clone());
        }
        t
    }

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_day_is_published_only_as_one_file_or_one_run_without_pending_deletes() {
        // Day 1: one run of two files. Day 2: a lone flush file. Day 3: two
        // flush files (may hold a row twice). Day 4: two runs.
        let t = table(&[
            file("r1a", "d1", Some(1), 5),
            file("r1b", "d1", Some(1), 5),
            file("f2", "d2", None, 6),
            file("f3a", "d3", None, 7),
            file("f3b", "d3", None, 8),
            file("r4a", "d4", Some(2), 3),
            file("r4b", "d4", Some(3), 4),
        ]);
        let got = to_publish(&t, |_| false);
        assert_eq!(got, BTreeSet::from(["r1a", "r1b", "f2"]));
        // What was published of an unclean day stays while it is live.
        let got = to_publish(&t, |p| set(&["f3a", "r4a", "gone"]).contains(p));
        assert_eq!(got, BTreeSet::from(["r1a", "r1b", "f2", "f3a", "r4a"]));
        let (n, oldest) = unpublished(&t, &got);
        assert_eq!((n, oldest), (2, Some(4)));
    }

    #[test]
    fn a_pending_delete_holds_the_day_at_what_was_published() {
        let mut t = table(&[file("r1a", "d1", Some(1), 5), file("f1", "d1", None, 9)]);
        assert!(to_publish(&t, |_| false).is_empty());
        t.files.remove("f1");
        t.tombstones.push(Tombstone {
            seq: 7,
            min_time: 0,
            max_time: 100,
            tags: Vec::new(),
            created_ns: 0,
        });
        assert!(to_publish(&t, |_| false).is_empty());
        assert_eq!(to_publish(&t, |p| p == "r1a"), BTreeSet::from(["r1a"]));
        // Once compaction has applied it, the day is clean again.
        let mut applied = t.files.get("r1a").unwrap().clone();
        applied.deletes_applied = 7;
        t.files.insert("r1a".into(), applied);
        assert_eq!(to_publish(&t, |_| false), BTreeSet::from(["r1a"]));
    }
}
