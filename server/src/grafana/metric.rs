//! Metrics (`table.field`), their payload options, and the SQL a metric
//! target becomes. Table, field and tag names are checked against the
//! catalog before they reach SQL; values are quoted.

use std::sync::Arc;

use fleetlake_ingest::Ingester;
use fleetlake_storage::schema::{ColumnKind, FieldType, TableSchema};
use serde_json::{Map, Value, json};

use super::macros::date_bin;
use super::sql::{ident, literal, timestamp};

/// Payload keys with a meaning of their own; a tag with one of these names
/// cannot be filtered through the payload (ad hoc filters still reach it).
pub const RESERVED: [&str; 4] = ["aggregate", "group_by", "format", "db"];

pub const AGGREGATES: [&str; 6] = ["avg", "min", "max", "sum", "count", "last"];

/// A resolved metric: a numeric (or boolean) field of a table.
pub struct Metric {
    pub name: String,
    pub table: String,
    pub field: String,
    pub field_type: FieldType,
    pub schema: Arc<TableSchema>,
}

fn plottable(t: FieldType) -> bool {
    !matches!(t, FieldType::String)
}

/// Every metric of `db`, sorted by table then field creation order.
pub fn list(ingester: &Ingester, db: &str) -> Vec<Metric> {
    let mut out = Vec::new();
    for table in ingester.tables(db) {
        let Some(schema) = ingester.table_schema(db, &table) else {
            continue;
        };
        for c in schema.fields() {
            if let ColumnKind::Field(t) = c.kind
                && plottable(t)
            {
                out.push(Metric {
                    name: format!("{table}.{}", c.name),
                    table: table.clone(),
                    field: c.name.clone(),
                    field_type: t,
                    schema: schema.clone(),
                });
            }
        }
    }
    out
}

/// Resolves `table.field`; names may themselves hold dots, so every split
/// point is tried against the catalog.
pub fn resolve(ingester: &Ingester, db: &str, name: &str) -> Option<Metric> {
    name.match_indices('.').find_map(|(i, _)| {
        let (table, field) = (&name[..i], &name[i + 1..]);
        let schema = ingester.table_schema(db, table)?;
        match schema.kind_of(field)? {
            ColumnKind::Field(t) if plottable(t) => Some(Metric {
                name: name.to_string(),
                table: table.to_string(),
                field: field.to_string(),
                field_type: t,
                schema,
            }),
            _ => None,
        }
    })
}

/// The `payloads` the JSON plugin's builder shows for a metric.
pub fn payload_options(m: &Metric, databases: &[String]) -> Value {
    let tags = m.schema.tags_sorted();
    let opts = |vals: &mut dyn Iterator<Item = &str>| -> Vec<Value> {
        vals.map(|v| json!({"label": v, "value": v})).collect()
    };
    let mut payloads = vec![
        json!({"label": "Aggregate", "name": "aggregate", "type": "select",
               "placeholder": "avg", "options": opts(&mut AGGREGATES.iter().copied())}),
        json!({"label": "Group by", "name": "group_by", "type": "multi-select",
               "placeholder": "no grouping", "options": opts(&mut tags.iter().copied())}),
    ];
    for t in tags.iter().filter(|t| !RESERVED.contains(t)) {
        // No inline options: the builder asks /metric-payload-options on demand.
        payloads.push(json!({"label": t, "name": t, "type": "multi-select",
                             "placeholder": "any"}));
    }
    payloads.push(
        json!({"label": "Format", "name": "format", "type": "select",
                         "placeholder": "time_series",
                         "options": opts(&mut ["time_series", "table"].into_iter())}),
    );
    payloads.push(json!({"label": "Database", "name": "db", "type": "select",
                         "reloadMetric": true,
                         "options": opts(&mut databases.iter().map(String::as_str))}));
    json!({"label": m.name, "value": m.name, "payloads": payloads})
}

