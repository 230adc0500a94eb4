//! The `system` schema: `system.tables`, `system.columns`, `system.files`.
//! Built from the catalog and the write buffer each time a query names them.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::Result;
use fleetlake_ingest::Ingester;
use fleetlake_storage::schema::ColumnKind;
use fleetlake_storage::write_order::wal_seq_of;

mod columns;

pub use columns::{Columns, time_type};

pub const SYSTEM_SCHEMA: &str = "system";
const TABLES: [&str; 3] = ["tables", "columns", "files"];

/// A table of the `system` schema provided by another component: a
/// snapshot built each time a query names it.
pub trait SystemTable: std::fmt::Debug + Send + Sync {
    fn name(&self) -> &str;
    fn batch(&self) -> Result<RecordBatch>;
}

#[derive(Debug)]
pub struct SystemSchema {
    ingester: Arc<Ingester>,
    extra: Vec<Arc<dyn SystemTable>>,
}

impl SystemSchema {
    pub fn new(ingester: Arc<Ingester>, extra: Vec<Arc<dyn SystemTable>>) -> Self {
        Self { ingester, extra }
    }

    fn tables_batch(&self) -> Result<RecordBatch> {
        struct Row {
            db: String,
            table: String,
            columns: u64,
            files: u64,
            rows: u64,
            bytes: u64,
            buffered: u64,
            retention_s: Option<i64>,
            tombstones: u64,
        }
        let state = self.ingester.catalog().state();
        let mut out = Vec::new();
        for db in self.ingester.databases() {
            for table in self.ingester.tables(&db) {
                let schema = self.ingester.table_schema(&db, &table).unwrap_or_default();
                let persisted = state.table(&db, &table);
                let (files, rows, bytes) = persisted.map_or((0, 0, 0), |t| {
                    (
                        t.files.len() as u64,
                        t.files.values().map(|f| f.rows).sum::<u64>(),
                        t.files.values().map(|f| f.bytes).sum::<u64>(),
                    )
                });
                let buffered: usize = self
                    .ingester
                    .buffered(&db, &table)
                    .iter()
                    .flat_map(|p| p.batches.iter())
                    .map(|b| b.num_rows())
                    .sum();
                let retention_s = state
                    .databases
                    .get(&db)
                    .and_then(|d| d.retention_of(&table))
                    .map(|ns| ns / 1_000_000_000);
                out.push(Row {
                    db: db.clone(),
                    columns: schema.columns().len() as u64 + 1,
                    files,
                    rows,
                    bytes,
                    buffered: buffered as u64,
                    retention_s,
                    tombstones: persisted.map_or(0, |t| t.tombstones.len() as u64),
                    table,
                });
            }
        }
        Columns::new(&out)
            .str("database", |r| &r.db)
            .str("table", |r| &r.table)
            .u64("columns", |r| r.columns)
            .u64("files", |r| r.files)
            .u64("persisted_rows", |r| r.rows)
            .u64("persisted_bytes", |r| r.bytes)
            .u64("buffered_rows", |r| r.buffered)
            .opt_i64("retention_seconds", |r| r.retention_s)
            .u64("pending_deletes", |r| r.tombstones)
            .finish()
    }

    fn columns_batch(&self) -> Result<RecordBatch> {
        // (database, table, column, kind, data type)
        let mut out: Vec<(String, String, String, &'static str, String)> = Vec::new();
        for db in self.ingester.databases() {
            for table in self.ingester.tables(&db) {
                let schema = self.ingester.table_schema(&db, &table).unwrap_or_default();
                for f in schema.arrow_schema().fields() {
                    let kind = match schema.kind_of(f.name()) {
                        Some(ColumnKind::Tag) => "tag",
                        Some(ColumnKind::Field(_)) => "field",
                        _ => "time",
                    };
                    out.push((
                        db.clone(),
                        table.clone(),
                        f.name().clone(),
                        kind,
                        f.data_type().to_string(),
                    ));
                }
            }
        }
        Columns::new(&out)
            .str("database", |r| &r.0)
            .str("table", |r| &r.1)
            .str("column", |r| &r.2)
            .str("kind", |r| r.3)
            .str("data_type", |r| &r.4)
            .finish()
    }

    fn files_batch(&self) -> Result<RecordBatch> {
        let state = self.ingester.catalog().state();
        let files: Vec<_> = state
            .databases
            .values()
            .flat_map(|d| d.tables.values())
            .flat_map(|t| t.files.values())
            .collect();
        Columns::new(&files)
            .str("database", |f| &f.db)
            .str("table", |f| &f.table)
            .str("day", |f| &f.day)
            .str("path", |f| &f.path)
            .u64("rows", |f| f.rows)
            .u64("bytes", |f| f.bytes)
            .time("min_time", |f| f.min_time)
            .time("max_time", |f| f.max_time)
            .time("created", |f| f.created_ns)
            .i64("seq", |f| wal_seq_of(f.seq) as i64)
            .u64("level", |f| u64::from(f.level))
            .opt_u64("run", |f| f.run)
            .finish()
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES
            .iter()
            .map(|s| s.to_string())
            .chain(self.extra.iter().map(|t| t.name().to_string()))
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "tables" => self.tables_batch()?,
            "columns" => self.columns_batch()?,
            "files" => self.files_batch()?,
            other => match self.extra.iter().find(|t| t.name() == other) {
                Some(t) => t.batch()?,
                None => return Ok(None),
            },
        };
        let schema: SchemaRef = batch.schema();
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name) || self.extra.iter().any(|t| t.name() == name)
    }
}
