//! Metric naming: how tables and fields of line protocol appear as
//! Prometheus metrics.
//!
//! - A numeric or boolean field `f` of table `t` is the metric `t_f`, with
//!   the table's tags as labels (VictoriaMetrics maps line protocol the same
//!   way).
//! - A table whose only field is `value` (what Prometheus remote write
//!   creates) is the metric `t` itself.
//! - String fields are not metrics.
//!
//! ```
//! use fleetlake_promql::names::metric_name;
//! assert_eq!(metric_name("cpu", "usage_user", false), "cpu_usage_user");
//! assert_eq!(metric_name("node_load1", "value", true), "node_load1");
//! ```

use fleetlake_storage::schema::{ColumnKind, FieldType, TableSchema};

/// The field a remote-written metric keeps its samples in.
pub const VALUE_FIELD: &str = "value";

/// One metric: a numeric column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricColumn {
    pub metric: String,
    pub table: String,
    pub field: String,
    /// Tag columns of the table: the metric's label names (besides `__name__`).
    pub tags: Vec<String>,
}

/// The metric name of `field` in `table`; `only_value_field` is true when
/// the table's only field is `value`.
pub fn metric_name(table: &str, field: &str, only_value_field: bool) -> String {
    if only_value_field && field == VALUE_FIELD {
        table.to_string()
    } else {
        format!("{table}_{field}")
    }
}

/// Whether a field type can be a Prometheus sample value.
pub fn is_numeric(t: FieldType) -> bool {
    !matches!(t, FieldType::String)
}

/// The metrics of one table, in field order.
pub fn metrics_of_table(table: &str, schema: &TableSchema) -> Vec<MetricColumn> {
    let fields: Vec<_> = schema.fields().collect();
    let only_value = fields.len() == 1 && fields[0].name == VALUE_FIELD;
    let tags: Vec<String> = schema
        .tags_sorted()
        .into_iter()
        .map(str::to_string)
        .collect();
    fields
        .into_iter()
        .filter(|c| matches!(c.kind, ColumnKind::Field(t) if is_numeric(t)))
        .map(|c| MetricColumn {
            metric: metric_name(table, &c.name, only_value),
            table: table.to_string(),
            field: c.name.clone(),
            tags: tags.clone(),
        })
        .collect()
}

/// Every metric of a database, given its tables and their schemas, sorted
/// by metric name. Two columns can claim one name (`a_b.c` and `a.b_c`):
/// both are kept; a selector of that name reads both.
pub fn metrics_of<'a>(
    tables: impl IntoIterator<Item = (&'a str, &'a TableSchema)>,
) -> Vec<MetricColumn> {
    let mut out: Vec<MetricColumn> = tables
        .into_iter()
        .flat_map(|(t, s)| metrics_of_table(t, s))
        .collect();
    out.sort_by(|a, b| (&a.metric, &a.table).cmp(&(&b.metric, &b.table)));
    out
}

/// The metrics of database `db` as the write path knows them now.
pub fn metrics_of_db(ingester: &fleetlake_ingest::Ingester, db: &str) -> Vec<MetricColumn> {
    let schemas: Vec<(String, std::sync::Arc<TableSchema>)> = ingester
        .tables(db)
        .into_iter()
        .filter_map(|t| ingester.table_schema(db, &t).map(|s| (t, s)))
        .collect();
    metrics_of(schemas.iter().map(|(t, s)| (t.as_str(), s.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(tags: &[&str], fields: &[(&str, FieldType)]) -> TableSchema {
        let mut s = TableSchema::new();
        for t in tags {
            s.merge_column("t", t, ColumnKind::Tag).unwrap();
        }
        for (f, ty) in fields {
            s.merge_column("t", f, ColumnKind::Field(*ty)).unwrap();
        }
        s
    }

    #[test]
    fn fields_become_table_underscore_field_and_value_tables_keep_their_name() {
        let cpu = schema(
            &["hostname"],
            &[
                ("usage_user", FieldType::Integer),
                ("note", FieldType::String),
                ("up", FieldType::Boolean),
            ],
        );
        let up = schema(&["job", "instance"], &[("value", FieldType::Float)]);
        let mixed = schema(&[], &[("value", FieldType::Float), ("x", FieldType::Float)]);
        let m = metrics_of([("cpu", &cpu), ("up", &up), ("mixed", &mixed)]);
        let names: Vec<&str> = m.iter().map(|m| m.metric.as_str()).collect();
        assert_eq!(
            names,
            ["cpu_up", "cpu_usage_user", "mixed_value", "mixed_x", "up"]
        );
        let up = m.iter().find(|m| m.metric == "up").unwrap();
        assert_eq!(up.tags, ["instance", "job"]);
        assert_eq!(up.field, "value");
    }
}
