//! Raw samples of a selector, read through DataFusion.
//!
//! One SQL scan per matching (table, field): the time window and the label
//! matchers become `WHERE` filters, so the table provider prunes files by
//! time and Parquet pushes the tag predicates down. Rows come back in any
//! order; they are grouped into series and sorted by time here.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, TimestampNanosecondType};
use fleetlake_query::QueryEngine;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;

use crate::error::{Error, Result};
use crate::names::MetricColumn;
use crate::value::{Labels, METRIC_NAME, RawSeries};

/// The label matchers of a selector, with the metric name as a `__name__`
/// matcher.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(Error::Unsupported(format!(
            "the `or` operator inside the label matchers of {vs}"
        )));
    }
    let mut out = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        out.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    Ok(out)
}

/// The metrics whose name satisfies every `__name__` matcher.
pub fn matching_metrics<'a>(
    metrics: &'a [MetricColumn],
    matchers: &[Matcher],
) -> Vec<&'a MetricColumn> {
    metrics
        .iter()
        .filter(|m| {
            matchers
                .iter()
                .filter(|x| x.name == METRIC_NAME)
                .all(|x| x.is_match(&m.metric))
        })
        .collect()
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn timestamp(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!(
        "TIMESTAMP '{}'",
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// The SQL predicate of one label matcher on tag column `tag`. A null tag
/// is the empty label value.
fn tag_predicate(tag: &str, m: &Matcher) -> String {
    let col = ident(tag);
    let text = format!("CAST({col} AS VARCHAR)");
    match &m.op {
        MatchOp::Equal if m.value.is_empty() => format!("({col} IS NULL OR {text} = '')"),
        MatchOp::Equal => format!("{col} = {}", literal(&m.value)),
        MatchOp::NotEqual if m.value.is_empty() => {
            format!("({col} IS NOT NULL AND {text} <> '')")
        }
        MatchOp::NotEqual => format!("({col} IS NULL OR {col} <> {})", literal(&m.value)),
        MatchOp::Re(re) => {
            let p = literal(re.as_str());
            if re.is_match("") {
                format!("({col} IS NULL OR {text} ~ {p})")
            } else {
                format!("{text} ~ {p}")
            }
        }
        MatchOp::NotRe(re) => {
            let p = literal(re.as_str());
            if re.is_match("") {
                format!("({col} IS NOT NULL AND {text} !~ {p})")
            } else {
                format!("({col} IS NULL OR {text} !~ {p})")
            }
        }
    }
}

/// The scan of one metric over `(lo_ms, hi_ms]`, or `None` when a matcher on
/// a label the table does not have can never match.
pub fn scan_sql(m: &MetricColumn, matchers: &[Matcher], lo_ms: i64, hi_ms: i64) -> Option<String> {
    let mut wheres = vec![
        format!("time > {}", timestamp(lo_ms)),
        format!("time <= {}", timestamp(hi_ms)),
        format!("{} IS NOT NULL", ident(&m.field)),
    ];
    for x in matchers.iter().filter(|x| x.name != METRIC_NAME) {
        if m.tags.contains(&x.name) {
            wheres.push(tag_predicate(&x.name, x));
        } else if !x.is_match("") {
            return None;
        }
    }
    let mut cols: Vec<String> = m.tags.iter().map(|t| ident(t)).collect();
    cols.push("time".to_string());
    cols.push(format!("CAST({} AS DOUBLE) AS __value", ident(&m.field)));
    Some(format!(
        "SELECT {} FROM {} WHERE {}",
        cols.join(", "),
        ident(&m.table),
        wheres.join(" AND ")
    ))
}

/// Reads the samples of every metric matching `matchers` in `(lo_ms, hi_ms]`.
pub async fn fetch(
    engine: &QueryEngine,
    db: &str,
    metrics: &[MetricColumn],
    matchers: &[Matcher],
    lo_ms: i64,
    hi_ms: i64,
) -> Result<Vec<RawSeries>> {
    let mut out = Vec::new();
    for m in matching_metrics(metrics, matchers) {
        let Some(sql) = scan_sql(m, matchers, lo_ms, hi_ms) else {
            continue;
        };
        let (_, batches) = engine.query_collect(db, &sql).await?;
        out.extend(group_rows(m, &batches)?);
    }
    Ok(out)
}

/// Groups scanned rows into series sorted by time. Two rows of one series
/// at the same millisecond keep the later one in scan order.
fn group_rows(
    m: &MetricColumn,
    batches: &[arrow::record_batch::RecordBatch],
) -> Result<Vec<RawSeries>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    // (tag values in the metric's tag order, (time ms, value) samples)
    type Grouped = (Vec<Option<String>>, Vec<(i64, f64)>);
    let mut series: Vec<Grouped> = Vec::new();
    let internal = |e: arrow::error::ArrowError| Error::Internal(e.to_string());
    for b in batches {
        let ntags = m.tags.len();
        let tags: Vec<_> = (0..ntags)
            .map(|i| arrow::compute::cast(b.column(i), &DataType::Utf8).map_err(internal))
            .collect::<Result<_>>()?;
        let tags: Vec<_> = tags.iter().map(|a| a.as_string::<i32>()).collect();
        let time = b
            .column(ntags)
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| Error::Internal("time column is not a nanosecond timestamp".into()))?;
        let value = b
            .column(ntags + 1)
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| Error::Internal("value column is not Float64".into()))?;
        let mut key = String::new();
        for row in 0..b.num_rows() {
            if value.is_null(row) {
                continue;
            }
            key.clear();
            for t in &tags {
                if t.is_null(row) {
                    key.push('\u{1}');
                } else {
                    key.push_str(t.value(row));
                }
                key.push('\u{0}');
            }
            let i = match index.get(&key) {
                Some(i) => *i,
                None => {
                    let vals = tags
                        .iter()
                        .map(|t| (!t.is_null(row)).then(|| t.value(row).to_string()))
                        .collect();
                    series.push((vals, Vec::new()));
                    index.insert(key.clone(), series.len() - 1);
                    series.len() - 1
                }
            };
            series[i]
                .1
                .push((time.value(row).div_euclid(1_000_000), value.value(row)));
        }
    }
    Ok(series
        .into_iter()
        .map(|(vals, mut samples)| {
            samples.sort_by_key(|s| s.0);
            // Later duplicates win: keep the last of each run of equal times.
            let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(samples.len());
            for s in samples {
                match dedup.last_mut() {
                    Some(last) if last.0 == s.0 => *last = s,
                    _ => dedup.push(s),
                }
            }
            let mut pairs: Vec<(String, String)> = m
                .tags
                .iter()
                .zip(vals)
                .filter_map(|(t, v)| v.map(|v| (t.clone(), v)))
                .collect();
            pairs.push((METRIC_NAME.to_string(), m.metric.clone()));
            RawSeries {
                labels: Labels::new(pairs),
                t: dedup.iter().map(|s| s.0).collect(),
                v: dedup.iter().map(|s| s.1).collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric() -> MetricColumn {
        MetricColumn {
            metric: "cpu_usage_user".into(),
            table: "cpu".into(),
            field: "usage_user".into(),
            tags: vec!["hostname".into(), "region".into()],
        }
    }

    fn matchers(q: &str) -> Vec<Matcher> {
        match promql_parser::parser::parse(q).unwrap() {
            promql_parser::parser::Expr::VectorSelector(vs) => selector_matchers(&vs).unwrap(),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn matchers_become_filters_and_absent_labels_match_empty() {
        let m = metric();
        let sql = scan_sql(
            &m,
            &matchers(r#"cpu_usage_user{hostname="h'1",region=~"eu.*",zone=""}"#),
            0,
            1000,
        )
        .unwrap();
        assert!(sql.contains(r#""hostname" = 'h''1'"#), "{sql}");
        assert!(
            sql.contains(r#"CAST("region" AS VARCHAR) ~ '^(?:eu.*)$'"#),
            "{sql}"
        );
        assert!(
            sql.contains("time > TIMESTAMP '1970-01-01T00:00:00.000Z'"),
            "{sql}"
        );
        assert!(!sql.contains("zone"), "{sql}");
        assert!(scan_sql(&m, &matchers(r#"cpu_usage_user{zone="a"}"#), 0, 1).is_none());
        assert!(scan_sql(&m, &matchers(r#"cpu_usage_user{zone!="a"}"#), 0, 1).is_some());
    }

    #[test]
    fn name_matchers_pick_metrics() {
        let ms = vec![
            metric(),
            MetricColumn {
                metric: "mem_used".into(),
                ..metric()
            },
        ];
        let picked = matching_metrics(&ms, &matchers(r#"{__name__=~"cpu_.+"}"#));
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].metric, "cpu_usage_user");
    }
}
