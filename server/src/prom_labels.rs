//! Prometheus label endpoints under `/prometheus/api/v1/` (and `/api/v1/`): `labels`,
//! `label/<name>/values` and `series` (GET, or POST with a form body),
//! answered from the series index — never by scanning data.
//!
//! Parameters: repeated `match[]` selectors (parsed with `promql-parser`;
//! `{a="1" or b="2"}` alternatives too), `start` / `end` (float seconds or
//! RFC 3339), `db` (else the server's `--default-db`). Metric names
//! follow the rule the PromQL endpoints share
//! ([`fleetlake_promql::names`]). A table's series are
//! taken to carry every one of its metrics (a field missing from some series
//! still lists it).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fleetlake_ingest::series_index::TimeRange;
use fleetlake_promql::names::{MetricColumn, metrics_of_table};
use fleetlake_storage::series_index::{MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Expr, parse};
use serde_json::json;

use crate::auth::{Permission, Principal};
use crate::{AppState, PromError};

const NAME_LABEL: &str = "__name__";

/// Under `/prometheus/api/v1/` and, like the query endpoints, `/api/v1/`.
pub fn routes() -> axum::Router<AppState> {
    endpoints("/prometheus/api/v1").merge(endpoints("/api/v1"))
}

fn endpoints(prefix: &str) -> axum::Router<AppState> {
    axum::Router::new()
        .route(&format!("{prefix}/labels"), get(labels).post(labels))
        .route(
            &format!("{prefix}/label/{{name}}/values"),
            get(label_values).post(label_values),
        )
        .route(&format!("{prefix}/series"), get(series).post(series))
}

fn success(data: serde_json::Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// The request's parameters: the query string, plus a form body on POST.
fn params(
    method: &Method,
    query: Option<String>,
    body: &Bytes,
) -> Result<Vec<(String, String)>, PromError> {
    let parse_form = |s: &str, what: &str| -> Result<Vec<(String, String)>, PromError> {
        let uri: Uri = format!("/?{s}")
            .parse()
            .map_err(|e| PromError::bad_data(format!("invalid {what}: {e}")))?;
        Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| PromError::bad_data(format!("invalid {what}: {e}")))
    };
    let mut out = match query.as_deref() {
        Some(q) if !q.is_empty() => parse_form(q, "query string")?,
        _ => Vec::new(),
    };
    if method == Method::POST && !body.is_empty() {
        let text =
            std::str::from_utf8(body).map_err(|_| PromError::bad_data("form body is not UTF-8"))?;
        out.extend(parse_form(text.trim(), "form body")?);
    }
    Ok(out)
}

/// One `match[]` alternative: matchers on `__name__`, and on labels.
struct Conjunction {
    names: Vec<Matcher>,
    labels: Vec<Matcher>,
}

struct Request {
    db: String,
    range: TimeRange,
    /// Empty: no `match[]` given (everything).
    selectors: Vec<Conjunction>,
}

/// A Prometheus API time (ms precision, as Prometheus keeps) in nanoseconds.
fn parse_time(name: &str, v: &str) -> Result<i64, PromError> {
    Ok(fleetlake_promql::params::parse_time(name, v)?.saturating_mul(1_000_000))
}

fn convert(m: &promql_parser::label::Matcher) -> Result<Matcher, PromError> {
    let op = match &m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(m.name.as_str(), op, m.value.as_str())
        .map_err(|e| PromError::bad_data(format!("invalid regex in matcher {m}: {e}")))
}

fn parse_selector(s: &str) -> Result<Vec<Conjunction>, PromError> {
    let expr = parse(s)
        .map_err(|e| PromError::bad_data(format!("invalid match[] selector {s:?}: {e}")))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(PromError::bad_data(format!(
            "invalid match[] selector {s:?}: expected a series selector such as up{{job=\"node\"}}"
        )));
    };
    let alternatives: Vec<&Vec<promql_parser::label::Matcher>> =
        if vs.matchers.or_matchers.is_empty() {
            vec![&vs.matchers.matchers]
        } else {
            vs.matchers.or_matchers.iter().collect()
        };
    alternatives
        .into_iter()
        .map(|ms| {
            let mut c = Conjunction {
                names: Vec::new(),
                labels: Vec::new(),
            };
            if let Some(n) = &vs.name {
                c.names
                    .push(Matcher::new(NAME_LABEL, MatchOp::Equal, n.as_str()).expect("no regex"));
            }
            for m in ms {
                let m = convert(m)?;
                if m.name == NAME_LABEL {
                    c.names.push(m);
                } else {
                    c.labels.push(m);
                }
            }
            Ok(c)
        })
        .collect()
}

