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

use crate::admin::audited;
use crate::auth::{Permission, Principal};
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

/// The database of rule `name`, if it exists.
fn rule_db(state: &AppState, name: &str) -> Result<String, ApiError> {
    state
        .rules
        .rule_def(name)
        .map(|d| d.db.clone())
        .ok_or_else(|| fleetlake_rules::Error::NotFound(name.to_string()).into())
}

/// Keeps the entries of `list` (an array under `key`) whose rule's
/// database the principal may read; `db_of` finds an entry's database.
fn readable(
    principal: &Principal,
    mut v: Value,
    pointer: &str,
    db_of: impl Fn(&Value) -> Option<String>,
) -> Value {
    if let Some(list) = v.pointer_mut(pointer).and_then(Value::as_array_mut) {
        list.retain(|entry| {
            db_of(entry).is_some_and(|db| principal.require(Permission::Read, Some(&db)).is_ok())
        });
    }
    v
}

async fn list(State(state): State<AppState>, principal: Principal) -> Json<Value> {
    Json(readable(
        &principal,
        state.rules.rules_json(),
        "/rules",
        |r| {
            r.pointer("/definition/db")
                .and_then(Value::as_str)
                .map(String::from)
        },
    ))
}

async fn get_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Read, Some(&rule_db(&state, &name)?))?;
    state
        .rules
        .rule_json(&name)
        .map(Json)
        .ok_or_else(|| fleetlake_rules::Error::NotFound(name).into())
}

/// Parses a rule body far enough to know the database it reads.
fn body_db(body: &[u8]) -> Result<String, ApiError> {
    Ok(fleetlake_rules::definition::parse_body(body)?.db)
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Permission::Rules, Some(&body_db(&body)?))?;
    let result = state.rules.put_rule_timed(None, &body, false).await;
    let target = result
        .as_ref()
        .ok()
        .and_then(|(r, _)| r["name"].as_str())
        .unwrap_or("?")
        .to_string();
    let (rule, timings) = audited(
        &state,
        &principal,
        "rule.create",
        &target,
        result.map_err(Into::into),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        [("server-timing", timings.header())],
        Json(rule),
    )
        .into_response())
}

async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Permission::Rules, Some(&body_db(&body)?))?;
    if let Ok(old) = rule_db(&state, &name) {
        principal.require(Permission::Rules, Some(&old))?;
    }
    let result = state.rules.put_rule_timed(Some(&name), &body, true).await;
    let (rule, timings) = audited(
        &state,
        &principal,
        "rule.replace",
        &name,
        result.map_err(Into::into),
    )
    .await?;
    Ok(([("server-timing", timings.header())], Json(rule)).into_response())
}

async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Rules, Some(&rule_db(&state, &name)?))?;
    let result = state.rules.delete_rule(&name).await.map_err(Into::into);
    audited(&state, &principal, "rule.delete", &name, result).await?;
    Ok(Json(json!({"deleted": name})))
}

/// Parses and validates a rule without installing it.
async fn validate(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Rules, Some(&body_db(&body)?))?;
    let (def, v) = state.rules.check_body(&body).await?;
    Ok(Json(json!({
        "name": def.name,
        "valid": true,
        "definition": def,
        "tables": v.tables,
        "warnings": v.warnings,
    })))
}

async fn backtest(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // The body names an installed rule or carries one; either names the
    // database it reads. A body with neither gets the backtest's own 400.
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let db = match (v.get("name").and_then(Value::as_str), v.get("rule")) {
        (Some(name), _) => Some(rule_db(&state, name)?),
        (None, Some(rule)) => Some(body_db(rule.to_string().as_bytes())?),
        (None, None) => None,
    };
    if let Some(db) = db {
        principal.require(Permission::Rules, Some(&db))?;
    }
    Ok(Json(
        fleetlake_rules::backtest::run(&state.rules, &body).await?,
    ))
}

async fn reset_breaker(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Admin, Some(&rule_db(&state, &name)?))?;
    let result = state.rules.reset_breaker(&name).await.map_err(Into::into);
    Ok(Json(
        audited(&state, &principal, "rule.breaker_reset", &name, result).await?,
    ))
}

async fn alerts(State(state): State<AppState>, principal: Principal) -> Json<Value> {
    Json(readable(
        &principal,
        state.rules.alerts_json(),
        "/data/alerts",
        |a| {
            let rule = a.get("rule").and_then(Value::as_str)?;
            state.rules.rule_def(rule).map(|d| d.db.clone())
        },
    ))
}

async fn approvals(State(state): State<AppState>, principal: Principal) -> Json<Value> {
    Json(readable(
        &principal,
        state.rules.approvals_json(),
        "/approvals",
        |a| {
            let rule = a.get("rule").and_then(Value::as_str)?;
            state.rules.rule_def(rule).map(|d| d.db.clone())
        },
    ))
}

/// Approves or denies, for a principal with admin on the rule's database.
async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    let approvals = state.rules.approvals_json();
    let rule = approvals["approvals"]
        .as_array()
        .and_then(|list| list.iter().find(|a| a["id"] == id))
        .and_then(|a| a["rule"].as_str())
        .map(String::from);
    // An unknown id falls through to the engine's own 404.
    if let Some(rule) = rule {
        principal.require(Permission::Admin, Some(&rule_db(state, &rule)?))?;
    } else {
        principal.require(Permission::Admin, None)?;
    }
    let result = state
        .rules
        .decide_approval(id, approve)
        .await
        .map_err(Into::into);
    let action = if approve {
        "action.approve"
    } else {
        "action.deny"
    };
    Ok(Json(audited(state, principal, action, id, result).await?))
}

async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &principal, &id, true).await
}

async fn deny(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &principal, &id, false).await
}
