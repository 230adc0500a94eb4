//! fleetlake's HTTP server: routing, one handler file per request kind, and
//! the one place errors become statuses ([`error`]).
//!
//! The binary parses flags and wires the store, the write path, the query
//! engine, compaction and the rules engine into an [`AppState`]; this crate
//! turns requests into calls on them. It owns no state of its own beyond
//! request counters ([`ServerMetrics`]).
//!
//! | file | requests |
//! |---|---|
//! | `write.rs` | line protocol: `/write`, `/api/v2/write`, `/api/v3/write_lp` |
//! | `remote_write.rs` | Prometheus remote write |
//! | `query.rs` | SQL: `/api/v1/sql`, `/api/v3/query_sql` |
//! | `prometheus.rs`, `prom_labels.rs` | the Prometheus query and label APIs |
//! | `grafana.rs` | the Grafana JSON datasource |
//! | `rules.rs` | rules, alerts, approvals, backtests |
//! | `admin.rs` | flush, compact, rollup, retention |
//! | `health.rs` | `/health`, `/ping` |
//! | `metrics.rs` | `/metrics` |
//!
//! ```no_run
//! # async fn demo(state: fleetlake_server::AppState) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8086").await?;
//! axum::serve(listener, fleetlake_server::router(state)).await
//! # }
//! ```

mod admin;
pub mod error;
mod grafana;
mod health;
mod metrics;
mod prom_labels;
mod prometheus;
mod query;
mod remote_write;
mod rules;
mod write;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::{get, post};
use fleetlake_compaction::{Compactor, Rollups};
use fleetlake_ingest::Ingester;
use fleetlake_query::QueryEngine;

pub use error::{ApiError, ErrorKind, PromError};
pub use metrics::ServerMetrics;

/// What every handler reaches: the parts the binary wired together.
#[derive(Clone)]
pub struct AppState {
    pub ingester: Arc<Ingester>,
    pub engine: Arc<QueryEngine>,
    pub compactor: Arc<Compactor>,
    pub rollups: Arc<Rollups>,
    pub max_body_bytes: usize,
    /// Database of every API when a request names none (`--default-db`).
    pub default_db: String,
    pub metrics: Arc<ServerMetrics>,
    pub started: Instant,
    /// Rule definitions, alert state, actions (the rules crate).
    pub rules: Arc<fleetlake_rules::RulesEngine>,
}

impl AppState {
    pub fn new(
        ingester: Arc<Ingester>,
        engine: Arc<QueryEngine>,
        compactor: Arc<Compactor>,
        rollups: Arc<Rollups>,
        max_body_bytes: usize,
        default_db: String,
        rules: Arc<fleetlake_rules::RulesEngine>,
    ) -> Self {
        Self {
            ingester,
            engine,
            compactor,
            rollups,
            max_body_bytes,
            default_db,
            metrics: Arc::new(ServerMetrics::default()),
            started: Instant::now(),
            rules,
        }
    }

    /// The database a request names, else the default.
    pub fn db_or_default(&self, db: Option<&str>) -> String {
        match db {
            Some(d) if !d.is_empty() => d.to_string(),
            _ => self.default_db.clone(),
        }
    }

    /// The database a read names, else the default; one that was never
    /// written is an error naming it (an empty answer would hide a typo).
    /// The default database always exists, empty on a new store.
    ///
    /// # Errors
    /// The message for a 404.
    pub fn existing_db(&self, db: Option<&str>) -> Result<String, String> {
        let db = self.db_or_default(db);
        if db == self.default_db || self.ingester.databases().contains(&db) {
            Ok(db)
        } else {
            Err(format!(
                "database {db:?} does not exist (databases are created by their first write)"
            ))
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/write", post(write::write_v1))
        .route("/api/v2/write", post(write::write_v2))
        .route("/api/v3/write_lp", post(write::write_v3))
        .route("/api/v1/sql", get(query::sql_get).post(query::sql_post))
        .route(
            "/api/v3/query_sql",
            get(query::sql_get_v3).post(query::sql_post_v3),
        )
        .route("/api/v1/admin/flush", post(admin::flush))
        .route("/api/v1/admin/compact", post(admin::compact))
        .route("/api/v1/admin/rollup", post(admin::rollup))
        .route(
            "/api/v1/retention",
            get(admin::retention_get).put(admin::retention_put),
        )
        .route("/health", get(health::health))
        .route("/ping", get(health::ping).head(health::ping))
        .route("/metrics", get(metrics::render))
        .merge(grafana::routes())
        .merge(prometheus::routes())
        .merge(remote_write::routes())
        .merge(prom_labels::routes())
        .merge(rules::routes())
        // Bodies are size-checked by the handlers themselves (413 with a message).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}
