//! The `system` schema: `system.tables`, `system.columns`, `system.files`.
//! Built from the catalog and the write buffer each time a query names them.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::Result;
use fleetlake_ingest::Ingester;
use fleetlake_storage::schema::ColumnKind;
use fleetlake_storage::write_order::wal_seq_of;

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
        let state = self.ingester.catalog().state();
        let (mut dbs, mut names, mut cols, mut files, mut rows, mut bytes, mut buffered) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut retention, mut tombstones) = (vec![], vec![]);
        for db in self.ingester.databases() {
            for table in self.ingester.tables(&db) {
                let schema = self.ingester.table_schema(&db, &table).unwrap_or_default();
                let persisted = state.table(&db, &table);
                let (f, r, b) = persisted.map_or((0, 0, 0), |t| {
                    (
                        t.files.len() as u64,
                        t.files.values().map(|f| f.rows).sum::<u64>(),
                        t.files.values().map(|f| f.bytes).sum::<u64>(),
                    )
                });
                let buf_rows: usize = self
                    .ingester
                    .buffered(&db, &table)
                    .iter()
                    .flat_map(|p| p.batches.iter())
                    .map(|b| b.num_rows())
                    .sum();
                dbs.push(db.clone());
                names.push(table);
                cols.push(schema.columns().len() as u64 + 1);
                files.push(f);
                rows.push(r);
                bytes.push(b);
                buffered.push(buf_rows as u64);
                retention.push(
                    state
                        .databases
                        .get(&db)
                        .and_then(|d| d.retention_of(names.last().expect("pushed above")))
                        .map(|ns| ns / 1_000_000_000),
                );
                tombstones.push(persisted.map_or(0, |t| t.tombstones.len() as u64));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("database", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("columns", DataType::UInt64, false),
            Field::new("files", DataType::UInt64, false),
            Field::new("persisted_rows", DataType::UInt64, false),
            Field::new("persisted_bytes", DataType::UInt64, false),
            Field::new("buffered_rows", DataType::UInt64, false),
            Field::new("retention_seconds", DataType::Int64, true),
            Field::new("pending_deletes", DataType::UInt64, false),
        ]));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(dbs)),
            Arc::new(StringArray::from(names)),
            Arc::new(UInt64Array::from(cols)),
            Arc::new(UInt64Array::from(files)),
            Arc::new(UInt64Array::from(rows)),
            Arc::new(UInt64Array::from(bytes)),
            Arc::new(UInt64Array::from(buffered)),
            Arc::new(Int64Array::from(retention)),
            Arc::new(UInt64Array::from(tombstones)),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }

    fn columns_batch(&self) -> Result<RecordBatch> {
        let (mut dbs, mut tables, mut names, mut kinds, mut types) =
            (vec![], vec![], vec![], vec![], vec![]);
        for db in self.ingester.databases() {
            for table in self.ingester.tables(&db) {
                let schema = self.ingester.table_schema(&db, &table).unwrap_or_default();
                for f in schema.arrow_schema().fields() {
                    let kind = match schema.kind_of(f.name()) {
                        Some(ColumnKind::Tag) => "tag",
                        Some(ColumnKind::Field(_)) => "field",
                        _ => "time",
                    };
                    dbs.push(db.clone());
                    tables.push(table.clone());
                    names.push(f.name().clone());
                    kinds.push(kind);
                    types.push(f.data_type().to_string());
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("database", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("column", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("data_type", DataType::Utf8, false),
        ]));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(dbs)),
            Arc::new(StringArray::from(tables)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from(types)),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }

    fn files_batch(&self) -> Result<RecordBatch> {
        let state = self.ingester.catalog().state();
        let files: Vec<_> = state
            .databases
            .values()
            .flat_map(|d| d.tables.values())
            .flat_map(|t| t.files.values())
            .collect();
        let ts = |v: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("database", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("day", DataType::Utf8, false),
            Field::new("path", DataType::Utf8, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("min_time", ts_type(), false),
            Field::new("max_time", ts_type(), false),
            Field::new("created", ts_type(), false),
            Field::new("seq", DataType::Int64, false),
            Field::new("level", DataType::UInt64, false),
            Field::new("run", DataType::UInt64, true),
        ]));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(files.iter().map(|f| &f.db))),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| &f.table),
            )),
            Arc::new(StringArray::from_iter_values(files.iter().map(|f| &f.day))),
            Arc::new(StringArray::from_iter_values(files.iter().map(|f| &f.path))),
            Arc::new(UInt64Array::from_iter_values(files.iter().map(|f| f.rows))),
            Arc::new(UInt64Array::from_iter_values(files.iter().map(|f| f.bytes))),
            ts(files.iter().map(|f| f.min_time).collect()),
            ts(files.iter().map(|f| f.max_time).collect()),
            ts(files.iter().map(|f| f.created_ns).collect()),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|f| wal_seq_of(f.seq) as i64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                files.iter().map(|f| u64::from(f.level)),
            )),
            Arc::new(UInt64Array::from_iter(files.iter().map(|f| f.run))),
        ];
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
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
