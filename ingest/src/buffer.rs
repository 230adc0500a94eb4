//! The in-memory write buffer: what the WAL holds and Parquet does not yet.
//!
//! Per table and partition day, a list of immutable Arrow batches, each with
//! the columns its request wrote plus [`SEQ_COLUMN`]. Queries take a snapshot
//! (cheap `Arc` clones) and see every acknowledged write at once.
//!
//! # Invariants
//! - Each row's [`SEQ_COLUMN`] is its [`row_seq`], so it sorts above every
//!   persisted file's (the encoding: [`fleetlake_storage::write_order`]).
//! - Batches are appended in WAL order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, UInt64Array, new_null_array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use fleetlake_storage::write_order::{SEQ_COLUMN, row_seq};

use crate::validate::TableWrite;

/// Batches merged into one once this many small ones accumulate.
const MERGE_AFTER: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct PartitionBuffer {
    pub batches: Vec<RecordBatch>,
    /// How many trailing batches are unmerged request batches.
    unmerged: usize,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: usize,
    pub bytes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct TableBuffer {
    pub partitions: BTreeMap<i64, PartitionBuffer>,
}

/// Buffered data of every table, keyed by (database, table).
#[derive(Debug, Default)]
pub struct BufferContents {
    pub tables: HashMap<(String, String), TableBuffer>,
    pub bytes: usize,
    pub rows: usize,
    /// Highest WAL sequence applied.
    pub last_wal_seq: u64,
    pub first_insert: Option<Instant>,
}

impl BufferContents {
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds one request's rows, which WAL record `wal_seq` holds.
    pub fn insert(&mut self, wal_seq: u64, db: &str, writes: Vec<TableWrite>) {
        self.last_wal_seq = self.last_wal_seq.max(wal_seq);
        let mut row_base = 0usize;
        for w in writes {
            let n = w.batch.num_rows();
            if n == 0 {
                continue;
            }
            let Some((min_time, max_time)) = fleetlake_storage::parquet_file::time_bounds(&w.batch)
            else {
                continue;
            };
            let seq: ArrayRef = Arc::new(UInt64Array::from_iter_values(
                (row_base..row_base + n).map(|r| row_seq(wal_seq, r)),
            ));
            row_base += n;
            let batch = with_column(
                &w.batch,
                Field::new(SEQ_COLUMN, DataType::UInt64, false),
                seq,
            );
            let bytes = batch.get_array_memory_size();
            let table = self.tables.entry((db.to_string(), w.table)).or_default();
            let p = table
                .partitions
                .entry(w.day)
                .or_insert_with(|| PartitionBuffer {
                    min_time,
                    max_time,
                    ..Default::default()
                });
            p.min_time = p.min_time.min(min_time);
            p.max_time = p.max_time.max(max_time);
            p.rows += n;
            p.bytes += bytes;
            p.batches.push(batch);
            p.unmerged += 1;
            self.bytes += bytes;
            self.rows += n;
            if p.unmerged >= MERGE_AFTER {
                let before = p.bytes;
                merge_tail(p);
                self.bytes = self.bytes + p.bytes - before;
            }
        }
        self.first_insert.get_or_insert_with(Instant::now);
    }
}

/// Concatenates a partition's unmerged request batches into one.
fn merge_tail(p: &mut PartitionBuffer) {
    let tail = p.batches.split_off(p.batches.len() - p.unmerged);
    match unify_and_concat(&tail) {
        Ok(merged) => {
            let tail_bytes: usize = tail.iter().map(|b| b.get_array_memory_size()).sum();
            p.bytes = p.bytes - tail_bytes + merged.get_array_memory_size();
            p.batches.push(merged);
        }
        // Unreachable for batches the validator built; keeping them as they are is correct too.
        Err(_) => p.batches.extend(tail),
    }
    p.unmerged = 0;
}

fn with_column(batch: &RecordBatch, field: Field, array: ArrayRef) -> RecordBatch {
    let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(field));
    let mut columns = batch.columns().to_vec();
    columns.push(array);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("a new column of the batch's length")
}

/// The union of the batches' columns, in first-seen order.
pub fn union_schema(batches: &[RecordBatch]) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = Vec::new();
    for b in batches {
        for f in b.schema().fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.clone());
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// `batch` with exactly the columns of `target`, by name; missing ones are NULL.
pub fn align_to_schema(
    batch: &RecordBatch,
    target: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = target
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(target.clone(), columns)
}

pub fn unify_and_concat(batches: &[RecordBatch]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = union_schema(batches);
    let aligned = batches
        .iter()
        .map(|b| align_to_schema(b, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    concat_batches(&schema, &aligned)
}
