//! Per-file column statistics of an `add` action, from the file's Parquet
//! footer, so that Delta readers skip files by any column, not only `time`.
//!
//! Only bounds that are true bounds are given: a reader skips a file when a
//! filter cannot match within them, so a wrong bound loses rows.
//! - Strings (tags and string fields): only when the footer says its bounds
//!   are exact (a writer may truncate long values) and they are UTF-8.
//! - Floats: only finite bounds (JSON has no infinities; NaN is unordered).
//! - Integers: as they are. Unsigned integers (Delta's `decimal(20,0)`) and
//!   booleans get no bounds, only a null count.
//! - `time`: from the catalog (see `publisher::add_of`), not from here.
//!
//! A column missing a bound in any row group that holds a non-NULL value
//! gets none; a null count is given only when every row group has one.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde_json::Value;

use crate::catalog::FileMeta;
use crate::schema::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};

/// Bounds and null counts by column name, as Delta's `stats` writes them.
#[derive(Debug, Default, PartialEq)]
pub struct ColumnStats {
    pub min: BTreeMap<String, Value>,
    pub max: BTreeMap<String, Value>,
    pub null_count: BTreeMap<String, u64>,
}

/// The statistics of file `f`, or `None` if its footer cannot be read (the
/// `add` then carries what the catalog knows).
pub async fn read(
    store: &Arc<dyn ObjectStore>,
    f: &FileMeta,
    schema: &TableSchema,
) -> Option<ColumnStats> {
    match footer(store, f).await {
        Ok(meta) => Some(of_footer(&meta, schema)),
        Err(e) => {
            tracing::warn!(file = %f.path, error = %e, "no column statistics for the Delta log");
            None
        }
    }
}

/// `f`'s Parquet footer: its 8-byte tail, then the metadata it measures.
async fn footer(store: &Arc<dyn ObjectStore>, f: &FileMeta) -> Result<ParquetMetaData, String> {
    let path = Path::from(f.path.as_str());
    let size = f.bytes;
    let tail_len = FOOTER_SIZE as u64;
    if size < tail_len {
        return Err(format!("{size} bytes is too short for Parquet"));
    }
    let tail = store
        .get_range(&path, size - tail_len..size)
        .await
        .map_err(|e| e.to_string())?;
    let tail: [u8; FOOTER_SIZE] = tail[..].try_into().map_err(|_| "short read".to_string())?;
    let len = FooterTail::try_new(&tail)
        .map_err(|e| e.to_string())?
        .metadata_length() as u64;
    if len > size - tail_len {
        return Err(format!("metadata of {len} bytes in a file of {size}"));
    }
    let start = size - tail_len - len;
    let bytes = store
        .get_range(&path, start..size - tail_len)
        .await
        .map_err(|e| e.to_string())?;
    ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| e.to_string())
}

/// One column's running bounds over row groups.
#[derive(Default)]
struct Running {
    min: Option<Value>,
    max: Option<Value>,
    /// A row group with values gave no usable bound: the file gets none.
    unbounded: bool,
    nulls: Option<u64>,
}

/// `a` below `b`, for two bounds of one column's type.
fn less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a < b,
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a < b,
            _ => a.as_f64() < b.as_f64(),
        },
        _ => false,
    }
}

/// The bounds of one row group's column chunk, if usable for `kind`.
fn bounds(kind: ColumnKind, s: &Statistics) -> Option<(Value, Value)> {
    match (kind, s) {
        (ColumnKind::Tag | ColumnKind::Field(FieldType::String), Statistics::ByteArray(v)) => {
            if !v.min_is_exact() || !v.max_is_exact() {
                return None;
            }
            let min = std::str::from_utf8(v.min_opt()?.data()).ok()?;
            let max = std::str::from_utf8(v.max_opt()?.data()).ok()?;
            Some((Value::from(min), Value::from(max)))
        }
        (ColumnKind::Field(FieldType::Integer), Statistics::Int64(v)) => {
            Some((Value::from(*v.min_opt()?), Value::from(*v.max_opt()?)))
        }
        (ColumnKind::Field(FieldType::Float), Statistics::Double(v)) => {
            let (min, max) = (*v.min_opt()?, *v.max_opt()?);
            if !min.is_finite() || !max.is_finite() {
                return None;
            }
            Some((Value::from(min), Value::from(max)))
        }
        _ => None,
    }
}

