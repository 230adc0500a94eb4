//! The token API (`admin:*` only): `POST /api/v1/tokens` creates one and
//! shows its secret once, `GET` lists them (never a secret),
//! `DELETE /api/v1/tokens/{id}` revokes one.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::audited;
use crate::auth::tokens::TokenError;
use crate::auth::{Permission, Principal, Scope, TokenRecord};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{id}", delete(revoke))
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(m) => ApiError::bad_request(m),
            e => ApiError::internal(e),
        }
    }
}

fn record_json(t: &TokenRecord) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "scopes": t.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "created": t.created,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    scopes: Vec<String>,
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Permission::Admin, None)?;
    let b: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be JSON like {{\"name\": \"grafana\", \"scopes\": [\"read:fleet\"]}}: {e}"
        ))
    })?;
    let scopes = b
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let result = state
        .auth
        .tokens
        .create(&b.name, scopes)
        .await
        .map_err(ApiError::from);
    let (record, secret) = audited(&state, &principal, "token.create", &b.name, result).await?;
    let mut v = record_json(&record);
    v["token"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Admin, None)?;
    let tokens = state.auth.tokens.list().await?;
    Ok(Json(
        json!({"tokens": tokens.iter().map(record_json).collect::<Vec<_>>()}),
    ))
}

async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Admin, None)?;
    let result = match state.auth.tokens.revoke(&id).await {
        Ok(true) => Ok(json!({"revoked": id})),
        Ok(false) => Err(ApiError::not_found(format!("no token with id {id:?}"))),
        Err(e) => Err(e.into()),
    };
    Ok(Json(
        audited(&state, &principal, "token.revoke", &id, result).await?,
    ))
}
