//! Turning a line-protocol body into typed Arrow batches, line by line.
//!
//! Each line is checked against the table's schema as it stands (the catalog's
//! schema plus columns created by earlier writes). A line whose measurement is
//! not a valid table name, whose timestamp overflows, or whose field conflicts
//! with an existing column's type is rejected alone; the rest of the body is
//! kept. Columns the request creates are collected so the caller can publish
//! them atomically with the write.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondArray, UInt64Builder,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int32Type, Schema};
use arrow::record_batch::RecordBatch;
use fleetlake_storage::layout::day_index;
use fleetlake_storage::schema::{
    ColumnDef, ColumnKind, FieldType, TIME_COLUMN, TableSchema, validate_name,
};
use serde::Serialize;

use crate::error::Result;
use crate::line_protocol::{FieldValue, ParsedLine, parse_lines};
use crate::precision::Precision;

/// Where validation reads the current schema of a table.
pub trait SchemaSource: Send + Sync {
    fn table_schema(&self, db: &str, table: &str) -> Option<Arc<TableSchema>>;
}

/// A line that was not stored, as reported to the client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedLine {
    /// 1-based line number in the request body.
    pub line: usize,
    /// The line, cut to 100 characters.
    pub text: String,
    pub reason: String,
}

/// The rows of one table and one partition day from one request.
#[derive(Debug, Clone)]
pub struct TableWrite {
    pub table: String,
    pub day: i64,
    /// Columns: the table's columns this request wrote, in schema order, then `time`.
    pub batch: RecordBatch,
}

/// A validated request, ready for the WAL and the buffer.
#[derive(Debug, Default)]
pub struct ValidatedWrite {
    pub tables: Vec<TableWrite>,
    /// Columns to create, per table.
    pub new_columns: Vec<(String, Vec<ColumnDef>)>,
    /// The accepted lines, newline-separated: what the WAL replays.
    pub accepted_lines: String,
    pub rows: usize,
    pub fields: usize,
    /// The first [`MAX_REPORTED_LINES`] rejected lines.
    pub rejected: Vec<RejectedLine>,
    /// Every rejected line, reported or not.
    pub rejected_total: usize,
}

/// Rejected lines reported per request: a body of millions of bad lines
/// must not become an error list larger than the body.
pub const MAX_REPORTED_LINES: usize = 1_000;

impl ValidatedWrite {
    fn reject(&mut self, line: RejectedLine) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_REPORTED_LINES {
            self.rejected.push(line);
        }
    }
}

const MAX_REPORTED_CHARS: usize = 100;

fn cut(line: &str) -> String {
    line.chars().take(MAX_REPORTED_CHARS).collect()
}

/// Columns a table may have (tags and fields; `time` not counted) unless
/// configured otherwise (`--max-columns-per-table`; InfluxDB 3 allows 500
/// with `time`). A line that would add more is rejected: every column costs
/// a Parquet column writer per flush, and a table of 40,000 columns cannot be
/// flushed in any memory budget.
pub const DEFAULT_MAX_COLUMNS_PER_TABLE: usize = 400;