/// The statistics a footer gives for the table's columns.
pub fn of_footer(meta: &ParquetMetaData, schema: &TableSchema) -> ColumnStats {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    for rg in meta.row_groups() {
        for col in rg.columns() {
            let name = col.column_path().string();
            if name == TIME_COLUMN {
                continue;
            }
            let Some(kind) = schema.kind_of(&name) else {
                continue;
            };
            let r = running.entry(name).or_insert_with(|| Running {
                nulls: Some(0),
                ..Running::default()
            });
            let Some(s) = col.statistics() else {
                r.unbounded = true;
                r.nulls = None;
                continue;
            };
            let nulls = s.null_count_opt();
            r.nulls = r.nulls.zip(nulls).map(|(a, b)| a + b);
            let all_null = nulls == Some(u64::try_from(rg.num_rows()).unwrap_or(u64::MAX));
            if all_null {
                continue;
            }
            match bounds(kind, s) {
                Some((min, max)) => {
                    if r.min.as_ref().is_none_or(|m| less(&min, m)) {
                        r.min = Some(min);
                    }
                    if r.max.as_ref().is_none_or(|m| less(m, &max)) {
                        r.max = Some(max);
                    }
                }
                None => r.unbounded = true,
            }
        }
    }
    let mut out = ColumnStats::default();
    for (name, r) in running {
        if let Some(n) = r.nulls {
            out.null_count.insert(name.clone(), n);
        }
        if r.unbounded {
            continue;
        }
        if let (Some(min), Some(max)) = (r.min, r.max) {
            out.min.insert(name.clone(), min);
            out.max.insert(name, max);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        ArrayRef, DictionaryArray, Float64Array, Int64Array, StringArray, UInt64Array,
    };
    use arrow::datatypes::Int32Type;
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::SerializedFileReader;

    use super::*;

    fn schema() -> TableSchema {
        let mut s = TableSchema::new();
        s.merge_column("t", "host", ColumnKind::Tag).unwrap();
        s.merge_column("t", "load", ColumnKind::Field(FieldType::Float))
            .unwrap();
        s.merge_column("t", "n", ColumnKind::Field(FieldType::Integer))
            .unwrap();
        s.merge_column("t", "u", ColumnKind::Field(FieldType::UInteger))
            .unwrap();
        s.merge_column("t", "note", ColumnKind::Field(FieldType::String))
            .unwrap();
        s
    }

    /// A footer of `rows` written in row groups of `group` rows.
    fn footer(
        cols: Vec<(&str, ArrayRef)>,
        group: usize,
        props: WriterProperties,
    ) -> ParquetMetaData {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let mut buf = Vec::new();
        let props = props
            .into_builder()
            .set_max_row_group_row_count(Some(group))
            .build();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(buf)).unwrap();
        reader.metadata().clone()
    }

    #[test]
    fn bounds_span_every_row_group_and_skip_what_is_not_a_bound() {
        let host: DictionaryArray<Int32Type> = vec![Some("b"), Some("a"), Some("d"), Some("c")]
            .into_iter()
            .collect();
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("host", Arc::new(host)),
            (
                "load",
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    None,
                    Some(-2.0),
                    Some(0.25),
                ])),
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![None, None, Some(7), Some(-3)])),
            ),
            ("u", Arc::new(UInt64Array::from(vec![1, u64::MAX, 3, 4]))),
            ("note", Arc::new(StringArray::from(vec![None::<&str>; 4]))),
            ("time", Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
        ];
        let stats = of_footer(&footer(cols, 2, WriterProperties::default()), &schema());
        assert_eq!(stats.min["host"], Value::from("a"));
        assert_eq!(stats.max["host"], Value::from("d"));
        assert_eq!(stats.min["load"], Value::from(-2.0));
        assert_eq!(stats.max["load"], Value::from(1.5));
        // The first row group's `n` is all NULL: it bounds nothing.
        assert_eq!(stats.min["n"], Value::from(-3));
        assert_eq!(stats.max["n"], Value::from(7));
        assert_eq!(stats.null_count["load"], 1);
        assert_eq!(stats.null_count["n"], 2);
        assert_eq!(stats.null_count["note"], 4);
        // No bounds for unsigned or all-NULL columns; `time` is not ours.
        for absent in ["u", "note", "time"] {
            assert!(!stats.min.contains_key(absent), "{absent}");
        }
        assert!(!stats.null_count.contains_key("time"));
    }

    #[test]
    fn truncated_strings_and_infinities_give_no_bounds() {
        let long = "x".repeat(100);
        let cols: Vec<(&str, ArrayRef)> = vec![
            (
                "note",
                Arc::new(StringArray::from(vec![long.as_str(), "a"])),
            ),
            (
                "load",
                Arc::new(Float64Array::from(vec![f64::INFINITY, 1.0])),
            ),
        ];
        let props = WriterProperties::builder()
            .set_statistics_truncate_length(Some(8))
            .build();
        let stats = of_footer(&footer(cols, 10, props), &schema());
        assert!(!stats.min.contains_key("note"), "{stats:?}");
        assert!(!stats.min.contains_key("load"), "{stats:?}");
        assert_eq!(stats.null_count["note"], 0);
    }
}