fn request(
    state: &AppState,
    principal: &Principal,
    params: &[(String, String)],
) -> Result<Request, PromError> {
    let mut db = None;
    let mut range = TimeRange::default();
    let mut selectors = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "db" => db = Some(v.clone()),
            "start" => range.start = Some(parse_time("start", v)?),
            "end" => range.end = Some(parse_time("end", v)?),
            "match[]" => selectors.extend(parse_selector(v)?),
            _ => {}
        }
    }
    if let (Some(s), Some(e)) = (range.start, range.end)
        && e < s
    {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    Ok(Request {
        db: {
            let db = state.db_or_default(db.as_deref());
            principal.require(Permission::Read, Some(&db))?;
            state.existing_db(Some(&db)).map_err(PromError::not_found)?
        },
        range,
        selectors,
    })
}

/// Per table, its metrics.
fn tables_with_metrics(state: &AppState, db: &str) -> BTreeMap<String, Vec<MetricColumn>> {
    state
        .ingester
        .tables(db)
        .into_iter()
        .filter_map(|t| {
            let s = state.ingester.table_schema(db, &t)?;
            let metrics = metrics_of_table(&t, &s);
            (!metrics.is_empty()).then_some((t, metrics))
        })
        .collect()
}

/// For each table with a metric some alternative names: (metrics that
/// alternative accepts, its label matchers). No `match[]`: every metric, no matchers.
fn plan<'a>(
    req: &'a Request,
    tables: &'a BTreeMap<String, Vec<MetricColumn>>,
) -> Vec<(&'a str, Vec<&'a MetricColumn>, &'a [Matcher])> {
    let mut out = Vec::new();
    for (table, metrics) in tables {
        if req.selectors.is_empty() {
            out.push((table.as_str(), metrics.iter().collect(), &[][..]));
            continue;
        }
        for c in &req.selectors {
            let accepted: Vec<&MetricColumn> = metrics
                .iter()
                .filter(|m| c.names.iter().all(|n| n.matches(&m.metric)))
                .collect();
            if !accepted.is_empty() {
                out.push((table.as_str(), accepted, &c.labels[..]));
            }
        }
    }
    out
}

async fn handle(
    state: &AppState,
    principal: &Principal,
    method: &Method,
    query: Option<String>,
    body: &Bytes,
    what: What,
) -> Result<Response, PromError> {
    let params = params(method, query, body)?;
    let req = request(state, principal, &params)?;
    if matches!(what, What::Series) && req.selectors.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let tables = tables_with_metrics(state, &req.db);
    let index = state.ingester.series_index();
    let ierr = PromError::from;
    // Each table's answer is sorted: a stable sort merges the runs.
    let mut strings: Vec<String> = Vec::new();
    let mut series: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
    for (table, metrics, matchers) in plan(&req, &tables) {
        match &what {
            What::Labels => {
                let (names, any) = index
                    .with_live(&req.db, table, req.range, |idx, live| {
                        let selected = idx.select(matchers, live);
                        (idx.label_names(&selected), !selected.is_empty())
                    })
                    .await
                    .map_err(ierr)?;
                if any {
                    strings.push(NAME_LABEL.to_string());
                }
                strings.extend(names);
            }
            What::Values(name) if name == NAME_LABEL => {
                let any = index
                    .with_live(&req.db, table, req.range, |idx, live| {
                        !idx.select(matchers, live).is_empty()
                    })
                    .await
                    .map_err(ierr)?;
                if any {
                    strings.extend(metrics.iter().map(|m| m.metric.clone()));
                }
            }
            What::Values(name) => {
                strings.extend(
                    index
                        .label_values(&req.db, table, name, matchers, req.range)
                        .await
                        .map_err(ierr)?,
                );
            }
            What::Series => {
                let found = index
                    .series(&req.db, table, matchers, req.range)
                    .await
                    .map_err(ierr)?;
                for tags in found {
                    for m in &metrics {
                        let mut labels = tags.clone();
                        labels.push((NAME_LABEL.to_string(), m.metric.clone()));
                        labels.sort();
                        series.insert(labels);
                    }
                }
            }
        }
    }
    Ok(match what {
        What::Series => success(
            series
                .into_iter()
                .map(|labels| {
                    serde_json::Value::Object(
                        labels
                            .into_iter()
                            .map(|(k, v)| (k, serde_json::Value::String(v)))
                            .collect(),
                    )
                })
                .collect(),
        ),
        _ => {
            strings.sort();
            strings.dedup();
            // Moved, not serialized-then-parsed as `json!` would.
            success(serde_json::Value::Array(
                strings.into_iter().map(serde_json::Value::String).collect(),
            ))
        }
    })
}

enum What {
    Labels,
    Values(String),
    Series,
}

fn finish(r: Result<Response, PromError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn labels(
    State(state): State<AppState>,
    principal: Principal,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    finish(handle(&state, &principal, &method, query, &body, What::Labels).await)
}

async fn label_values(
    State(state): State<AppState>,
    principal: Principal,
    method: Method,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    finish(
        handle(
            &state,
            &principal,
            &method,
            query,
            &body,
            What::Values(name),
        )
        .await,
    )
}

async fn series(
    State(state): State<AppState>,
    principal: Principal,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    finish(handle(&state, &principal, &method, query, &body, What::Series).await)
}
