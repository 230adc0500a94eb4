//! Job diagnosis: `GET /api/v1/diagnosis/jobs/{job_id}` (`?db=`, and
//! `?format=json`, the default) answers the job's [`Report`] as JSON: its
//! timeline, critical path and ranked causes with evidence and actions.
//!
//! [`Report`]: fleetlake_diagnosis::Report

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use fleetlake_diagnosis::fetch::{LoadOptions, load};
use fleetlake_diagnosis::{Config, diagnose};
use serde::Deserialize;

use crate::auth::{Permission, Principal};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/diagnosis/jobs/{job_id}", get(job))
}

#[derive(Debug, Deserialize)]
struct Params {
    db: Option<String>,
    format: Option<String>,
}

async fn job(
    State(state): State<AppState>,
    principal: Principal,
    Path(job_id): Path<String>,
    Query(p): Query<Params>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(f) = p.format.as_deref().filter(|f| *f != "json") {
        return Err(ApiError::bad_request(format!(
            "format must be json (got {f:?})"
        )));
    }
    let db = state.db_or_default(p.db.as_deref());
    principal.require(Permission::Read, Some(&db))?;
    let db = state.existing_db(Some(&db)).map_err(ApiError::not_found)?;
    let input = load(&state.engine, &db, &job_id, &LoadOptions::default()).await?;
    let report = diagnose(&input, &Config::default())?;
    Ok(Json(report.to_json()))
}
