//! The Grafana JSON datasource API (simPod's "JSON" plugin and its
//! predecessor SimpleJSON) under `/grafana`.
//!
//! A target is either a metric `table.field` from `/metrics` (aggregated
//! into buckets at the request's interval, at most `maxDataPoints` of them)
//! or SQL with Grafana's macros (see [`macros`]). The database is `fleet`
//! unless the URL says otherwise — `/grafana/db/<db>/…` (what a datasource
//! URL can carry) or `?db=` — or a target's payload has `"db"`.
//!
//! # Errors
//! Whatever a request got wrong — JSON, an unknown metric, a macro, the SQL
//! itself — answers 400 with the message; user input never causes a 500.

mod frames;
mod macros;
mod metric;
pub(crate) mod sql;

use std::collections::{BTreeSet, HashMap};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, RawPathParams, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use fleetlake_storage::schema::ColumnKind;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use self::frames::Kind;
use self::macros::MacroContext;
use self::metric::{AdhocFilter, MetricRequest};
use self::sql::ident;
use crate::auth::{Permission, Principal};
use crate::{ApiError, AppState, ErrorKind};

/// Rows one SQL target may return; past it the answer would swamp the
/// browser, so the user is told to aggregate instead.
const MAX_ROWS: usize = 1_000_000;

/// The routes, at `/grafana` and at `/grafana/db/{db}`.
pub fn routes() -> Router<AppState> {
    endpoints("/grafana").merge(endpoints("/grafana/db/{db}"))
}

fn endpoints(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(prefix, get(test_connection))
        .route(&format!("{prefix}/"), get(test_connection))
        .route(&format!("{prefix}/metrics"), post(metrics))
        .route(
            &format!("{prefix}/metric-payload-options"),
            post(metric_payload_options),
        )
        .route(&format!("{prefix}/query"), post(query))
        .route(&format!("{prefix}/variable"), post(variable))
        .route(&format!("{prefix}/tag-keys"), post(tag_keys))
        .route(&format!("{prefix}/tag-values"), post(tag_values))
        .route(&format!("{prefix}/search"), post(search))
        .route(&format!("{prefix}/annotations"), post(annotations))
}

/// The database the URL chose: `/grafana/db/{db}/…`, else `?db=`, else
/// the default; and who asks, allowed to read it.
struct Db(String, Principal);

impl FromRequestParts<AppState> for Db {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if let Ok(params) = RawPathParams::from_request_parts(parts, state).await
            && let Some((_, db)) = params.iter().find(|(k, _)| *k == "db")
        {
            return Ok(Db(checked_db(db, &principal)?, principal));
        }
        let q: Query<HashMap<String, String>> =
            Query::try_from_uri(&parts.uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
        let db = match q.get("db") {
            Some(db) => checked_db(db, &principal)?,
            None => checked_db(&state.default_db, &principal)?,
        };
        Ok(Db(db, principal))
    }
}

/// A valid database name the principal may read.
fn checked_db(db: &str, principal: &Principal) -> Result<String, ApiError> {
    fleetlake_storage::schema::validate_name(db)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    principal.require(Permission::Read, Some(db))?;
    Ok(db.to_string())
}

/// A payload's `"db"`, else the URL's.
fn db_of(payload: &Map<String, Value>, url_db: &Db) -> Result<String, ApiError> {
    match payload
        .get("db")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(db) => checked_db(db, &url_db.1),
        None => Ok(url_db.0.clone()),
    }
}

/// Parses a JSON body; an empty body is `{}` (Grafana sends nothing for some probes).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], example: &str) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("request body must be JSON like {example}: {e}"))
    })
}

/// A payload as an object: Grafana sends an object, or the text of the
/// payload box when it is not JSON (then there are no options).
fn payload_map(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str(s) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct TimeRange {
    from: String,
    to: String,
}

impl TimeRange {
    fn nanos(&self) -> Result<(i64, i64), ApiError> {
        let p = |s: &str| {
            fleetlake_time::parse_rfc3339(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "range: {s:?} is not an RFC 3339 time like 2016-10-31T06:33:44.866Z"
                ))
            })
        };
        let (from, to) = (p(&self.from)?, p(&self.to)?);
        if from > to {
            return Err(ApiError::bad_request("range: from is after to"));
        }
        Ok((from, to))
    }
}

