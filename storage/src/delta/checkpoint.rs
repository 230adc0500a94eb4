//! Delta checkpoints: every so many versions ([`CHECKPOINT_EVERY`] by
//! default) the table's state
//! is written as `<version>.checkpoint.parquet` and named in
//! `_delta_log/_last_checkpoint`, so a reader starts from it instead of
//! replaying every JSON commit since version 0 (the protocol's "classic"
//! checkpoint: one row per action, one struct column per action kind).
//!
//! Our own replay starts from the newest readable checkpoint too
//! ([`load`]). Once a newer checkpoint is older than the log retention, the
//! commits and checkpoints before it are deleted ([`clean_log`]).

use std::sync::Arc;

use std::collections::BTreeMap;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, ListBuilder, MapArray,
    MapBuilder, MapFieldNames, RecordBatch, StringArray, StringBuilder, StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::log::{Add, Format, LOG_DIR, Metadata, Snapshot, list_log, numbered};
use crate::error::{Error, Result};
use crate::store::os_err;

/// How a checkpoint's file name ends, after its version.
const CHECKPOINT_SUFFIX: &str = ".checkpoint.parquet";

/// Versions between checkpoints by default (Delta's own writers use 10 or 100).
pub const CHECKPOINT_EVERY: u64 = 100;

/// Whether the commit of `version` is followed by a checkpoint.
pub fn due(version: u64, every: u64) -> bool {
    version > 0 && version.is_multiple_of(every.max(1))
}

fn nullable(name: &str, t: DataType) -> Field {
    Field::new(name, t, true)
}

fn map_names() -> MapFieldNames {
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

fn string_map() -> DataType {
    let entries = Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// One map per row: `None` rows are null maps.
fn maps<'a>(rows: impl Iterator<Item = Option<Vec<(&'a str, Option<&'a str>)>>>) -> ArrayRef {
    let mut b = MapBuilder::new(
        Some(map_names()),
        StringBuilder::new(),
        StringBuilder::new(),
    )
    .with_values_field(Arc::new(Field::new("value", DataType::Utf8, true)));
    for row in rows {
        match row {
            Some(entries) => {
                for (k, v) in entries {
                    b.keys().append_value(k);
                    b.values().append_option(v);
                }
                b.append(true).expect("keys and values align");
            }
            None => b.append(false).expect("keys and values align"),
        }
    }
    Arc::new(b.finish())
}

fn strings<'a>(rows: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(rows.collect::<StringArray>())
}

fn struct_column(fields: Vec<Field>, arrays: Vec<ArrayRef>, present: Vec<bool>) -> ArrayRef {
    Arc::new(StructArray::new(
        Fields::from(fields),
        arrays,
        Some(NullBuffer::from(present)),
    ))
}

