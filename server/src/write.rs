//! Line-protocol write endpoints: InfluxDB v1 `/write`, v2 `/api/v2/write`,
//! v3 `/api/v3/write_lp`.

use std::collections::HashMap;
use std::io::Read;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetlake_ingest::Precision;
use serde_json::json;

use crate::auth::{Permission, Principal};
use crate::{ApiError, AppState, ErrorKind};

pub async fn write_v1(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let db = state.db_or_default(q.get("db").map(String::as_str));
    let precision = q
        .get("precision")
        .map(String::as_str)
        .unwrap_or("n")
        .to_string();
    handle(state, principal, db, &precision, true, headers, body).await
}

pub async fn write_v2(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(bucket) = q.get("bucket") else {
        return finish(
            &state,
            Err(ApiError::bad_request("missing query parameter 'bucket'")),
        );
    };
    // InfluxDB 2 buckets are often "db/retention_policy"; the database is the first part.
    let db = bucket.split('/').next().unwrap_or(bucket).to_string();
    let precision = q
        .get("precision")
        .map(String::as_str)
        .unwrap_or("ns")
        .to_string();
    handle(state, principal, db, &precision, true, headers, body).await
}

pub async fn write_v3(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(db) = q.get("db").cloned() else {
        return finish(
            &state,
            Err(ApiError::bad_request("missing query parameter 'db'")),
        );
    };
    let precision = q
        .get("precision")
        .map(String::as_str)
        .unwrap_or("auto")
        .to_string();
    let accept_partial = match q.get("accept_partial").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return finish(
                &state,
                Err(ApiError::bad_request(format!(
                    "invalid accept_partial {other:?}: use true or false"
                ))),
            );
        }
    };
    handle(
        state,
        principal,
        db,
        &precision,
        accept_partial,
        headers,
        body,
    )
    .await
}

async fn handle(
    state: AppState,
    principal: Principal,
    db: String,
    precision: &str,
    accept_partial: bool,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        principal.require(Permission::Write, Some(&db))?;
        let precision = Precision::parse(precision)?;
        let text = read_body(&headers, body, state.max_body_bytes).await?;
        state.metrics.write_bytes.add(text.len() as u64);
        let outcome = state
            .ingester
            .write_lp(&db, text, precision, accept_partial)
            .await?;
        Ok::<_, ApiError>(outcome)
    }
    .await;
    let result = result.map(|outcome| {
        if outcome.rejected.is_empty() {
            return StatusCode::NO_CONTENT.into_response();
        }
        let stored = outcome.rows;
        let message = if stored == 0 && !accept_partial {
            format!(
                "{} line(s) rejected; nothing was stored because accept_partial=false",
                outcome.rejected_total
            )
        } else {
            format!(
                "partial write: {} line(s) rejected, {stored} stored",
                outcome.rejected_total
            )
        };
        let data: Vec<_> = outcome
            .rejected
            .iter()
            .map(|r| json!({"line_number": r.line, "original_line": r.text, "error_message": r.reason}))
            .collect();
        let first = &outcome.rejected[0];
        (
            ErrorKind::BadRequest.status(),
            Json(json!({
                "error": message,
                // InfluxDB 1.x/2.x clients print `message`/`error` only: name the first bad line there too.
                "message": format!("{message}; first at line {}: {}", first.line, first.reason),
                "stored_lines": stored,
                "data": data,
            })),
        )
            .into_response()
    });
    finish(&state, result)
}

fn finish(state: &AppState, result: Result<Response, ApiError>) -> Response {
    let r = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.count_write(r.status().as_u16());
    r
}

/// Reads the body (gunzipping it when `Content-Encoding: gzip`), at most
/// `limit` bytes after decoding, as UTF-8.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<String, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "request body exceeds the limit of {limit} bytes; split it into smaller batches"
        ))
    };
    let raw = to_bytes(body, limit.saturating_add(1))
        .await
        .map_err(|_| too_large())?;
    if raw.len() > limit {
        return Err(too_large());
    }
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().eq_ignore_ascii_case("gzip"))
        .unwrap_or(false);
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::bad_request(format!("invalid gzip body: {e}")))?;
        if out.len() > limit {
            return Err(too_large());
        }
        out
    } else {
        raw.to_vec()
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let body = e.as_bytes();
        let line = body[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        ApiError::bad_request(format!(
            "body is not valid UTF-8: invalid byte at offset {at} (line {line})"
        ))
    })
}
