//! SQL endpoints: `/api/v1/sql` and InfluxDB 3's `/api/v3/query_sql`.
//!
//! Formats: `json` (array of objects), `jsonl`, `csv`, `pretty`, `arrow`
//! (IPC stream), `parquet`. json, jsonl, csv and arrow stream batch by batch;
//! pretty and parquet are built whole. Timestamps are RFC 3339. JSON writes
//! SQL NULL as `null` and CSV as an empty field; both spell non-finite
//! floats `Infinity`, `-Infinity` and `NaN` (JSON as strings).

use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use fleetlake_query::{QueryConfig, QueryStream};
use fleetlake_storage::memory_budget::{Consumer, Reservation};
use futures::StreamExt;
use serde::Deserialize;

use crate::auth::{Permission, Principal};
use crate::params::Params;
use crate::{ApiError, AppState, ErrorKind};

#[derive(Debug, Deserialize)]
pub struct SqlParams {
    #[serde(alias = "sql")]
    q: Option<String>,
    db: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SqlBody {
    #[serde(alias = "q")]
    sql: Option<String>,
    db: Option<String>,
    format: Option<String>,
}

pub async fn sql_get(
    State(state): State<AppState>,
    principal: Principal,
    Params(p): Params<SqlParams>,
) -> Response {
    run(state, principal, p.q, p.db, p.format).await
}

pub async fn sql_post(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Response {
    match parse_body(&body) {
        Ok(b) => run(state, principal, b.sql, b.db, b.format).await,
        Err(e) => e.into_response(),
    }
}

pub async fn sql_get_v3(
    state: State<AppState>,
    principal: Principal,
    params: Params<SqlParams>,
) -> Response {
    sql_get(state, principal, params).await
}

pub async fn sql_post_v3(state: State<AppState>, principal: Principal, body: Bytes) -> Response {
    sql_post(state, principal, body).await
}

fn parse_body(body: &[u8]) -> Result<SqlBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "request body must be JSON like {{\"sql\": \"SELECT 1\", \"db\": \"fleet\", \"format\": \"json\"}}: {e}"
        ))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    JsonLines,
    Csv,
    Pretty,
    Arrow,
    Parquet,
}

impl Format {
    fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        Ok(match s.unwrap_or("json") {
            "json" => Self::Json,
            "jsonl" | "ndjson" => Self::JsonLines,
            "csv" => Self::Csv,
            "pretty" => Self::Pretty,
            "arrow" => Self::Arrow,
            "parquet" => Self::Parquet,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown format {other:?}: use json, jsonl, csv, pretty, arrow or parquet"
                )));
            }
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonLines => "application/jsonl",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Pretty => "text/plain; charset=utf-8",
            Self::Arrow => "application/vnd.apache.arrow.stream",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

