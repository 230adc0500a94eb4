//! Retention: files whose rows are all past their table's retention leave
//! the catalog; garbage collection deletes them after the grace period.

use fleetlake_storage::Result;
use fleetlake_storage::catalog::{Action, Catalog, now_ns};
use tracing::info;

/// Removes, in one commit, every file whose newest row is older than its
/// table's retention allows. Not strict: a file someone else removed since
/// the snapshot is gone either way, so it must not fail the others' removal.
pub(crate) async fn expire_files(catalog: &Catalog) -> Result<()> {
    let state = catalog.state();
    let now = now_ns();
    let mut actions = Vec::new();
    for (db, dbs) in &state.databases {
        for (table, ts) in &dbs.tables {
            let Some(ttl) = dbs.retention_of(table) else {
                continue;
            };
            let cutoff = now.saturating_sub(ttl);
            let paths: Vec<String> = ts
                .files
                .values()
                .filter(|f| f.max_time < cutoff)
                .map(|f| f.path.clone())
                .collect();
            if !paths.is_empty() {
                info!(
                    db,
                    table,
                    files = paths.len(),
                    "retention: dropping expired files"
                );
                actions.push(Action::RemoveFiles {
                    db: db.clone(),
                    table: table.clone(),
                    paths,
                    at_ns: now,
                    strict: false,
                });
            }
        }
    }
    if !actions.is_empty() {
        catalog.commit(actions).await?;
    }
    Ok(())
}
