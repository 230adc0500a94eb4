//! Operator requests: flush the write buffer, compact, materialize rollups,
//! read and set retention. All but reading retention need `admin` and
//! leave an audit event.

use axum::Json;
use axum::extract::State;
use fleetlake_compaction::RollupRecord;
use serde_json::json;

use crate::auth::{Permission, Principal};
use crate::{ApiError, AppState, ErrorKind};

async fn do_flush(state: AppState) -> Result<Json<serde_json::Value>, ApiError> {
    let files = state.ingester.flush().await?;
    Ok(Json(json!({"files_written": files})))
}

/// Merges every partition of more than one sorted run now, then collects
/// garbage past the grace period. Runs off the request workers, on a thread
/// of its own at the background compactor's lower priority, so that ingest
/// and queries keep theirs.
/// Bounds `POST /api/v1/admin/compact`'s passes; a partition merges into
/// one run in a few (a day of 4,000 hosts under the default limit: 5).
const MAX_COMPACT_PASSES: usize = 64;

async fn do_compact(state: AppState) -> Result<Json<serde_json::Value>, ApiError> {
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
                        // A pass merges the oldest inputs that fit one merge's
                        // memory limit: a partition holding more takes passes
                        // until one merges nothing (or fails).
                        let mut records = Vec::new();
                        for _ in 0..MAX_COMPACT_PASSES {
                            let pass = compactor.run_once(true).await;
                            let done = pass.is_empty() || pass.iter().any(|r| r.error.is_some());
                            records.extend(pass);
                            if done {
                                break;
                            }
                        }
                        (records, compactor.collect_garbage().await)
                    })
                });
            // The request may have gone away; the compaction's work stands.
            let _ = tx.send(result);
        })
        .map_err(ApiError::internal)?;
    let (records, gc) = rx
        .await
        .map_err(|_| ApiError::internal("the compaction thread panicked"))?
        .map_err(ApiError::internal)?;
    let gc = gc.map_err(ApiError::internal)?;
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
        // Refused by the memory budget only: busy, not broken.
        let kind = if records
            .iter()
            .filter(|r| r.error.is_some())
            .all(|r| r.refused_memory)
        {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
        return Err(ApiError::new(
            kind,
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
pub async fn retention_put(
    State(state): State<AppState>,
    principal: Principal,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: RetentionBody = parse_retention(&body)?;
    principal.require(Permission::Admin, Some(&b.db))?;
    let target = match &b.table {
        Some(t) => format!("{}.{t}", b.db),
        None => b.db.clone(),
    };
    let result = set_retention(&state, b).await;
    audited(&state, &principal, "retention", &target, result).await
}

fn parse_retention(body: &[u8]) -> Result<RetentionBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be JSON like {{\"db\": \"fleet\", \"table\": \"cpu\", \"ttl\": \"7d\"}} (table optional, ttl null clears): {e}"
        ))
    })
}

async fn set_retention(
    state: &AppState,
    b: RetentionBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    fleetlake_storage::schema::validate_name(&b.db)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(t) = &b.table {
        fleetlake_storage::schema::validate_name(t)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let ttl_ns = match &b.ttl {
        Some(s) => {
            let d = fleetlake_time::parse_duration(s).map_err(ApiError::bad_request)?;
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
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "db": b.db,
        "table": b.table,
        "ttl_seconds": ttl_ns.map(|n| n / 1_000_000_000),
    })))
}

/// Every retention set, per database and table.
/// Every retention set on a database the principal may read.
pub async fn retention_get(
    State(state): State<AppState>,
    principal: Principal,
) -> Json<serde_json::Value> {
    let catalog = state.ingester.catalog().state();
    let mut out = Vec::new();
    for (db, d) in &catalog.databases {
        if principal.require(Permission::Read, Some(db)).is_err() {
            continue;
        }
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
async fn do_rollup(state: AppState) -> Result<Json<serde_json::Value>, ApiError> {
    let rollups = state.rollups.clone();
    let records = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok::<_, std::io::Error>(rt.block_on(rollups.run_once()))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let failed: Vec<&str> = records.iter().filter_map(|r| r.error.as_deref()).collect();
    if !failed.is_empty() {
        return Err(ApiError::internal(format!(
            "rollup failed: {}",
            failed.join("; ")
        )));
    }
    let json = |r: &RollupRecord| {
        json!({
            "database": r.db, "source": r.source, "target": r.target,
            "new_buckets": r.new_buckets, "late_buckets": r.late_buckets,
            "rows": r.rows, "files": r.files, "bytes": r.bytes,
            "watermark": r.watermark_ns.map(fleetlake_time::rfc3339),
            "duration_ms": r.duration.as_millis() as u64,
        })
    };
    Ok(Json(
        json!({"rollups": records.iter().map(json).collect::<Vec<_>>()}),
    ))
}

/// Records an admin action in the audit trail, whatever came of it.
pub(crate) async fn audited<T>(
    state: &AppState,
    principal: &Principal,
    action: &str,
    target: &str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let outcome = result
        .as_ref()
        .map_or_else(|e| e.message.clone(), |_| "ok".to_string());
    state
        .audit
        .record(&principal.describe(), action, target, &outcome)
        .await;
    result
}

/// Persists the write buffer now (operators before maintenance; tests).
pub async fn flush(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::Admin, None)?;
    let result = do_flush(state.clone()).await;
    audited(&state, &principal, "flush", "*", result).await
}

/// Merges every partition now (see [`do_compact`]).
pub async fn compact(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::Admin, None)?;
    let result = do_compact(state.clone()).await;
    audited(&state, &principal, "compact", "*", result).await
}

/// Materializes every rollup now (see [`do_rollup`]).
pub async fn rollup(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::Admin, None)?;
    let result = do_rollup(state.clone()).await;
    audited(&state, &principal, "rollup", "*", result).await
}
