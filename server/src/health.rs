//! Liveness: `/health` (JSON) and `/ping` (InfluxDB clients and Telegraf).

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "pass", "version": env!("CARGO_PKG_VERSION")}))
}

/// InfluxDB 1.x clients and Telegraf probe `/ping` and expect 204.
pub async fn ping() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        "X-Influxdb-Version",
        HeaderValue::from_static(concat!("fleetlake-", env!("CARGO_PKG_VERSION"))),
    );
    r
}
