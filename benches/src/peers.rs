//! The peers' answers as [`Table`]s: VictoriaMetrics (`/api/v1/query_range`
//! and `/api/v1/query` JSON), InfluxDB 1.x (`/query` JSON with
//! `epoch=ns`), and the DuckDB helper's JSON (`peers_duckdb.py`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::answer::{Cell, Columns, Kind, Table};
use crate::tsbs::VmQuery;

/// Runs a MetricsQL query; the JSON answer and the time to its last byte.
///
/// # Errors
///
/// A connection error or a non-success answer.
pub async fn victoria(
    client: &reqwest::Client,
    base: &str,
    q: &VmQuery,
) -> Result<(Value, Duration)> {
    let base = base.trim_end_matches('/');
    let t = Instant::now();
    let req = match q.step_s {
        Some(step) => client.get(format!("{base}/api/v1/query_range")).query(&[
            ("query", q.query.clone()),
            ("start", q.start_s.to_string()),
            ("end", q.end_s.to_string()),
            ("step", format!("{step}s")),
            // Answer from the data, not from the rollup cache of an earlier run.
            ("nocache", "1".into()),
        ]),
        None => client.get(format!("{base}/api/v1/query")).query(&[
            ("query", q.query.clone()),
            ("time", q.end_s.to_string()),
            ("nocache", "1".into()),
        ]),
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("MetricsQL {}", q.query))?;
    let status = resp.status();
    let text = resp.text().await?;
    let elapsed = t.elapsed();
    if !status.is_success() {
        bail!(
            "VictoriaMetrics answered {status}: {}\n  query: {}",
            cut(&text),
            q.query
        );
    }
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("VictoriaMetrics answer: {}", cut(&text)))?;
    Ok((v, elapsed))
}

/// A VictoriaMetrics answer as a table of `columns`: one row per (time,
/// hostname) present among the columns; each series' `__name__`
/// (`cpu_usage_user`) names its column (`prefix` + `usage_user`). A series
/// without a name (comparison results) fills the only value column.
pub fn victoria_table(v: &Value, columns: &Columns, prefix: &str) -> Result<Table> {
    let result = v
        .pointer("/data/result")
        .and_then(Value::as_array)
        .with_context(|| format!("no data.result in {}", cut(&v.to_string())))?;
    let has_time = columns.0.first().is_some_and(|(_, k)| *k == Kind::Time);
    let has_host = columns.0.iter().any(|(n, _)| n == "hostname");
    let value_cols: Vec<&str> = columns
        .0
        .iter()
        .filter(|(_, k)| *k == Kind::Num)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut rows: BTreeMap<(i64, String), BTreeMap<String, f64>> = BTreeMap::new();
    for series in result {
        let metric = series.get("metric").cloned().unwrap_or(Value::Null);
        let col = match metric.get("__name__").and_then(Value::as_str) {
            Some(name) => format!("{prefix}{}", name.strip_prefix("cpu_").unwrap_or(name)),
            None if value_cols.len() == 1 => value_cols[0].to_string(),
            None => bail!("a series without __name__ in an answer of several metrics: {metric}"),
        };
        let host = if has_host {
            metric
                .get("hostname")
                .and_then(Value::as_str)
                .context("a series without hostname")?
                .to_string()
        } else {
            String::new()
        };
        let points: Vec<&Value> = match (series.get("values"), series.get("value")) {
            (Some(Value::Array(vs)), _) => vs.iter().collect(),
            (_, Some(v)) => vec![v],
            _ => bail!("a series without values: {series}"),
        };
        for p in points {
            let ts = p
                .get(0)
                .and_then(Value::as_f64)
                .context("a point without a timestamp")?;
            let val: f64 = p
                .get(1)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .context("a point without a numeric value")?;
            let t = if has_time {
                (ts * 1e9).round() as i64
            } else {
                0
            };
            rows.entry((t, host.clone()))
                .or_default()
                .insert(col.clone(), val);
        }
    }
    let mut table = Table::new(columns.clone());
    for ((t, host), vals) in rows {
        let row = columns
            .0
            .iter()
            .map(|(name, kind)| match kind {
                Kind::Time => Cell::Time(t),
                Kind::Str => Cell::Str(host.clone()),
                Kind::Num => vals.get(name).map_or(Cell::Null, |v| Cell::Num(*v)),
            })
            .collect();
        table.rows.push(row);
    }
    Ok(table)
}

