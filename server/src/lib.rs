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
//! | `diagnosis.rs` | job diagnosis: `/api/v1/diagnosis/jobs/{job_id}`, the fleet view |
//! | `journal.rs` | (a background task) jobs diagnosed as they end, for the fleet view |
//! | `tokens.rs` | API tokens |
//! | `auth.rs` | who asks and what their token allows; the audit trail |
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
pub mod auth;
mod csv_text;
mod diagnosis;
pub mod error;
mod float_text;
mod grafana;
mod health;
mod journal;
mod limits;
mod metrics;
mod params;
mod prom_labels;
mod prometheus;
mod query;
pub mod read_only;
mod remote_write;
mod rules;
mod tokens;
mod ui;
mod warm;
mod write;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use fleetlake_compaction::{Compactor, Rollups};
use fleetlake_ingest::Ingester;
use fleetlake_query::QueryEngine;

pub use auth::Auth;
pub use auth::audit::AuditLog;
pub use diagnosis::RuleDiagnoser;
pub use error::{ApiError, ErrorKind, PromError};
pub use journal::{DiagnosisJournal, Pass};
pub use metrics::ServerMetrics;
pub use warm::warm_last_values;

/// What every handler reaches: the parts the binary wired together.
#[derive(Clone)]
pub struct AppState {
    pub ingester: Arc<Ingester>,
    pub engine: Arc<QueryEngine>,
    pub compactor: Arc<Compactor>,
    pub rollups: Arc<Rollups>,
    /// Largest write body (line protocol, remote write), after decoding.
    pub max_body_bytes: usize,
    /// Largest body of every other request (SQL, PromQL, rules, Grafana).
    pub max_request_bytes: usize,
    pub auth: Auth,
    pub audit: Arc<AuditLog>,
    /// Database of every API when a request names none (`--default-db`).
    pub default_db: String,
    pub metrics: Arc<ServerMetrics>,
    pub started: Instant,
    /// Rule definitions, alert state, actions (the rules crate).
    pub rules: Arc<fleetlake_rules::RulesEngine>,
    /// The Delta Lake publisher, unless `--without-delta`.
    pub delta: Option<Arc<fleetlake_storage::delta::Publisher>>,
    /// A read replica (`--role query`): every request that would change
    /// the store is refused ([`read_only::refuse_changes`]).
    pub read_only: bool,
}

/// What [`AppState::new`] needs besides the engines.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_request_bytes: usize,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ingester: Arc<Ingester>,
        engine: Arc<QueryEngine>,
        compactor: Arc<Compactor>,
        rollups: Arc<Rollups>,
        limits: Limits,
        default_db: String,
        rules: Arc<fleetlake_rules::RulesEngine>,
        auth: Auth,
        audit: Arc<AuditLog>,
    ) -> Self {
        Self {
            ingester,
            engine,
            compactor,
            rollups,
            max_body_bytes: limits.max_body_bytes,
            max_request_bytes: limits.max_request_bytes,
            auth,
            audit,
            default_db,
            metrics: Arc::new(ServerMetrics::default()),
            started: Instant::now(),
            rules,
            delta: None,
            read_only: false,
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

/// Every route, behind authentication.
///
/// Write bodies are size-checked by their handlers (413 naming
/// `--max-body-bytes`, after gunzip or snappy); every other body is
/// capped at `--max-request-bytes` before it is read.
pub fn router(state: AppState) -> Router {
    let writes = Router::new()
        .route("/write", post(write::write_v1))
        .route("/api/v2/write", post(write::write_v2))
        .route("/api/v3/write_lp", post(write::write_v3))
        .merge(remote_write::routes())
        .layer(DefaultBodyLimit::disable());
    let others = Router::new()
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
        .merge(prom_labels::routes())
        .merge(rules::routes())
        .merge(diagnosis::routes())
        .merge(tokens::routes())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.max_request_bytes,
            limits::request_body,
        ))
        .layer(DefaultBodyLimit::max(state.max_request_bytes));
    let app = writes.merge(others);
    let app = if state.read_only {
        app.layer(axum::middleware::from_fn(read_only::refuse_changes))
    } else {
        app
    };
    app.layer(axum::middleware::from_fn_with_state(
        state.auth.clone(),
        auth::authenticate,
    ))
    .with_state(state)
}
