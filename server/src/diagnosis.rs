//! Job diagnosis: `GET /api/v1/diagnosis/jobs/{job_id}` (`?db=`) answers the
//! job's [`Report`]: its timeline, critical path and ranked causes with
//! evidence and actions. `?format=json` (the default) is the report as
//! JSON; `?format=html` is the self-contained page of [`html::render`]
//! (a Gantt with the critical path highlighted), `text/html; charset=utf-8`.
//!
//!
//! The bulk forms, over the jobs that ended from `start` to `end` (unix
//! seconds or RFC 3339; the last 24 h by default):
//! `GET /api/v1/diagnosis/jobs` lists each job with its top cause, and
//! `GET /api/v1/diagnosis/hosts` is the fleet view, the hosts that hurt
//! the most jobs (`?limit=`, 100 by default). SQL has the same as the
//! `job_diagnoses` and `host_impact` table functions.
//!
//! The fleet view answers from the diagnosis journal (jobs diagnosed as
//! they end, `fleetlake_diagnosis::journal`) when it covers the range's
//! start, up to its newest pass (`diagnosed_until_ns`), and diagnoses
//! every job of the range otherwise; `?source=journal|computed` asks for
//! one (`journal` on a range it does not cover: 409 naming what it covers).
//!
//! [`Report`]: fleetlake_diagnosis::Report
//! [`html::render`]: fleetlake_diagnosis::html::render

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use fleetlake_diagnosis::bulk::{diagnose_all, host_impact};
use fleetlake_diagnosis::fetch::{LoadOptions, RangeOptions, load, load_range};
use fleetlake_diagnosis::{Config, diagnose, html, journal};
use serde::Deserialize;

use crate::auth::{Permission, Principal};
use crate::params::Params;
use crate::{ApiError, AppState, ErrorKind};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/diagnosis/jobs/{job_id}", get(job))
        .route("/api/v1/diagnosis/jobs", get(jobs))
        .route("/api/v1/diagnosis/hosts", get(hosts))
}

#[derive(Debug, Deserialize)]
struct JobParams {
    db: Option<String>,
    format: Option<String>,
}

