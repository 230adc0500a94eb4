//! Warming the last-value cache at start-up. The portal's fleet overview
//! (and any "latest point of each host" query) reads each series' newest
//! row from the cache (`fleetlake_query::last_value`); the first such
//! query after a restart builds it in one pass over the table, which on a
//! large fleet takes seconds to tens of seconds. Built in the background
//! as soon as the server listens, the first visitor does not pay for it.

use std::sync::Arc;
use std::time::Instant;

use fleetlake_query::QueryEngine;
use tracing::{info, warn};

use crate::grafana::sql::ident;

/// Builds the last-value cache of each of `tables` in every database that
/// has it. A failure is logged: the first query builds the cache instead.
pub async fn warm_last_values(engine: Arc<QueryEngine>, tables: Vec<String>) {
    for db in engine.ingester().databases() {
        for table in &tables {
            let Some(schema) = engine.ingester().table_schema(&db, table) else {
                continue;
            };
            // Any `DISTINCT ON` over the table's tags builds the whole
            // table's cache (every series), whichever tag it names.
            let Some(tag) = schema.tags_sorted().first().map(|t| ident(t)) else {
                continue;
            };
            let sql = format!(
                "SELECT DISTINCT ON ({tag}) {tag} FROM {} ORDER BY {tag}, time DESC",
                ident(table)
            );
            let started = Instant::now();
            match engine.query_collect(&db, &sql).await {
                Ok((_, batches)) => info!(
                    db,
                    table,
                    groups = batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                    ms = started.elapsed().as_millis() as u64,
                    "last-value cache built"
                ),
                Err(e) => warn!(db, table, error = %e, "warming the last-value cache failed"),
            }
        }
    }
}
