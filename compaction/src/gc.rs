//! Garbage collection: deleting files no commit needs any more.
//!
//! - Removed files (compaction inputs, expired data) are deleted once no
//!   snapshot a reader still holds lists them ([`Catalog::in_use`]) and their
//!   removal is older than the grace period (zero unless outside readers ask
//!   for one), then forgotten by a commit. Each goes with its series file.
//! - Orphans — Parquet objects that no commit references, left by a crash
//!   between writing a file and committing it — are deleted once older than
//!   `orphan_age`. While the server runs that is [`RUNNING_ORPHAN_AGE`] (a
//!   flush or merge in flight has written files it has not committed yet);
//!   at start-up, before anything writes, it is zero. Series files whose
//!   data file no commit references go the same way.
//!
//! Assumes one writing process per store (the catalog's commits are safe
//! with several; orphan detection is not).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use fleetlake_storage::catalog::{Action, Catalog, now_ns};
use fleetlake_storage::series_index::series_file_path;
use fleetlake_storage::{Error, Result, fault};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::info;

/// How old an unreferenced object must be before a running server takes it
/// for a crash's leftover rather than a write in flight.
pub const RUNNING_ORPHAN_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub removed_deleted: u64,
    pub orphans_deleted: u64,
}

/// Where series files live (see [`series_file_path`]).
const SERIES_PREFIX: &str = "_index/";

fn os_err(path: &str) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |source| Error::ObjectStore {
        path: path.to_string(),
        source,
    }
}

