//! Job diagnosis: `GET /api/v1/diagnosis/jobs/{job_id}` (`?db=`) answers the
//! job's [`Report`]: its timeline, critical path and ranked causes with
//! evidence and actions. `?format=json` (the default) is the report as
//! JSON; `?format=html` is the self-contained page of [`html::render`]
//! (a Gantt with the critical path highlighted), `text/html; charset=utf-8`.
//!
//! [`Report`]: fleetlake_diagnosis::Report
//! [`html::render`]: fleetlake_diagnosis::html::render

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use fleetlake_diagnosis::fetch::{LoadOptions, load};
use fleetlake_diagnosis::{Config, diagnose, html};
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
) -> Result<Response, ApiError> {
    let as_html = match p.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format must be json (the default) or html (got {f:?})"
            )));
        }
    };
    let db = state.db_or_default(p.db.as_deref());
    principal.require(Permission::Read, Some(&db))?;
    let db = state.existing_db(Some(&db)).map_err(ApiError::not_found)?;
    let input = load(&state.engine, &db, &job_id, &LoadOptions::default()).await?;
    let report = diagnose(&input, &Config::default())?;
    Ok(if as_html {
        Html(html::render(&report)).into_response()
    } else {
        Json(report.to_json()).into_response()
    })
}