/// The checkpoint of `snapshot` as one record batch: the protocol, the
/// metadata, then every live file.
pub fn batch(snapshot: &Snapshot, protocol: &super::log::Protocol) -> Result<RecordBatch> {
    let meta = snapshot
        .metadata
        .as_ref()
        .ok_or_else(|| Error::Invalid("a Delta checkpoint needs the table's metadata".into()))?;
    let adds: Vec<&super::log::Add> = snapshot.files.values().collect();
    // Row 0: protocol; row 1: metaData; rows 2..: add.
    let n = 2 + adds.len();
    let is = |row: usize| move |i: usize| i == row;
    let add_at = |i: usize| i.checked_sub(2).map(|j| adds[j]);

    let protocol_col = struct_column(
        vec![
            nullable("minReaderVersion", DataType::Int32),
            nullable("minWriterVersion", DataType::Int32),
        ],
        vec![
            Arc::new(
                (0..n)
                    .map(|i| is(0)(i).then_some(protocol.min_reader_version as i32))
                    .collect::<Int32Array>(),
            ),
            Arc::new(
                (0..n)
                    .map(|i| is(0)(i).then_some(protocol.min_writer_version as i32))
                    .collect::<Int32Array>(),
            ),
        ],
        (0..n).map(is(0)).collect(),
    );

    let in_meta = is(1);
    let mut columns = ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        if in_meta(i) {
            for c in &meta.partition_columns {
                columns.values().append_value(c);
            }
            columns.append(true);
        } else {
            columns.append(false);
        }
    }
    let format_col = struct_column(
        vec![
            nullable("provider", DataType::Utf8),
            nullable("options", string_map()),
        ],
        vec![
            strings((0..n).map(|i| in_meta(i).then_some(meta.format.provider.as_str()))),
            maps((0..n).map(|i| {
                in_meta(i).then(|| {
                    meta.format
                        .options
                        .iter()
                        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                        .collect()
                })
            })),
        ],
        (0..n).map(in_meta).collect(),
    );
    let columns = columns.finish();
    let meta_col = struct_column(
        vec![
            nullable("id", DataType::Utf8),
            nullable("name", DataType::Utf8),
            nullable("description", DataType::Utf8),
            nullable("format", format_col.data_type().clone()),
            nullable("schemaString", DataType::Utf8),
            nullable("partitionColumns", columns.data_type().clone()),
            nullable("configuration", string_map()),
            nullable("createdTime", DataType::Int64),
        ],
        vec![
            strings((0..n).map(|i| in_meta(i).then_some(meta.id.as_str()))),
            strings((0..n).map(|i| in_meta(i).then_some(meta.name.as_deref()).flatten())),
            strings((0..n).map(|_| None)),
            format_col,
            strings((0..n).map(|i| in_meta(i).then_some(meta.schema_string.as_str()))),
            Arc::new(columns),
            maps((0..n).map(|i| {
                in_meta(i).then(|| {
                    meta.configuration
                        .iter()
                        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                        .collect()
                })
            })),
            Arc::new(
                (0..n)
                    .map(|i| in_meta(i).then_some(meta.created_time).flatten())
                    .collect::<Int64Array>(),
            ),
        ],
        (0..n).map(in_meta).collect(),
    );

    let add_col = struct_column(
        vec![
            nullable("path", DataType::Utf8),
            nullable("partitionValues", string_map()),
            nullable("size", DataType::Int64),
            nullable("modificationTime", DataType::Int64),
            nullable("dataChange", DataType::Boolean),
            nullable("stats", DataType::Utf8),
            nullable("tags", string_map()),
        ],
        vec![
            strings((0..n).map(|i| add_at(i).map(|a| a.path.as_str()))),
            maps((0..n).map(|i| {
                add_at(i).map(|a| {
                    a.partition_values
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_deref()))
                        .collect()
                })
            })),
            Arc::new(
                (0..n)
                    .map(|i| add_at(i).map(|a| a.size as i64))
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                (0..n)
                    .map(|i| add_at(i).map(|a| a.modification_time))
                    .collect::<Int64Array>(),
            ),
            // A checkpoint's adds are the state, not a change.
            Arc::new(
                (0..n)
                    .map(|i| add_at(i).map(|_| false))
                    .collect::<BooleanArray>(),
            ),
            strings((0..n).map(|i| add_at(i).and_then(|a| a.stats.as_deref()))),
            maps((0..n).map(|_| None)),
        ],
        (0..n).map(|i| add_at(i).is_some()).collect(),
    );

    let schema = Schema::new(vec![
        nullable("protocol", protocol_col.data_type().clone()),
        nullable("metaData", meta_col.data_type().clone()),
        nullable("add", add_col.data_type().clone()),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![protocol_col, meta_col, add_col],
    )?)
}

/// Writes the checkpoint of `snapshot` (at its version) and points
/// `_last_checkpoint` at it.
///
/// # Errors
/// Encoding or the store fails.
pub async fn write(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    snapshot: &Snapshot,
    protocol: &super::log::Protocol,
) -> Result<()> {
    let Some(version) = snapshot.version else {
        return Ok(());
    };
    let batch = batch(snapshot, protocol)?;
    let rows = batch.num_rows();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    let path = checkpoint_path(root, version);
    let size = bytes.len();
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(os_err(&path))?;
    let last = last_checkpoint_path(root);
    let body = serde_json::json!({"version": version, "size": rows, "sizeInBytes": size});
    store
        .put(&last, PutPayload::from(body.to_string()))
        .await
        .map_err(os_err(&last))?;
    Ok(())
}

/// The string map at `row` of `map` (NULL values kept as `None`).
fn map_at(map: &MapArray, row: usize) -> Result<BTreeMap<String, Option<String>>> {
    let entries = map.value(row);
    let keys = as_strings(entries.column(0), "map keys")?;
    let values = as_strings(entries.column(1), "map values")?;
    Ok((0..entries.len())
        .map(|i| {
            let value = values.is_valid(i).then(|| values.value(i).to_string());
            (keys.value(i).to_string(), value)
        })
        .collect())
}

fn bad(what: &str) -> Error {
    Error::Invalid(format!(
        "Delta checkpoint: {what} is not as fleetlake writes it"
    ))
}

fn as_strings<'a>(a: &'a ArrayRef, what: &str) -> Result<&'a StringArray> {
    a.as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| bad(what))
}

fn child<'a, T: 'static>(s: &'a StructArray, name: &str) -> Result<&'a T> {
    s.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| bad(name))
}

fn string_at(s: &StructArray, name: &str, row: usize) -> Result<Option<String>> {
    let a = child::<StringArray>(s, name)?;
    Ok(a.is_valid(row).then(|| a.value(row).to_string()))
}