/// `GET /grafana/`: "Save & test".
async fn test_connection(db: Db) -> Json<Value> {
    Json(json!({"status": "ok", "database": db.0}))
}

#[derive(Debug, Default, Deserialize)]
struct MetricsBody {
    #[serde(default)]
    payload: Option<Value>,
}

/// `POST /metrics`: every plottable `table.field`, with its payload options.
/// Tag keys with values in the request payload keep the tables that have them.
async fn metrics(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: MetricsBody = parse(&body, r#"{"metric": "cpu.usage_user", "payload": {}}"#)?;
    let payload = payload_map(b.payload.as_ref());
    let db = db_of(&payload, &url_db)?;
    let databases = state.ingester.databases();
    let wanted_tags: Vec<&String> = payload
        .iter()
        .filter(|(k, v)| !metric::RESERVED.contains(&k.as_str()) && !metric::strings(v).is_empty())
        .map(|(k, _)| k)
        .collect();
    let list: Vec<Value> = metric::list(&state.ingester, &db)
        .iter()
        .filter(|m| {
            wanted_tags
                .iter()
                .all(|t| m.schema.kind_of(t) == Some(ColumnKind::Tag))
        })
        .map(|m| metric::payload_options(m, &databases))
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Debug, Default, Deserialize)]
struct PayloadOptionsBody {
    #[serde(default)]
    metric: String,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    name: String,
}

/// `POST /metric-payload-options`: the choices of one payload option.
async fn metric_payload_options(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: PayloadOptionsBody = parse(
        &body,
        r#"{"metric": "cpu.usage_user", "payload": {}, "name": "hostname"}"#,
    )?;
    let payload = payload_map(b.payload.as_ref());
    let db = db_of(&payload, &url_db)?;
    let opts = |vals: Vec<String>| {
        Json(Value::Array(
            vals.into_iter()
                .map(|v| json!({"label": v, "value": v}))
                .collect(),
        ))
    };
    match b.name.as_str() {
        "aggregate" => return Ok(opts(metric::AGGREGATES.map(String::from).to_vec())),
        "format" => return Ok(opts(vec!["time_series".into(), "table".into()])),
        "db" => return Ok(opts(state.ingester.databases())),
        _ => {}
    }
    let Some(m) = metric::resolve(&state.ingester, &db, &b.metric) else {
        return Err(ApiError::bad_request(format!(
            "unknown metric {:?} in database {db}",
            b.metric
        )));
    };
    if b.name == "group_by" {
        return Ok(opts(
            m.schema
                .tags_sorted()
                .into_iter()
                .map(String::from)
                .collect(),
        ));
    }
    if m.schema.kind_of(&b.name) != Some(ColumnKind::Tag) {
        return Ok(Json(json!([])));
    }
    let sql = format!(
        "SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY 1",
        c = ident(&b.name),
        t = ident(&m.table)
    );
    let (_, batches) = run(&state, &db, &sql).await?;
    Ok(opts(strings_of(&batches, 0)?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryBody {
    range: Option<TimeRange>,
    interval: Option<String>,
    interval_ms: Option<f64>,
    max_data_points: Option<f64>,
    #[serde(default)]
    targets: Vec<Target>,
    #[serde(default)]
    adhoc_filters: Vec<AdhocFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    target: Option<String>,
    ref_id: Option<String>,
    payload: Option<Value>,
    #[serde(default)]
    hide: bool,
    /// SimpleJSON's "Format as": `timeseries` or `table`.
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `POST /query`: every visible target, in order; one answer may hold several
/// series per target.
async fn query(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: QueryBody = parse(
        &body,
        r#"{"range": {"from": "…", "to": "…"}, "intervalMs": 30000, "maxDataPoints": 550, "targets": [{"target": "cpu.usage_user", "refId": "A"}]}"#,
    )?;
    let range = b
        .range
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("missing \"range\": {\"from\": …, \"to\": …}"))?
        .nanos()?;
    let max_points = b
        .max_data_points
        .filter(|n| *n >= 1.0)
        .map(|n| n as i64)
        .unwrap_or(1_000);
    let interval_ms = match (b.interval_ms, b.interval.as_deref()) {
        (Some(ms), _) if ms >= 1.0 => ms as i64,
        (_, Some(s)) => macros::parse_duration_ms(s)
            .map_err(|e| ApiError::bad_request(format!("interval: {e}")))?,
        _ => 1,
    };
    let mut out = Vec::new();
    for t in &b.targets {
        let Some(text) = t.target.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
            continue;
        };
        if t.hide {
            continue;
        }
        let payload = payload_map(t.payload.as_ref());
        let db = db_of(&payload, &url_db)?;
        let format = payload
            .get("format")
            .and_then(Value::as_str)
            .or(t.kind.as_deref())
            .unwrap_or("time_series");
        let table = match format {
            "table" => true,
            "time_series" | "timeseries" | "time series" | "" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown format {other:?}: use time_series or table"
                )));
            }
        };
        let name = t.ref_id.as_deref().unwrap_or(text);
        if let Some(m) = metric::resolve(&state.ingester, &db, text) {
            let req = MetricRequest {
                metric: &m,
                payload: &payload,
                adhoc: &b.adhoc_filters,
                range,
                bucket_ms: metric::bucket_ms(range, interval_ms, max_points),
            };
            out.extend(metric_target(&state, &db, &req, table).await?);
        } else if looks_like_metric(text) {
            return Err(ApiError::bad_request(format!(
                "unknown metric {text:?} in database {db}: /metrics lists them; \
                 a SQL target starts with SELECT or WITH"
            )));
        } else {
            let ctx = MacroContext {
                range: Some(range),
                interval_ms,
                adhoc_condition: adhoc_condition(&b.adhoc_filters)?,
            };
            let (schema, batches) = sql_target(&state, &db, text, &ctx, &b.adhoc_filters).await?;
            if table {
                out.push(frames::table(&schema, &batches).map_err(ApiError::bad_request)?);
            } else {
                out.extend(
                    frames::time_series(&schema, &batches, name)
                        .map_err(|e| ApiError::bad_request(format!("target {name}: {e}")))?,
                );
            }
        }
    }
    Ok(Json(Value::Array(out)))
}

