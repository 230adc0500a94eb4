//! SQL behaviour pinned in sqllogictest files (`tests/slt/*.slt`), run over
//! HTTP against the real server, a fresh one per file.
//!
//! Besides SQL (run through `/api/v1/sql` on database `fleet`), a record may be
//!
//! - `WRITE <db>` followed by line protocol (written through
//!   `/api/v3/write_lp`, nanosecond precision), or `FLUSH` (persist the
//!   buffer), so that each file carries its own fixture and checks both
//!   buffer and Parquet;
//! - `HTTP <METHOD> <path>` followed by an optional body, for the admin and
//!   configuration API (`HTTP PUT /api/v1/retention`, `HTTP POST
//!   /api/v1/admin/rollup`, ...). A 2xx answer with a JSON body is one row
//!   of one column holding the JSON (keys sorted), so a `query T` can pin
//!   it; any other status is an error carrying the answer's `error` field.
//!
//! A SQL statement whose answer is JSON rather than rows (a `DELETE`) is
//! likewise one row holding the JSON.
//!
//! Header comments configure the file's server; they may appear anywhere
//! but belong at the top:
//!
//! - `# serve: <args>`: extra `fleetlake serve` arguments (split on spaces);
//! - `# rollups.toml: <line>`: a line of a rollup file given with `--rollups`.
//!
//! `SLT_COMPLETE=1 cargo test --test e2e slt` rewrites the expected output
//! of every file from what the server answers (sqllogictest's
//! `--complete`); review the diff before committing it. `SLT_FILE=<stem>`
//! runs (or completes) only the files whose name contains `<stem>`.

use std::path::{Path, PathBuf};

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::Server;

#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

struct HttpDb {
    url: String,
    client: reqwest::Client,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

fn http_err(e: impl std::fmt::Display) -> HttpError {
    HttpError(e.to_string())
}

/// The message of an error answer: its JSON `error` field, else the body.
fn error_message(bytes: &[u8]) -> HttpError {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    HttpError(
        v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).into()),
    )
}

/// A successful non-Arrow answer: its JSON as one row, or no rows if empty.
fn json_output(bytes: &[u8]) -> Result<DBOutput<DefaultColumnType>, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DBOutput::StatementComplete(0));
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        HttpError(format!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        ))
    })?;
    Ok(DBOutput::Rows {
        types: vec![DefaultColumnType::Text],
        rows: vec![vec![v.to_string()]],
    })
}

fn arrow_output(bytes: &[u8]) -> Result<DBOutput<DefaultColumnType>, HttpError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(http_err)?;
    let schema = reader.schema();
    let types = schema
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(http_err)?;
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(http_err)?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(DBOutput::Rows { types, rows })
}

impl HttpDb {
    async fn write(&self, db: &str, body: &str) -> Result<DBOutput<DefaultColumnType>, HttpError> {
        let r = self
            .client
            .post(format!(
                "{}/api/v3/write_lp?db={}&precision=nanosecond",
                self.url,
                db.trim()
            ))
            .body(body.to_string())
            .send()
            .await
            .map_err(http_err)?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(HttpError(text));
        }
        Ok(DBOutput::StatementComplete(0))
    }

    async fn http(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<DBOutput<DefaultColumnType>, HttpError> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(http_err)?;
        let r = self
            .client
            .request(method, format!("{}{}", self.url, path.trim()))
            .body(body.to_string())
            .send()
            .await
            .map_err(http_err)?;
        let status = r.status();
        let bytes = r.bytes().await.map_err(http_err)?;
        if !status.is_success() {
            return Err(error_message(&bytes));
        }
        json_output(&bytes)
    }

    async fn sql(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, HttpError> {
        let r = self
            .client
            .post(format!("{}/api/v1/sql", self.url))
            .json(&serde_json::json!({"sql": sql, "db": "fleet", "format": "arrow"}))
            .send()
            .await
            .map_err(http_err)?;
        let status = r.status();
        let is_arrow = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/vnd.apache.arrow"));
        let bytes = r.bytes().await.map_err(http_err)?;
        if !status.is_success() {
            return Err(error_message(&bytes));
        }
        if is_arrow {
            arrow_output(&bytes)
        } else {
            json_output(&bytes)
        }
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for HttpDb {
    type Error = HttpError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, HttpError> {
        let trimmed = sql.trim();
        let (first, rest) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
        if let Some(db) = first.strip_prefix("WRITE ") {
            return self.write(db, rest).await;
        }
        if trimmed == "FLUSH" {
            return self
                .http("POST", "/api/v1/admin/flush", "")
                .await
                .map(|_| DBOutput::StatementComplete(0));
        }
        if let Some(request) = first.strip_prefix("HTTP ") {
            let (method, path) = request.trim().split_once(' ').ok_or_else(|| {
                HttpError(format!("expected HTTP <METHOD> <path>, got {first:?}"))
            })?;
            return self.http(method, path, rest).await;
        }
        self.sql(sql).await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "fleetlake"
    }
}

/// The server a file asks for in its header comments: extra arguments, and
/// the rollup file (kept in `dir`) if it has one.
fn server_args(file: &Path, dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut args = Vec::new();
    let mut rollups = String::new();
    for line in text.lines() {
        if let Some(a) = line.strip_prefix("# serve:") {
            args.extend(a.split_whitespace().map(str::to_string));
        } else if let Some(l) = line.strip_prefix("# rollups.toml:") {
            rollups.push_str(l.strip_prefix(' ').unwrap_or(l));
            rollups.push('\n');
        }
    }
    if !rollups.is_empty() {
        let path = dir.join("rollups.toml");
        std::fs::write(&path, rollups).unwrap();
        args.push("--rollups".into());
        args.push(path.display().to_string());
    }
    args
}

#[tokio::test]
async fn sqllogictest_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let only = std::env::var("SLT_FILE").ok();
    let complete = std::env::var("SLT_COMPLETE").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            only.as_deref()
                .is_none_or(|s| p.file_name().unwrap().to_string_lossy().contains(s))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    for file in files {
        // A fresh server per file: each file's fixture stands alone.
        let config = tempfile::tempdir().expect("tempdir");
        let args = server_args(&file, config.path());
        let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let url = server.url.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let url = url.clone();
            async move {
                Ok(HttpDb {
                    url,
                    client: reqwest::Client::new(),
                })
            }
        });
        if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        } else if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {e}", file.display());
        }
    }
}