/// Strings of a payload value: a string, or an array of them (multi-select).
/// Empty strings and Grafana's "All" spellings select nothing.
pub fn strings(v: &Value) -> Vec<String> {
    let all = |s: &str| s.is_empty() || s == "*" || s == "$__all" || s == "All";
    match v {
        Value::String(s) if !all(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) if !all(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// One `adhocFilters` entry.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AdhocFilter {
    pub key: String,
    #[serde(default = "eq")]
    pub operator: String,
    #[serde(default)]
    pub value: Value,
}

fn eq() -> String {
    "=".to_string()
}

impl AdhocFilter {
    fn value_text(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// The filter as a condition on column `col` (already quoted); `numeric`
    /// says whether the column holds numbers, so `<`/`>` compare as numbers.
    ///
    /// # Errors
    /// An unknown operator, or `<`/`>` on a number column with a non-number.
    pub fn condition(&self, col: &str, numeric: bool) -> Result<String, String> {
        let v = self.value_text();
        let value = || -> Result<String, String> {
            if numeric {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| format!("{f:?}"))
                    .ok_or_else(|| format!("ad hoc filter on {}: {v:?} is not a number", self.key))
            } else {
                Ok(literal(&v))
            }
        };
        // Grafana writes regex values bare; a /…/ form is accepted too.
        let regex = || {
            let r = v
                .strip_prefix('/')
                .and_then(|r| r.strip_suffix('/'))
                .unwrap_or(&v);
            literal(r)
        };
        let text = if numeric {
            format!("CAST({col} AS VARCHAR)")
        } else {
            col.to_string()
        };
        Ok(match self.operator.as_str() {
            "=" => format!("{col} = {}", value()?),
            "!=" | "<>" => format!("{col} IS DISTINCT FROM {}", value()?),
            "=~" => format!("{text} ~ {}", regex()),
            "!~" => format!("({text} IS NULL OR {text} !~ {})", regex()),
            "<" => format!("{col} < {}", value()?),
            ">" => format!("{col} > {}", value()?),
            "<=" => format!("{col} <= {}", value()?),
            ">=" => format!("{col} >= {}", value()?),
            other => {
                return Err(format!(
                    "ad hoc filter on {}: unknown operator {other:?} (use =, !=, =~, !~, <, >)",
                    self.key
                ));
            }
        })
    }

    /// The filter against a table's schema: `None` when the table has no
    /// such column (the filter does not concern that table).
    pub fn condition_for(&self, schema: &TableSchema) -> Result<Option<String>, String> {
        let numeric = match schema.kind_of(&self.key) {
            None => return Ok(None),
            Some(ColumnKind::Field(t)) => !matches!(t, FieldType::String | FieldType::Boolean),
            Some(ColumnKind::Tag) => false,
            // The request's range already bounds time.
            Some(ColumnKind::Time) => return Ok(None),
        };
        self.condition(&ident(&self.key), numeric).map(Some)
    }
}

/// What a metric target asks for, from its payload.
pub struct MetricRequest<'a> {
    pub metric: &'a Metric,
    pub payload: &'a Map<String, Value>,
    pub adhoc: &'a [AdhocFilter],
    pub range: (i64, i64),
    pub bucket_ms: i64,
}

impl MetricRequest<'_> {
    pub fn aggregate(&self) -> Result<&'static str, String> {
        let a = self
            .payload
            .get("aggregate")
            .map(strings)
            .unwrap_or_default();
        let a = a.first().map(String::as_str).unwrap_or("avg");
        let a = if a == "mean" { "avg" } else { a };
        AGGREGATES
            .iter()
            .copied()
            .find(|x| *x == a)
            .ok_or_else(|| format!("unknown aggregate {a:?}: use {}", AGGREGATES.join(", ")))
    }

    /// Tags to split series by, checked against the table.
    pub fn group_by(&self) -> Result<Vec<String>, String> {
        let mut tags = Vec::new();
        for g in self
            .payload
            .get("group_by")
            .map(strings)
            .unwrap_or_default()
        {
            for t in g.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if self.metric.schema.kind_of(t) != Some(ColumnKind::Tag) {
                    return Err(format!(
                        "group_by: {t:?} is not a tag of {} (tags: {})",
                        self.metric.table,
                        self.metric.schema.tags_sorted().join(", ")
                    ));
                }
                if !tags.iter().any(|x| x == t) {
                    tags.push(t.to_string());
                }
            }
        }
        Ok(tags)
    }

    /// The SQL: one row per (bucket, group) with columns `time`, the group
    /// tags, and `value`, ordered by group then time.
    pub fn sql(&self) -> Result<(String, Vec<String>), String> {
        let m = self.metric;
        let field = ident(&m.field);
        let field = if m.field_type == FieldType::Boolean {
            format!("CAST({field} AS DOUBLE)")
        } else {
            field
        };
        let agg = match self.aggregate()? {
            "last" => format!("last_value({field} ORDER BY \"time\")"),
            a => format!("{a}({field})"),
        };
        let group = self.group_by()?;
        let mut conds = vec![format!(
            "\"time\" BETWEEN {} AND {}",
            timestamp(self.range.0),
            timestamp(self.range.1)
        )];
        for (k, v) in self.payload {
            if RESERVED.contains(&k.as_str()) || m.schema.kind_of(k) != Some(ColumnKind::Tag) {
                continue;
            }
            let vals = strings(v);
            if !vals.is_empty() {
                let list: Vec<String> = vals.iter().map(|s| literal(s)).collect();
                conds.push(format!("{} IN ({})", ident(k), list.join(", ")));
            }
        }
        for f in self.adhoc {
            if let Some(c) = f.condition_for(&m.schema)? {
                conds.push(c);
            }
        }
        let mut select = vec![format!(
            "{} AS \"time\"",
            date_bin("\"time\"", self.bucket_ms)
        )];
        select.extend(group.iter().map(|t| ident(t)));
        select.push(format!("{agg} AS \"value\""));
        let positions: Vec<String> = (1..=group.len() + 1).map(|i| i.to_string()).collect();
        let order: Vec<String> = (2..=group.len() + 1)
            .map(|i| i.to_string())
            .chain(["1".to_string()])
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} GROUP BY {} ORDER BY {}",
            select.join(", "),
            ident(&m.table),
            conds.join(" AND "),
            positions.join(", "),
            order.join(", ")
        );
        Ok((sql, group))
    }
}