/// Validates every line of `body` for database `db`. Lines without a timestamp
/// get `default_time_ns`; a line that would give its table more than
/// `max_columns` columns is rejected.
pub fn validate(
    source: &dyn SchemaSource,
    db: &str,
    body: &str,
    precision: Precision,
    default_time_ns: i64,
    max_columns: usize,
) -> Result<ValidatedWrite> {
    let mut out = ValidatedWrite::default();
    // The accepted lines are at most the body: one allocation, not a
    // chain of doublings (each a fresh, zeroed page range at this size).
    out.accepted_lines.reserve(body.len());
    let mut builders: Vec<TableBuilder> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for line in parse_lines(body) {
        let parsed = match line.parsed {
            Ok(p) => p,
            Err(e) => {
                out.reject(RejectedLine {
                    line: line.number,
                    text: cut(line.text),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let idx = match by_name.get(parsed.measurement.as_ref()) {
            Some(&i) => i,
            None => {
                if let Err(e) = validate_name(&parsed.measurement) {
                    out.reject(RejectedLine {
                        line: line.number,
                        text: cut(line.text),
                        reason: format!("measurement: {e}"),
                    });
                    continue;
                }
                let schema = source
                    .table_schema(db, &parsed.measurement)
                    .map(|s| (*s).clone())
                    .unwrap_or_default();
                builders.push(TableBuilder::new(
                    parsed.measurement.to_string(),
                    schema,
                    max_columns,
                ));
                by_name.insert(parsed.measurement.to_string(), builders.len() - 1);
                builders.len() - 1
            }
        };
        let time = match parsed.timestamp {
            None => default_time_ns,
            Some(ts) => match precision.to_nanos(ts) {
                Some(t) => t,
                None => {
                    out.reject(RejectedLine {
                        line: line.number,
                        text: cut(line.text),
                        reason: format!(
                            "timestamp {ts} is out of range for precision {precision:?} \
                             (it must fit in signed 64-bit nanoseconds)"
                        ),
                    });
                    continue;
                }
            },
        };
        match builders[idx].append(&parsed, time) {
            Ok(()) => {
                out.rows += 1;
                out.fields += parsed.fields.len();
                if !out.accepted_lines.is_empty() {
                    out.accepted_lines.push('\n');
                }
                out.accepted_lines.push_str(line.text);
            }
            Err(reason) => out.reject(RejectedLine {
                line: line.number,
                text: cut(line.text),
                reason,
            }),
        }
    }
    for b in builders {
        if b.rows == 0 {
            continue;
        }
        if !b.new_columns.is_empty() {
            out.new_columns
                .push((b.table.clone(), b.new_columns.clone()));
        }
        out.tables.extend(b.finish()?);
    }
    Ok(out)
}

enum ColData {
    Tag(StringDictionaryBuilder<Int32Type>),
    F64(Float64Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl ColData {
    fn new(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Tag => Self::Tag(StringDictionaryBuilder::new()),
            ColumnKind::Field(FieldType::Float) => Self::F64(Float64Builder::new()),
            ColumnKind::Field(FieldType::Integer) => Self::I64(Int64Builder::new()),
            ColumnKind::Field(FieldType::UInteger) => Self::U64(UInt64Builder::new()),
            ColumnKind::Field(FieldType::Boolean) => Self::Bool(BooleanBuilder::new()),
            ColumnKind::Field(FieldType::String) => Self::Str(StringBuilder::new()),
            ColumnKind::Time => unreachable!("time is built separately"),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Tag(b) => b.len(),
            Self::F64(b) => b.len(),
            Self::I64(b) => b.len(),
            Self::U64(b) => b.len(),
            Self::Bool(b) => b.len(),
            Self::Str(b) => b.len(),
        }
    }

    fn pad_to(&mut self, n: usize) {
        let missing = n.saturating_sub(self.len());
        if missing == 0 {
            return;
        }
        match self {
            Self::Tag(b) => b.append_nulls(missing),
            Self::F64(b) => b.append_nulls(missing),
            Self::I64(b) => b.append_nulls(missing),
            Self::U64(b) => b.append_nulls(missing),
            Self::Bool(b) => b.append_nulls(missing),
            Self::Str(b) => b.append_nulls(missing),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Tag(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::U64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Str(b) => Arc::new(b.finish()),
        }
    }
}

pub fn field_type(v: &FieldValue<'_>) -> FieldType {
    match v {
        FieldValue::F64(_) => FieldType::Float,
        FieldValue::I64(_) => FieldType::Integer,
        FieldValue::U64(_) => FieldType::UInteger,
        FieldValue::Bool(_) => FieldType::Boolean,
        FieldValue::Str(_) => FieldType::String,
    }
}

struct TableBuilder {
    table: String,
    schema: TableSchema,
    max_columns: usize,
    new_columns: Vec<ColumnDef>,
    cols: Vec<(String, ColData)>,
    index: HashMap<String, usize>,
    time: Vec<i64>,
    rows: usize,
}

impl TableBuilder {
    fn new(table: String, schema: TableSchema, max_columns: usize) -> Self {
        Self {
            table,
            schema,
            max_columns,
            new_columns: Vec::new(),
            cols: Vec::new(),
            index: HashMap::new(),
            time: Vec::new(),
            rows: 0,
        }
    }

    /// Checks the line against the schema, then appends it. A rejected line
    /// changes nothing.
    fn append(&mut self, line: &ParsedLine<'_>, time: i64) -> std::result::Result<(), String> {
        let columns = line
            .tags
            .iter()
            .map(|(k, _)| (k.as_ref(), ColumnKind::Tag))
            .chain(
                line.fields
                    .iter()
                    .map(|(k, v)| (k.as_ref(), ColumnKind::Field(field_type(v)))),
            );
        let mut fresh: smallvec::SmallVec<[(&str, ColumnKind); 4]> = smallvec::SmallVec::new();
        for (name, kind) in columns.clone() {
            match self.schema.kind_of(name) {
                Some(existing) if existing == kind => {}
                Some(existing) => {
                    return Err(format!(
                        "column '{name}' of table '{}' is a {}; this line writes it as a {}",
                        self.table,
                        existing.describe(),
                        kind.describe()
                    ));
                }
                None => {
                    if let Some((_, other)) = fresh.iter().find(|(n, _)| *n == name) {
                        return Err(format!(
                            "'{name}' is used both as a {} and as a {} in this line",
                            other.describe(),
                            kind.describe()
                        ));
                    }
                    fresh.push((name, kind));
                }
            }
        }
        let total = self.schema.columns().len() + fresh.len();
        if !fresh.is_empty() && total > self.max_columns {
            return Err(format!(
                "table '{}' would have {total} columns, over the limit of {} \
                 (--max-columns-per-table); write these values as tag or field values \
                 of fewer columns, or to another table",
                self.table, self.max_columns
            ));
        }
        for (name, kind) in fresh {
            self.schema
                .merge_column(&self.table, name, kind)
                .expect("checked above");
            self.new_columns.push(ColumnDef {
                name: name.to_string(),
                kind,
            });
        }
        let row = self.rows;
        for (k, v) in &line.tags {
            let col = self.column(k, ColumnKind::Tag);
            col.pad_to(row);
            if let ColData::Tag(b) = col {
                b.append_value(v.as_ref());
            }
        }
        for (k, v) in &line.fields {
            let col = self.column(k, ColumnKind::Field(field_type(v)));
            col.pad_to(row);
            match (col, v) {
                (ColData::F64(b), FieldValue::F64(x)) => b.append_value(*x),
                (ColData::I64(b), FieldValue::I64(x)) => b.append_value(*x),
                (ColData::U64(b), FieldValue::U64(x)) => b.append_value(*x),
                (ColData::Bool(b), FieldValue::Bool(x)) => b.append_value(*x),
                (ColData::Str(b), FieldValue::Str(x)) => b.append_value(x.as_ref()),
                _ => unreachable!("column types follow the schema check"),
            }
        }
        self.time.push(time);
        self.rows += 1;
        Ok(())
    }

    fn column(&mut self, name: &str, kind: ColumnKind) -> &mut ColData {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.cols.push((name.to_string(), ColData::new(kind)));
                self.index.insert(name.to_string(), self.cols.len() - 1);
                self.cols.len() - 1
            }
        };
        &mut self.cols[i].1
    }

    /// One batch per partition day.
    fn finish(mut self) -> Result<Vec<TableWrite>> {
        let full = self.schema.arrow_schema();
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        for f in full.fields() {
            if f.name() == TIME_COLUMN {
                continue;
            }
            if let Some(&i) = self.index.get(f.name()) {
                let col = &mut self.cols[i].1;
                col.pad_to(self.rows);
                fields.push(f.clone());
                arrays.push(col.finish());
            }
        }
        let days: Vec<i64> = self.time.iter().map(|&t| day_index(t)).collect();
        fields.push(full.field_with_name(TIME_COLUMN)?.clone().into());
        arrays.push(Arc::new(
            TimestampNanosecondArray::from(std::mem::take(&mut self.time)).with_timezone("UTC"),
        ));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        let first = days[0];
        if days.iter().all(|&d| d == first) {
            return Ok(vec![TableWrite {
                table: self.table,
                day: first,
                batch,
            }]);
        }
        let mut distinct = days.clone();
        distinct.sort_unstable();
        distinct.dedup();
        distinct
            .into_iter()
            .map(|day| {
                let mask: arrow::array::BooleanArray =
                    days.iter().map(|&d| Some(d == day)).collect();
                Ok(TableWrite {
                    table: self.table.clone(),
                    day,
                    batch: filter_record_batch(&batch, &mask)?,
                })
            })
            .collect()
    }
}
