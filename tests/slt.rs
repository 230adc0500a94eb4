//! SQL behaviour pinned in sqllogictest files (`tests/slt/*.slt`), run over
//! HTTP against the real server.
//!
//! Besides SQL, a statement may be `WRITE <db>` followed by line protocol
//! (written through `/api/v3/write_lp`), or `FLUSH` (persist the buffer), so
//! that each file carries its own fixture and checks both buffer and Parquet.

use std::path::PathBuf;

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

#[async_trait]
impl sqllogictest::AsyncDB for HttpDb {
    type Error = HttpError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, HttpError> {
        let trimmed = sql.trim();
        if let Some(rest) = trimmed.strip_prefix("WRITE ") {
            let (db, body) = rest.split_once('\n').unwrap_or((rest, ""));
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
                .map_err(|e| HttpError(e.to_string()))?;
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(HttpError(text));
            }
            return Ok(DBOutput::StatementComplete(0));
        }
        if trimmed == "FLUSH" {
            let r = self
                .client
                .post(format!("{}/api/v1/admin/flush", self.url))
                .send()
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            if !r.status().is_success() {
                return Err(HttpError(r.text().await.unwrap_or_default()));
            }
            return Ok(DBOutput::StatementComplete(0));
        }
        let r = self
            .client
            .post(format!("{}/api/v1/sql", self.url))
            .json(&serde_json::json!({"sql": sql, "db": "fleet", "format": "arrow"}))
            .send()
            .await
            .map_err(|e| HttpError(e.to_string()))?;
        let status = r.status();
        let bytes = r.bytes().await.map_err(|e| HttpError(e.to_string()))?;
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(HttpError(
                v["error"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into()),
            ));
        }
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
                .map_err(|e| HttpError(e.to_string()))?;
        let schema = reader.schema();
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| HttpError(e.to_string()))?;
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| HttpError(e.to_string()))?;
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

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "fleetlake"
    }
}

#[tokio::test]
async fn sqllogictest_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    for file in files {
        // A fresh server per file: each file's fixture stands alone.
        let server = Server::start(&[]);
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
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {e}", file.display());
        }
    }
}