/// Runs an InfluxQL query (`GET /query?db=..&q=..&epoch=ns`); the JSON
/// answer and the time to its last byte.
///
/// # Errors
///
/// A connection error, a non-success answer, or an error in the result.
pub async fn influx(
    client: &reqwest::Client,
    base: &str,
    db: &str,
    q: &str,
) -> Result<(Value, Duration)> {
    let t = Instant::now();
    let resp = client
        .get(format!("{}/query", base.trim_end_matches('/')))
        .query(&[("db", db), ("q", q), ("epoch", "ns")])
        .send()
        .await
        .with_context(|| format!("InfluxQL {q}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let elapsed = t.elapsed();
    if !status.is_success() {
        bail!("InfluxDB answered {status}: {}\n  query: {q}", cut(&text));
    }
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("InfluxDB answer: {}", cut(&text)))?;
    if let Some(e) = v.pointer("/results/0/error").and_then(Value::as_str) {
        bail!("InfluxDB: {e}\n  query: {q}");
    }
    Ok((v, elapsed))
}

/// An InfluxDB answer as a table: every series' tags become columns; its
/// `time` column is read as `time_as` (the SQL bucket's name).
pub fn influx_table(v: &Value, columns: &Columns, time_as: &str) -> Result<Table> {
    let mut table = Table::new(columns.clone());
    let Some(series) = v.pointer("/results/0/series").and_then(Value::as_array) else {
        return Ok(table); // no rows
    };
    for s in series {
        let mut names: Vec<String> = s
            .get("columns")
            .and_then(Value::as_array)
            .context("a series without columns")?
            .iter()
            .map(|c| {
                let c = c.as_str().unwrap_or_default();
                if c == "time" {
                    time_as.to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        let tags: Vec<(String, Value)> = s
            .get("tags")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        names.extend(tags.iter().map(|(k, _)| k.clone()));
        let rows: Vec<Vec<Value>> = s
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .map(|r| {
                        let mut r = r.as_array().cloned().unwrap_or_default();
                        r.extend(tags.iter().map(|(_, v)| v.clone()));
                        r
                    })
                    .collect()
            })
            .unwrap_or_default();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        table
            .rows
            .extend(Table::from_json_rows(&names, &rows, columns)?.rows);
    }
    Ok(table)
}

fn cut(s: &str) -> String {
    s.chars().take(1000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Kind;

    #[test]
    fn victoria_pivots_metrics_into_columns() {
        let cols = Columns::new(&[
            ("minute", Kind::Time),
            ("max_usage_user", Kind::Num),
            ("max_usage_system", Kind::Num),
        ]);
        let v = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "cpu_usage_user"}, "values": [[60, "5"], [120, "7"]]},
            {"metric": {"__name__": "cpu_usage_system"}, "values": [[60, "1"], [120, "2"]]}
        ]}});
        let t = victoria_table(&v, &cols, "max_").unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(
            t.rows[0],
            vec![Cell::Time(60_000_000_000), Cell::Num(5.0), Cell::Num(1.0)]
        );

        let cols = Columns::new(&[("hostname", Kind::Str), ("usage_user", Kind::Num)]);
        let v = serde_json::json!({"data": {"result": [
            {"metric": {"hostname": "host_3"}, "value": [1000, "91"]}
        ]}});
        let t = victoria_table(&v, &cols, "").unwrap();
        assert_eq!(
            t.rows,
            vec![vec![Cell::Str("host_3".into()), Cell::Num(91.0)]]
        );
    }

    #[test]
    fn influx_series_with_tags() {
        let cols = Columns::new(&[
            ("hour", Kind::Time),
            ("hostname", Kind::Str),
            ("mean_usage_user", Kind::Num),
        ]);
        let v = serde_json::json!({"results": [{"statement_id": 0, "series": [
            {"name": "cpu", "tags": {"hostname": "host_1"}, "columns": ["time", "mean_usage_user"], "values": [[3600000000000i64, 2.5]]},
            {"name": "cpu", "tags": {"hostname": "host_2"}, "columns": ["time", "mean_usage_user"], "values": [[3600000000000i64, 3.5]]}
        ]}]});
        let t = influx_table(&v, &cols, "hour").unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(
            t.rows[1],
            vec![
                Cell::Time(3_600_000_000_000),
                Cell::Str("host_2".into()),
                Cell::Num(3.5)
            ]
        );
        let empty = serde_json::json!({"results": [{"statement_id": 0}]});
        assert!(influx_table(&empty, &cols, "hour").unwrap().rows.is_empty());
    }
}