/// A single word with a dot (`cpu.usage_user`) is meant as a metric.
fn looks_like_metric(text: &str) -> bool {
    text.contains('.') && !text.contains(char::is_whitespace) && !text.contains('(')
}

async fn metric_target(
    state: &AppState,
    db: &str,
    req: &MetricRequest<'_>,
    table: bool,
) -> Result<Vec<Value>, ApiError> {
    let (sql, group) = req.sql().map_err(ApiError::bad_request)?;
    let (schema, batches) = run(state, db, &sql).await?;
    let name = &req.metric.name;
    if table {
        let mut t = frames::table(&schema, &batches).map_err(ApiError::bad_request)?;
        if let Some(cols) = t["columns"].as_array_mut() {
            cols[0]["text"] = json!("Time");
            if let Some(last) = cols.last_mut() {
                last["text"] = json!(name);
            }
        }
        return Ok(vec![t]);
    }
    let mut order: Vec<String> = Vec::new();
    let mut series: HashMap<String, Vec<Value>> = HashMap::new();
    for b in &batches {
        let cols = b
            .columns()
            .iter()
            .map(frames::column_values)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::bad_request)?;
        let value = cols.last().expect("value column");
        for r in 0..b.num_rows() {
            let key = if group.is_empty() {
                name.clone()
            } else {
                let labels: Vec<String> = group
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("{t}={}", cols[i + 1][r].as_str().unwrap_or("")))
                    .collect();
                format!("{name}{{{}}}", labels.join(", "))
            };
            let points = series.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Vec::new()
            });
            points.push(json!([value[r], cols[0][r]]));
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let points = series.remove(&k).unwrap_or_default();
            json!({"target": k, "datapoints": points})
        })
        .collect())
}

