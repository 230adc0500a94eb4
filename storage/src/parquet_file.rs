//! Encoding a table partition as a Parquet data file.
//!
//! Files are zstd-compressed, tags dictionary-encoded, rows sorted by series
//! then time, with page-level statistics and the page index, so that another
//! engine reads them as plain Parquet and pruning works on both row groups and
//! pages. `time` and integer fields use `DELTA_BINARY_PACKED`, floats
//! `BYTE_STREAM_SPLIT` (see DESIGN.md, "Storage layout", for the measurements).
//!
//! The file declares no sort order: DataFusion plans slower with one on two
//! cores, and an order declared wrongly gives wrong answers.

use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::compute::{max, min};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::catalog::{FileMeta, now_ns};
use crate::error::Result;
use crate::layout::data_file_path;
use crate::schema::TIME_COLUMN;

/// Rows per data page: small enough that the page index isolates a few series.
pub const PAGE_ROWS: usize = 8192;
/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 1024 * 1024;

pub fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("fleetlake {}", env!("CARGO_PKG_VERSION")));
    for field in schema.fields() {
        let col = ColumnPath::from(field.name().as_str());
        let encoding = match field.data_type() {
            DataType::Int64 | DataType::UInt64 | DataType::Timestamp(_, _) => {
                Some(Encoding::DELTA_BINARY_PACKED)
            }
            DataType::Float64 => Some(Encoding::BYTE_STREAM_SPLIT),
            _ => None,
        };
        if let Some(encoding) = encoding {
            b = b
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, encoding);
        }
    }
    b.build()
}

/// Encodes `batches` (all with one schema) into one Parquet file in memory.
pub fn encode(schema: Arc<Schema>, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut encoder = Encoder::new(schema)?;
    for b in batches {
        encoder.write(b)?;
    }
    Ok(encoder.finish()?.bytes)
}

/// A data file encoded in memory batch by batch, so that its rows need not
/// be in memory as Arrow all at once.
pub struct Encoder {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    bounds: Option<(i64, i64)>,
}

/// The bytes of an encoded data file and what [`FileSpec`] needs of them.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub rows: u64,
    /// Inclusive time bounds (ns); `(0, 0)` without rows.
    pub min_time: i64,
    pub max_time: i64,
}

impl Encoder {
    /// # Errors
    /// A schema Parquet cannot hold.
    pub fn new(schema: Arc<Schema>) -> Result<Self> {
        let props = writer_properties(&schema);
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), schema, Some(props))?,
            rows: 0,
            bounds: None,
        })
    }

    /// # Errors
    /// A batch of another schema; encoding failures.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some((lo, hi)) = time_bounds(batch) {
            let (l, h) = self.bounds.get_or_insert((lo, hi));
            *l = (*l).min(lo);
            *h = (*h).max(hi);
        }
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch)?;
        Ok(())
    }

    /// # Errors
    /// Encoding failures.
    pub fn finish(self) -> Result<Encoded> {
        let bytes = self.writer.into_inner()?;
        let (min_time, max_time) = self.bounds.unwrap_or((0, 0));
        Ok(Encoded {
            bytes,
            rows: self.rows,
            min_time,
            max_time,
        })
    }
}

/// Time bounds (inclusive, ns) of a batch's `time` column.
pub fn time_bounds(batch: &RecordBatch) -> Option<(i64, i64)> {
    let col = batch.column_by_name(TIME_COLUMN)?;
    let t = col.as_any().downcast_ref::<TimestampNanosecondArray>()?;
    Some((min(t)?, max(t)?))
}

/// What a data file holds, for [`put_data_file`].
#[derive(Debug, Clone, Copy)]
pub struct FileSpec<'a> {
    pub db: &'a str,
    pub table: &'a str,
    pub day: &'a str,
    pub rows: u64,
    pub min_time: i64,
    pub max_time: i64,
    pub seq: u64,
}

/// Stores encoded Parquet `bytes` under a new file id in the partition's
/// directory. The file is not visible until a catalog commit adds the meta.
pub async fn put_data_file(
    store: &Arc<dyn ObjectStore>,
    spec: FileSpec<'_>,
    bytes: Vec<u8>,
) -> Result<FileMeta> {
    let path = new_data_file_path(&spec);
    let size = bytes.len() as u64;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(crate::store::os_err(&path))?;
    Ok(data_file_meta(spec, &path, size))
}

