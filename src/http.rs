//! The HTTP API: routes, shared state, and the one place errors become statuses.

mod grafana;
mod metrics;
mod prom_labels;
mod prometheus;
mod query;
mod remote_write;
mod rules;
mod write;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleetlake_compaction::{Compactor, RollupRecord, Rollups};
use fleetlake_ingest::Ingester;
use fleetlake_query::QueryEngine;
use serde_json::json;

pub use metrics::ServerMetrics;

#[derive(Clone)]
pub struct AppState {
    pub ingester: Arc<Ingester>,
    pub engine: Arc<QueryEngine>,
    pub compactor: Arc<Compactor>,
    pub rollups: Arc<Rollups>,
    pub max_body_bytes: usize,
    /// Database of the Prometheus APIs when a request names none.
    pub prometheus_db: String,
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
        prometheus_db: String,
        rules: Arc<fleetlake_rules::RulesEngine>,
    ) -> Self {
        Self {
            ingester,
            engine,
            compactor,
            rollups,
            max_body_bytes,
            prometheus_db,
            metrics: Arc::new(ServerMetrics::default()),
            started: Instant::now(),
            rules,
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
        .route("/api/v1/admin/flush", post(flush))
        .route("/api/v1/admin/compact", post(compact))
        .route("/api/v1/admin/rollup", post(rollup))
        .route("/api/v1/retention", get(retention_get).put(retention_put))
        .route("/health", get(health))
        .route("/ping", get(ping).head(ping))
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

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "pass", "version": env!("CARGO_PKG_VERSION")}))
}

/// Persists the write buffer now (operators before maintenance; tests).
async fn flush(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let files = state.ingester.flush().await?;
    Ok(Json(json!({"files_written": files})))
}

/// Merges every partition of more than one sorted run now, then collects
/// garbage past the grace period. Runs off the request workers, on a thread
/// of its own at the background compactor's lower priority, so that ingest
/// and queries keep theirs.
async fn compact(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let compactor = state.compactor.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("admin-compact".into())
        .spawn(move || {
            fleetlake_compaction::lower_priority();
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| {
                    rt.block_on(async {
                        let records = compactor.run_once(true).await;
                        (records, compactor.collect_garbage().await)
                    })
                });
            // The request may have gone away; the compaction's work stands.
            let _ = tx.send(result);
        })
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (records, gc) = rx
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the compaction thread panicked",
            )
        })?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let gc = gc.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let failed: Vec<&str> = records.iter().filter_map(|r| r.error.as_deref()).collect();
    let body = json!({
        "compactions": records.iter().map(|r| json!({
            "database": r.db, "table": r.table, "day": r.day,
            "input_files": r.input_files, "output_files": r.output_files,
            "input_rows": r.input_rows, "output_rows": r.output_rows,
            "duration_ms": r.duration.as_millis() as u64, "error": r.error,
        })).collect::<Vec<_>>(),
        "removed_files_deleted": gc.removed_deleted,
        "orphans_deleted": gc.orphans_deleted,
    });
    if !failed.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("compaction failed: {}", failed.join("; ")),
        ));
    }
    Ok(Json(body))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    db: String,
    table: Option<String>,
    /// A duration such as `7d`, or null to clear.
    ttl: Option<String>,
}

/// Sets or clears the retention of a database or a table; effective at once.
async fn retention_put(
    axum::extract::State(state): axum::extract::State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: RetentionBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be JSON like {{\"db\": \"fleet\", \"table\": \"cpu\", \"ttl\": \"7d\"}} (table optional, ttl null clears): {e}"
        ))
    })?;
    fleetlake_storage::schema::validate_name(&b.db)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(t) = &b.table {
        fleetlake_storage::schema::validate_name(t)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let ttl_ns = match &b.ttl {
        Some(s) => {
            let d = crate::config::parse_duration(s).map_err(ApiError::bad_request)?;
            if d.is_zero() {
                return Err(ApiError::bad_request(
                    "ttl must be positive; use null to clear",
                ));
            }
            Some(d.as_nanos().min(i64::MAX as u128) as i64)
        }
        None => None,
    };
    state
        .ingester
        .catalog()
        .commit(vec![fleetlake_storage::catalog::Action::SetRetention {
            db: b.db.clone(),
            table: b.table.clone(),
            ttl_ns,
        }])
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({
        "db": b.db,
        "table": b.table,
        "ttl_seconds": ttl_ns.map(|n| n / 1_000_000_000),
    })))
}

/// Every retention set, per database and table.
async fn retention_get(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    let catalog = state.ingester.catalog().state();
    let mut out = Vec::new();
    for (db, d) in &catalog.databases {
        if let Some(ttl) = d.retention_ns {
            out.push(json!({"db": db, "table": null, "ttl_seconds": ttl / 1_000_000_000}));
        }
        for (t, ttl) in &d.table_retention_ns {
            out.push(json!({"db": db, "table": t, "ttl_seconds": ttl / 1_000_000_000}));
        }
    }
    Json(json!({ "retention": out }))
}

/// Materializes every rollup now — closed buckets and buckets with late
/// data — and reports what each did. Runs off the request workers.
async fn rollup(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rollups = state.rollups.clone();
    let records = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok::<_, std::io::Error>(rt.block_on(rollups.run_once()))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let failed: Vec<&str> = records.iter().filter_map(|r| r.error.as_deref()).collect();
    if !failed.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rollup failed: {}", failed.join("; ")),
        ));
    }
    let rfc3339 = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    let json = |r: &RollupRecord| {
        json!({
            "database": r.db, "source": r.source, "target": r.target,
            "new_buckets": r.new_buckets, "late_buckets": r.late_buckets,
            "rows": r.rows, "files": r.files, "bytes": r.bytes,
            "watermark": r.watermark_ns.map(rfc3339),
            "duration_ms": r.duration.as_millis() as u64,
        })
    };
    Ok(Json(
        json!({"rollups": records.iter().map(json).collect::<Vec<_>>()}),
    ))
}

/// InfluxDB 1.x clients and Telegraf probe `/ping` and expect 204.
async fn ping() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        "X-Influxdb-Version",
        HeaderValue::from_static(concat!("fleetlake-", env!("CARGO_PKG_VERSION"))),
    );
    r
}

/// An error answer: a status and a JSON body `{"error": message, ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.message, "message": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

impl From<fleetlake_ingest::Error> for ApiError {
    fn from(e: fleetlake_ingest::Error) -> Self {
        use fleetlake_ingest::Error as E;
        let status = match &e {
            E::InvalidPrecision(_) | E::InvalidDatabase(_) => StatusCode::BAD_REQUEST,
            E::BufferFull { .. } | E::ShuttingDown | E::WalClosed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            E::ConcurrentSchemaChange { .. } => StatusCode::CONFLICT,
            E::BodyOverBudget { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut err = ApiError::new(status, e.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            err.retry_after_secs = Some(1);
        }
        err
    }
}

impl From<fleetlake_query::Error> for ApiError {
    fn from(e: fleetlake_query::Error) -> Self {
        use fleetlake_query::Error as E;
        let status = match &e {
            E::User(_) => StatusCode::BAD_REQUEST,
            E::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            E::MemoryLimit { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}