/// The bucket width for a range: the request's interval, widened when the
/// range would otherwise give more than `max_points` buckets.
///
/// Buckets are aligned to the epoch, so a range of `r` ms touches at most
/// `ceil(r / w) + 1` buckets; `w >= r / (max_points - 1)` keeps that within
/// `max_points`. Widened widths are rounded up to a round duration.
pub fn bucket_ms(range: (i64, i64), interval_ms: i64, max_points: i64) -> i64 {
    let interval_ms = interval_ms.max(1);
    let span_ms = ((range.1 - range.0).max(0) + 999_999) / 1_000_000;
    let max_points = max_points.max(2);
    let needed = (span_ms + max_points - 2) / (max_points - 1);
    if needed <= interval_ms {
        return interval_ms;
    }
    const ROUND: [i64; 27] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000,
        21_600_000, 43_200_000, 86_400_000,
    ];
    ROUND
        .iter()
        .copied()
        .find(|&r| r >= needed)
        .unwrap_or_else(|| {
            let day = 86_400_000;
            (needed + day - 1) / day * day
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_max_points() {
        let hour = 3_600_000_000_000;
        assert_eq!(bucket_ms((0, hour), 60_000, 1000), 60_000);
        let w = bucket_ms((0, 6 * hour), 1_000, 100);
        assert!(w >= 6 * 3_600_000 / 99, "{w}");
        for (from, to, max) in [(7, 6 * hour + 13, 100), (123_456, 3 * hour, 7)] {
            let w = bucket_ms((from, to), 1, max) * 1_000_000;
            let buckets = to / w - from / w + 1;
            assert!(buckets <= max, "{buckets} > {max}");
        }
    }

    #[test]
    fn adhoc_conditions() {
        let f = |op: &str, v: &str| AdhocFilter {
            key: "hostname".into(),
            operator: op.into(),
            value: Value::from(v),
        };
        assert_eq!(
            f("=", "it's").condition("\"hostname\"", false).unwrap(),
            "\"hostname\" = 'it''s'"
        );
        assert_eq!(
            f("=~", "/^host_[12]$/")
                .condition("\"hostname\"", false)
                .unwrap(),
            "\"hostname\" ~ '^host_[12]$'"
        );
        assert_eq!(f(">", "5").condition("\"v\"", true).unwrap(), "\"v\" > 5.0");
        assert!(f(">", "five").condition("\"v\"", true).is_err());
        assert!(f("LIKE", "x").condition("\"v\"", false).is_err());
    }
}