/// A new file id in the partition's directory.
fn new_data_file_path(spec: &FileSpec<'_>) -> Path {
    let id = uuid::Uuid::new_v4().to_string();
    data_file_path(spec.db, spec.table, spec.day, &id)
}

fn data_file_meta(spec: FileSpec<'_>, path: &Path, bytes: u64) -> FileMeta {
    FileMeta {
        path: path.to_string(),
        db: spec.db.to_string(),
        table: spec.table.to_string(),
        day: spec.day.to_string(),
        rows: spec.rows,
        bytes,
        min_time: spec.min_time,
        max_time: spec.max_time,
        seq: spec.seq,
        created_ns: now_ns(),
        level: 0,
        run: None,
        sort_order: Vec::new(),
        deletes_applied: 0,
    }
}

/// Upload buffer of a [`StreamingDataFile`]: one part of a multipart upload
/// (S3 wants at least 5 MiB per part but the last).
pub const UPLOAD_PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once (object_store's default is 8, so up
/// to 64 MiB of a compaction's output could wait in memory on a slow store).
pub const UPLOAD_PARTS_IN_FLIGHT: usize = 1;

/// A data file written while its rows arrive: each finished row group goes to
/// the store as part of a multipart upload, so the memory held is one row
/// group being encoded plus the upload part being filled and the one in
/// flight, whatever the file's size.
pub struct StreamingDataFile {
    writer: AsyncArrowWriter<BufWriter>,
    path: Path,
}

impl StreamingDataFile {
    /// Starts a new file in the partition `(db, table, day)`.
    pub fn create(
        store: &Arc<dyn ObjectStore>,
        db: &str,
        table: &str,
        day: &str,
        schema: SchemaRef,
    ) -> Result<Self> {
        let path = data_file_path(db, table, day, &uuid::Uuid::new_v4().to_string());
        let upload = BufWriter::with_capacity(Arc::clone(store), path.clone(), UPLOAD_PART_BYTES)
            .with_max_concurrency(UPLOAD_PARTS_IN_FLIGHT);
        let props = writer_properties(&schema);
        let writer = AsyncArrowWriter::try_new(upload, schema, Some(props))?;
        Ok(Self { writer, path })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Ok(self.writer.write(batch).await?)
    }

    /// Writes the footer and completes the upload. `spec` says what the rows
    /// were; the file is not visible until a catalog commit adds the meta.
    pub async fn finish(mut self, spec: FileSpec<'_>) -> Result<FileMeta> {
        self.writer.finish().await?;
        let size = self.writer.bytes_written() as u64;
        Ok(data_file_meta(spec, &self.path, size))
    }

    /// Abandons the file: whatever was uploaded is deleted (the orphan sweep
    /// at start-up catches what a crash leaves).
    pub async fn abort(self) {
        let mut upload = self.writer.into_inner();
        if let Err(e) = upload.abort().await {
            tracing::warn!(path = %self.path, error = %e, "aborting an upload failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnKind, FieldType, TableSchema};
    use arrow::array::{DictionaryArray, Int64Array};
    use arrow::datatypes::Int32Type;
    use object_store::memory::InMemory;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[tokio::test]
    async fn round_trip_keeps_types_and_rows() {
        let mut s = TableSchema::new();
        s.merge_column("cpu", "host", ColumnKind::Tag).unwrap();
        s.merge_column("cpu", "v", ColumnKind::Field(FieldType::Integer))
            .unwrap();
        let schema = s.arrow_schema();
        let host: DictionaryArray<Int32Type> = vec!["a", "a", "b"].into_iter().collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(host),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(TimestampNanosecondArray::from(vec![10, 20, 10]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // Written in two parts: the file holds both, the bounds cover both.
        let mut encoder = Encoder::new(schema).unwrap();
        encoder.write(&batch.slice(0, 2)).unwrap();
        encoder.write(&batch.slice(2, 1)).unwrap();
        let encoded = encoder.finish().unwrap();
        let spec = FileSpec {
            db: "fleet",
            table: "cpu",
            day: "1970-01-01",
            rows: encoded.rows,
            min_time: encoded.min_time,
            max_time: encoded.max_time,
            seq: 7,
        };
        let meta = put_data_file(&store, spec, encoded.bytes).await.unwrap();
        assert_eq!((meta.rows, meta.min_time, meta.max_time), (3, 10, 20));
        let bytes = store
            .get(&object_store::path::Path::from(meta.path.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let back: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(
            arrow::compute::concat_batches(&back[0].schema(), &back).unwrap(),
            batch
        );
    }
}
