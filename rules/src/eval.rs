//! Running a rule's SQL at an evaluation time and turning the rows into
//! [`Sample`]s; the inventory query of safety limits.

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Utc};
use fleetlake_query::QueryEngine;
use serde_json::Value;

use crate::definition::RuleDef;
use crate::error::{Error, Result};
use crate::safety::Inventory;
use crate::state::Sample;

/// The column holding an instance's value; every other column is a label.
pub const VALUE: &str = "value";

pub fn ns_to_utc(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

pub use fleetlake_time::rfc3339;

/// Runs `sql` with `now()` = `now_ns` and returns its batches.
pub async fn run_sql(
    engine: &QueryEngine,
    db: &str,
    sql: &str,
    now_ns: i64,
) -> Result<Vec<RecordBatch>> {
    let (_, batches) = engine
        .query_collect_at(db, sql, Some(ns_to_utc(now_ns)))
        .await?;
    Ok(batches)
}

/// Runs a rule's plan at `now_ns` (see [`QueryEngine::query_plan_at`]);
/// `None` when a table's schema changed and the SQL must be planned again.
pub async fn run_plan(
    engine: &QueryEngine,
    db: &str,
    plan: &datafusion::logical_expr::LogicalPlan,
    now_ns: i64,
    share: Option<&std::sync::Arc<fleetlake_query::ScanShare>>,
) -> Result<Option<Vec<RecordBatch>>> {
    use futures::StreamExt;
    let Some(mut s) = engine
        .query_plan_at(db, plan, ns_to_utc(now_ns), share)
        .await?
    else {
        return Ok(None);
    };
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.push(b?);
    }
    Ok(Some(out))
}

/// One row per sample: labels from every non-`value` column (nulls left
/// out) plus the rule's labels (which win, as in Prometheus), the value,
/// and the row as evidence.
pub fn samples(def: &RuleDef, batches: &[RecordBatch]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    let opts = FormatOptions::default();
    for b in batches {
        let schema = b.schema();
        let value = match schema.index_of(VALUE) {
            Ok(i) => {
                let col = cast(b.column(i), &DataType::Float64).map_err(|e| {
                    Error::invalid(format!(
                        "rule {:?}: column `value` is not numeric: {e}",
                        def.name
                    ))
                })?;
                Some(
                    col.as_any()
                        .downcast_ref::<Float64Array>()
                        .expect("cast to Float64")
                        .clone(),
                )
            }
            Err(_) => None,
        };
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        for row in 0..b.num_rows() {
            let mut labels = BTreeMap::new();
            let mut evidence = serde_json::Map::new();
            for (i, f) in schema.fields().iter().enumerate() {
                let col = b.column(i);
                if col.is_null(row) {
                    evidence.insert(f.name().clone(), Value::Null);
                    continue;
                }
                let text = formatters[i].value(row).to_string();
                let json = match f.data_type() {
                    DataType::Float16 | DataType::Float32 | DataType::Float64 => text
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or(Value::String(text.clone()), Value::Number),
                    t if t.is_integer() => text
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::String(text.clone())),
                    DataType::Boolean => Value::Bool(text == "true"),
                    _ => Value::String(text.clone()),
                };
                evidence.insert(f.name().clone(), json);
                if f.name() != VALUE {
                    labels.insert(f.name().clone(), text);
                }
            }
            for (k, v) in &def.labels {
                labels.insert(k.clone(), v.clone());
            }
            let value = value
                .as_ref()
                .and_then(|v| (!v.is_null(row)).then(|| v.value(row)));
            out.push(Sample {
                labels,
                value,
                row: evidence,
            });
        }
    }
    Ok(out)
}

/// The row as text (for templates and exec environments).
pub fn row_text(row: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    row.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                // As Prometheus' templates print a float: 90, not 90.0.
                Value::Number(n) if n.is_f64() => {
                    n.as_f64().map_or(n.to_string(), |f| f.to_string())
                }
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// The SQL listing the fleet for a self-heal rule's safety limits: the
/// configured `inventory_sql`, else the entity and scope columns of the
/// first table the rule reads, over the hour before `now()`.
pub fn inventory_sql(def: &RuleDef, tables: &[String]) -> Option<String> {
    let safety = def.safety.as_ref()?;
    if let Some(sql) = &safety.inventory_sql {
        return Some(sql.clone());
    }
    let table = tables.first()?;
    let mut cols = vec![safety.entity().to_string()];
    for l in &safety.max_per_scope {
        if !cols.contains(&l.label) {
            cols.push(l.label.clone());
        }
    }
    let list = cols
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "SELECT {list} FROM \"{table}\" WHERE time > now() - INTERVAL '1 hour' AND time <= now() GROUP BY {list}"
    ))
}

/// Reads the inventory: entity (the safety entity column) → the other columns.
pub fn inventory(def: &RuleDef, batches: &[RecordBatch]) -> Result<Inventory> {
    let entity = def.safety.as_ref().map_or("hostname", |s| s.entity());
    let mut inv = Inventory::default();
    for s in samples(
        &RuleDef {
            labels: BTreeMap::new(),
            ..def.clone()
        },
        batches,
    )? {
        let mut labels = s.labels;
        if let Some(e) = labels.remove(entity) {
            inv.entities.entry(e).or_default().extend(labels);
        }
    }
    Ok(inv)
}
