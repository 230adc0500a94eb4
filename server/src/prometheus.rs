//! The Prometheus query API (what Grafana's built-in Prometheus datasource
//! and `promtool` call) under `/prometheus/api/v1/` and `/api/v1/`:
//! `query`, `query_range`, `metadata`, `status/buildinfo`, `format_query`,
//! `query_exemplars`. Label listing (`labels`, `label/<name>/values`,
//! `series`) lives in `prom_labels`.
//!
//! Parameters come from the URL and, for POST, from a form-encoded body.
//! `db` picks the database (default `--default-db`).
//!
//! # Errors
//! Prometheus' envelope `{"status":"error","errorType":…,"error":…}`:
//! 400 `bad_data` (parse errors, bad times/steps, too many points), 422
//! `execution` (unsupported constructs, evaluation errors), 503 `timeout`.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fleetlake_promql::params;
use fleetlake_promql::query::{DEFAULT_LOOKBACK_MS, QueryOutput, QueryRequest};
use fleetlake_promql::value::{Labels, format_value};
use serde_json::{Map, Value, json};

use crate::auth::{Permission, Principal};
use crate::{AppState, PromError};

pub fn routes() -> Router<AppState> {
    endpoints("/prometheus/api/v1").merge(endpoints("/api/v1"))
}

fn endpoints(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/query"), get(query).post(query))
        .route(
            &format!("{prefix}/query_range"),
            get(query_range).post(query_range),
        )
        .route(
            &format!("{prefix}/format_query"),
            get(format_query).post(format_query),
        )
        .route(
            &format!("{prefix}/query_exemplars"),
            get(query_exemplars).post(query_exemplars),
        )
        .route(&format!("{prefix}/metadata"), get(metadata))
        .route(&format!("{prefix}/status/buildinfo"), get(buildinfo))
}

/// The version reported to clients: Grafana enables features by it.
const PROMETHEUS_VERSION: &str = "2.45.0";

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// URL parameters, then (for POST) the form body's; a later one wins.
async fn params(req: Request) -> Result<HashMap<String, String>, PromError> {
    let bad = |e: String| PromError::bad_data(e);
    let Query(mut pairs) = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map_err(|e| bad(format!("invalid query string: {e}")))?;
    if req.method() == Method::POST {
        let axum::Form(body) = axum::Form::<Vec<(String, String)>>::from_request(req, &())
            .await
            .map_err(|e| {
                bad(format!(
                    "POST parameters must be a form (Content-Type: application/x-www-form-urlencoded): {e}"
                ))
            })?;
        pairs.extend(body);
    }
    Ok(pairs.into_iter().collect())
}

fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, PromError> {
    p.get(name)
        .map(String::as_str)
        .ok_or_else(|| PromError::bad_data(format!("invalid parameter \"{name}\": missing")))
}

fn db_of(
    state: &AppState,
    principal: &Principal,
    p: &HashMap<String, String>,
) -> Result<String, PromError> {
    let db = state.db_or_default(p.get("db").map(String::as_str));
    principal.require(Permission::Read, Some(&db))?;
    state.existing_db(Some(&db)).map_err(PromError::not_found)
}

fn lookback(p: &HashMap<String, String>) -> Result<i64, PromError> {
    match p.get("lookback_delta") {
        Some(s) => Ok(params::parse_duration("lookback_delta", s)?),
        None => Ok(DEFAULT_LOOKBACK_MS),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn query(State(state): State<AppState>, principal: Principal, req: Request) -> Response {
    let run = async {
        let p = params(req).await?;
        let expr = required(&p, "query")?.to_string();
        let time = match p.get("time") {
            Some(t) if !t.is_empty() => params::parse_time("time", t)?,
            _ => now_ms(),
        };
        let r = QueryRequest {
            expr,
            start: time,
            end: time,
            step: 1,
            lookback: lookback(&p)?,
            instant: true,
        };
        let db = db_of(&state, &principal, &p)?;
        let out = fleetlake_promql::run(&state.engine, &db, &r).await?;
        Ok::<_, PromError>(success(render(&out)))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn query_range(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Response {
    let run = async {
        let p = params(req).await?;
        let expr = required(&p, "query")?.to_string();
        let start = params::parse_time("start", required(&p, "start")?)?;
        let end = params::parse_time("end", required(&p, "end")?)?;
        let step = params::parse_duration("step", required(&p, "step")?)?;
        let r = QueryRequest {
            expr,
            start,
            end,
            step,
            lookback: lookback(&p)?,
            instant: false,
        };
        let db = db_of(&state, &principal, &p)?;
        let out = fleetlake_promql::run(&state.engine, &db, &r).await?;
        Ok::<_, PromError>(success(render(&out)))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn format_query(req: Request) -> Response {
    let run = async {
        let p = params(req).await?;
        let expr = fleetlake_promql::query::parse(required(&p, "query")?)?;
        Ok::<_, PromError>(success(Value::String(expr.prettify())))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// fleetlake stores no exemplars; Grafana asks anyway.
async fn query_exemplars() -> Response {
    success(json!([]))
}

/// Every metric of the database, typed `unknown` (line protocol carries no
/// metric type). `metric=` filters by name, `limit=` caps the count.
async fn metadata(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let db = match db_of(&state, &principal, &p) {
        Ok(db) => db,
        Err(e) => return e.into_response(),
    };
    let limit: usize = match p.get("limit").map(|l| l.parse::<i64>()) {
        None => usize::MAX,
        Some(Ok(n)) if n > 0 => n as usize,
        Some(Ok(_)) => usize::MAX,
        Some(Err(_)) => {
            return PromError::bad_data("invalid parameter \"limit\": must be an integer")
                .into_response();
        }
    };
    let mut data = Map::new();
    for m in fleetlake_promql::names::metrics_of_db(state.engine.ingester(), &db) {
        if data.len() >= limit {
            break;
        }
        if p.get("metric").is_some_and(|x| *x != m.metric) {
            continue;
        }
        let help = format!("field {} of table {}", m.field, m.table);
        data.insert(
            m.metric,
            json!([{"type": "unknown", "help": help, "unit": ""}]),
        );
    }
    success(Value::Object(data))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": PROMETHEUS_VERSION,
        "revision": concat!("fleetlake-", env!("CARGO_PKG_VERSION")),
        "branch": "fleetlake",
        "buildUser": "fleetlake",
        "buildDate": "",
        "goVersion": "",
        "application": "fleetlake",
    }))
}

/// A time in seconds as Prometheus writes it: an integer when whole.
fn time_json(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn render(out: &QueryOutput) -> Value {
    let result = match out {
        QueryOutput::Scalar(t, v) => json!([time_json(*t), format_value(*v)]),
        QueryOutput::String(t, s) => json!([time_json(*t), s]),
        QueryOutput::Vector(v) => Value::Array(
            v.iter()
                .map(|(l, t, x)| {
                    json!({"metric": labels_json(l), "value": [time_json(*t), format_value(*x)]})
                })
                .collect(),
        ),
        QueryOutput::Matrix(m) => Value::Array(
            m.iter()
                .map(|(l, pts)| {
                    let values: Vec<Value> = pts
                        .iter()
                        .map(|(t, x)| json!([time_json(*t), format_value(*x)]))
                        .collect();
                    json!({"metric": labels_json(l), "values": values})
                })
                .collect(),
        ),
    };
    json!({"resultType": out.result_type(), "result": result})
}
