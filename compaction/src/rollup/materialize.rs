//! Computing a chunk of buckets over the source table and writing them as
//! data files of the target table.
//!
//! The aggregation is SQL through the query engine, so it reads exactly what
//! a query reads: files and write buffer, de-duplicated (later write wins).
//! Rows come back ordered by the target's series order then bucket, which
//! is the order data files keep, so they stream into Parquet as they come.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, new_null_array};
use arrow::compute::{cast, max, min};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use fleetlake_query::QueryEngine;
use fleetlake_storage::catalog::{Action, CatalogState, FileMeta};
use fleetlake_storage::parquet_file::{FileSpec, put_data_file, writer_properties};
use fleetlake_storage::schema::{ColumnDef, ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use fleetlake_time::rfc3339;
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;

use super::config::RollupSpec;
use super::plan::Chunk;
use crate::error::{Error, Result};

/// The aggregates of each field, as column-name suffixes.
pub const AGGREGATES: [&str; 5] = ["min", "max", "sum", "count", "last"];

/// Alias of the bucket start inside the aggregation query.
const BUCKET: &str = "__fleetlake_bucket";

/// What the target table looks like after this pass, and the catalog actions
/// that make it so.
#[derive(Debug)]
pub struct Target {
    pub schema: TableSchema,
    /// Catalog actions creating the table or adding columns; empty when the
    /// catalog already has them.
    pub actions: Vec<Action>,
    /// Source fields aggregated, with their types.
    pub fields: Vec<(String, FieldType)>,
    /// Tag names in the order the target's files sort rows by.
    pub order: Vec<String>,
}

fn is_numeric(t: FieldType) -> bool {
    matches!(
        t,
        FieldType::Float | FieldType::Integer | FieldType::UInteger
    )
}

/// The target's type of an aggregate of a field of type `t`. Sums keep the
/// field's type, as `sum()` does (integers wrap past ±2^63 the same way).
fn aggregate_type(aggregate: &str, t: FieldType) -> FieldType {
    if aggregate == "count" {
        FieldType::Integer
    } else {
        t
    }
}

/// Plans the target table of `spec` for the source's current `source` schema.
///
/// # Errors
/// A listed field that is a tag or a non-numeric field; an aggregate column
/// named like a tag; a target column that exists with another type.
pub fn plan_target(
    spec: &RollupSpec,
    source: &TableSchema,
    state: &CatalogState,
) -> Result<Target> {
    let bad = |msg: String| Error::Rollup(format!("rollup {}: {msg}", spec.describe()));
    let mut fields: Vec<(String, FieldType)> = Vec::new();
    match &spec.fields {
        None => {
            for c in source.fields() {
                if let ColumnKind::Field(t) = c.kind
                    && is_numeric(t)
                {
                    fields.push((c.name.clone(), t));
                }
            }
        }
        Some(listed) => {
            for name in listed {
                match source.kind_of(name) {
                    Some(ColumnKind::Field(t)) if is_numeric(t) => fields.push((name.clone(), t)),
                    Some(ColumnKind::Field(t)) => {
                        return Err(bad(format!(
                            "field {name:?} is a {} field; rollups aggregate float, integer and unsigned fields",
                            t.name()
                        )));
                    }
                    Some(_) => {
                        return Err(bad(format!(
                            "{name:?} is a tag or the time column, not a field"
                        )));
                    }
                    // Not written yet: its columns appear once it is.
                    None => {}
                }
            }
        }
    }

    let mut wanted: Vec<ColumnDef> = source
        .tags_sorted()
        .into_iter()
        .map(|t| ColumnDef {
            name: t.to_string(),
            kind: ColumnKind::Tag,
        })
        .collect();
    let mut names: HashSet<String> = wanted.iter().map(|c| c.name.clone()).collect();
    names.insert(TIME_COLUMN.to_string());
    for (f, t) in &fields {
        for a in AGGREGATES {
            let name = format!("{f}_{a}");
            if !names.insert(name.clone()) {
                return Err(bad(format!(
                    "column {name:?} (the {a} of field {f:?}) would have the name of a tag; leave {f:?} out of `fields`"
                )));
            }
            wanted.push(ColumnDef {
                name,
                kind: ColumnKind::Field(aggregate_type(a, *t)),
            });
        }
    }

    let existing = state.table(&spec.db, &spec.target).map(|t| &t.schema);
    let mut schema = existing.cloned().unwrap_or_default();
    let mut new_columns = Vec::new();
    for c in wanted {
        let added = schema
            .merge_column(&spec.target, &c.name, c.kind)
            .map_err(|e| bad(format!("the target table does not fit the rollup: {e}")))?;
        if added {
            new_columns.push(c);
        }
    }
    // Lead with the tag the source's files lead with (the one that isolates
    // a series best). The order is fixed once, as a flush fixes a table's.
    let mut key: Vec<String> = state
        .table(&spec.db, &spec.source)
        .map(|t| t.schema.sort_key().to_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| schema.kind_of(t) == Some(ColumnKind::Tag))
        .collect();
    if key.is_empty() {
        key = schema
            .tags_sorted()
            .into_iter()
            .map(str::to_string)
            .collect();
    }
    let sets_sort_key = schema.sort_key().is_empty() && !key.is_empty();
    schema.set_sort_key(&key);

    let mut actions = Vec::new();
    if !state.databases.contains_key(&spec.db) {
        actions.push(Action::CreateDatabase {
            db: spec.db.clone(),
        });
    }
    if existing.is_none() {
        actions.push(Action::CreateTable {
            db: spec.db.clone(),
            table: spec.target.clone(),
        });
    }
    if !new_columns.is_empty() {
        actions.push(Action::AddColumns {
            db: spec.db.clone(),
            table: spec.target.clone(),
            columns: new_columns,
        });
    }
    if sets_sort_key {
        actions.push(Action::SetSortKey {
            db: spec.db.clone(),
            table: spec.target.clone(),
            tags: key,
        });
    }
    let order = schema
        .series_order()
        .into_iter()
        .map(str::to_string)
        .collect();
    Ok(Target {
        schema,
        actions,
        fields,
        order,
    })
}

/// `name` as a SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The aggregation of the source rows in `[start, end)` by series and bucket,
/// ordered as the target's files are. Tags the source lacks (the target's
/// own, from earlier schemas) are left out and come back as NULL.
pub fn aggregate_sql(
    spec: &RollupSpec,
    source_tags: &[&str],
    target: &Target,
    start: i64,
    end: i64,
) -> String {
    let tags: Vec<String> = target
        .order
        .iter()
        .filter(|t| source_tags.contains(&t.as_str()))
        .map(|t| ident(t))
        .collect();
    let time = ident(TIME_COLUMN);
    let bucket = ident(BUCKET);
    let mut inner: Vec<String> = tags.clone();
    inner.extend(target.fields.iter().map(|(f, _)| ident(f)));
    inner.push(time.clone());
    inner.push(format!(
        "date_bin(INTERVAL '{} nanoseconds', {time}) AS {bucket}",
        spec.every_ns
    ));
    let mut outer: Vec<String> = tags.clone();
    outer.push(format!("{bucket} AS {time}"));
    for (f, _) in &target.fields {
        let c = ident(f);
        outer.push(format!("min({c}) AS {}", ident(&format!("{f}_min"))));
        outer.push(format!("max({c}) AS {}", ident(&format!("{f}_max"))));
        outer.push(format!("sum({c}) AS {}", ident(&format!("{f}_sum"))));
        outer.push(format!("count({c}) AS {}", ident(&format!("{f}_count"))));
        // The value at the latest time that has one: a row that lacks the
        // field (NULL) is not its last value.
        outer.push(format!(
            "last_value({c} ORDER BY {time}) FILTER (WHERE {c} IS NOT NULL) AS {}",
            ident(&format!("{f}_last"))
        ));
    }
    let mut group: Vec<String> = tags.clone();
    group.push(bucket.clone());
    // NULLS FIRST: the order of data files (`SERIES_SORT`), which compaction
    // relies on to merge them without re-sorting.
    let mut order: Vec<String> = tags
        .iter()
        .map(|t| format!("{t} ASC NULLS FIRST"))
        .collect();
    order.push(format!("{bucket} ASC"));
    format!(
        "SELECT {} FROM (SELECT {} FROM {} WHERE {time} >= '{}' AND {time} < '{}') GROUP BY {} ORDER BY {}",
        outer.join(", "),
        inner.join(", "),
        ident(&spec.source),
        rfc3339(start),
        rfc3339(end),
        group.join(", "),
        order.join(", "),
    )
}

/// `batch` with exactly the columns of `schema`, by name, cast to its types;
/// columns the batch lacks are NULL.
fn to_target(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Where and how a chunk's files are written.
pub struct Sink<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub spec: &'a RollupSpec,
    pub target: &'a Target,
    pub seq: u64,
    /// Rows per file; a chunk with more is cut into several files (each is
    /// sorted and free of duplicates on its own, as a flush file is).
    pub max_rows: u64,
}

struct Open {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    min_time: i64,
    max_time: i64,
}

/// Computes `chunk` and writes its rows as new (uncommitted) files of the
/// target. Returns them; none when the chunk has no source rows.
pub async fn write_chunk(
    engine: &QueryEngine,
    sink: &Sink<'_>,
    source_tags: &[&str],
    chunk: &Chunk,
) -> Result<Vec<FileMeta>> {
    let sql = aggregate_sql(sink.spec, source_tags, sink.target, chunk.start, chunk.end);
    let schema = sink.target.schema.arrow_schema();
    let time_idx = schema.index_of(TIME_COLUMN)?;
    let mut stream = engine.query(&sink.spec.db, &sql).await?;
    let mut files = Vec::new();
    let mut open: Option<Open> = None;
    let result: Result<()> = async {
        while let Some(batch) = stream.next().await {
            let batch = to_target(&batch?, &schema)?;
            if batch.num_rows() == 0 {
                continue;
            }
            if open.is_none() {
                open = Some(Open {
                    writer: ArrowWriter::try_new(
                        Vec::new(),
                        schema.clone(),
                        Some(writer_properties(&schema)),
                    )?,
                    rows: 0,
                    min_time: i64::MAX,
                    max_time: i64::MIN,
                });
            }
            let cur = open.as_mut().expect("opened above");
            cur.writer.write(&batch)?;
            cur.rows += batch.num_rows() as u64;
            let t = batch
                .column(time_idx)
                .as_primitive::<TimestampNanosecondType>();
            if let (Some(lo), Some(hi)) = (min(t), max(t)) {
                cur.min_time = cur.min_time.min(lo);
                cur.max_time = cur.max_time.max(hi);
            }
            debug_assert_eq!(t.null_count(), 0);
            if cur.rows >= sink.max_rows {
                let full = open.take().expect("open above");
                files.push(close(sink, &chunk.day, full).await?);
            }
        }
        if let Some(last) = open.take() {
            files.push(close(sink, &chunk.day, last).await?);
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(files),
        Err(e) => {
            super::delete_uncommitted(sink.store, &files).await;
            Err(e)
        }
    }
}

async fn close(sink: &Sink<'_>, day: &str, open: Open) -> Result<FileMeta> {
    let bytes = open.writer.into_inner()?;
    let mut meta = put_data_file(
        sink.store,
        FileSpec {
            db: &sink.spec.db,
            table: &sink.spec.target,
            day,
            rows: open.rows,
            min_time: open.min_time,
            max_time: open.max_time,
            seq: sink.seq,
        },
        bytes,
    )
    .await?;
    meta.sort_order = sink.target.order.clone();
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> TableSchema {
        let mut s = TableSchema::new();
        for (name, kind) in [
            ("region", ColumnKind::Tag),
            ("usage", ColumnKind::Field(FieldType::Float)),
            ("host", ColumnKind::Tag),
            ("n", ColumnKind::Field(FieldType::UInteger)),
            ("state", ColumnKind::Field(FieldType::String)),
        ] {
            s.merge_column("cpu", name, kind).unwrap();
        }
        s
    }

    fn spec() -> RollupSpec {
        RollupSpec::new("cpu", "cpu_1m", std::time::Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn target_has_the_tags_and_five_aggregates_per_numeric_field() {
        let state = CatalogState::default();
        let t = plan_target(&spec(), &source(), &state).unwrap();
        let names: Vec<String> = t
            .schema
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        assert_eq!(
            names,
            [
                "host:Dictionary(Int32, Utf8)",
                "region:Dictionary(Int32, Utf8)",
                "usage_min:Float64",
                "usage_max:Float64",
                "usage_sum:Float64",
                "usage_count:Int64",
                "usage_last:Float64",
                "n_min:UInt64",
                "n_max:UInt64",
                "n_sum:UInt64",
                "n_count:Int64",
                "n_last:UInt64",
                "time:Timestamp(ns, \"UTC\")",
            ]
        );
        assert!(matches!(t.actions[0], Action::CreateDatabase { .. }));
        assert!(matches!(t.actions[1], Action::CreateTable { .. }));
        assert_eq!(t.order, ["host", "region"]);

        // Once the catalog has it all, nothing is left to do.
        let mut state = CatalogState::default();
        state.apply(1, &t.actions).unwrap();
        let again = plan_target(&spec(), &source(), &state).unwrap();
        assert!(again.actions.is_empty(), "{:?}", again.actions);
    }

    #[test]
    fn listed_fields_must_be_numeric_fields() {
        let state = CatalogState::default();
        let mut s = spec();
        s.fields = Some(vec!["state".into()]);
        let e = plan_target(&s, &source(), &state).unwrap_err().to_string();
        assert!(e.contains("\"state\" is a string field"), "{e}");
        s.fields = Some(vec!["host".into()]);
        let e = plan_target(&s, &source(), &state).unwrap_err().to_string();
        assert!(e.contains("not a field"), "{e}");
        s.fields = Some(vec!["n".into(), "later".into()]);
        let t = plan_target(&s, &source(), &state).unwrap();
        assert_eq!(t.fields, [("n".to_string(), FieldType::UInteger)]);
    }

    #[test]
    fn clashing_names_are_refused() {
        let mut src = source();
        // Field aggregates never clash with each other; a tag can.
        src.merge_column("cpu", "usage_min", ColumnKind::Tag)
            .unwrap();
        let e = plan_target(&spec(), &src, &CatalogState::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"usage_min\""), "{e}");
    }

    #[test]
    fn sql_groups_by_series_and_bucket_in_file_order() {
        let mut s = spec();
        s.fields = Some(vec!["usage".into()]);
        let t = plan_target(&s, &source(), &CatalogState::default()).unwrap();
        let sql = aggregate_sql(&s, &["host", "region"], &t, 0, 120_000_000_000);
        assert_eq!(
            sql,
            "SELECT \"host\", \"region\", \"__fleetlake_bucket\" AS \"time\", \
             min(\"usage\") AS \"usage_min\", max(\"usage\") AS \"usage_max\", \
             sum(\"usage\") AS \"usage_sum\", count(\"usage\") AS \"usage_count\", \
             last_value(\"usage\" ORDER BY \"time\") FILTER (WHERE \"usage\" IS NOT NULL) AS \"usage_last\" \
             FROM (SELECT \"host\", \"region\", \"usage\", \"time\", \
             date_bin(INTERVAL '60000000000 nanoseconds', \"time\") AS \"__fleetlake_bucket\" \
             FROM \"cpu\" WHERE \"time\" >= '1970-01-01T00:00:00Z' \
             AND \"time\" < '1970-01-01T00:02:00Z') \
             GROUP BY \"host\", \"region\", \"__fleetlake_bucket\" \
             ORDER BY \"host\" ASC NULLS FIRST, \"region\" ASC NULLS FIRST, \"__fleetlake_bucket\" ASC"
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
