//! The rules API: definitions (`/api/v1/rules`), alerts (`/api/v1/alerts`),
//! approvals (`/api/v1/actions`), breaker resets and backtests. Thin: the
//! rules crate does the work.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rules", get(list).post(create))
        .route("/api/v1/rules/validate", post(validate))
        .route("/api/v1/rules/backtest", post(backtest))
        .route(
            "/api/v1/rules/{name}",
            get(get_rule).put(replace).delete(delete),
        )
        .route("/api/v1/rules/{name}/breaker/reset", post(reset_breaker))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/actions", get(approvals))
        .route("/api/v1/actions/{id}/approve", post(approve))
        .route("/api/v1/actions/{id}/deny", post(deny))
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(state.rules.rules_json())
}

async fn get_rule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .rules
        .rule_json(&name)
        .map(Json)
        .ok_or_else(|| fleetlake_rules::Error::NotFound(name).into())
}

async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let rule = state.rules.put_rule(None, &body, false).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.rules.put_rule(Some(&name), &body, true).await?))
}

async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.rules.delete_rule(&name).await?;
    Ok(Json(json!({"deleted": name})))
}

/// Parses and validates a rule without installing it.
async fn validate(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let (def, v) = state.rules.check_body(&body).await?;
    Ok(Json(json!({
        "name": def.name,
        "valid": true,
        "definition": def,
        "tables": v.tables,
        "warnings": v.warnings,
    })))
}

async fn backtest(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        fleetlake_rules::backtest::run(&state.rules, &body).await?,
    ))
}

async fn reset_breaker(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.rules.reset_breaker(&name).await?))
}

async fn alerts(State(state): State<AppState>) -> Json<Value> {
    Json(state.rules.alerts_json())
}

async fn approvals(State(state): State<AppState>) -> Json<Value> {
    Json(state.rules.approvals_json())
}

async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.rules.decide_approval(&id, true).await?))
}

async fn deny(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.rules.decide_approval(&id, false).await?))
}
