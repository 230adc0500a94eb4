//! Query results as the JSON datasource's two answer shapes: time series
//! (`{"target", "datapoints": [[value, unix_ms], …]}`) and tables
//! (`{"type": "table", "columns", "rows"}`).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Value, json};

/// How a result column is shown to Grafana.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Time,
    Number,
    String,
}

pub fn kind_of(t: &DataType) -> Kind {
    match t {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => Kind::Time,
        DataType::Boolean | DataType::Decimal128(..) | DataType::Decimal256(..) => Kind::Number,
        t if t.is_numeric() => Kind::Number,
        _ => Kind::String,
    }
}

/// One column converted to JSON values, row by row.
///
/// # Errors
/// The Arrow cast error text (a type that cannot be shown).
pub fn column_values(col: &ArrayRef) -> Result<Vec<Value>, String> {
    let n = col.len();
    Ok(match kind_of(col.data_type()) {
        Kind::Time => {
            let ms = cast(col, &DataType::Timestamp(TimeUnit::Millisecond, None))
                .and_then(|a| cast(&a, &DataType::Int64))
                .map_err(|e| e.to_string())?;
            let ms = ms.as_primitive::<Int64Type>();
            (0..n)
                .map(|i| {
                    if ms.is_null(i) {
                        Value::Null
                    } else {
                        Value::from(ms.value(i))
                    }
                })
                .collect()
        }
        Kind::Number => {
            let f = cast(col, &DataType::Float64).map_err(|e| e.to_string())?;
            let f = f.as_primitive::<Float64Type>();
            // NaN and infinities have no JSON form; Grafana reads null as a gap.
            (0..n)
                .map(|i| {
                    if f.is_null(i) {
                        Value::Null
                    } else {
                        Value::from(f.value(i))
                    }
                })
                .collect()
        }
        Kind::String => {
            let opts = FormatOptions::default();
            let fmt = ArrayFormatter::try_new(col.as_ref(), &opts).map_err(|e| e.to_string())?;
            (0..n)
                .map(|i| {
                    if col.is_null(i) {
                        Value::Null
                    } else {
                        Value::from(fmt.value(i).to_string())
                    }
                })
                .collect()
        }
    })
}

/// A table answer with every column of the result.
pub fn table(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Value, String> {
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match kind_of(f.data_type()) {
                Kind::Time => "time",
                Kind::Number => "number",
                Kind::String => "string",
            };
            json!({"text": f.name(), "type": t})
        })
        .collect();
    let mut rows = Vec::new();
    for b in batches {
        let cols = b
            .columns()
            .iter()
            .map(column_values)
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            rows.push(Value::Array(cols.iter().map(|c| c[r].clone()).collect()));
        }
    }
    Ok(json!({"type": "table", "columns": columns, "rows": rows}))
}

/// Time series from a result: the time column is the one named `time`, else
/// the first timestamp column; every numeric column is a value; the string
/// columns of a row name its series (several series per target). A series
/// is named by those strings, then by the value column when there are
/// several values or no strings (then `fallback` names a lone value).
///
/// # Errors
/// A message for the user when the result has no time or no numeric column.
pub fn time_series(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    fallback: &str,
) -> Result<Vec<Value>, String> {
    let fields = schema.fields();
    let time_idx = fields
        .iter()
        .position(|f| f.name() == "time" && kind_of(f.data_type()) == Kind::Time)
        .or_else(|| {
            fields
                .iter()
                .position(|f| kind_of(f.data_type()) == Kind::Time)
        })
        .ok_or_else(|| {
            "a time series needs a timestamp column (name it \"time\"); \
             or ask for a table (\"format\": \"table\" in the payload)"
                .to_string()
        })?;
    let values: Vec<usize> = (0..fields.len())
        .filter(|&i| i != time_idx && kind_of(fields[i].data_type()) == Kind::Number)
        .collect();
    if values.is_empty() {
        return Err(
            "a time series needs a numeric value column besides the time column".to_string(),
        );
    }
    let labels: Vec<usize> = (0..fields.len())
        .filter(|&i| i != time_idx && kind_of(fields[i].data_type()) == Kind::String)
        .collect();
    // Series in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut series: std::collections::HashMap<String, Vec<(i64, Value)>> = Default::default();
    for b in batches {
        let times = column_values(b.column(time_idx))?;
        let label_cols = labels
            .iter()
            .map(|&i| column_values(b.column(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let value_cols = values
            .iter()
            .map(|&i| column_values(b.column(i)))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let Some(t) = times[r].as_i64() else { continue };
            let prefix: Vec<&str> = label_cols
                .iter()
                .map(|c| c[r].as_str().unwrap_or(""))
                .collect();
            let prefix = prefix.join(" ");
            for (vi, &ci) in values.iter().enumerate() {
                let name = match (prefix.is_empty(), values.len()) {
                    (true, 1) if labels.is_empty() && fallback_first(fields[ci].name()) => {
                        fallback.to_string()
                    }
                    (true, _) => fields[ci].name().to_string(),
                    (false, 1) => prefix.clone(),
                    (false, _) => format!("{prefix} {}", fields[ci].name()),
                };
                let points = series.entry(name.clone()).or_insert_with(|| {
                    order.push(name);
                    Vec::new()
                });
                points.push((t, value_cols[vi][r].clone()));
            }
        }
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let mut points = series.remove(&name).unwrap_or_default();
            // Grafana draws points in array order; SQL need not have sorted.
            points.sort_by_key(|(t, _)| *t);
            let datapoints: Vec<Value> = points.into_iter().map(|(t, v)| json!([v, t])).collect();
            json!({"target": name, "datapoints": datapoints})
        })
        .collect())
}

/// A lone unnamed-looking value column (`value`, or DataFusion's generated
/// `avg(cpu.usage)`) takes the target's name; a column the user named keeps it.
fn fallback_first(col: &str) -> bool {
    col == "value" || col.contains('(')
}
