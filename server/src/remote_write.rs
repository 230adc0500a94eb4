//! Prometheus remote write 1.0: `POST /api/v1/prom/write` and
//! `POST /prometheus/api/v1/write` (the VictoriaMetrics and Prometheus paths).
//!
//! Stored through [`fleetlake_ingest::Ingester::write_lp`] like line protocol:
//! `204` only once every stored sample is fsynced; `503` + `Retry-After`
//! past the memory budget (Prometheus retries 5xx); `413` over the body
//! limit; `400` naming the series that could not be stored (the others are).
//! See [`fleetlake_ingest::remote_write`] for the mapping and for the samples
//! that are dropped (stale markers, NaN, ±Inf).

use std::collections::HashMap;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fleetlake_ingest::Precision;
use fleetlake_ingest::remote_write::{self, Converted};
use fleetlake_ingest::validate::MAX_REPORTED_LINES;
use serde_json::json;
use tracing::debug;

use crate::auth::{Permission, Principal};
use crate::{ApiError, AppState, ErrorKind};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/prom/write", post(write))
        .route("/prometheus/api/v1/write", post(write))
}

async fn write(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = match handle(&state, &principal, q, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.count_write(r.status().as_u16());
    r
}

async fn handle(
    state: &AppState,
    principal: &Principal,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let db = state.db_or_default(q.get("db").map(String::as_str));
    principal.require(Permission::Write, Some(&db))?;
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        && !enc.trim().eq_ignore_ascii_case("snappy")
    {
        return Err(ApiError::bad_request(format!(
            "unsupported Content-Encoding {enc:?}: remote write bodies are snappy (block format)"
        )));
    }
    let limit = state.max_body_bytes;
    let too_large = || {
        ApiError::too_large(format!(
            "request body exceeds the limit of {limit} bytes; lower queue_config.max_samples_per_send"
        ))
    };
    let raw = to_bytes(body, limit.saturating_add(1))
        .await
        .map_err(|_| too_large())?;
    if raw.len() > limit {
        return Err(too_large());
    }
    state.metrics.write_bytes.add(raw.len() as u64);
    let limits = remote_write::Limits::new(limit);
    let converted = tokio::task::spawn_blocking(move || {
        remote_write::decode(&raw, &limits).map(|req| remote_write::to_line_protocol(&req))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e {
        remote_write::DecodeError::TooLarge { .. } | remote_write::DecodeError::OverLimit(_) => {
            ApiError::too_large(e.to_string())
        }
        _ => ApiError::bad_request(e.to_string()),
    })?;
    let Converted {
        lines,
        line_series,
        series_names,
        mut rejected,
        stale_markers_dropped,
        non_finite_dropped,
    } = converted;
    if stale_markers_dropped + non_finite_dropped > 0 {
        debug!(
            stale_markers_dropped,
            non_finite_dropped, "remote write: samples not stored"
        );
    }
    let mut stored = 0;
    if !lines.is_empty() {
        let outcome = state
            .ingester
            .write_lp(&db, lines, Precision::Millisecond, true)
            .await?;
        stored = outcome.rows;
        // One report per series, not per sample.
        let mut seen = std::collections::HashSet::new();
        for r in outcome.rejected {
            let idx = line_series[r.line - 1];
            if seen.insert(idx) {
                rejected.push(remote_write::RejectedSeries {
                    series: series_names[idx as usize].clone(),
                    reason: r.reason,
                });
            }
        }
    }
    if rejected.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let first = &rejected[0];
    let message = format!(
        "{} series rejected ({stored} samples stored); first: {}: {}",
        rejected.len(),
        first.series,
        first.reason
    );
    // Like rejected lines: the first ones listed, every one counted.
    let data: Vec<_> = rejected
        .iter()
        .take(MAX_REPORTED_LINES)
        .map(|r| json!({"series": r.series, "error_message": r.reason}))
        .collect();
    Ok((
        ErrorKind::BadRequest.status(),
        Json(json!({
            "error": message,
            "message": message,
            "stored_samples": stored,
            "rejected_series": rejected.len(),
            "data": data,
        })),
    )
        .into_response())
}