async fn job(
    State(state): State<AppState>,
    principal: Principal,
    Path(job_id): Path<String>,
    Params(p): Params<JobParams>,
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

#[derive(Debug, Deserialize)]
struct RangeParams {
    db: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    /// The fleet view's: `journal`, `computed`, or either (the default).
    source: Option<String>,
}

const DAY_NS: i64 = 86_400_000_000_000;

/// The request's range in nanoseconds: `end` defaults to now, `start` to a
/// day before `end`.
fn range(p: &RangeParams) -> Result<(i64, i64), ApiError> {
    let parse = |name: &str, v: &str| {
        fleetlake_promql::params::parse_time(name, v)
            .map(|ms| ms.saturating_mul(1_000_000))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    };
    let end = match &p.end {
        Some(v) => parse("end", v)?,
        None => chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
    };
    let start = match &p.start {
        Some(v) => parse("start", v)?,
        None => end.saturating_sub(DAY_NS),
    };
    if end < start {
        return Err(ApiError::bad_request("end is before start"));
    }
    Ok((start, end))
}

/// Each job's report, or why it has none ([`diagnose_all`]).
type Reports = Vec<(
    String,
    fleetlake_diagnosis::Result<fleetlake_diagnosis::Report>,
)>;

/// The request's range and database, once the principal may read it.
fn range_and_db(
    state: &AppState,
    principal: &Principal,
    p: &RangeParams,
) -> Result<(i64, i64, String), ApiError> {
    let (start, end) = range(p)?;
    let db = state.db_or_default(p.db.as_deref());
    principal.require(Permission::Read, Some(&db))?;
    let db = state.existing_db(Some(&db)).map_err(ApiError::not_found)?;
    Ok((start, end, db))
}

/// Reads and diagnoses the range's jobs of `db`.
async fn bulk(state: &AppState, db: &str, start: i64, end: i64) -> Result<Reports, ApiError> {
    let inputs = load_range(&state.engine, db, start, end, &RangeOptions::default()).await?;
    // Up to 20,000 jobs of CPU work: off the runtime that serves requests.
    let reports = tokio::task::spawn_blocking(move || diagnose_all(&inputs, &Config::default()))
        .await
        .map_err(|e| ApiError::internal(format!("bulk diagnosis failed: {e}")))?;
    Ok(reports)
}

async fn jobs(
    State(state): State<AppState>,
    principal: Principal,
    Params(p): Params<RangeParams>,
) -> Result<Response, ApiError> {
    let (start, end, db) = range_and_db(&state, &principal, &p)?;
    let reports = bulk(&state, &db, start, end).await?;
    let jobs: Vec<serde_json::Value> = reports
        .iter()
        .map(|(id, r)| match r {
            Ok(r) => serde_json::json!({
                "job_id": id,
                "status": r.status,
                "user": r.user,
                "queue": r.queue,
                "start_ns": r.start_ns,
                "end_ns": r.end_ns,
                "wall_ns": r.wall_ns,
                "causes": r.reported().map(|c| serde_json::json!({
                    "kind": c.kind,
                    "confidence": c.confidence,
                    "cost_ns": c.cost_ns,
                    "hosts": c.hosts,
                    "summary": c.summary,
                })).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({ "job_id": id, "error": e.to_string() }),
        })
        .collect();
    Ok(Json(serde_json::json!({ "start_ns": start, "end_ns": end, "jobs": jobs })).into_response())
}

/// Where the fleet view comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The journal when it covers the range's start, else computed.
    Auto,
    Journal,
    Computed,
}

async fn hosts(
    State(state): State<AppState>,
    principal: Principal,
    Params(p): Params<RangeParams>,
) -> Result<Response, ApiError> {
    let source = match p.source.as_deref() {
        None | Some("auto") => Source::Auto,
        Some("journal") => Source::Journal,
        Some("computed") => Source::Computed,
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "source must be auto (the default), journal or computed (got {s:?})"
            )));
        }
    };
    let limit = p.limit.unwrap_or(100);
    let (start, end, db) = range_and_db(&state, &principal, &p)?;
    if source != Source::Computed {
        match journal::read_impact(&state.engine, &db, start, end).await? {
            Some(j) => {
                let total = j.hosts.len();
                let mut impact = j.hosts;
                impact.truncate(limit);
                return Ok(Json(serde_json::json!({
                    "start_ns": start,
                    "end_ns": end,
                    "source": "journal",
                    "diagnosed_until_ns": j.until_ns,
                    "jobs": j.jobs,
                    "hosts_total": total,
                    "hosts": impact,
                }))
                .into_response());
            }
            None if source == Source::Journal => {
                let covered = journal::coverage(&state.engine, &db).await?;
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    match covered {
                        Some((from, to)) => format!(
                            "the diagnosis journal covers {} to {}, not the start asked for; \
                         ask for source=computed, or a start in that range",
                            fleetlake_time::rfc3339(from),
                            fleetlake_time::rfc3339(to)
                        ),
                        None => "the diagnosis journal has no pass yet in this database; \
                             ask for source=computed"
                            .to_owned(),
                    },
                ));
            }
            None => {}
        }
    }
    let reports = bulk(&state, &db, start, end).await?;
    let diagnosed: Vec<_> = reports
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let mut impact = host_impact(diagnosed.iter().copied());
    let total = impact.len();
    impact.truncate(limit);
    Ok(Json(serde_json::json!({
        "start_ns": start,
        "end_ns": end,
        "source": "computed",
        "diagnosed_until_ns": end,
        "jobs": diagnosed.len(),
        "hosts_total": total,
        "hosts": impact,
    }))
    .into_response())
}

/// Diagnoses jobs for the rules engine's `diagnose` actions and
/// `attach = ["diagnosis"]` (see `fleetlake_rules::attach`).
pub struct RuleDiagnoser {
    engine: std::sync::Arc<fleetlake_query::QueryEngine>,
}

impl RuleDiagnoser {
    pub fn new(engine: std::sync::Arc<fleetlake_query::QueryEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait::async_trait]
impl fleetlake_rules::attach::Diagnoser for RuleDiagnoser {
    async fn diagnose(&self, db: &str, job_id: &str) -> Result<serde_json::Value, String> {
        let input = load(&self.engine, db, job_id, &LoadOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let report = diagnose(&input, &Config::default()).map_err(|e| e.to_string())?;
        Ok(compact(&report, db))
    }
}

/// What an action carries: the reported causes without their evidence
/// rows, a line for a person, and where the whole report is.
fn compact(r: &fleetlake_diagnosis::Report, db: &str) -> serde_json::Value {
    let causes: Vec<serde_json::Value> = r
        .reported()
        .map(|c| {
            serde_json::json!({
                "kind": c.kind,
                "confidence": c.confidence,
                "cost_ns": c.cost_ns,
                "hosts": c.hosts,
                "summary": c.summary,
                "action": c.action,
            })
        })
        .collect();
    let summary = match r.top() {
        Some(c) => format!(
            "{}: {} (confidence {:.2}): {}",
            r.job_id,
            serde_json::to_value(c.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            c.confidence,
            c.summary
        ),
        None => format!(
            "{}: no cause reaches the confidence cut of {}",
            r.job_id, r.confidence_cut
        ),
    };
    serde_json::json!({
        "job_id": r.job_id,
        "db": db,
        "status": r.status,
        "running": r.running,
        "wall_ns": r.wall_ns,
        "causes": causes,
        "notes": r.notes,
        "summary": summary,
        "report_path": format!(
            "/api/v1/diagnosis/jobs/{}?db={}&format=html",
            r.job_id,
            url_encode(db)
        ),
    })
}

/// Percent-encodes a query value (database names are free text).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