async fn run(
    state: AppState,
    principal: Principal,
    sql: Option<String>,
    db: Option<String>,
    format: Option<String>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let format = Format::parse(format.as_deref())?;
        let sql = sql.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            ApiError::bad_request("missing SQL: pass it as 'q' (GET) or 'sql' (POST JSON)")
        })?;
        let db = state.db_or_default(db.as_deref());
        principal.require(Permission::Read, Some(&db))?;
        let db = state.existing_db(Some(&db)).map_err(ApiError::not_found)?;
        if let Some(spec) = state.engine.plan_delete(&db, &sql).await? {
            if state.read_only {
                return Err(crate::read_only::refused("a DELETE"));
            }
            principal.require(Permission::Admin, Some(&db))?;
            let target = format!("{db}.{}", spec.table);
            let result = delete(&state, &db, spec).await;
            let outcome = result
                .as_ref()
                .map_or_else(|e| e.message.clone(), |_| "ok".into());
            state
                .audit
                .record(&principal.describe(), "delete", &target, &outcome)
                .await;
            return result;
        }
        let asked = Instant::now();
        let mut stream = state.engine.query(&db, &sql).await?;
        let timings = stream.timings();
        state.metrics.count_phases(&timings);
        // The first batch with rows surfaces most execution errors while a
        // status can still say so (a plan may send empty batches first).
        let mut first = None;
        while let Some(next) = stream.next().await {
            let batch = next?;
            let rows = batch.num_rows();
            first = Some(batch);
            if rows > 0 {
                break;
            }
        }
        // `first_batch`: from the query's start (its session included) to
        // its first batch, the phases above included.
        let timing = format!(
            "{}, first_batch;dur={:.3}",
            timings.server_timing(),
            asked.elapsed().as_secs_f64() * 1e3
        );
        let mut response = respond(format, stream, first, state.engine.config()).await?;
        // Where the time before the first row went (browsers' network panels
        // and `curl -v` show it).
        if let Ok(v) = header::HeaderValue::from_str(&timing) {
            response.headers_mut().insert("server-timing", v);
        }
        Ok(response)
    }
    .await;
    let response = result.unwrap_or_else(|e| e.into_response());
    state
        .metrics
        .count_query(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Commits a tombstone: the rows are invisible once this returns; compaction
/// removes them from the files.
async fn delete(
    state: &AppState,
    db: &str,
    spec: fleetlake_query::delete::DeleteSpec,
) -> Result<Response, ApiError> {
    let t = state
        .ingester
        .delete(db, &spec.table, spec.min_time, spec.max_time, spec.tags)
        .await?;
    use fleetlake_time::rfc3339;
    let tags: serde_json::Map<String, serde_json::Value> = t
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
        .collect();
    let body = serde_json::json!({
        "deleted": {
            "database": db,
            "table": spec.table,
            // An open end of the range is null.
            "from": (t.min_time != i64::MIN).then(|| rfc3339(t.min_time)),
            "to": (t.max_time != i64::MAX).then(|| rfc3339(t.max_time)),
            "tags": tags,
        }
    });
    Ok(axum::Json(body).into_response())
}

async fn respond(
    format: Format,
    mut stream: QueryStream,
    first: Option<RecordBatch>,
    config: &QueryConfig,
) -> Result<Response, ApiError> {
    let memory_limit = config.memory_limit;
    let schema = stream.schema();
    let body = match format {
        // Built whole, so held whole: counted against the query's limit
        // and the server's memory budget.
        Format::Pretty | Format::Parquet => {
            let mut in_budget = Reservation::new(&config.budget, Consumer::Query);
            let mut held = first.as_ref().map_or(0, RecordBatch::get_array_memory_size);
            let mut batches: Vec<RecordBatch> = first.into_iter().collect();
            loop {
                in_budget
                    .try_resize(held)
                    .map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))?;
                let Some(b) = stream.next().await else { break };
                let b = b?;
                held += b.get_array_memory_size();
                if held > memory_limit {
                    return Err(ApiError::new(
                        ErrorKind::Unprocessable,
                        format!(
                            "the answer passed the query memory limit of {memory_limit} bytes \
                             while being buffered for format={}; use json, jsonl, csv or arrow \
                             (streamed) or add a LIMIT",
                            if format == Format::Pretty {
                                "pretty"
                            } else {
                                "parquet"
                            }
                        ),
                    ));
                }
                batches.push(b);
            }
            let bytes = if format == Format::Pretty {
                let table = arrow::util::pretty::pretty_format_batches(&batches)
                    .map_err(ApiError::internal)?;
                format!("{table}\n").into_bytes()
            } else {
                encode_parquet(schema, &batches)?
            };
            Body::from(bytes)
        }
        _ => {
            let mut encoder = Encoder::new(format, schema);
            let head = match &first {
                Some(b) => encoder.batch(b),
                None => Ok(Vec::new()),
            }
            .map_err(ApiError::internal)?;
            let rest = futures::stream::unfold(
                (stream, encoder, false),
                |(mut stream, mut encoder, done)| async move {
                    if done {
                        return None;
                    }
                    match stream.next().await {
                        Some(Ok(b)) => {
                            let out = encoder.batch(&b).map_err(std::io::Error::other);
                            Some((out, (stream, encoder, false)))
                        }
                        Some(Err(e)) => Some((
                            Err(std::io::Error::other(e.to_string())),
                            (stream, encoder, true),
                        )),
                        None => {
                            let out = encoder.finish().map_err(std::io::Error::other);
                            Some((out, (stream, encoder, true)))
                        }
                    }
                },
            );
            let all = futures::stream::once(async move { Ok(head) }).chain(rest);
            Body::from_stream(all.map(|r| r.map(Bytes::from)))
        }
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

fn encode_parquet(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ApiError> {
    fleetlake_storage::parquet_file::encode(schema, batches).map_err(ApiError::internal)
}

/// Encodes batches one at a time for the streaming formats.
struct Encoder {
    format: Format,
    schema: SchemaRef,
    rows_written: usize,
    started: bool,
    ipc: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
    /// Bytes per row of the last batch: the next one's buffer is made that
    /// large at once instead of doubling its way there.
    row_bytes: usize,
}

impl Encoder {
    fn new(format: Format, schema: SchemaRef) -> Self {
        Self {
            format,
            schema,
            rows_written: 0,
            started: false,
            ipc: None,
            row_bytes: 0,
        }
    }

    fn batch(&mut self, b: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
        // At most 16 MiB ahead: one batch of huge rows must not make the
        // next, longer batch ask for gigabytes it may never fill.
        let guess = b.num_rows().saturating_mul(self.row_bytes) / 8 * 9;
        let mut out = Vec::with_capacity(guess.min(16 << 20));
        if !self.started {
            self.started = true;
            out.extend(self.header()?);
        }
        match self.format {
            Format::Json | Format::JsonLines => {
                // Each row as Arrow's JSON writer writes it, straight into
                // the output (its writer cannot continue an array across
                // batches).
                let rows = arrow::array::StructArray::from(b.clone());
                let field = std::sync::Arc::new(arrow::datatypes::Field::new_struct(
                    "",
                    b.schema().fields().clone(),
                    false,
                ));
                let options = json_options();
                let mut encoder = arrow::json::writer::make_encoder(&field, &rows, &options)?;
                for i in 0..b.num_rows() {
                    if self.format == Format::Json && self.rows_written > 0 {
                        out.push(b',');
                    }
                    encoder.encode(i, &mut out);
                    if self.format == Format::JsonLines {
                        out.push(b'\n');
                    }
                    self.rows_written += 1;
                }
            }
            Format::Csv => {
                crate::csv_text::write_rows(b, &mut out)?;
            }
            Format::Arrow => {
                let w = self.ipc.as_mut().expect("header created the writer");
                w.write(b)?;
                out.append(w.get_mut());
            }
            Format::Pretty | Format::Parquet => unreachable!("not streamed"),
        }
        if b.num_rows() > 0 {
            self.row_bytes = out.len() / b.num_rows();
        }
        Ok(out)
    }

    fn header(&mut self) -> Result<Vec<u8>, arrow::error::ArrowError> {
        Ok(match self.format {
            Format::Json => b"[".to_vec(),
            Format::Csv => {
                let mut head = Vec::new();
                for (i, f) in self.schema.fields().iter().enumerate() {
                    if i > 0 {
                        head.push(b',');
                    }
                    crate::csv_text::field(f.name().as_bytes(), &mut head);
                }
                head.push(b'\n');
                head
            }
            Format::Arrow => {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &self.schema)?;
                let head = std::mem::take(w.get_mut());
                self.ipc = Some(w);
                head
            }
            _ => Vec::new(),
        })
    }

    fn finish(&mut self) -> Result<Vec<u8>, arrow::error::ArrowError> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.extend(self.header()?);
        }
        match self.format {
            Format::Json => out.push(b']'),
            Format::Arrow => {
                let w = self.ipc.as_mut().expect("header created the writer");
                w.finish()?;
                out.append(w.get_mut());
            }
            _ => {}
        }
        Ok(out)
    }
}

/// JSON rows: SQL NULL as `null`, non-finite floats as strings
/// ([`crate::float_text`]).
fn json_options() -> arrow::json::writer::EncoderOptions {
    arrow::json::writer::EncoderOptions::default()
        .with_explicit_nulls(true)
        .with_encoder_factory(std::sync::Arc::new(crate::float_text::JsonFloats))
}