/// Applies the actions of one checkpoint batch (as [`batch`] writes them)
/// to `snapshot`.
fn apply_batch(snapshot: &mut Snapshot, batch: &RecordBatch) -> Result<()> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StructArray>())
            .ok_or_else(|| bad(name))
    };
    let meta = column("metaData")?;
    let add = column("add")?;
    for row in 0..batch.num_rows() {
        if meta.is_valid(row) {
            let format = child::<StructArray>(meta, "format")?;
            let columns = child::<ListArray>(meta, "partitionColumns")?.value(row);
            let columns = as_strings(&columns, "partitionColumns")?;
            let created = child::<Int64Array>(meta, "createdTime")?;
            snapshot.metadata = Some(Metadata {
                id: string_at(meta, "id", row)?.ok_or_else(|| bad("metaData.id"))?,
                name: string_at(meta, "name", row)?,
                format: Format {
                    provider: string_at(format, "provider", row)?
                        .ok_or_else(|| bad("format.provider"))?,
                    options: map_at(child::<MapArray>(format, "options")?, row)?
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, v?)))
                        .collect(),
                },
                schema_string: string_at(meta, "schemaString", row)?
                    .ok_or_else(|| bad("metaData.schemaString"))?,
                partition_columns: columns.iter().flatten().map(str::to_string).collect(),
                configuration: map_at(child::<MapArray>(meta, "configuration")?, row)?
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect(),
                created_time: created.is_valid(row).then(|| created.value(row)),
            });
        }
        if add.is_valid(row) {
            let path = string_at(add, "path", row)?.ok_or_else(|| bad("add.path"))?;
            let size = child::<Int64Array>(add, "size")?.value(row);
            let a = Add {
                path: path.clone(),
                partition_values: map_at(child::<MapArray>(add, "partitionValues")?, row)?,
                size: u64::try_from(size).map_err(|_| bad("add.size"))?,
                modification_time: child::<Int64Array>(add, "modificationTime")?.value(row),
                data_change: child::<BooleanArray>(add, "dataChange")?.value(row),
                stats: string_at(add, "stats", row)?,
            };
            snapshot.files.insert(path, a);
        }
    }
    Ok(())
}

/// The snapshot as of the newest readable checkpoint: the one
/// `_last_checkpoint` names, else the newest other one in the log (log
/// cleaning may have removed the commits before it, so replaying from
/// version 0 is the last resort, not the first); `None` if there is none.
///
/// # Errors
/// The store fails, or no checkpoint in the log is readable.
pub async fn load(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<Option<Snapshot>> {
    let named = match crate::store::read(store.as_ref(), &last_checkpoint_path(root)).await {
        Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["version"].as_u64()),
        Err(Error::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => None,
        Err(e) => return Err(e),
    };
    let mut last_err = None;
    if let Some(version) = named {
        match read_checkpoint(store, root, version).await {
            Ok(snapshot) => return Ok(Some(snapshot)),
            Err(e) => {
                tracing::warn!(table = %root, version, error = %e, "Delta checkpoint unreadable");
                last_err = Some(e);
            }
        }
    }
    // Only now list the log (every commit since the last cleaning) for the
    // other checkpoints, newest first.
    let mut listed: Vec<u64> = list_log(store, root)
        .await?
        .iter()
        .filter_map(|m| numbered(&m.location, CHECKPOINT_SUFFIX))
        .filter(|v| Some(*v) != named)
        .collect();
    listed.sort_unstable_by(|a, b| b.cmp(a));
    for version in listed {
        match read_checkpoint(store, root, version).await {
            Ok(snapshot) => return Ok(Some(snapshot)),
            Err(e) => {
                tracing::warn!(table = %root, version, error = %e, "Delta checkpoint unreadable");
                last_err = Some(e);
            }
        }
    }
    last_err.map_or(Ok(None), Err)
}

fn checkpoint_path(root: &Path, version: u64) -> Path {
    root.clone()
        .join(LOG_DIR)
        .join(format!("{version:020}{CHECKPOINT_SUFFIX}"))
}

fn last_checkpoint_path(root: &Path) -> Path {
    root.clone().join(LOG_DIR).join("_last_checkpoint")
}

async fn read_checkpoint(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    version: u64,
) -> Result<Snapshot> {
    let bytes = crate::store::read(store.as_ref(), &checkpoint_path(root, version)).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let mut snapshot = Snapshot::default();
    for batch in reader {
        apply_batch(&mut snapshot, &batch?)?;
    }
    snapshot.version = Some(version);
    Ok(snapshot)
}

/// Deletes the log files no reader within `retention` needs: every commit
/// and checkpoint below the newest checkpoint written more than
/// `retention` ago. Every version since that checkpoint stays readable
/// (time travel reaches back at least `retention`); older ones do not, as
/// with Delta's own `delta.logRetentionDuration`. Returns how many files
/// were deleted.
///
/// # Errors
/// The store fails.
pub async fn clean_log(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    retention: std::time::Duration,
) -> Result<usize> {
    let files = list_log(store, root).await?;
    let version = |m: &object_store::ObjectMeta, suffix| numbered(&m.location, suffix);
    let cutoff = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| chrono::Utc::now().checked_sub_signed(r));
    let Some(cutoff) = cutoff else {
        return Ok(0);
    };
    let Some(base) = files
        .iter()
        .filter(|m| m.last_modified <= cutoff)
        .filter_map(|m| version(m, CHECKPOINT_SUFFIX))
        .max()
    else {
        return Ok(0);
    };
    let mut deleted = 0;
    for m in &files {
        let below = version(m, ".json")
            .or_else(|| version(m, CHECKPOINT_SUFFIX))
            .is_some_and(|v| v < base);
        if below {
            store
                .delete(&m.location)
                .await
                .map_err(os_err(&m.location))?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
