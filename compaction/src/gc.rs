//! Garbage collection: deleting files no commit needs any more.
//!
//! - Removed files (compaction inputs, expired data) are deleted once their
//!   removal is older than the grace period, then forgotten by a commit.
//! - Orphans — Parquet objects that no commit references, left by a crash
//!   between writing a file and committing it — are deleted once older than
//!   `orphan_age`. While the server runs that is the grace period (a flush or
//!   merge in flight has written files it has not committed yet); at start-up,
//!   before anything writes, it is zero.
//!
//! Assumes one writing process per store (the catalog's commits are safe
//! with several; orphan detection is not).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use fleetlake_storage::catalog::{Action, Catalog, now_ns};
use fleetlake_storage::{Error, Result, fault};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::info;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub removed_deleted: u64,
    pub orphans_deleted: u64,
}

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
    let grace_ns = nanos(grace);
    let mut report = GcReport::default();

    // Removed files past the grace period.
    let state = catalog.state();
    let mut purge: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (db, dbs) in &state.databases {
        for (table, ts) in &dbs.tables {
            for (path, &at) in &ts.removed {
                if now.saturating_sub(at) >= grace_ns {
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
            match store.delete(&Path::from(p.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_err(p)(e)),
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
            let seqs: Vec<u64> = ts
                .tombstones
                .iter()
                .filter(|t| !ts.files.values().any(|f| t.affects(f)))
                .map(|t| t.seq)
                .collect();
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
    let min_age = nanos(orphan_age);
    for meta in listed {
        let path = meta.location.as_ref();
        if path.starts_with("_catalog/") || !path.ends_with(".parquet") || known.contains(path) {
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

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}