pub(crate) async fn collect(
    catalog: &Catalog,
    grace: Duration,
    orphan_age: Duration,
) -> Result<GcReport> {
    let store = catalog.store();
    let now = now_ns();
    let grace_ns = fleetlake_time::duration_ns(grace);
    let mut report = GcReport::default();

    // Removed files past the grace period.
    let state = catalog.state();
    let mut purge: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (db, dbs) in &state.databases {
        for (table, ts) in &dbs.tables {
            for (path, &at) in &ts.removed {
                if now.saturating_sub(at) >= grace_ns && !catalog.in_use(db, table, path) {
                    purge
                        .entry((db.clone(), table.clone()))
                        .or_default()
                        .push(path.clone());
                }
            }
        }
    }
    for ((db, table), paths) in purge {
        for p in &paths {
            for object in [Path::from(p.as_str()), series_file_path(p)] {
                match store.delete(&object).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(os_err(p)(e)),
                }
            }
        }
        fault::point("gc:after_delete");
        report.removed_deleted += paths.len() as u64;
        catalog
            .commit(vec![Action::PurgeFiles { db, table, paths }])
            .await?;
    }

    // Tombstones no live file is older than (where they match in time):
    // compaction has applied them everywhere.
    let state = catalog.state();
    let mut done = Vec::new();
    for (db, dbs) in &state.databases {
        for (table, ts) in &dbs.tables {
            // Removal is by seq, and deletes issued with no write between
            // them share one: a seq goes only once all of its are applied.
            let pending: HashSet<u64> = ts
                .tombstones
                .iter()
                .filter(|t| ts.files.values().any(|f| t.affects(f)))
                .map(|t| t.seq)
                .collect();
            let mut seqs: Vec<u64> = ts
                .tombstones
                .iter()
                .map(|t| t.seq)
                .filter(|s| !pending.contains(s))
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            if !seqs.is_empty() {
                done.push(Action::RemoveTombstones {
                    db: db.clone(),
                    table: table.clone(),
                    seqs,
                });
            }
        }
    }
    if !done.is_empty() {
        catalog.commit(done).await?;
    }

    // Orphans: listed first, judged against the catalog read after, so a
    // file committed meanwhile is never taken for one.
    let listed: Vec<object_store::ObjectMeta> =
        store.list(None).try_collect().await.map_err(os_err(""))?;
    let state = catalog.state();
    let known: HashSet<&str> = state
        .databases
        .values()
        .flat_map(|d| d.tables.values())
        .flat_map(|t| t.files.keys().chain(t.removed.keys()))
        .map(String::as_str)
        .collect();
    let min_age = fleetlake_time::duration_ns(orphan_age);
    for meta in listed {
        let path = meta.location.as_ref();
        let data_path = match path.strip_prefix(SERIES_PREFIX) {
            Some(p) => p.strip_suffix(".series"),
            None => Some(path).filter(|p| p.ends_with(".parquet")),
        };
        if path.starts_with("_catalog/")
            || path.contains("/_delta_log/")
            || data_path.is_none_or(|p| known.contains(p))
        {
            continue;
        }
        let age_ns =
            now.saturating_sub(meta.last_modified.timestamp_nanos_opt().unwrap_or(i64::MAX));
        if age_ns < min_age {
            continue;
        }
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => report.orphans_deleted += 1,
            Err(e) => return Err(os_err(path)(e)),
        }
    }
    if report != GcReport::default() {
        info!(
            removed = report.removed_deleted,
            orphans = report.orphans_deleted,
            "garbage collected"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetlake_storage::catalog::{FileMeta, Tombstone};
    use object_store::ObjectStore;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    const DAY: i64 = 86_400_000_000_000;

    fn file(path: &str, day: i64, deletes_applied: u64) -> FileMeta {
        serde_json::from_value(serde_json::json!({
            "path": path, "db": "fleet", "table": "cpu", "day": format!("day{day}"),
            "rows": 1, "bytes": 1, "min_time": day * DAY, "max_time": day * DAY + 10,
            "seq": 5, "created_ns": 0, "deletes_applied": deletes_applied,
        }))
        .expect("a file meta")
    }

    fn tombstone(day: i64) -> Tombstone {
        Tombstone {
            seq: 100, // two deletes with no write between share a seq
            min_time: day * DAY,
            max_time: day * DAY + 5,
            tags: Vec::new(),
            created_ns: 0,
        }
    }

    #[tokio::test]
    async fn a_removed_file_goes_with_its_series_file_once_no_reader_holds_it() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let catalog = Catalog::load(Arc::clone(&store), 100).await.unwrap();
        for p in [
            "a.parquet",
            "_index/a.parquet.series",
            "_index/lost.parquet.series",
        ] {
            store.put(&Path::from(p), vec![1u8].into()).await.unwrap();
        }
        catalog
            .commit(vec![
                Action::CreateDatabase { db: "fleet".into() },
                Action::CreateTable {
                    db: "fleet".into(),
                    table: "cpu".into(),
                },
                Action::AddFiles {
                    files: vec![file("a.parquet", 0, 0)],
                },
            ])
            .await
            .unwrap();
        let reader = catalog.state();
        catalog
            .commit(vec![Action::RemoveFiles {
                db: "fleet".into(),
                table: "cpu".into(),
                paths: vec!["a.parquet".into()],
                at_ns: now_ns(),
                strict: true,
            }])
            .await
            .unwrap();
        let exists = |p: &'static str| {
            let store = Arc::clone(&store);
            async move { store.head(&Path::from(p)).await.is_ok() }
        };
        let hour = Duration::from_secs(3600);
        let report = collect(&catalog, Duration::ZERO, hour).await.unwrap();
        assert_eq!(report.removed_deleted, 0, "a reader's snapshot lists it");
        assert!(exists("a.parquet").await);
        drop(reader);
        let report = collect(&catalog, Duration::ZERO, hour).await.unwrap();
        assert_eq!(report.removed_deleted, 1);
        assert!(!exists("a.parquet").await);
        assert!(!exists("_index/a.parquet.series").await);
        assert!(
            exists("_index/lost.parquet.series").await,
            "younger than the orphan age"
        );
        let report = collect(&catalog, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.orphans_deleted, 1);
        assert!(!exists("_index/lost.parquet.series").await);
        let state = catalog.state();
        assert!(state.table("fleet", "cpu").unwrap().removed.is_empty());
    }

    #[tokio::test]
    async fn a_shared_tombstone_seq_stays_until_every_delete_is_applied() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let catalog = Catalog::load(store, 100).await.unwrap();
        let tombstones = [0, 1].map(|day| Action::AddTombstone {
            db: "fleet".into(),
            table: "cpu".into(),
            tombstone: tombstone(day),
        });
        let mut actions = vec![
            Action::CreateDatabase { db: "fleet".into() },
            Action::CreateTable {
                db: "fleet".into(),
                table: "cpu".into(),
            },
            // Day 0 is rewritten without its deleted rows; day 1 is not yet.
            Action::AddFiles {
                files: vec![file("a", 0, 100), file("b", 1, 0)],
            },
        ];
        actions.extend(tombstones);
        catalog.commit(actions).await.unwrap();
        let hour = Duration::from_secs(3600);
        collect(&catalog, hour, hour).await.unwrap();
        let state = catalog.state();
        let left = &state.table("fleet", "cpu").unwrap().tombstones;
        assert_eq!(left.len(), 2, "day 1's delete is not applied yet");

        catalog
            .commit(vec![
                Action::RemoveFiles {
                    db: "fleet".into(),
                    table: "cpu".into(),
                    paths: vec!["b".into()],
                    at_ns: 0,
                    strict: true,
                },
                Action::AddFiles {
                    files: vec![file("c", 1, 100)],
                },
            ])
            .await
            .unwrap();
        collect(&catalog, hour, hour).await.unwrap();
        let state = catalog.state();
        assert!(state.table("fleet", "cpu").unwrap().tombstones.is_empty());
    }
}