/// The ad hoc filters as one condition for `$__adhocFilters`, on columns
/// whose types are unknown: numbers compare as numbers with `<`/`>`.
fn adhoc_condition(filters: &[AdhocFilter]) -> Result<String, ApiError> {
    if filters.is_empty() {
        return Ok("TRUE".to_string());
    }
    let conds = filters
        .iter()
        .map(|f| {
            let numeric = matches!(f.operator.as_str(), "<" | ">" | "<=" | ">=")
                && f.value
                    .as_f64()
                    .or_else(|| f.value.as_str().and_then(|s| s.trim().parse().ok()))
                    .is_some();
            f.condition(&ident(&f.key), numeric)
                .map(|c| format!("({c})"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    Ok(conds.join(" AND "))
}

/// Runs a SQL target. Ad hoc filters go where `$__adhocFilters` says; without
/// it they filter the result's columns of the same name (the SQL wrapped as
/// a subquery), and a filter on a column the result lacks is ignored.
async fn sql_target(
    state: &AppState,
    db: &str,
    text: &str,
    ctx: &MacroContext,
    adhoc: &[AdhocFilter],
) -> Result<(SchemaRef, Vec<RecordBatch>), ApiError> {
    let sql = macros::expand(text, ctx).map_err(ApiError::bad_request)?;
    let sql = sql.trim().trim_end_matches(';').to_string();
    if adhoc.is_empty() || text.contains("$__adhocFilters") {
        return run(state, db, &sql).await;
    }
    let schema = state
        .engine
        .query(db, &sql)
        .await
        .map_err(plan_error)?
        .schema();
    let applicable: Vec<AdhocFilter> = adhoc
        .iter()
        .filter(|f| schema.column_with_name(&f.key).is_some())
        .cloned()
        .collect();
    if applicable.is_empty() {
        return run(state, db, &sql).await;
    }
    let mut conds = Vec::new();
    for f in &applicable {
        let (_, field) = schema.column_with_name(&f.key).expect("filtered");
        let numeric = frames::kind_of(field.data_type()) == Kind::Number
            && !matches!(field.data_type(), arrow::datatypes::DataType::Boolean);
        conds.push(
            f.condition(&ident(&f.key), numeric)
                .map_err(ApiError::bad_request)?,
        );
    }
    let wrapped = format!("SELECT * FROM ({sql}) AS _q WHERE {}", conds.join(" AND "));
    run(state, db, &wrapped).await
}

/// Planning failures come from the request's SQL, whatever DataFusion calls
/// them (it reports some type errors as "internal"), so they are 400s.
fn plan_error(e: fleetlake_query::Error) -> ApiError {
    match e {
        fleetlake_query::Error::Internal(m) => ApiError::bad_request(m),
        e => e.into(),
    }
}

/// Plans and runs `sql`, collecting at most [`MAX_ROWS`] rows.
async fn run(
    state: &AppState,
    db: &str,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), ApiError> {
    let mut stream = state.engine.query(db, sql).await.map_err(plan_error)?;
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut rows = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        rows += b.num_rows();
        if rows > MAX_ROWS {
            return Err(ApiError::new(
                ErrorKind::Unprocessable,
                format!(
                    "the query returns more than {MAX_ROWS} rows; aggregate it \
                     (e.g. GROUP BY $__timeGroup(time, $__interval))"
                ),
            ));
        }
        batches.push(b);
    }
    Ok((schema, batches))
}

/// Column `idx` of a result as strings, nulls left out.
fn strings_of(batches: &[RecordBatch], idx: usize) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for b in batches {
        for v in frames::column_values(b.column(idx)).map_err(ApiError::bad_request)? {
            match v {
                Value::Null => {}
                Value::String(s) => out.push(s),
                other => out.push(other.to_string()),
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariableBody {
    payload: Option<Value>,
    range: Option<TimeRange>,
    interval_ms: Option<f64>,
    /// SimpleJSON's `/search` and older plugins put the query here.
    target: Option<String>,
}

impl VariableBody {
    fn query_text(&self) -> Option<String> {
        let from_payload = match &self.payload {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(m)) => m
                .get("target")
                .or_else(|| m.get("query"))
                .and_then(Value::as_str)
                .map(String::from),
            _ => None,
        };
        from_payload
            .or_else(|| self.target.clone())
            .filter(|s| !s.trim().is_empty())
    }
}

/// `POST /variable`: `tag_values(table, tag)` or SQL of one column (text and
/// value) or two (text, then value; or columns named `__text`/`__value`).
async fn variable(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Vec<VariableValue>>, ApiError> {
    let b: VariableBody = parse(
        &body,
        r#"{"payload": {"target": "tag_values(cpu, hostname)"}, "range": {"from": "…", "to": "…"}}"#,
    )?;
    let pairs = variable_values(&state, &url_db, &b).await?;
    Ok(Json(
        pairs
            .into_iter()
            .map(|(text, value)| VariableValue { text, value })
            .collect(),
    ))
}

/// One `/variable` answer, `{"__text": …, "__value": …}`; serialized
/// directly (100,000 of them as `Value` maps cost more than finding them in
/// the index). No `value`: the same as the text.
struct VariableValue {
    text: String,
    value: Option<String>,
}

impl Serialize for VariableValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("VariableValue", 2)?;
        st.serialize_field("__text", &self.text)?;
        st.serialize_field("__value", self.value.as_ref().unwrap_or(&self.text))?;
        st.end()
    }
}

async fn variable_values(
    state: &AppState,
    url_db: &Db,
    b: &VariableBody,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let text = b.query_text().ok_or_else(|| {
        ApiError::bad_request(
            "missing variable query: {\"payload\": {\"target\": \"tag_values(cpu, hostname)\"}} or SQL",
        )
    })?;
    let payload = payload_map(b.payload.as_ref());
    let db = db_of(&payload, url_db)?;
    let text = text.trim();
    if let Some((table, tag)) = parse_tag_values(text) {
        let schema = state.ingester.table_schema(&db, &table).ok_or_else(|| {
            ApiError::bad_request(format!("tag_values: no table {table:?} in {db}"))
        })?;
        if schema.kind_of(&tag) != Some(ColumnKind::Tag) {
            return Err(ApiError::bad_request(format!(
                "tag_values: {tag:?} is not a tag of {table} (tags: {})",
                schema.tags_sorted().join(", ")
            )));
        }
        // From the series index: no data is read.
        let values = state
            .ingester
            .series_index()
            .label_values(&db, &table, &tag, &[], Default::default())
            .await?;
        return Ok(values.into_iter().map(|v| (v, None)).collect());
    }
    let ctx = MacroContext {
        range: b.range.as_ref().map(TimeRange::nanos).transpose()?,
        interval_ms: b.interval_ms.filter(|ms| *ms >= 1.0).unwrap_or(60_000.0) as i64,
        adhoc_condition: "TRUE".to_string(),
    };
    let sql = macros::expand(text, &ctx).map_err(ApiError::bad_request)?;
    let (schema, batches) = run(state, &db, sql.trim().trim_end_matches(';')).await?;
    let named = |n: &str| schema.index_of(n).ok();
    let (ti, vi) = match (named("__text"), named("__value"), schema.fields().len()) {
        (Some(t), Some(v), _) => (t, v),
        (Some(t), None, _) => (t, t),
        (None, Some(v), _) => (v, v),
        (None, None, 0) => return Ok(Vec::new()),
        (None, None, 1) => (0, 0),
        (None, None, _) => (0, 1),
    };
    let texts = strings_of(&batches, ti)?;
    let values = strings_of(&batches, vi)?;
    Ok(texts
        .into_iter()
        .zip(values.into_iter().map(Some))
        .collect())
}

/// `tag_values(table, tag)`, names optionally double-quoted.
fn parse_tag_values(text: &str) -> Option<(String, String)> {
    let lower = text.to_ascii_lowercase();
    let rest = lower.strip_prefix("tag_values")?.trim_start();
    if !rest.starts_with('(') || !text.ends_with(')') {
        return None;
    }
    let open = text.find('(')?;
    let inner = &text[open + 1..text.len() - 1];
    let mut parts = inner
        .splitn(2, ',')
        .map(|s| s.trim().trim_matches('"').to_string());
    let table = parts.next().filter(|s| !s.is_empty())?;
    let tag = parts.next().filter(|s| !s.is_empty())?;
    Some((table, tag))
}

/// `POST /tag-keys`: every tag of every table, for ad hoc filters.
async fn tag_keys(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: MetricsBody = parse(&body, "{}")?;
    let db = db_of(&payload_map(b.payload.as_ref()), &url_db)?;
    // Tags some live series has, from the series index.
    let mut keys = BTreeSet::new();
    for table in state.ingester.tables(&db) {
        keys.extend(
            state
                .ingester
                .series_index()
                .label_names(&db, &table, &[], Default::default())
                .await?,
        );
    }
    Ok(Json(Value::Array(
        keys.into_iter()
            .map(|k| json!({"type": "string", "text": k}))
            .collect(),
    )))
}

#[derive(Debug, Default, Deserialize)]
struct TagValuesBody {
    #[serde(default)]
    key: String,
    #[serde(default)]
    payload: Option<Value>,
}

/// `POST /tag-values`: the values of a tag across every table that has it.
async fn tag_values(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: TagValuesBody = parse(&body, r#"{"key": "hostname"}"#)?;
    let db = db_of(&payload_map(b.payload.as_ref()), &url_db)?;
    // From the series index: no data is read.
    let mut values = BTreeSet::new();
    for t in state.ingester.tables(&db) {
        let is_tag = state
            .ingester
            .table_schema(&db, &t)
            .is_some_and(|s| s.kind_of(&b.key) == Some(ColumnKind::Tag));
        if is_tag {
            values.extend(
                state
                    .ingester
                    .series_index()
                    .label_values(&db, &t, &b.key, &[], Default::default())
                    .await?,
            );
        }
    }
    Ok(Json(Value::Array(
        values.into_iter().map(|v| json!({"text": v})).collect(),
    )))
}

/// `POST /search` (SimpleJSON): metric names as a flat list; a variable
/// query (`tag_values(…)` or SQL) answers its values instead, because
/// SimpleJSON's variable editor asks here.
async fn search(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: VariableBody = parse(&body, r#"{"target": ""}"#)?;
    let is_query = b.target.as_deref().is_some_and(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        t.starts_with("tag_values") || t.starts_with("select") || t.starts_with("with")
    });
    if is_query {
        let pairs = variable_values(&state, &url_db, &b).await?;
        return Ok(Json(Value::Array(
            pairs
                .into_iter()
                .map(|(t, v)| Value::from(v.unwrap_or(t)))
                .collect(),
        )));
    }
    let db = db_of(&payload_map(b.payload.as_ref()), &url_db)?;
    Ok(Json(Value::Array(
        metric::list(&state.ingester, &db)
            .into_iter()
            .map(|m| Value::from(m.name))
            .collect(),
    )))
}

#[derive(Debug, Default, Deserialize)]
struct AnnotationsBody {
    range: Option<TimeRange>,
    #[serde(default)]
    annotation: Value,
}

/// `POST /annotations` (SimpleJSON): the annotation's `query` is SQL (with
/// macros) returning `time`, and optionally `timeEnd`, `title`, `text`
/// (else the first other string column) and `tags` (comma-separated).
async fn annotations(
    State(state): State<AppState>,
    url_db: Db,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AnnotationsBody = parse(
        &body,
        r#"{"range": {"from": "…", "to": "…"}, "annotation": {"name": "alerts", "query": "SELECT time, text FROM …"}}"#,
    )?;
    let text = b
        .annotation
        .get("query")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("annotation.query must hold SQL"))?;
    let db = match b.annotation.get("db").and_then(Value::as_str) {
        Some(db) => checked_db(db, &url_db.1)?,
        None => url_db.0,
    };
    let ctx = MacroContext {
        range: b.range.as_ref().map(TimeRange::nanos).transpose()?,
        interval_ms: 60_000,
        adhoc_condition: "TRUE".to_string(),
    };
    let text = builtin_annotation_sql(text).unwrap_or(text);
    let sql = macros::expand(text, &ctx).map_err(ApiError::bad_request)?;
    let (schema, batches) = run(&state, &db, sql.trim().trim_end_matches(';')).await?;
    let fields = schema.fields();
    let kind = |i: usize| frames::kind_of(fields[i].data_type());
    let named = |names: &[&str]| {
        fields
            .iter()
            .position(|f| names.contains(&f.name().as_str()))
    };
    let time = named(&["time"])
        .filter(|&i| kind(i) == Kind::Time)
        .or_else(|| (0..fields.len()).find(|&i| kind(i) == Kind::Time))
        .ok_or_else(|| ApiError::bad_request("annotations need a timestamp column \"time\""))?;
    let time_end = named(&["timeEnd", "time_end", "timeend"]);
    let title = named(&["title"]);
    let tags = named(&["tags"]);
    let text_col = named(&["text"]).or_else(|| {
        (0..fields.len()).find(|&i| kind(i) == Kind::String && Some(i) != title && Some(i) != tags)
    });
    let mut out = Vec::new();
    for batch in &batches {
        let col = |i: Option<usize>| -> Result<Option<Vec<Value>>, ApiError> {
            i.map(|i| frames::column_values(batch.column(i)))
                .transpose()
                .map_err(ApiError::bad_request)
        };
        let (times, ends, titles, texts, tag_vals) = (
            col(Some(time))?.expect("some"),
            col(time_end)?,
            col(title)?,
            col(text_col)?,
            col(tags)?,
        );
        for r in 0..batch.num_rows() {
            if times[r].is_null() {
                continue;
            }
            let mut a = json!({"annotation": b.annotation, "time": times[r]});
            if let Some(e) = ends.as_ref().filter(|e| !e[r].is_null()) {
                a["timeEnd"] = e[r].clone();
                a["isRegion"] = json!(true);
            }
            if let Some(t) = &titles {
                a["title"] = t[r].clone();
            }
            a["text"] = texts.as_ref().map_or(Value::from(""), |t| t[r].clone());
            let tag_list: Vec<Value> = tag_vals
                .as_ref()
                .and_then(|t| t[r].as_str().map(String::from))
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(Value::from)
                        .collect()
                })
                .unwrap_or_default();
            a["tags"] = Value::Array(tag_list);
            out.push(a);
        }
    }
    Ok(Json(Value::Array(out)))
}

/// The annotation queries `alerts` and `actions`: fleetlake's own alerts
/// (a region from activation to resolution) and self-heal decisions.
fn builtin_annotation_sql(query: &str) -> Option<&'static str> {
    match query.trim().to_ascii_lowercase().as_str() {
        "alerts" => Some(
            "SELECT active_at AS time, resolved_at AS \"timeEnd\", \
             alertname || ' ' || state AS title, instance || ' ' || annotations AS text, \
             rule || ',' || state AS tags FROM system.alerts \
             WHERE active_at <= $__timeTo() \
             AND (resolved_at IS NULL OR resolved_at >= $__timeFrom()) ORDER BY active_at",
        ),
        "actions" => Some(
            "SELECT evaluation_time AS time, finished_at AS \"timeEnd\", \
             rule || ': ' || action || ' ' || decision AS title, \
             coalesce(entity, instance) || ' ' || coalesce(reason, '') || ' ' || detail \
             || ' ' || coalesce(outcome, '') || ' ' || message AS text, \
             rule || ',' || decision AS tags FROM system.actions \
             WHERE $__timeFilter(evaluation_time) ORDER BY evaluation_time",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_syntax() {
        assert_eq!(
            parse_tag_values("tag_values(cpu, hostname)"),
            Some(("cpu".into(), "hostname".into()))
        );
        assert_eq!(
            parse_tag_values("TAG_VALUES (\"my table\",\"host\")"),
            Some(("my table".into(), "host".into()))
        );
        assert_eq!(parse_tag_values("SELECT 1"), None);
        assert_eq!(parse_tag_values("tag_values(cpu)"), None);
    }

    #[test]
    fn metric_shape() {
        assert!(looks_like_metric("cpu.usage_user"));
        assert!(!looks_like_metric("SELECT a.b FROM t"));
        assert!(!looks_like_metric("cpu"));
    }
}
